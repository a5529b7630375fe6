//! Every recipient form from the open-relay checklist, asked by every kind of client.
//!
//! Addresses are written the way `smtp-proto` hands them to the session: source routes stripped,
//! quotes removed. The comment on each row shows what the client typed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::net::IpAddr;

use tern_policy::{Client, Denial, RcptVerdict, RelayConfig, RelayPolicy, lookup_key};

fn policy() -> RelayPolicy {
    RelayPolicy::try_from(RelayConfig {
        local_domains: vec!["local".into(), "Example.COM.".into(), "BÜCHER.example".into()],
        trusted_networks: vec!["10.0.0.0/8".into(), "2001:db8:1::/48".into()],
        local_ips: vec!["192.0.2.10".into(), "2001:db8:ffff::10".into()],
        require_sender_ownership: true,
    })
    .expect("valid relay config")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP")
}

const STRANGER: &str = "203.0.113.9";

fn stranger() -> Client<'static> {
    Client { ip: ip(STRANGER), login: None }
}

fn authenticated() -> Client<'static> {
    Client { ip: ip(STRANGER), login: Some("alice") }
}

fn local(local_part: &str, domain: &str) -> RcptVerdict {
    RcptVerdict::Local { local_part: local_part.into(), domain: domain.into() }
}

fn relay(local_part: &str, domain: &str) -> RcptVerdict {
    RcptVerdict::Relay { local_part: local_part.into(), domain: domain.into() }
}

fn deny(denial: Denial) -> RcptVerdict {
    RcptVerdict::Deny(denial)
}

