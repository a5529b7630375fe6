//! `tern bench`: a load generator for any SMTP server.
//!
//! It plays the part Postfix's `smtp-source` plays: `--sessions` connections share one counter of
//! `--messages` messages and each sends MAIL FROM / RCPT TO / DATA / body / `.` in a loop until the
//! counter runs out, then QUITs. At the end it reports how many messages were accepted, messages per
//! second, latency percentiles (MAIL FROM to the reply after the final dot) and failures by stage and
//! reply code, as a table or as one JSON object (`--json`).
//!
//! The module owns the whole client side of the benchmark: message generation ([`MessageBuffer`]),
//! reply parsing ([`ReplyAssembler`]), the SMTP client ([`SmtpClient`]), the session loop and the
//! report. It must not depend on Tern's server crates: it is meant to load *any* SMTP server, and to
//! keep working when the server under test is broken.
//!
//! The client is built so it is not the bottleneck: each session prepares its message once and only
//! rewrites the sequence number in place, commands are prebuilt byte strings, and with
//! `--pipelining` MAIL, RCPT and DATA leave in one write.

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Server loaded when `--server` is not given: Tern's zero-config catcher port.
const DEFAULT_SERVER: &str = "127.0.0.1:1025";
/// Concurrent sessions when `--sessions` is not given.
const DEFAULT_SESSIONS: u32 = 10;
/// Upper bound of `--sessions`.
const MAX_SESSIONS: u32 = 10_000;
/// Total messages when `--messages` is not given.
const DEFAULT_MESSAGES: u64 = 1000;
/// Upper bound of `--messages`: sequence numbers are written with [`SEQUENCE_DIGITS`] digits.
const MAX_MESSAGES: u64 = 9_999_999_999;
/// Message size in bytes when `--size` is not given.
const DEFAULT_SIZE_BYTES: u64 = 4096;
/// Upper bound of `--size` in bytes.
const MAX_SIZE_BYTES: u64 = 64 * 1024 * 1024;
/// Upper bound of `--sessions` times `--size` in bytes: every session holds its own message.
const MAX_BUFFERED_BYTES: u64 = 1024 * 1024 * 1024;
/// Seconds to wait for each reply (and each write) when `--timeout-secs` is not given.
const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Envelope and header sender when `--from` is not given.
const DEFAULT_FROM: &str = "bench@tern.test";
/// Envelope and header recipient when `--to` is not given.
const DEFAULT_TO: &str = "sink@tern.test";
/// EHLO/HELO name when `--ehlo` is not given.
const DEFAULT_EHLO: &str = "bench.tern.test";

/// Width of the zero-padded sequence number in the Subject and Message-ID headers.
const SEQUENCE_DIGITS: usize = 10;
/// Longest body line in characters, CRLF excluded (RFC 5322 recommends at most 78).
const MAX_BODY_LINE_CHARS: usize = 76;
/// Longest reply line accepted from the server in bytes, CRLF included (RFC 5321 says 512).
const MAX_REPLY_LINE_BYTES: u64 = 4096;
/// Most lines accepted in one multi-line reply.
const MAX_REPLY_LINES: usize = 100;
/// A session gives up after this many connection attempts in a row that fail.
const MAX_CONSECUTIVE_CONNECT_FAILURES: u32 = 3;
/// Highest latency the histogram tracks, in microseconds (one hour); higher values are clamped.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// Arguments of `tern bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The SMTP server to load, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// Concurrent SMTP sessions (connections).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SESSIONS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SESSIONS)))]
    pub sessions: u32,

    /// Messages to send in total, shared by all sessions (like smtp-source -m).
    #[arg(long, value_name = "M", default_value_t = DEFAULT_MESSAGES,
          value_parser = clap::value_parser!(u64).range(1..=MAX_MESSAGES))]
    pub messages: u64,

    /// Size of each message in bytes, headers included, as the server stores it (before
    /// dot-stuffing).
    #[arg(long = "size", value_name = "BYTES", default_value_t = DEFAULT_SIZE_BYTES,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SIZE_BYTES))]
    pub size_bytes: u64,

    /// Envelope sender (MAIL FROM) and From header.
    #[arg(long, value_name = "ADDRESS", default_value = DEFAULT_FROM)]
    pub from: String,

    /// Envelope recipient (RCPT TO) and To header.
    #[arg(long, value_name = "ADDRESS", default_value = DEFAULT_TO)]
    pub to: String,

    /// Name sent with EHLO (and HELO if the server refuses EHLO).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_EHLO)]
    pub ehlo: String,

    /// Send MAIL, RCPT and DATA in one write when the server advertises PIPELINING.
    #[arg(long)]
    pub pipelining: bool,

    /// Open a new connection for every message instead of reusing the session.
    #[arg(long)]
    pub reconnect: bool,

    /// Print the report as one JSON object on stdout instead of a table; no progress bar.
    #[arg(long)]
    pub json: bool,

    /// Seconds to wait for each server reply (and for each write to complete).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout_secs: u64,
}

/// Runs the benchmark and prints its report.
///
/// Fails if the server cannot be reached at all or if no message was accepted; the report is
/// printed first in the second case, so the failures by reply code are visible.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::from_args(&args)?;
    let progress = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        progress_bar(plan.messages)
    };
    let report = execute(plan, progress).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    if report.messages_ok == 0 {
        bail!("no message was accepted by {}", report.server);
    }
    Ok(())
}

/// A progress bar on stderr counting finished messages (accepted or failed).
fn progress_bar(messages: u64) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} messages, {per_sec}, eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    ProgressBar::new(messages).with_style(style)
}

