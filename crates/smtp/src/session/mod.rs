//! The SMTP session state machine (RFC 5321), one task per connection.
//!
//! The session reads a command, answers it and keeps only the state its phase needs:
//! [`Phase::Idle`] between transactions, [`Phase::Mail`] while recipients are collected and
//! [`Phase::Chunking`] while BDAT chunks arrive. Verb families live in their own files:
//! `hello` (HELO/EHLO), `envelope` (MAIL/RCPT), `body` (DATA/BDAT and the hand-over to the
//! door), `auth` (AUTH) and `chaos` (failing on purpose, when a test suite asks).
//! Every wait on the client is bounded by the idle timeout, the session deadline and shutdown;
//! every error the client causes is answered with a code and an enhanced status.

mod auth;
mod body;
mod chaos;
mod envelope;
mod hello;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_protocol::command::{MailFrom, RcptTo};
use tern_protocol::reply::{Status, canned};
use tern_protocol::{Command, Reply, parse_command};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use auth::verify_password;

use crate::config::ListenerConfig;
use crate::connection::{Connection, Input};
use crate::server::Context;
use tern_ingest::AuthUser;

/// Where the session is in the SMTP dialogue.
#[derive(Debug, Default)]
enum Phase {
    /// No transaction open.
    #[default]
    Idle,
    /// `MAIL` accepted; recipients being collected.
    Mail(Transaction),
    /// BDAT chunks arriving for this transaction.
    Chunking(Transaction, Chunks),
}

/// An open mail transaction.
#[derive(Debug)]
struct Transaction {
    from: MailFrom,
    rcpts: Vec<(RcptTo, tern_store::Route)>,
    /// Recipients refused so far for being past `max_recipients`.
    overshoot: u32,
}

/// Body collected from BDAT chunks so far.
#[derive(Debug, Default)]
struct Chunks {
    body: Vec<u8>,
}

impl Chunks {
    /// Whether a further chunk of `size` bytes (the client's number, up to `u64::MAX`) keeps
    /// the message within `max_bytes`. The sum is checked: a size near `u64::MAX` must not
    /// wrap around into "fits" and let the client fill memory.
    fn admits(&self, size: u64, max_bytes: usize) -> bool {
        u64::try_from(self.body.len())
            .ok()
            .and_then(|len| len.checked_add(size))
            .is_some_and(|total| total <= u64::try_from(max_bytes).unwrap_or(u64::MAX))
    }
}

/// What the client said in HELO/EHLO.
#[derive(Debug, Clone)]
struct Hello {
    name: String,
    extended: bool,
}

/// Why a session ends.
#[derive(Debug)]
enum Stop {
    /// The client closed the connection.
    Eof,
    /// The client said QUIT, or was sent a closing 421.
    Closed,
    /// The server is shutting down.
    Shutdown,
    /// The client was silent too long.
    IdleTimeout,
    /// The session lasted too long.
    SessionTimeout,
    /// The socket failed.
    Io(std::io::Error),
}

/// Whether the session goes on after a command.
enum Flow {
    Continue,
    Close,
}

/// One SMTP session over any byte stream (TCP, TLS over TCP, in-memory in tests).
pub struct Session<S> {
    conn: Connection<S>,
    ctx: Arc<Context>,
    listener: Arc<ListenerConfig>,
    peer: SocketAddr,
    hello: Option<Hello>,
    phase: Phase,
    /// Protocol and cipher once TLS is up.
    tls: Option<(String, String)>,
    /// The authenticated user.
    auth: Option<AuthUser>,
    /// Messages accepted on this connection.
    messages: u32,
    /// NOOP/RSET/VRFY/HELP commands so far.
    junk_commands: u32,
    /// Delay before reading the next command (the error tarpit).
    tarpit: Duration,
    bad_commands: u32,
    deadline: Instant,
    /// The reply about to be answered was chaos's: it does not count as the client's error.
    uncounted: bool,
}

