//! `tern bench`: a load generator for any SMTP server.
//!
//! It plays the part Postfix's `smtp-source` plays: `--sessions` connections share one counter of
//! `--messages` messages and each sends MAIL FROM / RCPT TO / DATA / body / `.` in a loop until the
//! counter runs out, then QUITs. At the end it reports how many messages were accepted, messages per
//! second, latency percentiles (MAIL FROM to the reply after the final dot) and failures by stage and
//! reply code, as a table or as one JSON object (`--json`).
//!
//! The crate owns the whole client side of the benchmark: message generation (`message.rs`), the
//! SMTP client (`client.rs`, which reads replies with `tern_protocol::client_reply`), the session
//! loop (`session.rs`) and the report (`report.rs`). It must not depend on Tern's server crates:
//! it is meant to load *any* SMTP server, and to keep working when the server under test is
//! broken. The `tern` binary only parses [`BenchArgs`] and calls [`run`].
//!
//! The client is built so it is not the bottleneck: each session prepares its message once and only
//! rewrites the sequence number in place, commands are prebuilt byte strings, and with
//! `--pipelining` MAIL, RCPT and DATA leave in one write.

#![deny(missing_docs)]

mod client;
mod message;
mod report;
mod session;

use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Commands;
use crate::message::{MessageBuffer, MessageSpec, rfc5322_date};

/// Server loaded when `--server` is not given: Tern's zero-config catcher port.
const DEFAULT_SERVER: &str = "127.0.0.1:1025";
/// Concurrent sessions when `--sessions` is not given.
const DEFAULT_SESSIONS: u32 = 10;
/// Upper bound of `--sessions`.
const MAX_SESSIONS: u32 = 10_000;
/// Total messages when `--messages` is not given.
const DEFAULT_MESSAGES: u64 = 1000;
/// Upper bound of `--messages`: sequence numbers are written with ten digits.
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

    /// Send this file (CRLF lines) as every message instead of a generated one, e.g. a
    /// DKIM-signed message whose signature must stay intact; --size is then ignored.
    #[arg(long = "message", value_name = "FILE")]
    pub message_file: Option<std::path::PathBuf>,

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
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let plan = Plan::from_args(&args)?;
    let progress = if args.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        progress_bar(plan.messages)
    };
    let report = session::execute(plan, progress).await?;
    if args.json {
        println!("{}", report.to_json()?);
    } else {
        print!("{report}");
    }
    if report.messages_ok == 0 {
        return Err(BenchError::NothingAccepted { server: report.server });
    }
    Ok(())
}

/// Why a benchmark could not run or found nothing to measure. A wrapped cause is the error's
/// source, not part of its message: `tern` prints the chain (`{:#}`) as before.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The arguments cannot make a benchmark (a flag's value, or their combination).
    #[error("{0}")]
    Arguments(String),
    /// Every session failed to connect or greet.
    #[error("cannot reach SMTP server {server}: {why}")]
    Unreachable {
        /// The server as given with `--server`.
        server: String,
        /// The failure that made the sessions give up.
        why: String,
    },
    /// The run finished, but the server accepted no message (the report is printed first).
    #[error("no message was accepted by {server}")]
    NothingAccepted {
        /// The server as given with `--server`.
        server: String,
    },
    /// The latency histogram could not be created.
    #[error("creating the latency histogram")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// A session task panicked.
    #[error("a benchmark session panicked")]
    Session(#[from] tokio::task::JoinError),
    /// The report could not be written as JSON.
    #[error("writing the JSON report")]
    Json(#[from] serde_json::Error),
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
pub(crate) struct Plan {
    /// Server address as given, HOST:PORT.
    pub(crate) server: String,
    /// Concurrent sessions.
    pub(crate) sessions: u32,
    /// Messages in total.
    pub(crate) messages: u64,
    /// Message size in bytes before dot-stuffing.
    pub(crate) size_bytes: usize,
    /// Name for EHLO/HELO.
    pub(crate) ehlo: String,
    /// Whether to pipeline MAIL/RCPT/DATA when the server allows it.
    pub(crate) pipelining: bool,
    /// Whether to open a connection per message.
    pub(crate) reconnect: bool,
    /// Limit on each reply and each write.
    pub(crate) reply_timeout: Duration,
    /// Prebuilt transaction commands.
    pub(crate) commands: Commands,
    /// The message every session starts from.
    pub(crate) template: MessageBuffer,
}

impl Plan {
    /// Checks the arguments and prepares commands and the message template.
    pub(crate) fn from_args(args: &BenchArgs) -> Result<Plan, BenchError> {
        check_token("--from", &args.from)?;
        check_token("--to", &args.to)?;
        check_token("--ehlo", &args.ehlo)?;
        let buffered = u64::from(args.sessions).saturating_mul(args.size_bytes);
        if buffered > MAX_BUFFERED_BYTES {
            return Err(BenchError::Arguments(format!(
                "--sessions x --size is {buffered} bytes, more than the {MAX_BUFFERED_BYTES} \
                 bytes of messages tern bench holds in memory"
            )));
        }
        let size_bytes = usize::try_from(args.size_bytes)
            .map_err(|e| BenchError::Arguments(format!("--size does not fit in memory: {e}")))?;
        let (template, size_bytes) = match &args.message_file {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| {
                    BenchError::Arguments(format!("--message {}: {e}", path.display()))
                })?;
                let size = bytes.len();
                (MessageBuffer::from_bytes(&bytes), size)
            }
            None => {
                let spec = MessageSpec {
                    from: &args.from,
                    to: &args.to,
                    size_bytes,
                    date: rfc5322_date(SystemTime::now()),
                    run_token: run_token(),
                };
                (MessageBuffer::new(&spec)?, size_bytes)
            }
        };
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
fn check_token(flag: &str, value: &str) -> Result<(), BenchError> {
    if value.is_empty() {
        return Err(BenchError::Arguments(format!("{flag} must not be empty")));
    }
    if let Some(c) = value.chars().find(|c| !c.is_ascii_graphic() || matches!(c, '<' | '>')) {
        return Err(BenchError::Arguments(format!(
            "{flag} {value:?} contains {c:?}; use a plain address or name"
        )));
    }
    Ok(())
}

/// A token that makes this run's Message-IDs unique: start time and process id, in hex.
fn run_token() -> String {
    let nanos =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    format!("{nanos:x}.{:x}", std::process::id())
}