/// The benchmark's settings, resolved and checked from [`BenchArgs`].
#[derive(Debug, Clone)]
struct Plan {
    /// Server address as given, HOST:PORT.
    server: String,
    /// Concurrent sessions.
    sessions: u32,
    /// Messages in total.
    messages: u64,
    /// Message size in bytes before dot-stuffing.
    size_bytes: usize,
    /// Name for EHLO/HELO.
    ehlo: String,
    /// Whether to pipeline MAIL/RCPT/DATA when the server allows it.
    pipelining: bool,
    /// Whether to open a connection per message.
    reconnect: bool,
    /// Limit on each reply and each write.
    reply_timeout: Duration,
    /// Prebuilt transaction commands.
    commands: Commands,
    /// The message every session starts from.
    template: MessageBuffer,
}

impl Plan {
    /// Checks the arguments and prepares commands and the message template.
    fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        check_token("--from", &args.from)?;
        check_token("--to", &args.to)?;
        check_token("--ehlo", &args.ehlo)?;
        let buffered = u64::from(args.sessions).saturating_mul(args.size_bytes);
        if buffered > MAX_BUFFERED_BYTES {
            bail!(
                "--sessions x --size is {buffered} bytes, more than the {MAX_BUFFERED_BYTES} \
                 bytes of messages tern bench holds in memory"
            );
        }
        let size_bytes =
            usize::try_from(args.size_bytes).context("--size does not fit in memory")?;
        let template = MessageBuffer::new(&MessageSpec {
            from: &args.from,
            to: &args.to,
            size_bytes,
            date: rfc5322_date(SystemTime::now()),
            run_token: run_token(),
        })?;
        Ok(Plan {
            server: args.server.clone(),
            sessions: args.sessions,
            messages: args.messages,
            size_bytes,
            ehlo: args.ehlo.clone(),
            pipelining: args.pipelining,
            reconnect: args.reconnect,
            reply_timeout: Duration::from_secs(args.timeout_secs),
            commands: Commands::new(&args.from, &args.to),
            template,
        })
    }
}

/// Refuses values that would break the command line they are sent on.
fn check_token(flag: &str, value: &str) -> anyhow::Result<()> {
    if value.is_empty() {
        bail!("{flag} must not be empty");
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '<' | '>')) {
        bail!("{flag} {value:?} contains {c:?}; use a plain address or name");
    }
    Ok(())
}

/// A token that makes this run's Message-IDs unique: start time and process id, in hex.
fn run_token() -> String {
    let nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{nanos:x}.{:x}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Running sessions
// ---------------------------------------------------------------------------------------------

/// State every session shares.
struct Shared {
    plan: Plan,
    /// Sequence number of the next message to send, starting at 1.
    next: AtomicU64,
    /// Set when any EHLO reply advertised PIPELINING.
    pipelining_advertised: AtomicBool,
    /// Latency of accepted messages in microseconds. One histogram for all sessions: each takes
    /// about 190 KB, and one uncontended lock per message costs far less than the message.
    latency: Mutex<Histogram<u64>>,
    progress: ProgressBar,
}

impl Shared {
    /// Takes the next message's sequence number, or `None` when all are taken.
    fn claim(&self) -> Option<u64> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        (seq <= self.plan.messages).then_some(seq)
    }

    fn record_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros.max(1));
    }
}

/// Runs all sessions to completion and gathers their results.
async fn execute(plan: Plan, progress: ProgressBar) -> anyhow::Result<Report> {
    let shared = Arc::new(Shared {
        plan,
        next: AtomicU64::new(1),
        pipelining_advertised: AtomicBool::new(false),
        latency: Mutex::new(
            Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
                .context("creating the latency histogram")?,
        ),
        progress,
    });
    let started = Instant::now();
    let mut sessions = JoinSet::new();
    for _ in 0..shared.plan.sessions {
        sessions.spawn(run_session(Arc::clone(&shared)));
    }
    let mut total = SessionStats::default();
    while let Some(result) = sessions.join_next().await {
        total.merge(result.context("a benchmark session panicked")?);
    }
    let elapsed = started.elapsed();
    shared.progress.finish_and_clear();

    let plan = &shared.plan;
    if total.connect_attempts > 0 && total.connections == 0 {
        let why = total
            .first_fatal
            .as_ref()
            .map_or_else(|| "no connection succeeded".to_owned(), ToString::to_string);
        bail!("cannot reach SMTP server {}: {why}", plan.server);
    }
    Ok(Report {
        server: plan.server.clone(),
        sessions: plan.sessions,
        size_bytes: plan.size_bytes,
        pipelining: match (plan.pipelining, shared.pipelining_advertised.load(Ordering::Relaxed)) {
            (false, _) => Pipelining::Off,
            (true, true) => Pipelining::Used,
            (true, false) => Pipelining::NotAdvertised,
        },
        reconnect: plan.reconnect,
        messages_ok: total.ok,
        messages_failed: total.failed,
        messages_not_sent: plan.messages.saturating_sub(total.ok + total.failed),
        elapsed,
        latency: Latency::from_histogram(
            &shared.latency.lock().unwrap_or_else(PoisonError::into_inner),
        ),
        errors: total.errors,
    })
}

/// What one session (or all of them, merged) observed.
#[derive(Default)]
struct SessionStats {
    ok: u64,
    failed: u64,
    connect_attempts: u64,
    connections: u64,
    errors: BTreeMap<FailureKey, ErrorTally>,
    /// The failure that made a session give up, for the "cannot reach" error.
    first_fatal: Option<Failure>,
}

impl SessionStats {
    fn record_failure(&mut self, failure: &Failure) {
        let tally = self.errors.entry(failure.key()).or_default();
        tally.count += 1;
        if tally.example.is_empty() {
            tally.example = failure.detail.clone();
        }
    }

    fn merge(&mut self, other: SessionStats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.connect_attempts += other.connect_attempts;
        self.connections += other.connections;
        for (key, tally) in other.errors {
            let mine = self.errors.entry(key).or_default();
            mine.count += tally.count;
            if mine.example.is_empty() {
                mine.example = tally.example;
            }
        }
        if self.first_fatal.is_none() {
            self.first_fatal = other.first_fatal;
        }
    }
}

