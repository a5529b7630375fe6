//! DKIM between Tern and dkimpy, a second, independent implementation (Python, PyPI `dkimpy`,
//! pinned and installed by `scripts/test`; driven through `support/dkimpy_peer.py`).
//!
//! dkimpy signs, Tern verifies: fresh RSA-2048 and Ed25519 keys each run, bodies and headers
//! chosen where canonicalization goes wrong (whitespace-only trailing lines, empty body, no
//! final CRLF, trailing spaces and tabs, folded headers, 8-bit UTF-8, several From-like
//! fields, `l=`), simple and relaxed; the public keys reach [`Verifier::verify`] through
//! `auth.records`, and every other lookup (SPF, DMARC) goes to a DNS stub on loopback that
//! knows no name. The RFC 8463 appendix A message must pass as published, and tampering with
//! a signed body or From field must fail.
//!
//! The other direction — Tern signs, dkimpy verifies — uses [`dkimpy_verifies`]: on the RFC
//! 8463 message, and on every untouched message of the table signed by Tern's signer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

#[path = "support/dns_stub.rs"]
mod dns_stub;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dns_stub::{DnsStub, Zone};
use serde_json::{Value, json};
use tern_auth::{AuthConfig, Results, Session, Verifier};

/// The peer script, next to this test.
const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dkimpy_peer.py");

/// Runs the dkimpy peer with one request and returns its answer.
fn dkimpy(request: &Value) -> Value {
    let mut child = Command::new("python3")
        .arg(PEER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs it)");
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "dkimpy peer failed (scripts/test installs dkimpy and PyNaCl): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the peer answers JSON")
}

/// dkimpy's verdict on each `DKIM-Signature` of `message`, top first, with `records` (TXT
/// name → value) as its only DNS. For the other direction: a message Tern signed must give
/// `[true]` here.
pub fn dkimpy_verifies(message: &[u8], records: &BTreeMap<String, String>) -> Vec<bool> {
    let answer = dkimpy(&json!({
        "mode": "verify",
        "message": STANDARD.encode(message),
        "records": records,
    }));
    answer["results"].as_array().unwrap().iter().map(|v| v.as_bool().unwrap()).collect()
}

