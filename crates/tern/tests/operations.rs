//! Operating the catcher: retention prunes the oldest messages in the background, and
//! `/metrics` reports what happened, in Prometheus text.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::time::{Duration, Instant};

use support::{Client, TernServer};

fn curl(url: &str) -> String {
    support::run("curl", &["-sS", "--max-time", "10", url], None)
}

#[test]
fn retention_keeps_the_newest_messages() {
    let server = TernServer::start("[retention]\nmax_messages = 3");
    let mut c = Client::greeted(server.addr);
    c.cmd("EHLO c.example", "250");
    let ids: Vec<String> = (0..7)
        .map(|i| {
            let body = format!("Subject: n{i}\r\n\r\nbody {i}\r\n");
            c.send_message("a@example.org", &["b@example.com"], body.as_bytes())
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.count() > 3 {
        assert!(Instant::now() < deadline, "pruning never brought the store down to 3");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.count(), 3);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(server.message(id).is_some(), i >= 4, "message {i} kept or pruned wrongly");
    }
}

#[test]
fn metrics_count_sessions_messages_and_rejections() {
    let server = TernServer::start("[smtp]\nmax_message_bytes = 1000");
    let mut c = Client::greeted(server.addr);
    c.cmd("EHLO c.example", "250");
    c.send_message("a@example.org", &["b@example.com"], b"Subject: m\r\n\r\nhello\r\n");
    c.cmd("MAIL FROM:<a@example.org>", "250");
    c.cmd("RCPT TO:<b@example.com>", "250");
    c.cmd("DATA", "354");
    c.send(&[b'x'; 2000]);
    c.send(b"\r\n.\r\n");
    assert!(c.reply().starts_with("552 5.3.4"));
    let text = curl(&format!("http://{}/metrics", server.http));
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}"))
    };
    assert_eq!(value("tern_messages_accepted_total"), 1.0);
    assert_eq!(value("tern_messages_rejected_total{reason=\"too_large\"}"), 1.0);
    assert!(value("tern_smtp_sessions_total") >= 1.0);
    assert_eq!(value("tern_message_bytes_total"), 21.0, "the stored bytes of the one message");
    assert_eq!(value("tern_spool_batch_messages_count"), 1.0);
    assert!(value("tern_store_size_bytes") > 0.0);
    assert!(text.contains("tern_spool_commit_seconds_bucket"), "{text}");
}