/// One session: claims messages from the shared counter and sends them until none are left.
///
/// A transport failure (timeout, closed connection, garbage) fails the message in flight and
/// drops the connection; the next message opens a new one. The session gives up after
/// [`MAX_CONSECUTIVE_CONNECT_FAILURES`] failed connection attempts in a row.
async fn run_session(shared: Arc<Shared>) -> SessionStats {
    let plan = &shared.plan;
    let mut stats = SessionStats::default();
    let mut message = plan.template.clone();
    let mut client: Option<SmtpClient> = None;
    let mut connect_failures = 0;

    while let Some(seq) = shared.claim() {
        let mut connected = match client.take() {
            Some(connected) => connected,
            None => {
                stats.connect_attempts += 1;
                match SmtpClient::open(plan).await {
                    Ok(opened) => {
                        stats.connections += 1;
                        connect_failures = 0;
                        if opened.pipelining_advertised {
                            shared.pipelining_advertised.store(true, Ordering::Relaxed);
                        }
                        opened
                    }
                    Err(failure) => {
                        stats.failed += 1;
                        stats.record_failure(&failure);
                        shared.progress.inc(1);
                        connect_failures += 1;
                        if connect_failures >= MAX_CONSECUTIVE_CONNECT_FAILURES {
                            stats.first_fatal = Some(failure);
                            break;
                        }
                        continue;
                    }
                }
            }
        };

        message.set_sequence(seq);
        let started = Instant::now();
        let outcome = connected.transaction(&plan.commands, message.wire(), plan.pipelining).await;
        shared.progress.inc(1);
        match outcome {
            Ok(Transaction::Accepted) => {
                stats.ok += 1;
                shared.record_latency(started.elapsed());
                client = Some(connected);
            }
            Ok(Transaction::Rejected(failures)) => {
                stats.failed += 1;
                failures.iter().for_each(|f| stats.record_failure(f));
                let closing = failures.iter().any(Failure::closes_connection);
                if !closing {
                    match connected.reset().await {
                        Ok(()) => client = Some(connected),
                        Err(failure) => stats.record_failure(&failure),
                    }
                }
            }
            Err(failure) => {
                stats.failed += 1;
                stats.record_failure(&failure);
            }
        }
        if plan.reconnect
            && let Some(done) = client.take()
        {
            done.quit().await;
        }
    }
    if let Some(done) = client {
        done.quit().await;
    }
    stats
}

// ---------------------------------------------------------------------------------------------
// SMTP client
// ---------------------------------------------------------------------------------------------

/// The commands of one transaction, built once per run.
#[derive(Debug, Clone)]
struct Commands {
    mail: Vec<u8>,
    rcpt: Vec<u8>,
    /// MAIL, RCPT and DATA in one buffer, for PIPELINING.
    pipelined: Vec<u8>,
}

/// The DATA command.
const DATA: &[u8] = b"DATA\r\n";

impl Commands {
    fn new(from: &str, to: &str) -> Commands {
        let mail = format!("MAIL FROM:<{from}>\r\n").into_bytes();
        let rcpt = format!("RCPT TO:<{to}>\r\n").into_bytes();
        let pipelined = [mail.as_slice(), rcpt.as_slice(), DATA].concat();
        Commands { mail, rcpt, pipelined }
    }
}

/// Where in the SMTP dialogue something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Connect,
    Banner,
    Ehlo,
    Mail,
    Rcpt,
    Data,
    /// The reply after the message body and its final dot.
    Message,
    Rset,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Banner => "banner",
            Stage::Ehlo => "EHLO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::Message => "end-of-data",
            Stage::Rset => "RSET",
            Stage::Quit => "QUIT",
        })
    }
}

/// How a step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FailureKind {
    /// The server answered with this (unexpected) reply code.
    Reply(u16),
    /// No reply (or no progress writing) within `--timeout-secs`.
    Timeout,
    /// The server closed the connection.
    Closed,
    /// The server sent something that is not an SMTP reply.
    Malformed,
    /// A socket error, such as connection refused or reset.
    Io,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Reply(code) => write!(f, "{code}"),
            FailureKind::Timeout => f.write_str("timeout"),
            FailureKind::Closed => f.write_str("connection closed"),
            FailureKind::Malformed => f.write_str("malformed reply"),
            FailureKind::Io => f.write_str("I/O error"),
        }
    }
}

/// The key failures are counted under: stage and kind, e.g. `RCPT 550`.
type FailureKey = (Stage, FailureKind);

/// One failed step, with the server's text or the error message as detail.
#[derive(Debug, Clone)]
struct Failure {
    stage: Stage,
    kind: FailureKind,
    detail: String,
}

impl Failure {
    fn new(stage: Stage, kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure { stage, kind, detail: detail.into() }
    }

    /// A failure made of an unexpected reply.
    fn reply(stage: Stage, reply: &Reply) -> Failure {
        Failure::new(stage, FailureKind::Reply(reply.code), reply.text())
    }

    fn key(&self) -> FailureKey {
        (self.stage, self.kind)
    }