/// (as delivered, what the client typed, verdict for a stranger, verdict for an authorized client)
fn forms() -> Vec<(&'static str, &'static str, RcptVerdict, RcptVerdict)> {
    vec![
        // Percent hack: the local part is opaque, the domain is ours.
        (
            "user%ext.example@local",
            "user%ext.example@local",
            local("user%ext.example", "local"),
            local("user%ext.example", "local"),
        ),
        // Source routes arrive stripped, leaving a plain remote address.
        (
            "user@ext.example",
            "@local:user@ext.example",
            deny(Denial::RELAYING_DENIED),
            relay("user", "ext.example"),
        ),
        (
            "user@ext.example",
            "@a,@b:user@ext.example",
            deny(Denial::RELAYING_DENIED),
            relay("user", "ext.example"),
        ),
        // ... and if a caller ever passes them unstripped, they are refused outright.
        (
            "@local:user@ext.example",
            "(unstripped)",
            deny(Denial::SOURCE_ROUTE),
            deny(Denial::SOURCE_ROUTE),
        ),
        (
            "@a,@b:user@ext.example",
            "(unstripped)",
            deny(Denial::SOURCE_ROUTE),
            deny(Denial::SOURCE_ROUTE),
        ),
        // Bang paths: without @ refused, with @ an odd local part at our domain.
        ("ext.example!user", "ext.example!user", deny(Denial::BANG_PATH), deny(Denial::BANG_PATH)),
        (
            "ext.example!user@local",
            "ext.example!user@local",
            local("ext.example!user", "local"),
            local("ext.example!user", "local"),
        ),
        // Quoted local parts arrive unquoted; the last @ decides the domain.
        (
            "user@ext.example",
            "\"user@ext.example\"",
            deny(Denial::RELAYING_DENIED),
            relay("user", "ext.example"),
        ),
        (
            "user@ext.example@local",
            "\"user@ext.example\"@local",
            local("user@ext.example", "local"),
            local("user@ext.example", "local"),
        ),
        (
            "user@ext.example@local",
            "user@ext.example@local",
            local("user@ext.example", "local"),
            local("user@ext.example", "local"),
        ),
        (
            "user@local@ext.example",
            "\"user@local\"@ext.example",
            deny(Denial::RELAYING_DENIED),
            relay("user@local", "ext.example"),
        ),
        // Quotes that somehow survive make the domain invalid or stay in the local part.
        (
            "\"user@ext.example\"",
            "(quotes kept)",
            deny(Denial::BAD_ADDRESS_SYNTAX),
            deny(Denial::BAD_ADDRESS_SYNTAX),
        ),
        (
            "\"user@ext.example\"@local",
            "(quotes kept)",
            local("\"user@ext.example\"", "local"),
            local("\"user@ext.example\"", "local"),
        ),
        // One trailing dot is removed before deciding.
        (
            "user@ext.example.",
            "user@ext.example.",
            deny(Denial::RELAYING_DENIED),
            relay("user", "ext.example"),
        ),
        ("user@local.", "user@local.", local("user", "local"), local("user", "local")),
        (
            "user@local..",
            "user@local..",
            deny(Denial::BAD_ADDRESS_SYNTAX),
            deny(Denial::BAD_ADDRESS_SYNTAX),
        ),
        // Address literals: ours are local, others are never relayed.
        (
            "user@[192.0.2.1]",
            "user@[192.0.2.1]",
            deny(Denial::RELAYING_DENIED),
            deny(Denial::ADDRESS_LITERAL_RELAY_DENIED),
        ),
        (
            "user@[192.0.2.10]",
            "user@[192.0.2.10]",
            local("user", "[192.0.2.10]"),
            local("user", "[192.0.2.10]"),
        ),
        (
            "user@[IPv6:2001:db8:ffff:0::10]",
            "user@[IPv6:2001:db8:ffff:0::10]",
            local("user", "[IPv6:2001:db8:ffff::10]"),
            local("user", "[IPv6:2001:db8:ffff::10]"),
        ),
        (
            "user@[IPv6:::ffff:192.0.2.10]",
            "user@[IPv6:::ffff:192.0.2.10]",
            local("user", "[192.0.2.10]"),
            local("user", "[192.0.2.10]"),
        ),
        (
            "user@[192.0.2.300]",
            "user@[192.0.2.300]",
            deny(Denial::BAD_ADDRESS_SYNTAX),
            deny(Denial::BAD_ADDRESS_SYNTAX),
        ),
        // Nested angle brackets and comments.
        (
            "<user@ext.example>",
            "<<user@ext.example>>",
            deny(Denial::ANGLE_BRACKETS),
            deny(Denial::ANGLE_BRACKETS),
        ),
        (
            "<<user@ext.example>>",
            "(brackets kept)",
            deny(Denial::ANGLE_BRACKETS),
            deny(Denial::ANGLE_BRACKETS),
        ),
        (
            "user(comment)@ext.example",
            "user(comment)@ext.example",
            deny(Denial::COMMENTS),
            deny(Denial::COMMENTS),
        ),
        (
            "user@ext.example(comment)",
            "user@ext.example(comment)",
            deny(Denial::COMMENTS),
            deny(Denial::COMMENTS),
        ),
        (
            "(comment)user@local",
            "(comment)user@local",
            deny(Denial::COMMENTS),
            deny(Denial::COMMENTS),
        ),
        // Case, IDN, subdomains.
        ("USER@LOCAL", "USER@LOCAL", local("USER", "local"), local("USER", "local")),
        (
            "user@example.com",
            "user@example.com",
            local("user", "example.com"),
            local("user", "example.com"),
        ),
        (
            "user@bücher.EXAMPLE",
            "user@bücher.EXAMPLE",
            local("user", "bücher.example"),
            local("user", "bücher.example"),
        ),
        (
            "user@sub.local",
            "user@sub.local",
            deny(Denial::RELAYING_DENIED),
            relay("user", "sub.local"),
        ),
        (
            "user@ext.example%local",
            "user@ext.example%local",
            deny(Denial::BAD_ADDRESS_SYNTAX),
            deny(Denial::BAD_ADDRESS_SYNTAX),
        ),
        ("user@", "user@", deny(Denial::BAD_ADDRESS_SYNTAX), deny(Denial::BAD_ADDRESS_SYNTAX)),
        ("user", "user", deny(Denial::BAD_ADDRESS_SYNTAX), deny(Denial::BAD_ADDRESS_SYNTAX)),
        (
            "user@local\r\nRSET",
            "(CRLF injected)",
            deny(Denial::BAD_ADDRESS_SYNTAX),
            deny(Denial::BAD_ADDRESS_SYNTAX),
        ),
        // Postmaster without a domain (smtp-proto delivers it as "").
        ("", "<Postmaster>", RcptVerdict::Postmaster, RcptVerdict::Postmaster),
        ("PostMaster", "(undelivered form)", RcptVerdict::Postmaster, RcptVerdict::Postmaster),
    ]
}

#[test]
fn strangers_never_relay() {
    let policy = policy();
    for (rcpt, typed, expected, _) in forms() {
        let verdict = policy.check_rcpt(rcpt, &stranger());
        assert!(!matches!(verdict, RcptVerdict::Relay { .. }), "{typed} ({rcpt:?}) relayed");
        assert_eq!(verdict, expected, "{typed} ({rcpt:?})");
    }
}

#[test]
fn authenticated_clients_relay_only_to_well_formed_remote_addresses() {
    let policy = policy();
    for (rcpt, typed, _, expected) in forms() {
        assert_eq!(policy.check_rcpt(rcpt, &authenticated()), expected, "{typed} ({rcpt:?})");
    }
}