/// `now + wait`, or a year from now when a configured wait is too large to add (never a
/// panic over a configuration value).
fn later(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session for a client at `peer`.
    pub fn new(
        stream: S,
        peer: SocketAddr,
        ctx: Arc<Context>,
        listener: Arc<ListenerConfig>,
    ) -> Self {
        let deadline = later(Duration::from_secs(ctx.config.session_timeout_secs));
        Session {
            conn: Connection::new(stream),
            ctx,
            listener,
            peer,
            hello: None,
            phase: Phase::Idle,
            tls: None,
            auth: None,
            messages: 0,
            junk_commands: 0,
            tarpit: Duration::ZERO,
            bad_commands: 0,
            deadline,
            uncounted: false,
        }
    }

    /// Greets the client and serves commands until the session ends.
    pub async fn run(mut self) {
        if self.listener.role.implicit_tls() && !self.handshake().await {
            return;
        }
        self.serve().await;
    }

    /// Runs the TLS handshake; false when it failed (the connection is then useless).
    async fn handshake(&mut self) -> bool {
        let Some(provider) = self.ctx.tls.clone() else {
            tracing::error!("implicit-TLS listener without a TLS configuration");
            return false;
        };
        if !self.conn.start_tls_within(provider.acceptor(), HANDSHAKE_TIMEOUT).await {
            return false;
        }
        self.tls = self.conn.stream().tls_facts();
        if let Some((protocol, cipher)) = &self.tls {
            debug!(%protocol, %cipher, "TLS established");
        }
        true
    }

    /// `STARTTLS` (RFC 3207): everything learned before TLS is forgotten.
    async fn starttls(&mut self) -> Result<Flow, Stop> {
        if self.ctx.tls.is_none() {
            return Ok(self.answer(Reply::new(
                502,
                Status(5, 5, 1),
                "Error: STARTTLS is not offered here",
            )));
        }
        if self.tls.is_some() {
            return Ok(self.answer(canned::bad_sequence("Error: TLS is already active")));
        }
        self.conn.queue(&Reply::new(220, Status(2, 0, 0), "Ready to start TLS"));
        if !self.handshake().await {
            return Ok(Flow::Close);
        }
        self.hello = None;
        self.phase = Phase::Idle;
        self.auth = None;
        Ok(Flow::Continue)
    }

    /// The greeting and the command loop.
    async fn serve(mut self) {
        let greeting = Reply::plain(220, vec![format!("{} ESMTP Tern", self.ctx.hostname).into()]);
        self.conn.queue(&greeting);
        let stop = loop {
            match self.step().await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => break Stop::Closed,
                Err(stop) => break stop,
            }
        };
        let farewell = match &stop {
            Stop::Shutdown => Some(canned::shutting_down()),
            Stop::IdleTimeout => Some(Reply::new(421, Status(4, 4, 2), "Error: timeout exceeded")),
            Stop::SessionTimeout => {
                Some(Reply::new(421, Status(4, 4, 2), "Error: session time limit exceeded"))
            }
            Stop::Eof | Stop::Closed | Stop::Io(_) => None,
        };
        if let Some(reply) = farewell {
            self.conn.queue(&reply);
        }
        if !matches!(stop, Stop::Io(_) | Stop::Eof) {
            // Bounded: a client that stopped reading must not hold the task forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.close()).await;
        }
        match &stop {
            Stop::Io(e) => debug!(error = %e, "session ended by a socket error"),
            other => debug!(stop = ?other, "session ended"),
        }
    }

    /// Waits `delay` before going on (a tarpit or AUTH delay); shutdown cuts it short.
    async fn pause(&self, delay: Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = self.ctx.shutdown.cancelled() => Err(Stop::Shutdown),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }

    /// Reads and answers one command.
    async fn step(&mut self) -> Result<Flow, Stop> {
        if self.conn.pending_write() > crate::connection::MAX_PENDING_WRITE {
            self.flush().await?;
        }
        if !self.tarpit.is_zero() {
            let delay = std::mem::take(&mut self.tarpit);
            self.flush().await?;
            self.pause(delay).await?;
        }
        let input = self.read_line().await?;
        let reply = match input {
            Input::TooLong => Some(canned::line_too_long()),
            Input::Line(line) => match parse_command(&line) {
                Err(e) => {
                    debug!(error = %e, "bad command");
                    Some(e.reply())
                }
                Ok(command) => return self.dispatch(command).await,
            },
        };
        if let Some(reply) = reply {
            return Ok(self.answer(reply));
        }
        Ok(Flow::Continue)
    }

    async fn dispatch(&mut self, command: Command) -> Result<Flow, Stop> {
        if matches!(command, Command::Noop | Command::Rset | Command::Vrfy(_) | Command::Help) {
            self.junk_commands = self.junk_commands.saturating_add(1);
            if self.junk_commands > self.ctx.config.max_junk_commands {
                self.bad_commands = self.bad_commands.saturating_add(1);
            }
        }
        let reply = match command {
            Command::Ehlo(name) => self.ehlo(name),
            Command::Helo(name) => self.helo(name),
            Command::Mail(from) => self.mail(from).await?,
            Command::Rcpt(to) => {
                if let Some(reply) = self.overshoot() {
                    // Not an error the client earned: it pipelined before seeing the limit.
                    self.conn.queue(&reply);
                    return Ok(Flow::Continue);
                }
                self.rcpt(to).await?
            }
            Command::Data => return self.data().await,
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::Rset => {
                self.phase = Phase::Idle;
                Reply::new(250, Status(2, 0, 0), "Ok")
            }
            Command::Noop => Reply::new(250, Status(2, 0, 0), "Ok"),
            Command::Quit => {
                self.conn.queue(&Reply::new(221, Status(2, 0, 0), "Bye"));
                return Ok(Flow::Close);
            }
            Command::Vrfy(_) => Reply::new(
                252,
                Status(2, 0, 0),
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Command::Expn(_) => Reply::new(502, Status(5, 5, 1), "Error: EXPN not supported"),
            Command::Help => Reply::new(
                214,
                Status(2, 0, 0),
                "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
            ),
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial_response } => {
                return self.authenticate(mechanism, initial_response).await;
            }
            Command::NotImplemented(verb) => {
                Reply::new(502, Status(5, 5, 1), format!("Error: {verb} not implemented"))
            }
        };
        Ok(self.answer(reply))
    }

    /// Queues a reply to a command, counting errors; too many close the session, and in MTA
    /// mode each error past a few slows the client down (the tarpit).
    fn answer(&mut self, reply: Reply) -> Flow {
        let uncounted = std::mem::take(&mut self.uncounted);
        let is_error = reply.is_error() && !uncounted;
        let closing = reply.code == 421;
        self.conn.queue(&reply);
        if closing {
            return Flow::Close;
        }
        if is_error {
            self.bad_commands = self.bad_commands.saturating_add(1);
        }
        let over_junk = self.junk_commands > self.ctx.config.max_junk_commands;
        if (is_error || over_junk)
            && let Some(mta) = &self.ctx.mta
        {
            self.tarpit = mta.limits.tarpit.delay(self.bad_commands);
        }
        if self.bad_commands >= self.ctx.config.max_bad_commands {
            self.conn.queue(&Reply::new(421, Status(4, 7, 0), "Error: too many errors"));
            return Flow::Close;
        }
        Flow::Continue
    }

    /// When the current wait on the client must end: the idle timeout or the session deadline.
    fn wait_until(&self) -> Instant {
        let idle = Duration::from_secs(self.ctx.config.idle_timeout_secs);
        later(idle).min(self.deadline)
    }

    async fn read_line(&mut self) -> Result<Input, Stop> {
        let (until, max) = (self.wait_until(), self.ctx.config.max_line_bytes);
        let line = guarded(&self.ctx.shutdown, until, self.conn.read_line(max)).await;
        self.stop_on(line)?.ok_or(Stop::Eof)
    }

    /// Reads more input for a body (DATA/BDAT).
    async fn fill(&mut self) -> Result<(), Stop> {
        let until = self.wait_until();
        let more = guarded(&self.ctx.shutdown, until, self.conn.fill()).await;
        if self.stop_on(more)? { Ok(()) } else { Err(Stop::Eof) }
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        let until = self.wait_until();
        let flushed = guarded(&self.ctx.shutdown, until, self.conn.flush()).await;
        self.stop_on(flushed)
    }

    fn stop_on<T>(&self, result: Result<T, Interrupted>) -> Result<T, Stop> {
        result.map_err(|interrupted| match interrupted {
            Interrupted::Shutdown => Stop::Shutdown,
            Interrupted::Io(e) => Stop::Io(e),
            Interrupted::Deadline => self.timeout_kind(),
        })
    }

    fn timeout_kind(&self) -> Stop {
        if Instant::now() >= self.deadline { Stop::SessionTimeout } else { Stop::IdleTimeout }
    }
}

