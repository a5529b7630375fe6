//! The POP3 session (RFC 1939 section 3), one task per connection: AUTHORIZATION until a
//! login succeeds and its maildrop is locked, then TRANSACTION, then UPDATE at QUIT, the only
//! place deletions happen. A session that ends any other way (the client hangs up, the
//! autologout timer, shutdown) deletes nothing.
//!
//! Login (`auth`) and the mailbox commands (`transaction`) live in their own files. Every wait
//! on the client is bounded by the idle timeout and shutdown; every error the client causes
//! is answered with a precise `-ERR` line, and too many of them close the session.

mod auth;
mod transaction;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_smtp::connection::{Connection, Input};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use crate::command::{self, Command};
use crate::maildrop::Maildrop;
use crate::server::{Context, MaildropLock};

/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a client that stopped reading, when the session closes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the session is in the dialogue.
enum State {
    /// Before a successful login; `user` is what USER named.
    Authorization { user: Option<String> },
    /// Logged in, with the maildrop locked.
    Transaction(Box<Transaction>),
}

/// A logged-in session's maildrop and its lock.
struct Transaction {
    login: String,
    maildrop: Maildrop,
    _lock: MaildropLock,
}

/// Why a session ends.
#[derive(Debug)]
enum Stop {
    /// The client closed the connection.
    Eof,
    /// QUIT, a failed TLS handshake, or too many errors.
    Closed,
    /// The server is shutting down.
    Shutdown,
    /// The autologout timer ran out.
    IdleTimeout,
    /// The socket failed.
    Io(std::io::Error),
}

/// Whether the session goes on after a command.
enum Flow {
    Continue,
    Close,
}

/// One POP3 session over any byte stream.
pub struct Session<S> {
    conn: Connection<S>,
    ctx: Arc<Context>,
    peer: SocketAddr,
    tls: bool,
    state: State,
    bad_commands: u32,
    /// What the session did, for its log line.
    retrieved: u64,
    deleted: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session for a client at `peer`.
    pub fn new(stream: S, peer: SocketAddr, ctx: Arc<Context>) -> Self {
        Session {
            conn: Connection::new(stream),
            ctx,
            peer,
            tls: false,
            state: State::Authorization { user: None },
            bad_commands: 0,
            retrieved: 0,
            deleted: 0,
        }
    }

