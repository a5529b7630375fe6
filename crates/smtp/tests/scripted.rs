//! Scripted sessions over an in-memory stream: the session state machine without sockets,
//! with stores that fail or stall on demand, so storage failures and shutdown can be shown
//! deterministically.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::sync::Arc;
use std::time::Duration;

use tern_ingest::{Door, Routing};
use tern_queue::{Spool, SpoolConfig, SpoolWriter};
use tern_smtp::{Context, Session, SmtpConfig};
use tern_store::{MessageId, NewMessage, Store, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::sync::CancellationToken;

/// A store whose commits fail, or succeed after a delay, and that counts what it kept.
struct TestStore {
    fail: bool,
    delay: Duration,
    kept: Arc<std::sync::Mutex<Vec<MessageId>>>,
}

impl Store for TestStore {
    fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), StoreError> {
        std::thread::sleep(self.delay);
        if self.fail {
            return Err(StoreError::Io {
                path: "test".into(),
                source: std::io::Error::other("disk full"),
            });
        }
        self.kept.lock().expect("lock").extend(batch.iter().map(|m| m.id));
        Ok(())
    }
    fn apply(&mut self, _: &tern_store::Mutation) -> Result<Vec<MessageId>, StoreError> {
        Ok(vec![])
    }
    fn lease_due(
        &mut self,
        _: &tern_store::Lease,
        _: u64,
        _: &[String],
    ) -> Result<Vec<tern_store::QueueEntry>, StoreError> {
        Ok(vec![])
    }
    fn renew_leases(&mut self, _: &tern_store::Lease, _: &[i64]) -> Result<Vec<i64>, StoreError> {
        Ok(vec![])
    }
    fn release_leases(&mut self, _: &str, _: &[i64]) -> Result<(), StoreError> {
        Ok(())
    }
}

struct Script {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
}

impl Script {
    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).await.expect("read") == 0 {
                return all;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str, expect: &str) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        let reply = self.reply().await;
        assert!(reply.starts_with(expect), "{line:?} -> {reply:?}, wanted {expect:?}");
    }
}

fn start(store: TestStore) -> (Script, Arc<Context>, SpoolWriter, tokio::task::JoinHandle<()>) {
    let (spool, writer) = Spool::start(store, SpoolConfig::default());
    let ctx = Arc::new(Context {
        config: SmtpConfig::default(),
        hostname: "tern.test".into(),
        door: Arc::new(Door::new(spool, "tern.test", Routing::capture())),
        shutdown: CancellationToken::new(),
        tls: None,
        directory: None,
        mta: None,
    });
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer = "127.0.0.1:40000".parse().expect("literal");
    let listener = Arc::new(tern_smtp::ListenerConfig {
        address: peer,
        role: tern_smtp::Role::Capture,
        allow_plaintext_auth: false,
    });
    let session = tokio::spawn(Session::new(server, peer, ctx.clone(), listener).run());
    let (read, write) = tokio::io::split(client);
    (Script { reader: BufReader::new(read), writer: write }, ctx, writer, session)
}

async fn open_transaction(s: &mut Script) {
    assert!(s.reply().await.starts_with("220 tern.test ESMTP Tern"));
    s.cmd("EHLO c.example", "250-tern.test").await;
    s.cmd("MAIL FROM:<a@example.org>", "250 2.1.0").await;
    s.cmd("RCPT TO:<b@example.com>", "250 2.1.5").await;
}

#[tokio::test]
async fn a_storage_failure_answers_451_never_250() {
    let kept = Arc::default();
    let (mut s, _ctx, _writer, _session) =
        start(TestStore { fail: true, delay: Duration::ZERO, kept });
    open_transaction(&mut s).await;
    s.cmd("DATA", "354").await;
    s.send(b"Subject: x\r\n\r\nbody\r\n.\r\n").await;
    assert!(s.reply().await.starts_with("451 4.3.0"));
    // BDAT takes the same path.
    s.cmd("MAIL FROM:<a@example.org>", "250").await;
    s.cmd("RCPT TO:<b@example.com>", "250").await;
    s.send(b"BDAT 4 LAST\r\nbody").await;
    assert!(s.reply().await.starts_with("451 4.3.0"));
    s.cmd("NOOP", "250 2.0.0").await;
}

#[tokio::test]
async fn shutdown_answers_421_to_idle_and_mid_data_sessions() {
    let kept: Arc<std::sync::Mutex<Vec<MessageId>>> = Arc::default();
    let (mut s, ctx, _writer, session) =
        start(TestStore { fail: false, delay: Duration::ZERO, kept: kept.clone() });
    open_transaction(&mut s).await;
    s.cmd("DATA", "354").await;
    s.send(b"Subject: half\r\n\r\nhalf a bo").await;
    ctx.shutdown.cancel();
    assert!(s.reply().await.starts_with("421 4.3.0"));
    session.await.expect("session ends");
    assert!(kept.lock().expect("lock").is_empty(), "a half message was stored");
}

#[tokio::test]
async fn a_commit_in_flight_at_shutdown_is_finished_and_acknowledged() {
    let kept: Arc<std::sync::Mutex<Vec<MessageId>>> = Arc::default();
    let (mut s, ctx, _writer, session) =
        start(TestStore { fail: false, delay: Duration::from_millis(300), kept: kept.clone() });
    open_transaction(&mut s).await;
    s.cmd("DATA", "354").await;
    s.send(b"Subject: whole\r\n\r\nbody\r\n.\r\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    ctx.shutdown.cancel();
    let reply = s.reply().await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply:?}");
    assert!(s.reply().await.starts_with("421 4.3.0"));
    session.await.expect("session ends");
    assert_eq!(kept.lock().expect("lock").len(), 1);
}
