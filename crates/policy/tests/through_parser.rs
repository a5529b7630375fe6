//! The open-relay checklist end to end through the real parser: each line as a client would
//! type it goes through `smtp-proto`, and whatever address comes out goes to the policy.
//! This pins down what "as delivered" means; if `smtp-proto` changes how it strips routes or
//! quotes, these tests say so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::net::IpAddr;

use smtp_proto::Request;
use tern_policy::{Client, Denial, RcptVerdict, RelayConfig, RelayPolicy};

fn policy() -> RelayPolicy {
    RelayPolicy::try_from(RelayConfig {
        local_domains: vec!["local".into()],
        ..RelayConfig::default()
    })
    .unwrap()
}

/// What `smtp-proto` makes of `RCPT TO:<path>`: the address, or `None` for a syntax error.
fn delivered(path: &str) -> Option<String> {
    let line = format!("RCPT TO:{path}\r\n");
    match Request::parse(&mut line.as_bytes().iter()) {
        Ok(Request::Rcpt { to }) => Some(to.address.into_owned()),
        _ => None,
    }
}

/// (typed by the client, what smtp-proto delivers, verdict for an unauthenticated stranger)
fn checklist() -> Vec<(&'static str, Option<&'static str>, Option<RcptVerdict>)> {
    let local = |local_part: &str| {
        Some(RcptVerdict::Local { local_part: local_part.into(), domain: "local".into() })
    };
    let denied = Some(RcptVerdict::Deny(Denial::RELAYING_DENIED));
    vec![
        ("<user%ext.example@local>", Some("user%ext.example@local"), local("user%ext.example")),
        ("<@local:user@ext.example>", Some("user@ext.example"), denied.clone()),
        ("<@a,@b:user@ext.example>", Some("user@ext.example"), denied.clone()),
        ("<ext.example!user>", None, None),
        ("<ext.example!user@local>", Some("ext.example!user@local"), local("ext.example!user")),
        ("<\"user@ext.example\">", None, None),
        ("<\"user@ext.example\"@local>", Some("user@ext.example@local"), local("user@ext.example")),
        ("<user@ext.example@local>", None, None),
        ("<user@ext.example.>", Some("user@ext.example."), denied.clone()),
        ("<user@local.>", Some("user@local."), local("user")),
        ("<user@[192.0.2.1]>", None, None),
        ("<<user@ext.example>>", None, None),
        ("<user(comment)@ext.example>", None, None),
        ("<(comment)user@ext.example>", None, None),
        ("<user@ext.example(comment)>", None, None),
        ("<Postmaster>", Some(""), Some(RcptVerdict::Postmaster)),
    ]
}

#[test]
fn no_form_relays_for_a_stranger() {
    let policy = policy();
    let stranger = Client { ip: "203.0.113.9".parse::<IpAddr>().unwrap(), login: None };
    for (typed, expected_delivery, expected_verdict) in checklist() {
        let delivered = delivered(typed);
        assert_eq!(delivered.as_deref(), expected_delivery, "smtp-proto on {typed}");
        // A syntax error never reaches the policy: the session answers it.
        let Some(address) = delivered else { continue };
        let verdict = policy.check_rcpt(&address, &stranger);
        assert!(!matches!(verdict, RcptVerdict::Relay { .. }), "{typed} relayed");
        assert_eq!(Some(verdict), expected_verdict, "{typed}");
    }
}
