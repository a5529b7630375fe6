//! Hostile input gets a verdict, never a crash or a hang: malformed `DKIM-Signature` tags, a
//! 10 MB header, a key record that is not base64, SPF records that loop or include too much,
//! DNS that does not answer. Records come from configuration; other lookups go to a closed
//! loopback port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a broken fixture panics, and that is how a test fails"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tern_auth::{AuthConfig, Session, Verifier};

fn verifier(records: &[(&str, &str)]) -> Verifier {
    let records: BTreeMap<String, String> =
        records.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let config = AuthConfig { records, ..AuthConfig::default() };
    let dns = [SocketAddr::from(([127, 0, 0, 1], 9))];
    Verifier::new(&config, "mx.tern.test", &dns, Duration::from_millis(300)).unwrap()
}

fn session(mail_from: &'static str) -> Session<'static> {
    Session { ip: "192.0.2.1".parse().unwrap(), helo: "client.example", mail_from }
}

#[tokio::test]
async fn spf_loops_and_too_many_includes_are_permerror() {
    let mut records = vec![("loop.test", "v=spf1 include:loop.test -all")];
    let chain: Vec<(String, String)> = (0..20)
        .map(|i| (format!("i{i}.test"), format!("v=spf1 include:i{}.test -all", i + 1)))
        .collect();
    records.extend(chain.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    records.push(("i20.test", "v=spf1 +all"));
    let verifier = verifier(&records);
    for sender in ["a@loop.test", "a@i0.test"] {
        let started = Instant::now();
        let spf = verifier.check_spf(session(sender)).await;
        assert_eq!(spf.result, "permerror", "{sender}: {spf:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{sender} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn malformed_signatures_huge_headers_and_bad_keys_get_verdicts() {
    let verifier = verifier(&[
        ("_dmarc.example.com", "v=DMARC1; p=reject"),
        ("_dmarc.com", ""),
        ("example.com", "v=spf1 -all"),
        ("client.example", ""),
    ]);
    // A key record that is not base64 is refused when configured…
    let config = AuthConfig {
        records: BTreeMap::from([("s._domainkey.example.com".into(), "v=DKIM1; p=%%%".into())]),
        ..AuthConfig::default()
    };
    assert!(config.validate().is_err());
    let body = "\r\nbody\r\n";
    let cases: Vec<(&str, String)> = vec![
        ("no tags", format!("DKIM-Signature: ;;;\r\nFrom: a@example.com{body}")),
        (
            "bad base64 and unknown algorithm",
            format!(
                "DKIM-Signature: v=1; a=rsa-sha999; d=example.com; s=s; h=from; bh=@@@; b=!!!\r\n\
                 From: a@example.com{body}"
            ),
        ),
        (
            "l= larger than the body",
            format!(
                "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; l=99999999999999999999; \
                 h=from; bh=AAAA; b=AAAA\r\nFrom: a@example.com{body}"
            ),
        ),
        (
            "a 10 MB header",
            format!("X-Huge: {}\r\nFrom: a@example.com{body}", "x".repeat(10 * 1024 * 1024)),
        ),
        (
            "100 signatures",
            format!(
                "{}From: a@example.com{body}",
                "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=s; h=from; bh=AAAA; b=AAAA\r\n"
                    .repeat(100)
            ),
        ),
    ];
    for (name, message) in cases {
        let started = Instant::now();
        let results = verifier.verify(session("a@example.com"), message.as_bytes()).await;
        assert!(results.dkim.iter().all(|d| d.result != "pass"), "{name}: {results:?}");
        assert_eq!(results.dmarc.result, "fail", "{name}: {results:?}");
        assert!(results.dkim.len() <= 5, "{name}: at most the limit is checked");
        assert!(started.elapsed() < Duration::from_secs(10), "{name} took {:?}", started.elapsed());
        if name == "100 signatures" {
            assert_eq!(results.dkim_unchecked, 95, "{results:?}");
            assert!(results.header.contains("95 further DKIM signature(s) not checked"));
        }
    }
}