    /// 421 means the server is closing the connection; do not try RSET on it.
    fn closes_connection(&self) -> bool {
        self.kind == FailureKind::Reply(421)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.stage, self.kind)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// The end of one mail transaction that kept the connection usable.
#[derive(Debug)]
enum Transaction {
    /// The final reply after the dot was 2xx.
    Accepted,
    /// Some reply was not the expected one; every such reply is listed.
    Rejected(Vec<Failure>),
}

/// One SMTP connection past its greeting.
struct SmtpClient {
    stream: BufReader<TcpStream>,
    /// Scratch buffer for reply lines.
    line: Vec<u8>,
    reply_timeout: Duration,
    /// Whether the EHLO reply listed PIPELINING.
    pipelining_advertised: bool,
}

impl SmtpClient {
    /// Connects, reads the banner and greets with EHLO, or HELO if EHLO is refused.
    async fn open(plan: &Plan) -> Result<SmtpClient, Failure> {
        let connect = TcpStream::connect(plan.server.as_str());
        let stream = match tokio::time::timeout(plan.reply_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Failure::new(Stage::Connect, FailureKind::Io, e.to_string())),
            Err(_) => return Err(Failure::new(Stage::Connect, FailureKind::Timeout, "")),
        };
        // Commands are small and each is followed by a read: Nagle would only add delay.
        stream
            .set_nodelay(true)
            .map_err(|e| Failure::new(Stage::Connect, FailureKind::Io, e.to_string()))?;
        let mut client = SmtpClient {
            stream: BufReader::new(stream),
            line: Vec::with_capacity(512),
            reply_timeout: plan.reply_timeout,
            pipelining_advertised: false,
        };

        let banner = client.reply(Stage::Banner).await?;
        if banner.code != 220 {
            return Err(Failure::reply(Stage::Banner, &banner));
        }
        let ehlo = format!("EHLO {}\r\n", plan.ehlo);
        let reply = client.command(ehlo.as_bytes(), Stage::Ehlo).await?;
        if reply.is_positive() {
            client.pipelining_advertised = reply.has_keyword("PIPELINING");
            return Ok(client);
        }
        let helo = format!("HELO {}\r\n", plan.ehlo);
        let reply = client.command(helo.as_bytes(), Stage::Ehlo).await?;
        if !reply.is_positive() {
            return Err(Failure::reply(Stage::Ehlo, &reply));
        }
        Ok(client)
    }

    /// Sends one message. `Err` means the connection is no longer usable.
    async fn transaction(
        &mut self,
        commands: &Commands,
        wire: &[u8],
        pipelining: bool,
    ) -> Result<Transaction, Failure> {
        let mut rejected = Vec::new();
        let data = if pipelining && self.pipelining_advertised {
            // RFC 2920: DATA may end a pipelined group; all three replies always come back.
            self.send(&commands.pipelined, Stage::Mail).await?;
            for stage in [Stage::Mail, Stage::Rcpt] {
                let reply = self.reply(stage).await?;
                if !reply.is_positive() {
                    rejected.push(Failure::reply(stage, &reply));
                }
            }
            self.reply(Stage::Data).await?
        } else {
            for (command, stage) in [(&commands.mail, Stage::Mail), (&commands.rcpt, Stage::Rcpt)] {
                let reply = self.command(command, stage).await?;
                if !reply.is_positive() {
                    return Ok(Transaction::Rejected(vec![Failure::reply(stage, &reply)]));
                }
            }
            self.command(DATA, Stage::Data).await?
        };

        if data.code != 354 {
            rejected.push(Failure::reply(Stage::Data, &data));
            return Ok(Transaction::Rejected(rejected));
        }
        if !rejected.is_empty() {
            // The server wants data although MAIL or RCPT failed: give it an empty message.
            self.send(b".\r\n", Stage::Message).await?;
            self.reply(Stage::Message).await?;
            return Ok(Transaction::Rejected(rejected));
        }
        self.send(wire, Stage::Message).await?;
        let end = self.reply(Stage::Message).await?;
        if end.is_positive() {
            Ok(Transaction::Accepted)
        } else {
            Ok(Transaction::Rejected(vec![Failure::reply(Stage::Message, &end)]))
        }
    }

    /// Sends RSET after a failed transaction; `Err` when the connection should be dropped.
    async fn reset(&mut self) -> Result<(), Failure> {
        let reply = self.command(b"RSET\r\n", Stage::Rset).await?;
        if reply.is_positive() { Ok(()) } else { Err(Failure::reply(Stage::Rset, &reply)) }
    }

    /// Says QUIT and waits briefly for the answer; errors no longer matter here.
    async fn quit(mut self) {
        if self.send(b"QUIT\r\n", Stage::Quit).await.is_ok() {
            let _ = self.reply(Stage::Quit).await;
        }
    }

    async fn command(&mut self, command: &[u8], stage: Stage) -> Result<Reply, Failure> {
        self.send(command, stage).await?;
        self.reply(stage).await
    }

    async fn send(&mut self, bytes: &[u8], stage: Stage) -> Result<(), Failure> {
        match tokio::time::timeout(self.reply_timeout, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::new(stage, FailureKind::Io, e.to_string())),
            Err(_) => Err(Failure::new(stage, FailureKind::Timeout, "writing")),
        }
    }

    async fn reply(&mut self, stage: Stage) -> Result<Reply, Failure> {
        let read = read_reply(&mut self.stream, &mut self.line);
        match tokio::time::timeout(self.reply_timeout, read).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Failure::new(stage, e.kind(), e.to_string())),
            Err(_) => Err(Failure::new(stage, FailureKind::Timeout, "waiting for reply")),
        }
    }
}

/// Reads one complete, possibly multi-line, reply.
async fn read_reply<R>(reader: &mut R, line: &mut Vec<u8>) -> Result<Reply, ReadError>
where
    R: AsyncBufRead + Unpin,
{
    let mut assembler = ReplyAssembler::default();
    for _ in 0..MAX_REPLY_LINES {
        line.clear();
        let read = (&mut *reader)
            .take(MAX_REPLY_LINE_BYTES)
            .read_until(b'\n', line)
            .await
            .map_err(ReadError::Io)?;
        if !line.ends_with(b"\n") {
            return Err(if read as u64 == MAX_REPLY_LINE_BYTES {
                ReadError::Malformed(ReplyError::LineTooLong)
            } else {
                ReadError::Closed
            });
        }
        if let Some(reply) = assembler.push(line).map_err(ReadError::Malformed)? {
            return Ok(reply);
        }
    }
    Err(ReadError::Malformed(ReplyError::TooManyLines))
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{0}")]
    Io(std::io::Error),
    #[error("server closed the connection")]
    Closed,
    #[error("{0}")]
    Malformed(ReplyError),
}

