//! Durability of the real `tern` binary, end to end over loopback TCP.
//!
//! What this file proves:
//!
//! * **Concurrency**: 500 sessions at once, five messages each on one connection, all get a
//!   `250` with a distinct queue id, and every id is in the store with exactly the bytes sent.
//! * **Crash safety**: under load from 50 sessions sending dot-stuffed, 8-bit, randomly sized
//!   messages, a `SIGKILL` loses nothing that was acknowledged. After a restart over the same
//!   data directory every acknowledged id holds exactly its bytes, no message is stored twice,
//!   and every stored message (acknowledged or not) is one the clients sent in full, never a
//!   torn one. Done over two kill/restart rounds.
//! * **Aborted transfers**: a client that drops its connection part way through `DATA` (mid
//!   line, at a line end, after the lone `.`, after `.` CR) stores nothing, and does not
//!   disturb a session opened before it.
//! * **Clean shutdown**: on `SIGTERM` idle and mid-`DATA` sessions hear `421 4.3.0`, the
//!   partial message is not stored, acknowledged mail is, a message racing the signal is stored
//!   if and only if it was acknowledged, and the process exits 0.
//! * **Storage failure**: when the store cannot write (the server runs under a file-size limit
//!   with `SIGXFSZ` ignored, so SQLite's writes fail with `EFBIG`), the client hears
//!   `451 4.3.0`, never `250`, nothing is stored, and the server goes on accepting mail.
//!
//! Every assertion is about outcomes, not timing: sleeps only make a race likely to go one way,
//! and where a race can go either way the test checks the invariant that holds for both.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

mod support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Client, TernServer, queue_id};
use tern_store::{MessageId, StoreRead};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Bound on every single network operation of the async client.
const OP_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A tokio runtime for the concurrent clients (the machine has two cores).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the client runtime")
}

/// Why an async session stopped.
#[derive(Debug)]
enum Broken {
    /// The connection failed, closed or timed out (expected once the server is killed).
    Connection(String),
    /// The server answered something the test did not expect (always a failure).
    Unexpected(String),
}

/// A minimal async SMTP client that reports failures instead of panicking.
struct AsyncSession {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl AsyncSession {
    /// Connects, checks the banner and says EHLO.
    async fn open(addr: SocketAddr) -> Result<AsyncSession, Broken> {
        let stream = tokio::time::timeout(OP_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Broken::Connection("connect timed out".into()))?
            .map_err(|e| Broken::Connection(format!("connect: {e}")))?;
        stream.set_nodelay(true).map_err(|e| Broken::Connection(format!("nodelay: {e}")))?;
        let (read, writer) = stream.into_split();
        let mut session = AsyncSession { reader: BufReader::new(read), writer };
        let banner = session.reply().await?;
        if !banner.starts_with("220 tern.test ESMTP Tern") {
            return Err(Broken::Unexpected(format!("banner {banner:?}")));
        }
        session.command("EHLO client.test", "250").await?;
        Ok(session)
    }

    /// Reads one complete reply; EOF is a connection failure.
    async fn reply(&mut self) -> Result<String, Broken> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(OP_TIMEOUT, self.reader.read_line(&mut line))
                .await
                .map_err(|_| Broken::Connection(format!("reply timed out after {all:?}")))?
                .map_err(|e| Broken::Connection(format!("read: {e}")))?;
            if n == 0 {
                return Err(Broken::Connection(format!("EOF after {all:?}")));
            }
            if !line.ends_with('\n') {
                return Err(Broken::Connection(format!("reply cut short: {all:?} {line:?}")));
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Broken> {
        tokio::time::timeout(OP_TIMEOUT, self.writer.write_all(bytes))
            .await
            .map_err(|_| Broken::Connection("write timed out".into()))?
            .map_err(|e| Broken::Connection(format!("write: {e}")))
    }

    /// Sends a command line and requires a reply starting with `expect`.
    async fn command(&mut self, line: &str, expect: &str) -> Result<String, Broken> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        let reply = self.reply().await?;
        if reply.starts_with(expect) {
            Ok(reply)
        } else {
            Err(Broken::Unexpected(format!("{line:?} -> {reply:?}, wanted {expect:?}")))
        }
    }

