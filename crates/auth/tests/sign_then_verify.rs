//! Tern's own signatures verify under Tern's verifier, and DMARC judges a spoof by the
//! domain's published policy: the keys and records come from configuration (`auth.records`),
//! DNS goes to a closed loopback port, so nothing leaves the machine.

// Helpers outside #[test] functions may panic too: that is how a test fails.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tern_auth::keys::{Algorithm, generate};
use tern_auth::{AuthConfig, Decision, Session, Signer, Verifier};

const MESSAGE: &[u8] = b"From: Ann <ann@example.com>\r\nTo: bob@tern.test\r\nSubject: signed\r\n\
Date: Thu, 3 Dec 2026 01:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nHello  there \r\n\r\n\r\n";

fn verifier(records: BTreeMap<String, String>) -> Verifier {
    let config = AuthConfig { records, ..AuthConfig::default() };
    // Port 9 (discard) on loopback: nothing answers, lookups fail at once.
    let dns = [SocketAddr::from(([127, 0, 0, 1], 9))];
    Verifier::new(&config, "mx.tern.test", &dns, Duration::from_millis(300)).expect("verifier")
}

fn session(ip: &str, mail_from: &'static str) -> Session<'static> {
    Session { ip: ip.parse().expect("ip"), helo: "mail.example.com", mail_from }
}

#[tokio::test]
async fn dual_signatures_pass_and_align_and_a_spoof_meets_the_reject_policy() {
    let dir = std::env::temp_dir().join(format!("tern-sign-verify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rsa = generate(&dir, "example.com", "r1", Algorithm::Rsa, 2048).expect("rsa");
    let ed = generate(&dir, "example.com", "e1", Algorithm::Ed25519, 0).expect("ed25519");
    let mut records = BTreeMap::from([
        (rsa.dns_name(), rsa.dns_record()),
        (ed.dns_name(), ed.dns_record()),
        ("_dmarc.example.com".to_string(), "v=DMARC1; p=reject".to_string()),
        ("example.com".to_string(), "v=spf1 ip4:192.0.2.0/24 -all".to_string()),
    ]);
    records.insert("mail.example.com".into(), "v=spf1 -all".into());
    // The DMARC tree walk asks up to the top-level domain.
    records.insert("_dmarc.com".into(), String::new());
    let signer = Signer::new(vec![rsa, ed]);
    let signatures = signer.sign(MESSAGE);
    assert_eq!(signatures.len(), 2, "{signatures:?}");
    let signed = [signatures.concat().as_bytes(), MESSAGE].concat();
    let verifier = verifier(records);

    // Signed, from an address SPF does not list: DKIM carries DMARC.
    let results = verifier.verify(session("198.51.100.7", "ann@example.com"), &signed).await;
    let dkim: Vec<_> =
        results.dkim.iter().map(|d| (d.algorithm.as_str(), d.result.as_str())).collect();
    assert_eq!(dkim, [("rsa-sha256", "pass"), ("ed25519-sha256", "pass")], "{results:#?}");
    assert_eq!(results.spf.result, "fail");
    assert_eq!(
        (results.dmarc.result.as_str(), results.dmarc.domain.as_str()),
        ("pass", "example.com")
    );
    assert!(
        results.header.starts_with("Authentication-Results: mx.tern.test;"),
        "{}",
        results.header
    );
    assert!(results.header.contains("dmarc=pass"), "{}", results.header);
    assert_eq!(results.decide(&AuthConfig::default()), Decision::Accept);

    // The body changed in transit: both signatures fail, and so does DMARC.
    let tampered =
        [signatures.concat().as_bytes(), &MESSAGE[..MESSAGE.len() - 6], b"Bye\r\n"].concat();
    let results = verifier.verify(session("198.51.100.7", "ann@example.com"), &tampered).await;
    assert!(results.dkim.iter().all(|d| d.result != "pass"), "{results:#?}");
    assert_eq!((results.dmarc.result.as_str(), results.dmarc.policy.as_str()), ("fail", "reject"));
    let Decision::Reject(why) = results.decide(&AuthConfig::default()) else {
        panic!("not rejected")
    };
    assert!(why.contains("example.com"), "{why}");

    // No signature but a client SPF allows: aligned SPF passes DMARC.
    let results = verifier.verify(session("192.0.2.10", "bounce@example.com"), MESSAGE).await;
    assert_eq!((results.spf.result.as_str(), results.dmarc.result.as_str()), ("pass", "pass"));
    std::fs::remove_dir_all(&dir).expect("cleaned");
}