#[test]
fn trusted_networks_relay_like_authenticated_clients() {
    let policy = policy();
    let trusted = ["10.1.2.3", "::ffff:10.1.2.3", "2001:db8:1::5", "2001:db8:1:ffff::1"];
    for address in trusted {
        let client = Client { ip: ip(address), login: None };
        assert!(policy.is_trusted(client.ip), "{address}");
        for (rcpt, typed, _, expected) in forms() {
            assert_eq!(policy.check_rcpt(rcpt, &client), expected, "{address}: {typed} ({rcpt:?})");
        }
    }
}

#[test]
fn neighbours_of_trusted_networks_are_strangers() {
    let policy = policy();
    for address in
        ["11.0.0.1", "9.255.255.255", "2001:db8:2::1", "::1", "127.0.0.1", "::ffff:11.0.0.1"]
    {
        let client = Client { ip: ip(address), login: None };
        assert!(!policy.is_trusted(client.ip), "{address}");
        assert_eq!(
            policy.check_rcpt("user@ext.example", &client),
            deny(Denial::RELAYING_DENIED),
            "{address}"
        );
    }
}

#[test]
fn no_local_domains_and_no_trust_means_nothing_but_postmaster_for_strangers() {
    let policy = RelayPolicy::new(true);
    for (rcpt, typed, _, _) in forms() {
        let verdict = policy.check_rcpt(rcpt, &stranger());
        let acceptable = matches!(verdict, RcptVerdict::Deny(_) | RcptVerdict::Postmaster);
        assert!(acceptable, "{typed} ({rcpt:?}) gave {verdict:?}");
    }
}

#[test]
fn local_domain_lookup_ignores_case_and_trailing_dot() {
    let policy = policy();
    assert!(policy.is_local_domain("LOCAL."));
    assert!(policy.is_local_domain("example.com"));
    assert!(policy.is_local_domain("Bücher.Example"));
    assert!(policy.is_local_domain("[192.0.2.10]"));
    assert!(!policy.is_local_domain("sub.example.com"));
    assert!(!policy.is_local_domain("[192.0.2.1]"));
    assert!(!policy.is_local_domain(""));
}

#[test]
fn sender_ownership() {
    let policy = policy();
    let owned = ["alice@example.com", "Alice.Smith@Local", "@bücher.example", "bob+sales@local"];
    let cases: &[(&str, Option<&str>, Result<(), Denial>)] = &[
        ("alice@example.com", Some("alice"), Ok(())),
        ("ALICE@EXAMPLE.COM.", Some("alice"), Ok(())),
        ("alice+news@example.com", Some("alice"), Ok(())),
        ("alice.smith@local", Some("alice"), Ok(())),
        ("anyone@bücher.example", Some("alice"), Ok(())),
        ("bob+sales@local", Some("alice"), Ok(())),
        ("bob@local", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("bob+other@local", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("mallory@example.com", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("alice@example.com.evil", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("alice@sub.example.com", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("alice@example.com@evil.example", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("anyone@sub.bücher.example", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        ("not an address", Some("alice"), Err(Denial::SENDER_NOT_OWNED)),
        // Unauthenticated mail (port 25) is not checked here.
        ("mallory@example.com", None, Ok(())),
        ("", None, Ok(())),
    ];
    for (mail_from, login, expected) in cases {
        assert_eq!(&policy.check_sender(mail_from, *login, &owned), expected, "{mail_from:?}");
    }
    let nobody_owns_anything: [String; 0] = [];
    assert_eq!(
        policy.check_sender("alice@example.com", Some("alice"), &nobody_owns_anything),
        Err(Denial::SENDER_NOT_OWNED)
    );
}

#[test]
fn sender_ownership_can_be_turned_off() {
    let policy = RelayPolicy::new(false);
    assert_eq!(
        policy.check_sender("anyone@anywhere.example", Some("alice"), &["alice@local"]),
        Ok(())
    );
    assert_eq!(Denial::SENDER_NOT_OWNED.to_string(), "553 5.7.1 Sender address not owned by user");
}

#[test]
fn lookup_keys() {
    let cases = [
        ("alice", "local", "alice@local"),
        ("Alice", "LOCAL.", "alice@local"),
        ("alice+tag", "local", "alice@local"),
        ("Alice+Tag+More", "Example.com", "alice@example.com"),
        ("+tag", "local", "+tag@local"),
        ("alice+", "local", "alice@local"),
        ("user%ext.example", "local", "user%ext.example@local"),
        ("user@ext.example", "local", "user@ext.example@local"),
        ("ÄRGER", "bücher.example", "ärger@bücher.example"),
    ];
    for (local_part, domain, key) in cases {
        assert_eq!(lookup_key(local_part, domain), key, "{local_part}@{domain}");
    }
}