    /// One transaction carrying `body` (not yet dot-stuffed); returns the queue id.
    async fn send_message(&mut self, from: &str, body: &[u8]) -> Result<String, Broken> {
        self.command(&format!("MAIL FROM:<{from}>"), "250 ").await?;
        self.command("RCPT TO:<sink@tern.test>", "250 ").await?;
        self.command("DATA", "354 ").await?;
        let mut wire = dot_stuff(body);
        wire.extend_from_slice(b".\r\n");
        self.write(&wire).await?;
        let reply = self.reply().await?;
        queue_id(&reply).ok_or_else(|| Broken::Unexpected(format!("end of data -> {reply:?}")))
    }
}

/// Dot-stuffs a body whose lines all end in CRLF (RFC 5321 section 4.5.2).
fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 8);
    let mut line_start = true;
    for &b in body {
        if line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        line_start = b == b'\n';
    }
    out
}

/// xorshift64*: a small deterministic generator, so every body can be rebuilt from its tag.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Identifies one message of the crash test: round, session and sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tag {
    round: u64,
    session: u64,
    n: u64,
}

impl Tag {
    fn header(&self) -> String {
        format!("X-Tern-Test: round {} session {} message {}\r\n", self.round, self.session, self.n)
    }

    /// Reads the tag back from the first line of a stored body.
    fn parse(raw: &[u8]) -> Option<Tag> {
        let end = raw.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&raw[..end]).ok()?;
        let rest = line.strip_prefix("X-Tern-Test: round ")?;
        let (round, rest) = rest.split_once(" session ")?;
        let (session, n) = rest.split_once(" message ")?;
        Some(Tag { round: round.parse().ok()?, session: session.parse().ok()?, n: n.parse().ok()? })
    }

    /// The body for this tag: 100 B to 64 KiB of CRLF lines holding arbitrary 8-bit bytes (NUL
    /// included, bare CR/LF excluded), with lone `.` lines, `..` lines and lines starting with
    /// `.` that all need dot-stuffing.
    fn body(&self) -> Vec<u8> {
        let mut rng = Rng::new((self.round << 48) ^ (self.session << 32) ^ self.n);
        let target = 100 + rng.below(64 * 1024 - 100) as usize;
        let mut body = self.header().into_bytes();
        body.extend_from_slice(b"Subject: crash test\r\n\r\n");
        while body.len() + 2 < target {
            match rng.below(10) {
                0 => {
                    // A lone dot: the end-of-data marker unless stuffed.
                    body.extend_from_slice(b".\r\n");
                    continue;
                }
                1 => body.extend_from_slice(b".."),
                2 => body.push(b'.'),
                _ => {}
            }
            let room = target.saturating_sub(body.len() + 2).min(200) as u64;
            for _ in 0..rng.below(room + 1) {
                let b = rng.below(256) as u8;
                body.push(if b == b'\r' || b == b'\n' { b'~' } else { b });
            }
            body.extend_from_slice(b"\r\n");
        }
        body
    }
}

