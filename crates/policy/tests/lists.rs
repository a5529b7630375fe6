//! Allow and block lists: allow entries always win.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::net::IpAddr;

use tern_policy::{AccessLists, Denial, ListsConfig};

fn lists() -> AccessLists {
    AccessLists::try_from(ListsConfig {
        allow_ips: vec!["198.51.100.7".into(), "2001:db8:bad:1::/64".into()],
        block_ips: vec!["198.51.100.0/24".into(), "2001:db8:bad::/48".into(), "192.0.2.66".into()],
        allow_sender_domains: vec!["partner.spam.example".into(), ".good.example".into()],
        block_sender_domains: vec![
            ".spam.example".into(),
            "junk.example".into(),
            ".good.example".into(),
        ],
    })
    .expect("valid lists")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP")
}

#[test]
fn connect_precedence() {
    let lists = lists();
    let cases: &[(&str, Result<(), Denial>)] = &[
        ("203.0.113.1", Ok(())),
        ("198.51.100.1", Err(Denial::ACCESS_DENIED)),
        ("198.51.100.255", Err(Denial::ACCESS_DENIED)),
        ("::ffff:198.51.100.1", Err(Denial::ACCESS_DENIED)),
        ("198.51.100.7", Ok(())),
        ("::ffff:198.51.100.7", Ok(())),
        ("198.51.101.1", Ok(())),
        ("192.0.2.66", Err(Denial::ACCESS_DENIED)),
        ("192.0.2.67", Ok(())),
        ("2001:db8:bad:2::1", Err(Denial::ACCESS_DENIED)),
        ("2001:db8:bad:1::99", Ok(())),
        ("2001:db8:bae::1", Ok(())),
    ];
    for (address, expected) in cases {
        assert_eq!(&lists.check_connect(ip(address)), expected, "{address}");
    }
    assert_eq!(Denial::ACCESS_DENIED.to_string(), "554 5.7.1 Access denied");
}

#[test]
fn sender_precedence() {
    let lists = lists();
    let cases: &[(&str, Result<(), Denial>)] = &[
        ("someone@example.org", Ok(())),
        ("someone@spam.example", Err(Denial::SENDER_ACCESS_DENIED)),
        ("someone@SPAM.example.", Err(Denial::SENDER_ACCESS_DENIED)),
        ("someone@mail.spam.example", Err(Denial::SENDER_ACCESS_DENIED)),
        ("someone@partner.spam.example", Ok(())),
        ("someone@x.partner.spam.example", Err(Denial::SENDER_ACCESS_DENIED)),
        ("someone@notspam.example", Ok(())),
        ("someone@junk.example", Err(Denial::SENDER_ACCESS_DENIED)),
        ("someone@sub.junk.example", Ok(())),
        ("someone@good.example", Ok(())),
        ("someone@mail.good.example", Ok(())),
        ("someone@junk.example@example.org", Ok(())),
        ("someone@example.org@junk.example", Err(Denial::SENDER_ACCESS_DENIED)),
        ("", Ok(())),
    ];
    for (mail_from, expected) in cases {
        assert_eq!(&lists.check_sender(mail_from), expected, "{mail_from:?}");
    }
    assert_eq!(
        Denial::SENDER_ACCESS_DENIED.to_string(),
        "554 5.7.1 Sender address rejected: access denied"
    );
}

#[test]
fn empty_lists_allow_everything() {
    let lists = AccessLists::default();
    assert_eq!(lists.check_connect(ip("198.51.100.1")), Ok(()));
    assert_eq!(lists.check_sender("someone@spam.example"), Ok(()));
}