/// Why a guarded wait on the client ended early.
enum Interrupted {
    Shutdown,
    Deadline,
    Io(std::io::Error),
}

/// Awaits a socket operation unless shutdown or the deadline comes first.
async fn guarded<T>(
    shutdown: &CancellationToken,
    until: Instant,
    op: impl Future<Output = std::io::Result<T>>,
) -> Result<T, Interrupted> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Err(Interrupted::Shutdown),
        r = tokio::time::timeout_at(until, op) => match r {
            Err(_) => Err(Interrupted::Deadline),
            Ok(Err(e)) => Err(Interrupted::Io(e)),
            Ok(Ok(v)) => Ok(v),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::Chunks;

    #[test]
    fn chunk_sizes_never_wrap_into_fitting() {
        let two = Chunks { body: b"ab".to_vec() };
        let max = 26_214_400;
        // (bytes so far, chunk size, limit, admitted)
        let cases: &[(&Chunks, u64, usize, bool)] = &[
            (&Chunks::default(), 0, max, true),
            (&Chunks::default(), max as u64, max, true),
            (&Chunks::default(), max as u64 + 1, max, false),
            (&two, max as u64 - 2, max, true),
            (&two, max as u64 - 1, max, false),
            // 2 + (2^64 - 2) wraps to 0 in unchecked arithmetic.
            (&two, u64::MAX - 1, max, false),
            (&two, u64::MAX, max, false),
        ];
        for (i, (chunks, size, limit, want)) in cases.iter().enumerate() {
            assert_eq!(chunks.admits(*size, *limit), *want, "case {i}: size {size}");
        }
    }
}