/// The soft limit on open files of this process, `None` when unlimited or unreadable.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Connects until the server greets with 220 rather than `421 4.3.2` (connection limit).
fn greeted_when_free(addr: SocketAddr) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = Client::connect(addr);
        let banner = client.reply();
        if banner.starts_with("220 tern.test ESMTP Tern") {
            return client;
        }
        assert!(banner.starts_with("421 4.3.2"), "unexpected banner {banner:?}");
        assert!(Instant::now() < deadline, "a connection slot never freed up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `spool closed ...` line the server logs when it stops cleanly.
fn spool_closed_line(stderr: &str) -> Option<String> {
    stderr.lines().find(|l| l.contains("spool closed")).map(str::to_string)
}

// ---------------------------------------------------------------------------------------------
// 1. 500 concurrent sessions
// ---------------------------------------------------------------------------------------------

fn concurrent_body(session: usize, m: usize) -> Vec<u8> {
    format!(
        "From: <s{session}@client.test>\r\nSubject: session {session} message {m}\r\n\r\n\
         Body of session {session}, message {m}.\r\n.a line that needs dot-stuffing\r\n\
         \u{e9}t\u{e9} 8-bit text {session}-{m}\r\n"
    )
    .into_bytes()
}

#[test]
fn five_hundred_concurrent_sessions_all_stored() {
    const SESSIONS: usize = 500;
    const PER_SESSION: usize = 5;
    if let Some(limit) = open_files_limit() {
        // 500 client sockets here (the server process has its own 500), plus other tests.
        assert!(
            limit >= 800,
            "open-file limit {limit} is too low for 500 sessions; raise ulimit -n"
        );
    }
    let mut server = TernServer::start("");
    let addr = server.addr;
    let started = Instant::now();
    let results: Vec<Vec<(String, Vec<u8>)>> = runtime().block_on(async move {
        let tasks: Vec<_> = (0..SESSIONS)
            .map(|s| {
                tokio::spawn(async move {
                    let mut session = AsyncSession::open(addr)
                        .await
                        .unwrap_or_else(|e| panic!("session {s}: open: {e:?}"));
                    let mut sent = Vec::with_capacity(PER_SESSION);
                    for m in 0..PER_SESSION {
                        let body = concurrent_body(s, m);
                        let id = session
                            .send_message(&format!("s{s}@client.test"), &body)
                            .await
                            .unwrap_or_else(|e| panic!("session {s} message {m}: {e:?}"));
                        sent.push((id, body));
                    }
                    session.command("QUIT", "221 ").await.expect("QUIT answered");
                    sent
                })
            })
            .collect();
        let mut results = Vec::with_capacity(SESSIONS);
        for task in tasks {
            results.push(task.await.expect("session task must not panic"));
        }
        results
    });
    let elapsed = started.elapsed();

    let sent: Vec<(String, Vec<u8>)> = results.into_iter().flatten().collect();
    assert_eq!(sent.len(), SESSIONS * PER_SESSION);
    let ids: HashSet<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), sent.len(), "queue ids must be distinct");
    let store = server.store();
    for (id, body) in &sent {
        let parsed: MessageId = id.parse().expect("queue id is a ULID");
        let stored = store
            .message(&parsed)
            .expect("read the store")
            .unwrap_or_else(|| panic!("acknowledged message {id} is missing from the store"));
        assert!(stored.raw == *body, "message {id} stored with different bytes");
    }
    assert_eq!(store.count().expect("count"), (SESSIONS * PER_SESSION) as u64);
    drop(store);

    let status = server.terminate();
    assert!(status.success(), "tern exited with {status}");
    let stderr = server.stderr();
    let stats = spool_closed_line(&stderr).expect("the server logs its spool statistics");
    println!("500 sessions x 5 messages in {elapsed:?}; {stats}");
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL under load
// ---------------------------------------------------------------------------------------------

/// What one crash-test session did before its connection died.
struct SessionLog {
    session: u64,
    /// Highest sequence number whose body was (at least partly) sent; 0 when none.
    last_attempted: u64,
    /// Queue ids seen in a 250, with the tag of the body that earned them.
    acked: Vec<(String, Tag)>,
    /// A reply the test did not expect, which is a failure.
    unexpected: Option<String>,
    /// How the connection ended (expected: EOF or reset once the server is killed).
    ended: String,
}

async fn crash_session(
    addr: SocketAddr,
    round: u64,
    session: u64,
    acks: Arc<AtomicUsize>,
) -> SessionLog {
    let mut log = SessionLog {
        session,
        last_attempted: 0,
        acked: Vec::new(),
        unexpected: None,
        ended: String::new(),
    };
    let mut client = match AsyncSession::open(addr).await {
        Ok(client) => client,
        Err(Broken::Connection(e)) => {
            log.ended = e;
            return log;
        }
        Err(Broken::Unexpected(e)) => {
            log.unexpected = Some(e);
            return log;
        }
    };
    for n in 1.. {
        let tag = Tag { round, session, n };
        let body = tag.body();
        log.last_attempted = n;
        match client.send_message(&format!("r{round}s{session}@client.test"), &body).await {
            Ok(id) => {
                log.acked.push((id, tag));
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(Broken::Connection(e)) => {
                log.ended = e;
                break;
            }
            Err(Broken::Unexpected(e)) => {
                log.unexpected = Some(e);
                break;
            }
        }
    }
    log
}

/// Runs 50 sessions until the server is SIGKILLed (after at least 1.5 s and 50 acks).
fn load_then_kill(server: &mut TernServer, round: u64) -> Vec<SessionLog> {
    const SESSIONS: u64 = 50;
    let addr = server.addr;
    let rt = runtime();
    let acks = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> =
        (0..SESSIONS).map(|s| rt.spawn(crash_session(addr, round, s, acks.clone()))).collect();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) || acks.load(Ordering::Relaxed) < 50 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} messages acknowledged in 30 s; stderr:\n{}",
            acks.load(Ordering::Relaxed),
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill9();
    rt.block_on(async {
        let mut logs = Vec::new();
        for task in tasks {
            logs.push(task.await.expect("crash session task must not panic"));
        }
        logs
    })
}

