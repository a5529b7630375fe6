//! Outbound delivery end to end, against real peers on loopback.
//!
//! Each test runs `tern serve` in MTA mode (`tern.test` local, loopback trusted to relay), a
//! dnsmasq serving the test's MX records (Tern's `outbound.dns_servers` points at it), and
//! Postfix instances as the remote MX hosts or as a smarthost with AUTH; `mx_port` points
//! Tern at the port they listen on. Retries run every second.
//!
//! Covered: delivery to the MX with STARTTLS; a refused first MX falls through to the second;
//! a remote 4xx is retried on schedule and warned about (delay DSN); a 5xx bounces into the
//! sender's mailbox as an RFC 3464 report that mail-parser and Python's `email` both read;
//! null MX and NXDOMAIN bounce at once; a success DSN when asked and the next hop cannot give
//! one; a smarthost with AUTH over STARTTLS; a restart with a full queue delivers every
//! message exactly once; Postfix relaying into Tern's mailbox; messages falling due one after
//! another ride on the connection already open to their destination.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use support::peers::{DnsRecord, Dnsmasq, Postfix, PostfixOptions, free_port_on_all};
use support::{Client, MtaListener, TernServer, is_tern_banner, temp_dir};
use tern_store::{QueueFilter, Route, StoreRead, StoredMessage};

const WAIT: Duration = Duration::from_secs(30);
const MX1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const MX2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const LISTENERS: [MtaListener; 1] = [MtaListener { role: "mx", allow_plaintext_auth: false }];

/// Tern, its mx listener, and the settings it was started with (for a restart).
struct Tern {
    server: TernServer,
    mx: SocketAddr,
    toml: String,
}

impl Tern {
    /// An MTA resolving through `dns`, contacting MX hosts on `mx_port`; `outbound` and
    /// `queue` are added to those sections.
    fn start(dns: &Dnsmasq, mx_port: u16, outbound: &str, queue: &str) -> Tern {
        let toml = format!(
            "[relay]\nlocal_domains = [\"tern.test\"]\ntrusted_networks = [\"127.0.0.0/8\"]\n\n\
             [outbound]\ndns_servers = [\"{}\"]\nmx_port = {mx_port}\n{outbound}\n\n\
             [queue]\nretry_first_secs = 1\nretry_max_secs = 1\n{queue}\n",
            dns.addr()
        );
        Tern::start_in(&temp_dir("outbound"), toml)
    }

    fn start_in(data: &Path, toml: String) -> Tern {
        let (server, addrs) = TernServer::start_mta_in(data, &LISTENERS, &toml, is_tern_banner);
        Tern { server, mx: addrs[0], toml }
    }

    /// `tern account add LOGIN` (password `pw`) against the running server's store.
    fn account(&self, login: &str) {
        let store = self.server.store_dir();
        let args = ["account", "add", login, "--password-stdin", "--data"];
        let mut argv: Vec<&str> = args.to_vec();
        let store = store.display().to_string();
        argv.push(&store);
        support::run(env!("CARGO_BIN_EXE_tern"), &argv, Some(b"pw\n"));
    }

    /// Relays one message (the loopback client is trusted) and returns its queue id.
    fn send(&self, from: &str, to: &[&str], body: &str) -> String {
        let mut client = Client::greeted(self.mx);
        client.cmd("EHLO app.test", "250");
        let id = client.send_message(from, to, body.as_bytes());
        client.cmd("QUIT", "221");
        id
    }

    /// Sends one message with whole `MAIL FROM:` and `RCPT TO:` argument strings (for DSN and
    /// SMTPUTF8 parameters).
    fn send_with(&self, mail: &str, rcpt: &str, body: &str) {
        let mut client = Client::greeted(self.mx);
        client.cmd("EHLO app.test", "250");
        client.cmd(&format!("MAIL FROM:{mail}"), "250");
        client.cmd(&format!("RCPT TO:{rcpt}"), "250");
        client.cmd("DATA", "354");
        client.send(body.as_bytes());
        client.cmd(".", "250");
        client.cmd("QUIT", "221");
    }