impl ReadError {
    fn kind(&self) -> FailureKind {
        match self {
            ReadError::Io(_) => FailureKind::Io,
            ReadError::Closed => FailureKind::Closed,
            ReadError::Malformed(_) => FailureKind::Malformed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Replies (pure code over bytes)
// ---------------------------------------------------------------------------------------------

/// A complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reply {
    code: u16,
    /// The text of each line, without code, separator or line end.
    lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether an EHLO reply lists this extension keyword (case-insensitive).
    fn has_keyword(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }

    /// All lines joined, for error reports.
    fn text(&self) -> String {
        self.lines.join(" / ")
    }
}

/// Why bytes from the server are not a valid reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ReplyError {
    #[error("reply line does not start with a 3-digit code: {0:?}")]
    NoCode(String),
    #[error("reply code is followed by {0:?}, not space, '-' or line end")]
    BadSeparator(char),
    #[error("multi-line reply changed code from {first} to {then}")]
    CodeChanged { first: u16, then: u16 },
    #[error("reply line longer than {MAX_REPLY_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("reply longer than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Collects reply lines (`250-first`, `250-second`, `250 last`) into a [`Reply`].
#[derive(Debug, Default)]
struct ReplyAssembler {
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyAssembler {
    /// Adds one line (with or without its line end); returns the reply once its last line came.
    fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        let line =
            line.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(line);
        let code = match line {
            [a, b, c, ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => {
                return Err(ReplyError::NoCode(String::from_utf8_lossy(line).into_owned()));
            }
        };
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(&other) => return Err(ReplyError::BadSeparator(char::from(other))),
        };
        if let Some(first) = self.code
            && first != code
        {
            return Err(ReplyError::CodeChanged { first, then: code });
        }
        self.lines.push(String::from_utf8_lossy(text).trim_end().to_owned());
        if !last {
            self.code = Some(code);
            return Ok(None);
        }
        self.code = None;
        Ok(Some(Reply { code, lines: std::mem::take(&mut self.lines) }))
    }
}

// ---------------------------------------------------------------------------------------------
// Messages (pure code over bytes)
// ---------------------------------------------------------------------------------------------

/// What a generated message contains.
struct MessageSpec<'a> {
    from: &'a str,
    to: &'a str,
    /// Exact size of the message (headers, blank line and body), before dot-stuffing.
    size_bytes: usize,
    /// Date header value.
    date: String,
    /// Makes Message-IDs unique across runs.
    run_token: String,
}

/// A message ready to send after DATA: dot-stuffed and terminated by `.` CRLF, with slots for
/// the sequence number so each message differs without being rebuilt.
#[derive(Debug, Clone)]
struct MessageBuffer {
    wire: Vec<u8>,
    /// Offsets in `wire` of the [`SEQUENCE_DIGITS`]-wide sequence number fields.
    sequence_slots: Vec<usize>,
}

impl MessageBuffer {
    /// Builds the message; fails if `size_bytes` cannot even hold the headers.
    fn new(spec: &MessageSpec<'_>) -> anyhow::Result<MessageBuffer> {
        let placeholder = "0".repeat(SEQUENCE_DIGITS);
        let mut headers = String::new();
        let mut slots = Vec::new();
        headers.push_str(&format!("From: <{}>\r\n", spec.from));
        headers.push_str(&format!("To: <{}>\r\n", spec.to));
        headers.push_str("Subject: tern bench message ");
        slots.push(headers.len());
        headers.push_str(&placeholder);
        let subject_end = headers.len();
        headers.push_str("\r\n");
        headers.push_str(&format!("Date: {}\r\n", spec.date));
        headers.push_str("Message-ID: <");
        slots.push(headers.len());
        headers.push_str(&placeholder);
        let domain = spec.from.rsplit_once('@').map_or("tern.test", |(_, d)| d);
        headers.push_str(&format!(".{}@{domain}>\r\n", spec.run_token));
        headers.push_str("MIME-Version: 1.0\r\n");
        headers.push_str("Content-Type: text/plain; charset=us-ascii\r\n");
        headers.push_str("\r\n");

        let Some(body_bytes) = spec.size_bytes.checked_sub(headers.len()) else {
            bail!(
                "--size {} is smaller than the message headers ({} bytes)",
                spec.size_bytes,
                headers.len()
            );
        };
        if body_bytes == 1 {
            // No CRLF-terminated body fits in one byte: lengthen the Subject instead.
            headers.insert(subject_end, '+');
        }
        let mut message = headers.into_bytes();
        append_body(&mut message, if body_bytes == 1 { 0 } else { body_bytes });
        debug_assert_eq!(message.len(), spec.size_bytes);
        // Headers never start a line with '.', so stuffing leaves the slot offsets unchanged.
        Ok(MessageBuffer { wire: dot_stuff(&message), sequence_slots: slots })
    }

