//! Self-test of the real peers in `support::peers` that the outbound-delivery tests use:
//! dnsmasq serves MX, A, null MX, TXT, NXDOMAIN and a never-answered domain; a Postfix MX
//! stores mail for its users and rejects others (550) or defers listed ones (450); a smarthost
//! wants AUTH over STARTTLS; a relay instance forwards to it; two MX instances share a port on
//! different loopback addresses (and show their SMTPUTF8 and SIZE options); smtp-sink counts
//! sessions and messages. Tern is not involved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::peers::{
    DnsRecord, Dnsmasq, Postfix, PostfixOptions, SmtpSink, free_port_on_all, self_signed_cert,
};
use support::temp_dir;

const WAIT: Duration = Duration::from_secs(20);

/// `dig @server -p port ARGS`, whatever its exit status (a timeout is exit 9).
fn dig(server: &Dnsmasq, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.addr().ip()))
        .args(["-p", &server.addr().port().to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("dig cannot run ({e}); ./scripts/test installs dnsutils"));
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The `+short` answer lines, sorted.
fn dig_short(server: &Dnsmasq, args: &[&str]) -> Vec<String> {
    let mut all = vec!["+short"];
    all.extend_from_slice(args);
    let mut lines: Vec<String> = dig(server, &all).lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Runs swaks against `addr`; returns whether it succeeded and the whole transcript.
fn swaks(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["--from", "sender@example.org", "--timeout", "20"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("swaks cannot run ({e}); ./scripts/test installs it"));
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn dnsmasq_serves_mx_a_null_mx_txt_nxdomain_and_timeouts() {
    let dns = Dnsmasq::start(&[
        DnsRecord::mx("dest.test", "mx1.dest.test", 10),
        DnsRecord::mx("dest.test", "mx2.dest.test", 20),
        DnsRecord::a("mx1.dest.test", [127, 0, 0, 2]),
        DnsRecord::a("mx2.dest.test", [127, 0, 0, 3]),
        DnsRecord::null_mx("null.test"),
        DnsRecord::txt("dest.test", "v=spf1 ip4:127.0.0.2, \"quoted\" -all"),
        DnsRecord::timeout("slow.test"),
    ]);
    assert!(dns.addr().ip().is_loopback());
    let log = || dns.log();
    assert_eq!(
        dig_short(&dns, &["MX", "dest.test"]),
        ["10 mx1.dest.test.", "20 mx2.dest.test."],
        "{}",
        log()
    );
    assert_eq!(dig_short(&dns, &["+tcp", "A", "mx1.dest.test"]), ["127.0.0.2"], "{}", log());
    assert_eq!(dig_short(&dns, &["MX", "null.test"]), ["0 ."], "{}", log());
    assert_eq!(
        dig_short(&dns, &["TXT", "dest.test"]),
        [r#""v=spf1 ip4:127.0.0.2, \"quoted\" -all""#],
        "{}",
        log()
    );
    let nx = dig(&dns, &["MX", "nosuch.test"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let nodata = dig(&dns, &["AAAA", "mx1.dest.test"]);
    assert!(nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"), "{nodata}");
    let started = Instant::now();
    let slow = dig(&dns, &["+time=1", "MX", "slow.test"]);
    assert!(slow.contains("timed out") && !slow.contains("status:"), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn postfix_mx_stores_known_users_and_rejects_or_defers_others() {
    let mx = Postfix::mx(
        &["alice@dest.test", "busy@dest.test"],
        PostfixOptions {
            recipient_access: vec![("busy@dest.test".into(), "450 4.2.0 try later".into())],
            ..Default::default()
        },
    );
    let (ok, out) =
        swaks(mx.addr(), &["--to", "alice@dest.test", "--body", "marker-7f3a for alice"]);
    assert!(ok && out.contains("250 2.0.0 Ok: queued"), "{out}\n{}", mx.log());
    let messages = mx.wait_for_messages("Alice@Dest.test", 1, WAIT);
    let message = String::from_utf8_lossy(&messages[0]);
    assert!(message.contains("marker-7f3a for alice"), "{message}");
    assert!(message.contains("Delivered-To: alice@dest.test"), "{message}");

    let (ok, out) = swaks(mx.addr(), &["--to", "nobody@dest.test", "--quit-after", "RCPT"]);
    assert!(!ok && out.contains("550 5.1.1 <nobody@dest.test>"), "{out}");
    let (ok, out) = swaks(mx.addr(), &["--to", "busy@dest.test", "--quit-after", "RCPT"]);
    assert!(
        !ok && out.contains("450 4.2.0 <busy@dest.test>: Recipient address rejected: try later"),
        "{out}"
    );
    let (ok, out) = swaks(mx.addr(), &["--to", "x@elsewhere.test", "--quit-after", "RCPT"]);
    assert!(!ok && out.contains("554 5.7.1"), "{out}");
    assert!(mx.maildir_messages("busy@dest.test").is_empty());

    // Drop stops the instance: the port no longer answers.
    let addr = mx.addr();
    drop(mx);
    assert!(TcpStream::connect(addr).is_err(), "Postfix still listens on {addr} after drop");
}

#[test]
fn smarthost_wants_auth_over_starttls_and_a_relay_forwards_to_it() {
    let certs = temp_dir("peers-cert");
    let tls = self_signed_cert(&certs, "smarthost.test");
    let smarthost = Postfix::smarthost(
        &[("carol", "s3cret")],
        PostfixOptions { tls: Some(tls), ..Default::default() },
    );
    let addr = smarthost.addr();

    let (ok, out) = swaks(addr, &["--to", "dave@far.example", "--quit-after", "RCPT"]);
    assert!(!ok && out.contains("554 5.7.1"), "relayed without AUTH:\n{out}");
    let (_, out) = swaks(addr, &["--to", "dave@far.example", "--quit-after", "EHLO"]);
    assert!(out.contains("STARTTLS") && !out.contains("AUTH"), "AUTH before TLS:\n{out}");
    let (ok, out) = swaks(
        addr,
        &["--to", "dave@far.example", "--tls", "--auth", "PLAIN", "-au", "carol", "-ap", "wrong"],
    );
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    let (ok, out) = swaks(
        addr,
        &[
            "--to",
            "dave@far.example",
            "--tls",
            "--auth",
            "PLAIN",
            "-au",
            "carol",
            "-ap",
            "s3cret",
            "--body",
            "marker-smarthost",
        ],
    );
    assert!(ok && out.contains("235 2.7.0"), "{out}\n{}", smarthost.log());
    let messages = smarthost.wait_for_messages("dave@far.example", 1, WAIT);
    assert!(String::from_utf8_lossy(&messages[0]).contains("marker-smarthost"));

    // A relay instance takes mail from loopback and hands it on with AUTH over STARTTLS.
    let relay = Postfix::relay(
        addr,
        PostfixOptions {
            relay_login: Some(("carol".into(), "s3cret".into())),
            ..Default::default()
        },
    );
    let (ok, out) = swaks(relay.addr(), &["--to", "erin@other.example", "--body", "via-relay"]);
    assert!(ok, "{out}\n{}", relay.log());
    let messages = smarthost.wait_for_messages("erin@other.example", 1, WAIT);
    let message = String::from_utf8_lossy(&messages[0]);
    assert!(message.contains("via-relay") && message.contains(relay.hostname()), "{message}");
    assert!(relay.log().contains("status=sent"), "{}", relay.log());
    let _ = std::fs::remove_dir_all(certs);
}

#[test]
fn two_mx_instances_share_a_port_on_different_loopback_addresses() {
    let ips = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    let port = free_port_on_all(&ips);
    let first = Postfix::mx(
        &["u@one.test"],
        PostfixOptions { ip: ips[0], port: Some(port), ..Default::default() },
    );
    let second = Postfix::mx(
        &["u@two.test"],
        PostfixOptions {
            ip: ips[1],
            port: Some(port),
            smtputf8: false,
            message_size_limit: Some(20_000),
            ..Default::default()
        },
    );
    assert_eq!(first.addr(), SocketAddr::from((ips[0], port)));
    assert_eq!(second.addr(), SocketAddr::from((ips[1], port)));
    assert_ne!(first.hostname(), second.hostname());
    for (mx, to) in [(&first, "u@one.test"), (&second, "u@two.test")] {
        let (ok, out) = swaks(mx.addr(), &["--to", to]);
        assert!(ok && out.contains(mx.hostname()), "{out}");
        assert_eq!(mx.wait_for_messages(to, 1, WAIT).len(), 1);
    }
    let (ok, out) = swaks(first.addr(), &["--to", "u@two.test", "--quit-after", "RCPT"]);
    assert!(!ok && out.contains("554 5.7.1"), "{out}");

    // The options show in EHLO.
    let (_, out) = swaks(first.addr(), &["--to", "u@one.test", "--quit-after", "EHLO"]);
    assert!(out.contains("250-SMTPUTF8") && out.contains("250-SIZE 10240000"), "{out}");
    let (_, out) = swaks(second.addr(), &["--to", "u@two.test", "--quit-after", "EHLO"]);
    assert!(!out.contains("SMTPUTF8") && out.contains("250-SIZE 20000"), "{out}");
}

#[test]
fn smtp_sink_counts_sessions_and_messages() {
    let sink = SmtpSink::start(Ipv4Addr::LOCALHOST);
    assert_eq!(sink.counts().messages, 0);
    // One session with three messages, then two sessions with one each.
    let target = sink.addr().to_string();
    for args in [&["-s", "1", "-m", "3", "-d"][..], &["-s", "1", "-m", "2"][..]] {
        let status = Command::new("/usr/sbin/smtp-source")
            .args(args)
            .arg(&target)
            .status()
            .expect("smtp-source (package postfix) runs");
        assert!(status.success());
    }
    sink.wait_for_messages(5, WAIT);
    let deadline = Instant::now() + WAIT;
    while sink.counts().sessions < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let counts = sink.counts();
    assert_eq!((counts.sessions, counts.quits, counts.messages), (3, 3, 5), "{counts:?}");
}