    /// Messages in the store from the null sender (notices) for `to`, oldest first.
    fn notices_to(&self, to: &str) -> Vec<StoredMessage> {
        let store = self.server.store();
        let mut ids = store.list_ids(1000).expect("list");
        ids.reverse();
        ids.iter()
            .filter_map(|id| store.message(id).expect("read"))
            .filter(|m| {
                m.envelope.mail_from.is_empty()
                    && m.envelope.recipients.iter().any(|r| r.address == to)
            })
            .collect()
    }

    /// Waits until `check` over the store holds.
    fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&Tern) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = check(self) {
                return found;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; tern stderr:\n{}", self.server.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn queue(&self) -> Vec<tern_store::QueueEntry> {
        self.server.store().queue_entries(&QueueFilter::default()).expect("queue").0
    }
}

fn body(subject: &str) -> String {
    format!(
        "From: alice@tern.test\r\nTo: bob@dest.test\r\nSubject: {subject}\r\n\r\nHello from Tern.\r\n"
    )
}

fn mx_options(ip: Ipv4Addr, port: u16) -> PostfixOptions {
    PostfixOptions { ip, port: Some(port), ..PostfixOptions::default() }
}

/// dnsmasq with `dest.test`'s MX on 127.0.0.2 (pref 10) and 127.0.0.3 (pref 20).
fn dest_dns(extra: &[DnsRecord]) -> Dnsmasq {
    let mut records = vec![
        DnsRecord::mx("dest.test", "mx1.dest.test", 10),
        DnsRecord::mx("dest.test", "mx2.dest.test", 20),
        DnsRecord::a("mx1.dest.test", MX1),
        DnsRecord::a("mx2.dest.test", MX2),
    ];
    records.extend_from_slice(extra);
    Dnsmasq::start(&records)
}

fn text(message: &[u8]) -> String {
    String::from_utf8_lossy(message).into_owned()
}

#[test]
fn mail_reaches_the_mx_over_starttls_and_a_refused_first_mx_falls_through_to_the_second() {
    let dns = dest_dns(&[]);
    let port = free_port_on_all(&[MX1, MX2]);
    // Nothing listens on mx1 (127.0.0.2): connection refused. mx2 is a Postfix with TLS.
    let dir = temp_dir("mx-tls");
    let tls = support::peers::self_signed_cert(&dir, "mx2.dest.test");
    let mx2 = Postfix::mx(
        &["bob@dest.test", "carol@dest.test"],
        PostfixOptions { tls: Some(tls), ..mx_options(MX2, port) },
    );
    let tern = Tern::start(&dns, port, "", "");
    let id = tern.send("alice@tern.test", &["bob@dest.test", "carol@dest.test"], &body("first"));

    let bob = mx2.wait_for_messages("bob@dest.test", 1, WAIT);
    let carol = mx2.wait_for_messages("carol@dest.test", 1, WAIT);
    let delivered = text(&bob[0]);
    assert!(delivered.contains("Subject: first"), "{delivered}");
    assert!(delivered.contains(&format!("id {id}")), "Tern's Received header travels: {delivered}");
    // Postfix records the TLS session in its own Received header.
    assert!(delivered.contains(" with ESMTPS id "), "delivered without TLS:\n{delivered}");
    // One transaction carried both recipients: the same Postfix queue id, the same bytes.
    let for_carol = delivered
        .replace("X-Original-To: bob@dest.test", "X-Original-To: carol@dest.test")
        .replace("Delivered-To: bob@dest.test", "Delivered-To: carol@dest.test");
    assert_eq!(text(&carol[0]), for_carol);
    // Delivered and remote-only: the queue and the store let it go.
    tern.wait_for("the message to leave the queue", |t| {
        (t.queue().is_empty() && t.server.message(&id).is_none()).then_some(())
    });
    assert!(tern.server.stderr().contains("delivered"), "{}", tern.server.stderr());
}