    /// Writes `seq` into every sequence number slot, zero-padded.
    fn set_sequence(&mut self, seq: u64) {
        for &slot in &self.sequence_slots {
            let mut n = seq;
            for byte in self.wire[slot..slot + SEQUENCE_DIGITS].iter_mut().rev() {
                *byte = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
    }

    /// The bytes to send after the 354 reply, final `.` CRLF included.
    fn wire(&self) -> &[u8] {
        &self.wire
    }
}

/// Appends exactly `bytes` of body (0 or at least 2): printable ASCII lines of at most
/// [`MAX_BODY_LINE_CHARS`] characters, each ending in CRLF.
///
/// Line `k` runs through the printable characters starting at the `k`-th, so some lines start
/// with `.` and the server's dot-unstuffing is exercised.
fn append_body(out: &mut Vec<u8>, mut bytes: usize) {
    const FULL_LINE: usize = MAX_BODY_LINE_CHARS + 2;
    const PRINTABLE: std::ops::RangeInclusive<u8> = b'!'..=b'~';
    let alphabet: Vec<u8> = PRINTABLE.collect();
    debug_assert!(bytes != 1, "a body of one byte cannot end in CRLF");
    let mut k = 0;
    while bytes > 0 {
        let mut len = bytes.min(FULL_LINE);
        if bytes - len == 1 {
            // Leave two bytes, not one, for the last line.
            len -= 1;
        }
        let chars = len - 2;
        out.extend((0..chars).map(|j| alphabet[(k + j) % alphabet.len()]));
        out.extend_from_slice(b"\r\n");
        bytes -= len;
        k += 1;
    }
}

/// Dot-stuffs a CRLF message (RFC 5321 4.5.2) and appends the end-of-data line.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut wire = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &byte in message {
        if at_line_start && byte == b'.' {
            wire.push(b'.');
        }
        wire.push(byte);
        at_line_start = byte == b'\n';
    }
    if !at_line_start {
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

/// Formats a time as an RFC 5322 date in UTC, e.g. `Thu, 1 Jan 1970 00:00:00 +0000`.
fn rfc5322_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    mail_parser::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX)).to_rfc822()
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// Whether MAIL/RCPT/DATA were pipelined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipelining {
    Off,
    Used,
    /// Asked for with `--pipelining`, but the server never advertised it.
    NotAdvertised,
}

impl Pipelining {
    fn as_str(self) -> &'static str {
        match self {
            Pipelining::Off => "off",
            Pipelining::Used => "on",
            Pipelining::NotAdvertised => "not advertised by server",
        }
    }
}

/// How often a failure was seen, and what the server said the first time.
#[derive(Debug, Clone, Default)]
struct ErrorTally {
    count: u64,
    example: String,
}

/// Latency percentiles of accepted messages in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Latency {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    /// `None` when no message was accepted.
    fn from_histogram(micros: &Histogram<u64>) -> Option<Latency> {
        if micros.is_empty() {
            return None;
        }
        let ms = |v: u64| v as f64 / 1000.0;
        Some(Latency {
            p50_ms: ms(micros.value_at_quantile(0.50)),
            p90_ms: ms(micros.value_at_quantile(0.90)),
            p99_ms: ms(micros.value_at_quantile(0.99)),
            max_ms: ms(micros.max()),
        })
    }
}

/// The result of a run.
#[derive(Debug)]
struct Report {
    server: String,
    sessions: u32,
    size_bytes: usize,
    pipelining: Pipelining,
    reconnect: bool,
    messages_ok: u64,
    messages_failed: u64,
    /// Messages never tried because every session gave up.
    messages_not_sent: u64,
    /// From starting the sessions to the last QUIT, so connection setup is included.
    elapsed: Duration,
    latency: Option<Latency>,
    errors: BTreeMap<FailureKey, ErrorTally>,
}

impl Report {
    /// Accepted messages per second of wall-clock time.
    fn messages_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.messages_ok as f64 / secs } else { 0.0 }
    }

    /// The report as one line of JSON.
    fn to_json(&self) -> String {
        let latency = match self.latency {
            Some(l) => format!(
                r#"{{"p50":{:.3},"p90":{:.3},"p99":{:.3},"max":{:.3}}}"#,
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            ),
            None => "null".to_owned(),
        };
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|((stage, kind), tally)| {
                format!(
                    r#"{{"stage":{},"error":{},"count":{},"example":{}}}"#,
                    json_string(&stage.to_string()),
                    json_string(&kind.to_string()),
                    tally.count,
                    json_string(&tally.example)
                )
            })
            .collect();
        format!(
            concat!(
                r#"{{"server":{},"sessions":{},"size_bytes":{},"pipelining":{},"reconnect":{},"#,
                r#""messages_ok":{},"messages_failed":{},"messages_not_sent":{},"#,
                r#""elapsed_secs":{:.3},"messages_per_sec":{:.1},"latency_ms":{},"errors":[{}]}}"#
            ),
            json_string(&self.server),
            self.sessions,
            self.size_bytes,
            json_string(self.pipelining.as_str()),
            self.reconnect,
            self.messages_ok,
            self.messages_failed,
            self.messages_not_sent,
            self.elapsed.as_secs_f64(),
            self.messages_per_sec(),
            latency,
            errors.join(",")
        )
    }
}