    /// Greets the client (after the handshake on an implicit-TLS listener) and serves
    /// commands until the session ends.
    pub async fn run(mut self, implicit_tls: bool) {
        if implicit_tls && !self.handshake().await {
            return;
        }
        let greeting = format!("+OK {} POP3 Tern ready\r\n", self.ctx.hostname);
        self.conn.queue_bytes(greeting.as_bytes());
        let stop = loop {
            match self.step().await {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) => break Stop::Closed,
                Err(stop) => break stop,
            }
        };
        let farewell = match &stop {
            Stop::Shutdown => Some("-ERR [SYS/TEMP] server shutting down; nothing was deleted"),
            Stop::IdleTimeout => Some("-ERR autologout: idle too long; nothing was deleted"),
            Stop::Eof | Stop::Closed | Stop::Io(_) => None,
        };
        if let Some(line) = farewell {
            self.conn.queue_bytes(format!("{line}\r\n").as_bytes());
        }
        if !matches!(stop, Stop::Io(_) | Stop::Eof) {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.conn.close()).await;
        }
        if let Stop::Io(e) = &stop {
            debug!(error = %e, "POP3 session ended by a socket error");
        }
        let login = match &self.state {
            State::Transaction(t) => Some(t.login.as_str()),
            State::Authorization { .. } => None,
        };
        info!(
            login,
            tls = self.tls,
            retrieved = self.retrieved,
            deleted = self.deleted,
            end = ?stop,
            "POP3 session ended"
        );
    }

    /// Runs the TLS handshake; false when it failed (the connection is then useless).
    async fn handshake(&mut self) -> bool {
        let acceptor = self.ctx.tls.acceptor();
        self.tls = self.conn.start_tls_within(acceptor, HANDSHAKE_TIMEOUT).await;
        self.tls
    }

    /// Reads and answers one command.
    async fn step(&mut self) -> Result<Flow, Stop> {
        if self.conn.pending_write() > tern_smtp::connection::MAX_PENDING_WRITE {
            self.guarded(|conn| conn.flush()).await?;
        }
        let max = self.ctx.config.max_line_bytes;
        let input = self.guarded(|conn| conn.read_line(max)).await?.ok_or(Stop::Eof)?;
        let line = match input {
            Input::TooLong => {
                return Ok(self.error(&format!("command line too long (at most {max} bytes)")));
            }
            Input::Line(line) => line,
        };
        match command::parse(&line) {
            Ok(command) => self.dispatch(command).await,
            Err(e) => Ok(self.error(&e.to_string())),
        }
    }

    async fn dispatch(&mut self, command: Command) -> Result<Flow, Stop> {
        let logged_in = matches!(self.state, State::Transaction(_));
        match command {
            Command::Capa => {
                self.capabilities();
                Ok(Flow::Continue)
            }
            Command::Quit if logged_in => self.update().await,
            Command::Quit => {
                self.ok("bye");
                Ok(Flow::Close)
            }
            Command::Stls if !logged_in => self.stls().await,
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop
                if !logged_in =>
            {
                self.authorize(command).await
            }
            Command::User(_)
            | Command::Pass(_)
            | Command::Auth { .. }
            | Command::Apop
            | Command::Stls => {
                Ok(self.error(&format!("{} is not valid after login", command.keyword())))
            }
            command if logged_in => self.transact(command).await,
            command => Ok(self.error(&format!("{} is only valid after login", command.keyword()))),
        }
    }

    /// `CAPA` (RFC 2449): what this session may use now; USER and SASL only once
    /// credentials may be sent, STLS only before TLS.
    fn capabilities(&mut self) {
        let mut lines = vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"];
        let logged_in = matches!(self.state, State::Transaction(_));
        if !logged_in && self.credentials_allowed() {
            lines.extend(["USER", "SASL PLAIN"]);
        }
        if !logged_in && !self.tls {
            lines.push("STLS");
        }
        lines.push("IMPLEMENTATION Tern");
        self.ok("capability list follows");
        self.multiline(lines.iter().map(|line| line.as_bytes()));
    }

    /// `STLS` (RFC 2595): the session starts over under TLS; anything the client sent after
    /// the command is discarded, never executed.
    async fn stls(&mut self) -> Result<Flow, Stop> {
        if self.tls {
            return Ok(self.error("TLS is already active"));
        }
        self.ok("begin TLS negotiation");
        if !self.handshake().await {
            return Ok(Flow::Close);
        }
        self.state = State::Authorization { user: None };
        Ok(Flow::Continue)
    }

    /// Whether USER, PASS and AUTH are accepted now: over TLS, or on a loopback listener
    /// that allows plaintext logins (as SMTP AUTH).
    fn credentials_allowed(&self) -> bool {
        self.tls || self.ctx.config.allow_plaintext_auth
    }

    fn ok(&mut self, text: &str) {
        self.conn.queue_bytes(format!("+OK {text}\r\n").as_bytes());
    }

    /// Queues the lines of a multi-line response, dot-stuffed, and its terminator.
    fn multiline<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) {
        let mut out = Vec::new();
        for line in lines {
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        self.conn.queue_bytes(&out);
    }

    /// Queues `-ERR text`, counting it; too many errors close the session.
    fn error(&mut self, text: &str) -> Flow {
        self.conn.queue_bytes(format!("-ERR {text}\r\n").as_bytes());
        self.bad_commands = self.bad_commands.saturating_add(1);
        if self.bad_commands >= self.ctx.config.max_bad_commands {
            self.conn.queue_bytes(b"-ERR too many errors; closing\r\n");
            return Flow::Close;
        }
        Flow::Continue
    }

    /// Runs a socket operation unless shutdown or the autologout timer comes first.
    async fn guarded<'a, T, F>(
        &'a mut self,
        op: impl FnOnce(&'a mut Connection<S>) -> F,
    ) -> Result<T, Stop>
    where
        F: Future<Output = std::io::Result<T>> + 'a,
    {
        let idle = Duration::from_secs(self.ctx.config.idle_timeout_secs);
        let shutdown = self.ctx.shutdown.clone();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Err(Stop::Shutdown),
            r = tokio::time::timeout(idle, op(&mut self.conn)) => match r {
                Err(_) => Err(Stop::IdleTimeout),
                Ok(Err(e)) => Err(Stop::Io(e)),
                Ok(Ok(v)) => Ok(v),
            },
        }
    }

    /// Waits `delay` (the failed-login delay); shutdown cuts it short.
    async fn pause(&self, delay: Duration) -> Result<(), Stop> {
        tokio::select! {
            _ = self.ctx.shutdown.cancelled() => Err(Stop::Shutdown),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }
}