#[test]
fn a_remote_4xx_is_retried_on_schedule_and_the_sender_warned_then_a_5xx_bounces() {
    let dns = dest_dns(&[]);
    let port = free_port_on_all(&[MX1, MX2]);
    let _mx1 = Postfix::mx(
        &["bob@dest.test", "later@dest.test"],
        PostfixOptions {
            recipient_access: vec![("later@dest.test".into(), "450 4.2.0 try later".into())],
            ..mx_options(MX1, port)
        },
    );
    let tern = Tern::start(&dns, port, "", "delay_warning_secs = 1");
    tern.account("alice@tern.test");
    let body = body("deferred then bounced");
    tern.send("alice@tern.test", &["later@dest.test", "nobody@dest.test"], &body);

    // The 450 recipient is retried every second with the remote text kept.
    let entry = tern.wait_for("three attempts", |t| {
        t.queue().into_iter().find(|e| e.recipient == "later@dest.test" && e.attempts >= 3)
    });
    let error = entry.last_error.clone().unwrap_or_default();
    assert!(error.contains("450 4.2.0") && error.contains("try later"), "{error}");
    let waits = entry.next_attempt_ms - entry.last_attempt_ms.expect("attempted");
    assert_eq!(waits, 1000, "retry_first_secs = retry_max_secs = 1");

    // The 550 recipient bounced into alice's mailbox: an RFC 3464 report.
    let notices = tern.wait_for("a bounce and a delay warning", |t| {
        let notices = t.notices_to("alice@tern.test");
        (notices.len() >= 2).then_some(notices)
    });
    let bounce =
        notices.iter().find(|m| text(&m.raw).contains("Action: failed")).expect("a failure report");
    assert_eq!(
        bounce.envelope.recipients[0].route,
        Route::Local { account: "alice@tern.test".into() }
    );
    let raw = &bounce.raw;
    let parsed = mail_parser::MessageParser::default().parse(raw).expect("mail-parser reads it");
    let content_type = parsed.content_type().expect("content type");
    assert_eq!((content_type.ctype(), content_type.subtype()), ("multipart", Some("report")));
    assert_eq!(content_type.attribute("report-type"), Some("delivery-status"));
    assert_eq!(parsed.root().parts().count(), 4, "root + text + delivery-status + original");
    let report = text(raw);
    for field in [
        "Final-Recipient: rfc822; nobody@dest.test",
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx1.dest.test",
        "Diagnostic-Code: smtp; 550 5.1.1",
    ] {
        assert!(report.contains(field), "bounce lacks {field:?}:\n{report}");
    }
    assert!(!report.contains("Final-Recipient: rfc822; later@dest.test\r\nAction: failed"));
    assert!(report.contains("Subject: deferred then bounced"), "the original is returned");

    // Python's email module agrees on the structure and the per-recipient fields.
    let py = support::python_input(
        r#"
import email, email.policy, sys
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts = [msg.get_content_type()] + [p.get_content_type() for p in msg.iter_parts()]
status = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"][0]
blocks = status.get_payload()
emit(parts=parts, to=str(msg["To"]), action=str(blocks[1]["Action"]), status=str(blocks[1]["Status"]),
     defects=sum(len(p.defects) for p in msg.walk()))
"#,
        &[],
        Some(raw),
    );
    assert_eq!(
        py["parts"],
        serde_json::json!([
            "multipart/report",
            "text/plain",
            "message/delivery-status",
            "message/rfc822"
        ])
    );
    assert_eq!((support::text(&py, "action"), support::text(&py, "status")), ("failed", "5.1.1"));
    assert_eq!(support::text(&py, "to"), "alice@tern.test");
    assert_eq!(py["defects"], 0);

    // One delay warning about the deferred recipient, once.
    let delayed: Vec<_> =
        notices.iter().filter(|m| text(&m.raw).contains("Action: delayed")).collect();
    assert_eq!(delayed.len(), 1, "exactly one warning");
    let warning = text(&delayed[0].raw);
    assert!(warning.contains("Final-Recipient: rfc822; later@dest.test"), "{warning}");
    assert!(warning.contains("Will-Retry-Until: "), "{warning}");
    assert!(tern.queue()[0].delay_warned);

    // Prometheus sees the same story.
    let metrics =
        support::run("curl", &["-sf", &format!("http://{}/metrics", tern.server.http)], None);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(value("tern_outbound_deferred_total") >= 3.0);
    assert_eq!(value("tern_outbound_bounced_total"), 1.0);
    assert_eq!(value("tern_queue_entries{state=\"queued\"}"), 1.0);
    assert_eq!(value("tern_queue_entries{state=\"held\"}"), 0.0);
}