/// Checks the store against everything acknowledged and attempted so far; returns its count.
fn check_after_crash(
    server: &TernServer,
    acked: &[(String, Tag)],
    attempted: &HashMap<(u64, u64), u64>,
) -> usize {
    let store = server.store();
    for (id, tag) in acked {
        let parsed: MessageId = id.parse().expect("queue id is a ULID");
        let stored = store
            .message(&parsed)
            .expect("read the store")
            .unwrap_or_else(|| panic!("acknowledged message {id} ({tag:?}) lost by the crash"));
        assert!(stored.raw == tag.body(), "acknowledged message {id} ({tag:?}) has other bytes");
    }
    let ids = store.list_ids(usize::MAX).expect("list stored ids");
    let mut seen: HashMap<Tag, MessageId> = HashMap::with_capacity(ids.len());
    for id in &ids {
        let stored = store.message(id).expect("read the store").expect("listed id is readable");
        let tag = Tag::parse(&stored.raw)
            .unwrap_or_else(|| panic!("stored message {id} is not one this test sent (torn?)"));
        assert!(
            stored.raw == tag.body(),
            "stored message {id} ({tag:?}) is not exactly the body that was sent (torn?)"
        );
        let last = attempted.get(&(tag.round, tag.session)).copied().unwrap_or(0);
        assert!(tag.n <= last, "stored message {id} ({tag:?}) was never sent");
        if let Some(other) = seen.insert(tag, *id) {
            panic!("body {tag:?} is stored twice, as {other} and {id}");
        }
    }
    let count = store.count().expect("count");
    assert_eq!(count as usize, ids.len(), "count disagrees with the listed ids");
    assert_eq!(seen.len(), ids.len(), "count must equal the number of distinct bodies");
    ids.len()
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    const ROUNDS: u64 = 2;
    let mut server = TernServer::start("");
    let mut acked: Vec<(String, Tag)> = Vec::new();
    let mut attempted: HashMap<(u64, u64), u64> = HashMap::new();
    for round in 1..=ROUNDS {
        let logs = load_then_kill(&mut server, round);
        if let Some(log) = logs.first() {
            println!("round {round}: session 0 saw the kill as: {}", log.ended);
        }
        for log in logs {
            if let Some(e) = &log.unexpected {
                panic!("round {round} session {}: unexpected reply {e}", log.session);
            }
            attempted.insert((round, log.session), log.last_attempted);
            acked.extend(log.acked);
        }
        let data = server.stop_keeping_data();
        server = TernServer::start_in(&data, "");
        let stored = check_after_crash(&server, &acked, &attempted);
        let sent: u64 = attempted.values().sum();
        println!(
            "round {round}: {} acknowledged, {sent} attempted, {stored} stored after restart",
            acked.len()
        );
        assert!(stored >= acked.len());
    }
    let status = server.terminate();
    assert!(status.success(), "tern exited with {status} after the restarts");
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// 3. A client that disconnects mid-DATA
// ---------------------------------------------------------------------------------------------

#[test]
fn disconnect_mid_data_stores_nothing() {
    // Two connection slots: with `kept` holding one, a third client is greeted with 220 only
    // once the dropped client's session has completely finished, so the store check below
    // cannot run before the server has dealt with the drop.
    let server = TernServer::start("[smtp]\nmax_connections = 2");
    let mut kept = greeted_when_free(server.addr);
    kept.cmd("EHLO kept.test", "250");

    let body: &[u8] =
        b"Subject: dropped\r\n\r\nfirst line\r\nsecond line that is cut somewhere\r\nlast\r\n";
    let cuts: [&[u8]; 4] = [
        &body[..body.len() / 2],                // mid line
        &body[..body.len() - 6],                // at a line end, no terminator
        b"Subject: dropped\r\n\r\nbody\r\n.",   // the lone dot without its CRLF
        b"Subject: dropped\r\n\r\nbody\r\n.\r", // dot and CR, no LF
    ];
    for partial in cuts {
        let mut dropped = greeted_when_free(server.addr);
        dropped.cmd("EHLO dropped.test", "250");
        dropped.cmd("MAIL FROM:<dropped@client.test>", "250 ");
        dropped.cmd("RCPT TO:<sink@tern.test>", "250 ");
        dropped.cmd("DATA", "354 ");
        dropped.send(partial);
        drop(dropped);
        // Proves the dropped session ended (see above), then frees the slot again.
        let mut probe = greeted_when_free(server.addr);
        probe.cmd("QUIT", "221 ");
        assert!(probe.is_closed(), "QUIT closes the probe");
        assert_eq!(server.count(), 0, "a dropped transfer ({partial:?}) was stored");
    }

    let kept_body = b"Subject: kept\r\n\r\nThe session opened first still works.\r\n";
    let id = kept.send_message("kept@client.test", &["sink@tern.test"], kept_body);
    let stored = server.message(&id).expect("the kept session's message is stored");
    assert_eq!(stored.raw, kept_body);
    assert_eq!(server.count(), 1);
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_answers_421_and_exits_zero() {
    let mut server = TernServer::start("");

    // Acknowledged before the signal: must survive it.
    let before_body = b"Subject: before\r\n\r\nSent and acknowledged before SIGTERM.\r\n";
    let mut before = Client::greeted(server.addr);
    before.cmd("EHLO before.test", "250");
    let before_id = before.send_message("before@client.test", &["sink@tern.test"], before_body);

    // Idle after EHLO.
    let mut idle = Client::greeted(server.addr);
    idle.cmd("EHLO idle.test", "250");

    // Mid-DATA: half a body sent, no terminator.
    let mut mid = Client::greeted(server.addr);
    mid.cmd("EHLO mid.test", "250");
    mid.cmd("MAIL FROM:<mid@client.test>", "250 ");
    mid.cmd("RCPT TO:<sink@tern.test>", "250 ");
    mid.cmd("DATA", "354 ");
    mid.send(b"Subject: mid\r\n\r\nThis message is cut off by the shutdown");

    // Racing: fully sent, reply not read before the signal.
    let racing_body = b"Subject: racing\r\n\r\nFully sent just before SIGTERM.\r\n";
    let mut racing = Client::greeted(server.addr);
    racing.cmd("EHLO racing.test", "250");
    racing.cmd("MAIL FROM:<racing@client.test>", "250 ");
    racing.cmd("RCPT TO:<sink@tern.test>", "250 ");
    racing.cmd("DATA", "354 ");
    racing.send(racing_body);
    racing.send(b".\r\n");

    // Lets the server read what was sent; the assertions hold whichever way this goes.
    std::thread::sleep(Duration::from_millis(300));
    let status = server.terminate();
    assert!(status.success(), "tern exited with {status}; stderr:\n{}", server.stderr());

    let reply = idle.reply();
    assert!(reply.starts_with("421 4.3.0"), "idle client got {reply:?}");
    assert!(idle.is_closed(), "the idle connection is closed after 421");
    let reply = mid.reply();
    assert!(reply.starts_with("421 4.3.0"), "mid-DATA client got {reply:?}");
    assert!(mid.is_closed(), "the mid-DATA connection is closed after 421");

    let first = racing.reply();
    let racing_id = queue_id(&first);
    if racing_id.is_some() {
        let next = racing.reply();
        assert!(next.starts_with("421 4.3.0"), "after its 250 the racing client got {next:?}");
    } else {
        assert!(first.starts_with("421 4.3.0"), "racing client got {first:?}");
    }
    assert!(racing.is_closed(), "the racing connection is closed after 421");

    // The process is gone; reopen the data directory to read what it left.
    let stderr = server.stderr();
    let data = server.stop_keeping_data();
    let reader = TernServer::start_in(&data, "");
    let stored = reader.message(&before_id).expect("acknowledged message survives SIGTERM");
    assert_eq!(stored.raw, before_body);
    if let Some(id) = &racing_id {
        let stored = reader.message(id).expect("acknowledged racing message is stored");
        assert_eq!(stored.raw, racing_body);
    }
    let expected = 1 + u64::from(racing_id.is_some());
    assert_eq!(reader.count(), expected, "only acknowledged messages are stored");

    let stats = spool_closed_line(&stderr).expect("the server logs its spool statistics");
    println!("SIGTERM: racing message acknowledged: {}; {stats}", racing_id.is_some());
    drop(reader);
}

// ---------------------------------------------------------------------------------------------
// 5. Storage failure
// ---------------------------------------------------------------------------------------------

/// Largest file the server may write, in 512-byte blocks (`ulimit -f` of dash and POSIX sh;
/// bash counts KiB, which only doubles it): 2 MiB, enough for the database and small messages.
const FILE_SIZE_BLOCKS: u64 = 4096;

/// Starts tern with `RLIMIT_FSIZE` set and `SIGXFSZ` ignored (an ignored signal stays ignored
/// across exec), so writes past the limit fail with `EFBIG` instead of killing the process.
fn start_with_file_size_limit(data: &Path) -> TernServer {
    let server = TernServer::launch(data, "", |config| {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg("trap '' XFSZ && ulimit -f \"$1\" || exit 97; shift; exec \"$@\"")
            .arg("sh")
            .arg(FILE_SIZE_BLOCKS.to_string())
            .arg(env!("CARGO_BIN_EXE_tern"))
            .args(["serve", "--config"])
            .arg(config);
        command
    });
    // The setup itself is checked, so a platform that ignores it fails loudly, not vaguely.
    let pid = server.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let fsize = limits.lines().find(|l| l.starts_with("Max file size")).expect("file size line");
    assert!(!fsize.contains("unlimited"), "file-size limit not applied: {fsize}");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .expect("SigIgn mask");
    const SIGXFSZ: u32 = 25;
    assert!(ignored & (1 << (SIGXFSZ - 1)) != 0, "SIGXFSZ is not ignored by tern");
    server
}

#[test]
fn storage_failure_answers_451() {
    let server = start_with_file_size_limit(&support::temp_dir("fsize"));
    let mut client = Client::greeted(server.addr);
    client.cmd("EHLO client.test", "250");

    // The store works under the limit.
    let small = b"Subject: small\r\n\r\nfits\r\n";
    let first = client.send_message("a@client.test", &["sink@tern.test"], small);

    // 12 MiB cannot be written into a database capped at 2 (or 4) MiB: the commit fails.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    let line = [b'x'; 998];
    while big.len() < 12 * 1024 * 1024 {
        big.extend_from_slice(&line);
        big.extend_from_slice(b"\r\n");
    }
    client.cmd("MAIL FROM:<big@client.test>", "250 ");
    client.cmd("RCPT TO:<sink@tern.test>", "250 ");
    client.cmd("DATA", "354 ");
    client.send(&big);
    client.send(b".\r\n");
    let reply = client.reply();
    assert!(reply.starts_with("451 4.3.0"), "a failed commit must answer 451 4.3.0, got {reply:?}");
    assert_eq!(server.count(), 1, "the refused message is not stored");

    // The failure was confined to that commit: the same session goes on.
    let after = b"Subject: after\r\n\r\nstill accepted\r\n";
    let second = client.send_message("a@client.test", &["sink@tern.test"], after);
    client.cmd("QUIT", "221 ");
    assert_eq!(server.message(&first).expect("first message").raw, small);
    assert_eq!(server.message(&second).expect("message after the failure").raw, after);
    assert_eq!(server.count(), 2);
    let stderr = server.stderr();
    assert!(stderr.contains("spool commit failed"), "the failure is logged:\n{stderr}");
    drop(server);
}