impl fmt::Display for Report {
    /// The report as an aligned two-column table.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            writeln!(f, "{name:<18} {value}")
        };
        row(f, "server", &self.server)?;
        row(f, "sessions", &self.sessions)?;
        row(f, "message size", &format_args!("{} bytes", self.size_bytes))?;
        row(f, "pipelining", &self.pipelining.as_str())?;
        row(f, "reconnect", &self.reconnect)?;
        row(f, "messages ok", &self.messages_ok)?;
        row(f, "messages failed", &self.messages_failed)?;
        if self.messages_not_sent > 0 {
            row(f, "messages not sent", &self.messages_not_sent)?;
        }
        row(f, "elapsed", &format_args!("{:.3} s", self.elapsed.as_secs_f64()))?;
        row(f, "messages/s", &format_args!("{:.1}", self.messages_per_sec()))?;
        match self.latency {
            Some(l) => row(
                f,
                "latency ms",
                &format_args!(
                    "p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                ),
            )?,
            None => row(f, "latency ms", &"-")?,
        }
        if self.errors.is_empty() {
            row(f, "errors", &"none")?;
        }
        for ((stage, kind), tally) in &self.errors {
            row(f, "error", &format_args!("{stage} {kind} x{}  {}", tally.count, tally.example))?;
        }
        Ok(())
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn spec(size_bytes: usize) -> MessageSpec<'static> {
        MessageSpec {
            from: "bench@tern.test",
            to: "sink@tern.test",
            size_bytes,
            date: "Thu, 01 Jan 1970 00:00:00 +0000".to_owned(),
            run_token: "abc.1".to_owned(),
        }
    }

    /// Reverses dot-stuffing; returns the message and checks it ended with `.` CRLF.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("wire ends with the end-of-data line");
        let mut message = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            assert_ne!(line, b".\r\n", "an unstuffed lone dot inside the message");
            message.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        message
    }

    #[test]
    fn message_has_exact_size_and_short_crlf_lines() {
        let min = MessageBuffer::new(&spec(10_000))
            .map(|m| {
                let message = unstuff(m.wire());
                message.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
            })
            .unwrap();
        for size in (min..min + 400).chain([4096, 65_536]) {
            let buffer = MessageBuffer::new(&spec(size)).unwrap();
            let message = unstuff(buffer.wire());
            assert_eq!(message.len(), size, "size {size}");
            assert!(message.ends_with(b"\r\n"));
            for (i, &b) in message.iter().enumerate() {
                match b {
                    b'\r' => assert_eq!(message.get(i + 1), Some(&b'\n')),
                    b'\n' => assert_eq!(message[i - 1], b'\r'),
                    _ => assert!(b == b' ' || b.is_ascii_graphic(), "byte {b}"),
                }
            }
            for line in message.split(|&b| b == b'\n') {
                assert!(line.len() <= MAX_BODY_LINE_CHARS + 1, "{line:?}");
            }
        }
        assert!(MessageBuffer::new(&spec(min - 1)).is_err());
    }

    #[test]
    fn dot_stuffing_doubles_leading_dots_only() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n..\r\n.\r\nc.d\r\n"), {
            b"a\r\n..b\r\n...\r\n..\r\nc.d\r\n.\r\n".to_vec()
        });
        assert_eq!(dot_stuff(b".x"), b"..x\r\n.\r\n".to_vec());
        // The generated body does start some lines with '.', and they come out stuffed.
        let buffer = MessageBuffer::new(&spec(4096)).unwrap();
        assert!(buffer.wire().windows(4).any(|w| w == b"\n../"));
        assert_eq!(unstuff(buffer.wire()).len(), 4096);
    }

    #[test]
    fn sequence_number_is_written_in_place() {
        let mut buffer = MessageBuffer::new(&spec(1000)).unwrap();
        let before = buffer.wire().len();
        buffer.set_sequence(42);
        let text = String::from_utf8(buffer.wire().to_vec()).unwrap();
        assert_eq!(buffer.wire().len(), before);
        assert!(text.contains("Subject: tern bench message 0000000042\r\n"));
        assert!(text.contains("Message-ID: <0000000042.abc.1@tern.test>\r\n"));
        buffer.set_sequence(MAX_MESSAGES);
        let text = String::from_utf8(buffer.wire().to_vec()).unwrap();
        assert!(text.contains("message 9999999999\r\n"));
    }

    #[test]
    fn dates_are_rfc5322() {
        let at = |secs| rfc5322_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

    fn assemble(lines: &[&[u8]]) -> Result<Vec<Reply>, ReplyError> {
        let mut assembler = ReplyAssembler::default();
        let mut replies = Vec::new();
        for line in lines {
            replies.extend(assembler.push(line)?);
        }
        Ok(replies)
    }

    #[test]
    fn replies_parse_single_and_multi_line() {
        let reply = |code, lines: &[&str]| Reply {
            code,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        };
        type Case = (&'static [&'static [u8]], Result<Vec<Reply>, ReplyError>);
        let cases: &[Case] = &[
            (&[b"250 OK\r\n"], Ok(vec![reply(250, &["OK"])])),
            (&[b"354\r\n"], Ok(vec![reply(354, &[""])])),
            (&[b"221 bye\n"], Ok(vec![reply(221, &["bye"])])),
            (
                &[b"250-mx.test\r\n", b"250-PIPELINING\r\n", b"250 8BITMIME\r\n"],
                Ok(vec![reply(250, &["mx.test", "PIPELINING", "8BITMIME"])]),
            ),
            (
                &[b"250 a\r\n", b"550 5.1.1 no\r\n"],
                Ok(vec![reply(250, &["a"]), reply(550, &["5.1.1 no"])]),
            ),
            (&[b"25\r\n"], Err(ReplyError::NoCode("25".into()))),
            (&[b"hello\r\n"], Err(ReplyError::NoCode("hello".into()))),
            (&[b"250:x\r\n"], Err(ReplyError::BadSeparator(':'))),
            (&[b"250-a\r\n", b"251 b\r\n"], Err(ReplyError::CodeChanged { first: 250, then: 251 })),
        ];
        for (lines, expected) in cases {
            assert_eq!(&assemble(lines), expected, "{lines:?}");
        }
        let ehlo = assemble(&[b"250-mx\r\n", b"250-pipelining\r\n", b"250 SIZE 10\r\n"]).unwrap();
        assert!(ehlo[0].has_keyword("PIPELINING"));
        assert!(!ehlo[0].has_keyword("mx"), "the greeting line is not a keyword");
    }

    #[tokio::test]
    async fn replies_are_read_across_buffered_reads_and_bounded() {
        let mut input: &[u8] = b"250-a\r\n250 b\r\n220 next\r\n";
        let mut reader = BufReader::with_capacity(3, &mut input);
        let mut line = Vec::new();
        let first = read_reply(&mut reader, &mut line).await.unwrap();
        assert_eq!(first.lines, ["a", "b"]);
        assert_eq!(read_reply(&mut reader, &mut line).await.unwrap().code, 220);
        assert!(matches!(read_reply(&mut reader, &mut line).await, Err(ReadError::Closed)));

        let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE_BYTES as usize));
        let mut input = long.as_bytes();
        let mut reader = BufReader::new(&mut input);
        assert!(matches!(
            read_reply(&mut reader, &mut line).await,
            Err(ReadError::Malformed(ReplyError::LineTooLong))
        ));
    }

    /// What the test sink saw.
    #[derive(Default)]
    struct SinkLog {
        /// Unstuffed size of every accepted message.
        sizes: Vec<usize>,
        connections: usize,
        pipelined_groups: usize,
    }

    /// A minimal SMTP sink: advertises PIPELINING, rejects RCPT TO <reject@...> with 550 and
    /// accepts everything else.
    async fn start_sink() -> (String, Arc<Mutex<SinkLog>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(SinkLog::default()));
        let sink_log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                sink_log.lock().unwrap().connections += 1;
                tokio::spawn(sink_session(stream, Arc::clone(&sink_log)));
            }
        });
        (addr, log)
    }

    async fn sink_session(stream: TcpStream, log: Arc<Mutex<SinkLog>>) {
        let mut stream = BufReader::new(stream);
        stream.write_all(b"220 sink ESMTP\r\n").await.unwrap();
        let mut line = Vec::new();
        let mut valid_rcpt = false;
        loop {
            line.clear();
            if stream.read_until(b'\n', &mut line).await.unwrap() == 0 {
                return;
            }
            let verb = line[..4.min(line.len())].to_ascii_uppercase();
            let reply: &[u8] = match &verb[..] {
                b"EHLO" => b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                b"MAIL" => {
                    if !stream.buffer().is_empty() {
                        log.lock().unwrap().pipelined_groups += 1;
                    }
                    valid_rcpt = false;
                    b"250 ok\r\n"
                }
                b"RCPT" if line.starts_with(b"RCPT TO:<reject@") => b"550 5.1.1 no such user\r\n",
                b"RCPT" => {
                    valid_rcpt = true;
                    b"250 ok\r\n"
                }
                b"DATA" if !valid_rcpt => b"554 5.5.1 no valid recipients\r\n",
                b"DATA" => {
                    stream.write_all(b"354 go\r\n").await.unwrap();
                    let mut size = 0;
                    loop {
                        line.clear();
                        stream.read_until(b'\n', &mut line).await.unwrap();
                        if line == b".\r\n" {
                            break;
                        }
                        size += line.len() - usize::from(line.starts_with(b"."));
                    }
                    log.lock().unwrap().sizes.push(size);
                    b"250 2.0.0 queued\r\n"
                }
                b"RSET" => b"250 ok\r\n",
                b"QUIT" => {
                    let _ = stream.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => b"500 what\r\n",
            };
            stream.write_all(reply).await.unwrap();
        }
    }

    fn args(server: &str) -> BenchArgs {
        BenchArgs {
            server: server.to_owned(),
            sessions: 3,
            messages: 25,
            size_bytes: 1500,
            from: DEFAULT_FROM.to_owned(),
            to: DEFAULT_TO.to_owned(),
            ehlo: DEFAULT_EHLO.to_owned(),
            pipelining: false,
            reconnect: false,
            json: true,
            timeout_secs: 5,
        }
    }

    async fn bench(args: &BenchArgs) -> anyhow::Result<Report> {
        execute(Plan::from_args(args)?, ProgressBar::hidden()).await
    }

    #[tokio::test]
    async fn benchmark_runs_against_a_sink() {
        let (server, log) = start_sink().await;
        let report = bench(&args(&server)).await.unwrap();
        assert_eq!((report.messages_ok, report.messages_failed), (25, 0));
        assert_eq!(report.pipelining, Pipelining::Off);
        assert!(report.latency.is_some() && report.errors.is_empty());
        {
            let log = log.lock().unwrap();
            assert_eq!(log.sizes, vec![1500; 25]);
            assert_eq!((log.connections, log.pipelined_groups), (3, 0));
        }
        let json = report.to_json();
        assert!(json.starts_with(r#"{"server":"127.0.0.1:"#), "{json}");
        assert!(json.contains(r#""messages_ok":25,"messages_failed":0,"#), "{json}");

        let report =
            bench(&BenchArgs { pipelining: true, reconnect: true, ..args(&server) }).await.unwrap();
        assert_eq!((report.messages_ok, report.pipelining), (25, Pipelining::Used));
        let log = log.lock().unwrap();
        assert_eq!((log.connections, log.pipelined_groups), (3 + 25, 25));
    }

    #[tokio::test]
    async fn rejections_are_counted_by_stage_and_code() {
        let (server, _log) = start_sink().await;
        for pipelining in [false, true] {
            let report = bench(&BenchArgs {
                to: "reject@tern.test".to_owned(),
                pipelining,
                ..args(&server)
            })
            .await
            .unwrap();
            assert_eq!((report.messages_ok, report.messages_failed), (0, 25));
            let rcpt = &report.errors[&(Stage::Rcpt, FailureKind::Reply(550))];
            assert_eq!((rcpt.count, rcpt.example.as_str()), (25, "5.1.1 no such user"));
            // Pipelined, DATA is sent anyway and refused as well.
            let data = report.errors.get(&(Stage::Data, FailureKind::Reply(554)));
            assert_eq!(data.map(|t| t.count), pipelining.then_some(25));
            assert!(report.to_string().contains("RCPT 550 x25"));
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = bench(&args(&addr)).await.unwrap_err().to_string();
        assert!(error.contains("cannot reach SMTP server"), "{error}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = |a: BenchArgs| Plan::from_args(&a).unwrap_err().to_string();
        assert!(bad(BenchArgs { to: "a@b>\r\nDATA".into(), ..args("x:1") }).contains("--to"));
        assert!(
            bad(BenchArgs { size_bytes: 10, ..args("x:1") })
                .contains("smaller than the message headers")
        );
        let huge = BenchArgs { sessions: 10_000, size_bytes: MAX_SIZE_BYTES, ..args("x:1") };
        assert!(bad(huge).contains("holds in memory"));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }
}