#[test]
fn null_mx_and_nxdomain_bounce_at_once_and_a_bounce_is_never_bounced() {
    let dns = Dnsmasq::start(&[DnsRecord::null_mx("null.test")]);
    let tern = Tern::start(&dns, 2525, "", "");
    tern.account("alice@tern.test");
    tern.send("alice@tern.test", &["x@null.test", "y@nowhere.test"], &body("no way"));
    // One report for the message, though its recipients sat at two destinations.
    let notices = tern.wait_for("the bounce, with nothing left queued", |t| {
        let notices = t.notices_to("alice@tern.test");
        (!notices.is_empty() && t.queue().is_empty()).then_some(notices)
    });
    assert_eq!(notices.len(), 1, "one bounce per message, not per destination");
    let report = text(&notices[0].raw);
    for field in [
        "Final-Recipient: rfc822; x@null.test",
        "Status: 5.1.10",
        "Diagnostic-Code: x-tern; Domain null.test does not accept mail (null MX)",
        "Final-Recipient: rfc822; y@nowhere.test",
        "Status: 5.1.2",
        "Diagnostic-Code: x-tern; Domain nowhere.test not found",
    ] {
        assert!(report.contains(field), "bounce lacks {field:?}:\n{report}");
    }
    // These are Tern's verdicts from DNS: no peer answered, so nothing is labelled `smtp;`.
    assert!(!report.contains("Diagnostic-Code: smtp;"), "{report}");
    assert!(tern.queue().is_empty());

    // A bounce (sender <>) that cannot be delivered is held for the postmaster, not bounced.
    tern.send("", &["z@null.test"], &body("a bounce"));
    let held = tern.wait_for("the undeliverable bounce to be held", |t| {
        t.queue().into_iter().find(|e| e.state == tern_store::EntryState::Held)
    });
    assert_eq!(held.recipient, "z@null.test");
    assert!(held.last_error.unwrap_or_default().contains("(null MX)"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tern.notices_to("").len(), 0, "no notice to the null sender");
    assert_eq!(tern.queue().len(), 1);
}

#[test]
fn a_success_notice_is_sent_when_asked_and_the_next_hop_does_not_speak_dsn() {
    let dns = dest_dns(&[]);
    let port = free_port_on_all(&[MX1, MX2]);
    let _mx1 = Postfix::mx(
        &["bob@dest.test"],
        PostfixOptions {
            main_cf: vec![("smtpd_discard_ehlo_keywords".into(), "dsn".into())],
            ..mx_options(MX1, port)
        },
    );
    let tern = Tern::start(&dns, port, "", "");
    tern.account("alice@tern.test");
    tern.send_with(
        "<alice@tern.test> RET=HDRS ENVID=track-1",
        "<bob@dest.test> NOTIFY=SUCCESS ORCPT=rfc822;Bob@dest.test",
        &body("track me"),
    );
    let notice = tern.wait_for("a success notice", |t| t.notices_to("alice@tern.test").pop());
    let report = text(&notice.raw);
    for field in [
        "Original-Envelope-Id: track-1",
        "Original-Recipient: rfc822; Bob@dest.test",
        "Action: relayed",
        "Status: 2.0.0",
        "text/rfc822-headers",
    ] {
        assert!(report.contains(field), "notice lacks {field:?}:\n{report}");
    }
    assert!(!report.contains("Hello from Tern."), "RET=HDRS returns headers only");
}

#[test]
fn a_smarthost_with_auth_over_starttls_carries_everything() {
    let dns = Dnsmasq::start(&[]);
    let dir = temp_dir("smarthost");
    let tls = support::peers::self_signed_cert(&dir, "smarthost.test");
    let smarthost = Postfix::smarthost(
        &[("tern-relay", "relay-secret")],
        PostfixOptions { tls: Some(tls), ..PostfixOptions::default() },
    );
    let extra = format!(
        "relay_host = \"{}\"\nrelay_username = \"tern-relay\"\nrelay_password = \"relay-secret\"\n",
        smarthost.addr()
    );
    // No MX record exists anywhere: only the smarthost can deliver these.
    let tern = Tern::start(&dns, 25, &extra, "");
    tern.send("alice@tern.test", &["bob@far.test", "carol@away.test"], &body("via smarthost"));
    let bob = smarthost.wait_for_messages("bob@far.test", 1, WAIT);
    smarthost.wait_for_messages("carol@away.test", 1, WAIT);
    assert!(text(&bob[0]).contains("Subject: via smarthost"));
    let log = smarthost.log();
    assert!(log.contains("sasl_username=tern-relay"), "Postfix saw no AUTH:\n{log}");
}

#[test]
fn a_restart_with_a_full_queue_delivers_every_message_exactly_once() {
    let dns = dest_dns(&[]);
    let port = free_port_on_all(&[MX1, MX2]);
    // No MX answers yet: every message is deferred.
    let tern = Tern::start(&dns, port, "", "");
    let subjects: Vec<String> = (0..20).map(|n| format!("queued {n}")).collect();
    for subject in &subjects {
        tern.send("alice@tern.test", &["bob@dest.test"], &body(subject));
    }
    tern.wait_for("every message to be attempted", |t| {
        let queue = t.queue();
        (queue.len() == 20 && queue.iter().all(|e| e.attempts >= 1)).then_some(())
    });
    let toml = tern.toml.clone();
    let mut server = tern.server;
    server.terminate();
    let data = server.stop_keeping_data();

    let mx1 = Postfix::mx(&["bob@dest.test"], mx_options(MX1, port));
    let tern = Tern::start_in(&data, toml);
    mx1.wait_for_messages("bob@dest.test", 20, WAIT);
    tern.wait_for("an empty queue", |t| t.queue().is_empty().then_some(()));
    // Anything delivered twice would show up by now.
    std::thread::sleep(Duration::from_secs(2));
    let delivered = mx1.maildir_messages("bob@dest.test");
    let mut got: Vec<String> = delivered
        .iter()
        .map(|m| {
            let t = text(m);
            t.lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                .expect("subject")
        })
        .collect();
    got.sort();
    let mut want = subjects.clone();
    want.sort();
    assert_eq!(got, want, "each message exactly once");
}

#[test]
fn postfix_relays_into_a_tern_mailbox() {
    let dns = Dnsmasq::start(&[]);
    let tern = Tern::start(&dns, 25, "", "");
    tern.account("alice@tern.test");
    let postfix = Postfix::relay(tern.mx, PostfixOptions::default());
    let mut client = Client::connect(postfix.addr());
    let banner = client.reply();
    assert!(banner.starts_with("220 "), "{banner}");
    client.cmd("EHLO app.test", "250");
    client.cmd("MAIL FROM:<someone@example.org>", "250");
    client.cmd("RCPT TO:<alice@tern.test>", "250");
    client.cmd("DATA", "354");
    client.send(b"From: someone@example.org\r\nSubject: through postfix\r\n\r\nhi\r\n");
    client.cmd(".", "250");
    client.cmd("QUIT", "221");
    let message = tern.wait_for("the relayed message", |t| {
        let store = t.server.store();
        let ids = store.list_ids(10).ok()?;
        ids.iter().find_map(|id| store.message(id).ok().flatten())
    });
    assert_eq!(message.envelope.mail_from, "someone@example.org");
    assert_eq!(
        message.envelope.recipients[0].route,
        Route::Local { account: "alice@tern.test".into() }
    );
    assert!(text(&message.raw).contains("Subject: through postfix"));
    assert!(text(&message.raw).contains(postfix.hostname()), "Postfix's Received header");
}

#[test]
fn the_peers_size_and_missing_smtputf8_bounce_without_sending() {
    let dns = dest_dns(&[]);
    let port = free_port_on_all(&[MX1, MX2]);
    let mx1 = Postfix::mx(
        &["bob@dest.test"],
        PostfixOptions {
            message_size_limit: Some(20_000),
            smtputf8: false,
            ..mx_options(MX1, port)
        },
    );
    let tern = Tern::start(&dns, port, "", "");
    tern.account("alice@tern.test");
    let big = format!("{}{}\r\n", body("too big"), "x".repeat(100).repeat(300));
    tern.send("alice@tern.test", &["bob@dest.test"], &big);
    tern.send_with("<alice@tern.test> SMTPUTF8", "<bob@dest.test>", &body("needs utf8: Grüße"));
    // A small message still goes through, so the peer was reachable all along.
    tern.send("alice@tern.test", &["bob@dest.test"], &body("fits"));
    mx1.wait_for_messages("bob@dest.test", 1, WAIT);
    let notices = tern.wait_for("two bounces", |t| {
        let notices = t.notices_to("alice@tern.test");
        (notices.len() == 2).then_some(notices)
    });
    let reports: Vec<String> = notices.iter().map(|m| text(&m.raw)).collect();
    assert!(reports.iter().any(|r| r.contains("Status: 5.3.4")), "{reports:?}");
    assert!(reports.iter().any(|r| r.contains("Status: 5.6.7")), "{reports:?}");
    std::thread::sleep(Duration::from_secs(1));
    let delivered = mx1.maildir_messages("bob@dest.test");
    assert_eq!(delivered.len(), 1, "neither refused message was sent");
    assert!(text(&delivered[0]).contains("Subject: fits"));
}

#[test]
fn delivery_to_a_local_mailbox_is_reported_when_the_sender_asked() {
    let dns = Dnsmasq::start(&[]);
    let tern = Tern::start(&dns, 25, "", "");
    tern.account("alice@tern.test");
    tern.account("bob@tern.test");
    tern.send_with(
        "<bob@tern.test> ENVID=local-1",
        "<alice@tern.test> NOTIFY=SUCCESS,FAILURE",
        &body("hand delivered"),
    );
    // Without NOTIFY=SUCCESS, no notice.
    tern.send("bob@tern.test", &["alice@tern.test"], &body("quietly"));
    let notice = tern.wait_for("a delivered notice", |t| t.notices_to("bob@tern.test").pop());
    let report = text(&notice.raw);
    for field in [
        "Final-Recipient: rfc822; alice@tern.test",
        "Action: delivered",
        "Status: 2.0.0",
        "Original-Envelope-Id: local-1",
    ] {
        assert!(report.contains(field), "notice lacks {field:?}:\n{report}");
    }
    assert_eq!(
        notice.envelope.recipients[0].route,
        Route::Local { account: "bob@tern.test".into() }
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tern.notices_to("bob@tern.test").len(), 1, "one notice, for the one that asked");
}

/// A minimal container may have no /etc/resolv.conf: the catcher still starts (it never needs
/// DNS), and outbound lookups would fail as temporary errors. Runs Tern in a mount namespace
/// whose /etc is empty.
#[test]
fn the_server_starts_without_a_system_dns_configuration() {
    let data = temp_dir("no-resolv");
    let script = format!(
        "mount -t tmpfs none /etc && exec {} serve --smtp 127.0.0.1:0 --http 127.0.0.1:0 --data {}",
        env!("CARGO_BIN_EXE_tern"),
        data.join("store").display()
    );
    let log = data.join("stderr.log");
    let mut child = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("unshare (util-linux) runs");
    let deadline = Instant::now() + WAIT;
    let ready = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("tern ready") || Instant::now() > deadline {
            break text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tern exited ({status}) without a resolv.conf:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready.contains("tern ready"), "{ready}");
    assert!(ready.contains("no system DNS configuration"), "{ready}");
}

#[test]
fn messages_to_one_destination_share_connections_to_smtp_sink() {
    let dns = Dnsmasq::start(&[]);
    // The relay is down while the messages arrive; they are then held, smtp-sink started, and
    // all released at once through the queue API (`tern queue hold|release --all`).
    let sink_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, support::free_port()));
    let extra = format!(
        "relay_host = \"{sink_addr}\"\ntls = \"off\"\nmax_per_destination = 2\nmessages_per_connection = 50\n"
    );
    let tern = Tern::start(&dns, 25, &extra, "");
    for n in 0..60 {
        tern.send("alice@tern.test", &["bob@far.test"], &body(&format!("batch {n}")));
    }
    tern.wait_for("every message deferred", |t| {
        let queue = t.queue();
        (queue.len() == 60 && queue.iter().all(|e| e.attempts >= 1)).then_some(())
    });
    let tern_queue = |command: &str| {
        let url = format!("http://{}", tern.server.http);
        support::run(env!("CARGO_BIN_EXE_tern"), &["queue", "--url", &url, command, "--all"], None)
    };
    tern_queue("hold");
    let sink = support::peers::SmtpSink::start_on(sink_addr);
    tern_queue("release");
    sink.wait_for_messages(60, WAIT);
    tern.wait_for("an empty queue", |t| t.queue().is_empty().then_some(()));
    // 50 messages per connection at most: 60 need two (a retry already under way when the
    // queue was held may add one); one connection per message would have been 60.
    let counts = counts_once_closed(&sink);
    assert_eq!(counts.messages, 60, "{counts:?}");
    assert!((2..=3).contains(&counts.sessions), "connections not shared: {counts:?}");
}