/// What is done to a message after dkimpy signed it.
#[derive(Clone, Copy)]
enum After {
    Nothing,
    /// Appended to the body.
    Append(&'static str),
    /// The first occurrence of the first string replaced by the second.
    Replace(&'static str, &'static str),
}

/// One signing case.
struct Case {
    name: &'static str,
    key: &'static str,
    canon: &'static str,
    length: bool,
    message: Vec<u8>,
    after: After,
    /// The result RFC 6376 asks for.
    expect: &'static str,
    /// The result Tern gives instead today, and why (a case listed here that gives `expect`
    /// fails the test until this is removed).
    today: Option<(&'static str, &'static str)>,
}

/// What mail-auth 0.15.1 reports for a signature whose body hash does not match: `neutral`
/// (as Gmail does), where RFC 6376 §6.1.3 says PERMFAIL, which RFC 8601 §2.7.1 writes `fail`.
/// Either way the signature does not pass and DMARC does not count it.
const BODY_HASH_MISMATCH: (&str, &str) = ("neutral", "mail-auth: body hash mismatch is neutral");

const HEADERS: &str = "From: Alice <alice@example.com>\r\n\
    To: Bob <bob@example.net>\r\n\
    Subject: Interop\r\n\
    Date: Thu, 03 Dec 2026 01:00:00 +0000\r\n\
    Message-ID: <interop@example.com>\r\n";

fn with_body(body: &str) -> Vec<u8> {
    format!("{HEADERS}\r\n{body}").into_bytes()
}

fn case(name: &'static str, key: &'static str, canon: &'static str, message: Vec<u8>) -> Case {
    Case {
        name,
        key,
        canon,
        length: false,
        message,
        after: After::Nothing,
        expect: "pass",
        today: None,
    }
}

fn cases() -> Vec<Case> {
    let plain = "Hello Bob,\r\n\r\nthe figures are attached.\r\n";
    let folded = "From: Alice <alice@example.com>\r\n\
        To: Bob <bob@example.net>,\r\n\tCarol <carol@example.net>,\r\n  Dave <dave@example.net>\r\n\
        Subject: A subject long enough to be folded over several lines, as mail clients do\r\n \
        when a line would pass seventy-eight characters,\t \r\n\tand trailing space  \r\n\
        Date: Thu, 03 Dec 2026 01:00:00 +0000\r\n\
        Message-ID: <folded@example.com>\r\n\
        \r\n\
        Body.\r\n";
    let utf8 = "From: Jörg Müller <jörg@example.com>\r\n\
        To: Zoë <zoë@example.net>\r\n\
        Subject: Grüße aus Köln — ça va? 日本語\r\n\
        Date: Thu, 03 Dec 2026 01:00:00 +0000\r\n\
        Message-ID: <utf8@example.com>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Transfer-Encoding: 8bit\r\n\
        \r\n\
        Schöne Grüße,\r\nJörg — ✓\r\n";
    let from_like = "From: Alice <alice@example.com>\r\n\
        Sender: Secretary <secretary@example.com>\r\n\
        Reply-To: Team <team@example.com>\r\n\
        Resent-From: Forwarder <fwd@example.org>\r\n\
        To: Bob <bob@example.net>\r\n\
        Subject: Several senders\r\n\
        Date: Thu, 03 Dec 2026 01:00:00 +0000\r\n\
        Message-ID: <from-like@example.com>\r\n\
        \r\n\
        Body.\r\n";
    let trailing_blank = "Text.\r\n \r\n\t\r\n\r\n  \t \r\n";
    let trailing_space = "line with spaces   \r\nline with tabs\t\t\r\n \t mixed \t lead\r\n";
    vec![
        case("rsa relaxed/relaxed", "rsa", "relaxed/relaxed", with_body(plain)),
        case("rsa simple/simple", "rsa", "simple/simple", with_body(plain)),
        case("ed25519 relaxed/relaxed", "ed25519", "relaxed/relaxed", with_body(plain)),
        case("ed25519 simple/simple", "ed25519", "simple/simple", with_body(plain)),
        case(
            "whitespace-only trailing lines, relaxed",
            "rsa",
            "relaxed/relaxed",
            with_body(trailing_blank),
        ),
        case(
            "whitespace-only trailing lines, simple",
            "ed25519",
            "simple/simple",
            with_body(trailing_blank),
        ),
        case("empty body, relaxed", "rsa", "relaxed/relaxed", with_body("")),
        case("empty body, simple", "ed25519", "simple/simple", with_body("")),
        case("no final CRLF, relaxed", "ed25519", "relaxed/relaxed", with_body("one\r\ntwo")),
        case("no final CRLF, simple", "rsa", "simple/simple", with_body("one\r\ntwo")),
        case(
            "trailing spaces and tabs, relaxed",
            "rsa",
            "relaxed/relaxed",
            with_body(trailing_space),
        ),
        case(
            "trailing spaces and tabs, simple",
            "ed25519",
            "simple/simple",
            with_body(trailing_space),
        ),
        case("long folded headers, relaxed", "rsa", "relaxed/relaxed", folded.into()),
        case("long folded headers, simple", "ed25519", "simple/simple", folded.into()),
        case("8-bit UTF-8 header and body, relaxed", "ed25519", "relaxed/relaxed", utf8.into()),
        case("8-bit UTF-8 header and body, simple", "rsa", "simple/simple", utf8.into()),
        case("From, Sender, Reply-To, Resent-From", "rsa", "relaxed/relaxed", from_like.into()),
        case(
            "relaxed headers, simple body",
            "ed25519",
            "relaxed/simple",
            with_body(trailing_space),
        ),
        Case {
            length: true,
            ..case("l= covering the body", "rsa", "relaxed/relaxed", with_body(plain))
        },
        Case {
            length: true,
            after: After::Append("Appended after signing: click here.\r\n"),
            expect: "neutral",
            ..case("l= then content appended", "ed25519", "relaxed/relaxed", with_body(plain))
        },
        Case {
            length: true,
            after: After::Append("Appended after signing.\r\n"),
            expect: "neutral",
            ..case("l= then content appended, simple", "rsa", "simple/simple", with_body(plain))
        },
        Case {
            after: After::Replace("the figures", "the invoice"),
            expect: "fail",
            today: Some(BODY_HASH_MISMATCH),
            ..case("tampered body", "rsa", "relaxed/relaxed", with_body(plain))
        },
        Case {
            after: After::Replace("From: Alice <alice@", "From: Alice <mallory@"),
            expect: "fail",
            ..case("tampered From", "ed25519", "relaxed/relaxed", with_body(plain))
        },
    ]
}

fn apply(after: After, signed: Vec<u8>) -> Vec<u8> {
    match after {
        After::Nothing => signed,
        After::Append(text) => [signed, text.as_bytes().to_vec()].concat(),
        After::Replace(from, to) => {
            let text = String::from_utf8(signed).unwrap();
            assert!(text.contains(from), "{from:?} not in the message");
            text.replacen(from, to, 1).into_bytes()
        }
    }
}

/// Verifies `message` with `records` as the configured TXT records and DNS from `stub`.
async fn verify(stub: &DnsStub, records: BTreeMap<String, String>, message: &[u8]) -> Results {
    let config = AuthConfig { records, ..AuthConfig::default() };
    let verifier = Verifier::new(&config, "mx.tern.test", &[stub.addr], Duration::from_secs(1))
        .expect("verifier");
    let session = Session {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        helo: "client.example.com",
        mail_from: "alice@example.com",
    };
    verifier.verify(session, message).await
}

#[tokio::test]
async fn messages_dkimpy_signs_verify_as_expected() {
    let cases = cases();
    let request = json!({
        "mode": "sign",
        "cases": cases.iter().map(|case| json!({
            "message": STANDARD.encode(&case.message),
            "key": case.key,
            "canon": case.canon,
            "length": case.length,
        })).collect::<Vec<_>>(),
    });
    let answer = dkimpy(&request);
    let records: BTreeMap<String, String> = ["rsa", "ed25519"]
        .into_iter()
        .map(|key| {
            let record = answer["records"][key].as_str().unwrap().to_string();
            (format!("{key}._domainkey.example.com"), record)
        })
        .collect();
    let signed = answer["signed"].as_array().unwrap();
    let stub = DnsStub::start(Zone::default()).await.unwrap();

    let mut wrong = Vec::new();
    println!("{:6} {:40} {:8} {:16} {:8} {:8} reason", "", "case", "key", "c=", "expected", "got");
    for (case, signed) in cases.iter().zip(signed) {
        let signed = STANDARD.decode(signed.as_str().unwrap()).unwrap();
        let message = apply(case.after, signed);
        let results = verify(&stub, records.clone(), &message).await;
        let [dkim] = results.dkim.as_slice() else {
            panic!("{}: one signature, got {:?}", case.name, results.dkim);
        };
        let status = match case.today {
            None if dkim.result == case.expect => "ok",
            Some((today, _)) if dkim.result == today => "known",
            Some(_) if dkim.result == case.expect => "FIXED",
            _ => "FAIL",
        };
        let reason = dkim.reason.as_deref().unwrap_or("");
        let known = case.today.map_or(String::new(), |(_, why)| format!(" [{why}]"));
        println!(
            "{status:6} {:40} {:8} {:16} {:8} {:8} {reason}{known}",
            case.name, case.key, case.canon, case.expect, dkim.result,
        );
        // A signature set aside for its l= keeps no d= or s= in the results today.
        if case.expect != "neutral" {
            assert_eq!((dkim.domain.as_str(), dkim.selector.as_str()), ("example.com", case.key));
        }
        if matches!(status, "FAIL" | "FIXED") {
            wrong.push(format!("{status} {}", case.name));
        }
    }
    assert!(wrong.is_empty(), "cases not as recorded: {wrong:?}");
}

/// RFC 8463 §A.2 (the keys' DNS records) and §A.3 (the signed message): one Ed25519 and one
/// RSA signature over the same message, quoted from the RFC, line ends made CRLF.
const RFC8463_RECORDS: [(&str, &str); 2] = [
    (
        "brisbane._domainkey.football.example.com",
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    ),
    (
        "test._domainkey.football.example.com",
        "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qh\
         dR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4h\
         stT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
    ),
];

const RFC8463_MESSAGE: &str = "\
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :
 date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.
";

fn rfc8463() -> (Vec<u8>, BTreeMap<String, String>) {
    let message = RFC8463_MESSAGE.replace('\n', "\r\n").into_bytes();
    let records = RFC8463_RECORDS.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    (message, records)
}

#[tokio::test]
async fn the_rfc_8463_example_verifies() {
    let (message, records) = rfc8463();
    let stub = DnsStub::start(Zone::default()).await.unwrap();
    let results = verify(&stub, records, &message).await;
    let got: Vec<(&str, &str, &str)> = results
        .dkim
        .iter()
        .map(|d| (d.algorithm.as_str(), d.selector.as_str(), d.result.as_str()))
        .collect();
    assert_eq!(got, [("ed25519-sha256", "brisbane", "pass"), ("rsa-sha256", "test", "pass")]);

    let text = String::from_utf8(message).unwrap();
    let forged = text.replace("From: Joe SixPack", "From: Joe Sixpack");
    let results = verify(&stub, rfc8463().1, forged.as_bytes()).await;
    assert!(results.dkim.iter().all(|d| d.result == "fail"), "{:?}", results.dkim);
    let tampered = text.replace("We lost", "We won");
    let results = verify(&stub, rfc8463().1, tampered.as_bytes()).await;
    let (today, _) = BODY_HASH_MISMATCH;
    assert!(results.dkim.iter().all(|d| d.result == today), "{:?}", results.dkim);
}

#[test]
fn dkimpy_verifies_the_rfc_8463_example_too() {
    let (message, records) = rfc8463();
    assert_eq!(dkimpy_verifies(&message, &records), [true, true]);
    let tampered = String::from_utf8(message).unwrap().replace("We lost", "We won");
    assert_eq!(dkimpy_verifies(tampered.as_bytes(), &records), [false, false]);
}

/// The other direction: Tern's signer (dual RSA-2048 + Ed25519, relaxed/relaxed, From
/// over-signed) signs every tricky message of the table, and dkimpy verifies both signatures.
#[test]
fn dkimpy_verifies_what_tern_signs() {
    use tern_auth::Signer;
    use tern_auth::keys::{Algorithm, generate};
    let dir = std::env::temp_dir().join(format!("tern-dkim-interop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rsa = generate(&dir, "example.com", "tr", Algorithm::Rsa, 2048).unwrap();
    let ed = generate(&dir, "example.com", "te", Algorithm::Ed25519, 0).unwrap();
    let records: BTreeMap<String, String> =
        [&rsa, &ed].iter().map(|k| (k.dns_name(), k.dns_record())).collect();
    let signer = Signer::new(vec![rsa, ed]);
    let mut table = Vec::new();
    for case in cases().into_iter().filter(|c| matches!(c.after, After::Nothing)) {
        let signatures = signer.sign(&case.message);
        assert_eq!(signatures.len(), 2, "{}: {signatures:?}", case.name);
        let signed = [signatures.concat().as_bytes(), case.message.as_slice()].concat();
        let verdicts = dkimpy_verifies(&signed, &records);
        table.push(format!("{:<40} {verdicts:?}", case.name));
        assert_eq!(verdicts, [true, true], "{}: dkimpy refused Tern's signatures", case.name);
    }
    println!("{}", table.join("\n"));
    assert!(table.len() >= 8, "the table shrank: {table:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