#[test]
fn messages_falling_due_one_after_another_ride_on_the_open_connection() {
    // Nothing is held or retried: each message falls due as it is submitted, while the
    // connection opened for the first is still there (or about to be).
    let dns = Dnsmasq::start(&[]);
    let sink = support::peers::SmtpSink::start(Ipv4Addr::LOCALHOST);
    let extra = format!("relay_host = \"{}\"\ntls = \"off\"\n", sink.addr());
    let tern = Tern::start(&dns, 25, &extra, "");
    for n in 0..20 {
        tern.send("alice@tern.test", &["bob@far.test"], &body(&format!("stream {n}")));
    }
    sink.wait_for_messages(20, WAIT);
    tern.wait_for("an empty queue", |t| t.queue().is_empty().then_some(()));
    let counts = counts_once_closed(&sink);
    assert_eq!(counts.messages, 20, "each message delivered exactly once: {counts:?}");
    assert!(counts.sessions <= 3, "connections not reused: {counts:?}");
}

/// The sink's counts once Tern's connections to it have closed: a connection that has sent
/// everything lingers about a second for more before it QUITs, and smtp-sink counts a session
/// when it ends.
fn counts_once_closed(sink: &support::peers::SmtpSink) -> support::peers::SinkCounts {
    std::thread::sleep(Duration::from_millis(1500));
    sink.counts()
}
