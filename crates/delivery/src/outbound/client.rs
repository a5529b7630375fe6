//! One SMTP client connection to one host (RFC 5321): connect, greeting, EHLO (HELO as a
//! fallback), STARTTLS, AUTH, then transactions — `MAIL`/`RCPT`/`DATA`, pipelined when the
//! peer allows (RFC 2920) — `RSET` between them and `QUIT` at the end. It reports one outcome
//! per recipient; which host to try and what to do when a connection fails is `job.rs`'s.
//!
//! Nothing the peer sends can panic this code: a reply that does not parse, or that comes
//! too late, ends the connection with a [`ClientError`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tern_queue::transport::{Failure, JobMessage, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::client::TlsStream;
use tracing::{debug, warn};

use super::TlsPolicy;
use super::command::{dot_stuff, mail_from, rcpt_to};
use super::ehlo::Capabilities;
use super::outcome::{
    STATUS_PROTOCOL_ERROR, local_failure, reply_failure, reply_outcome, temporary,
};
use super::tls::{HandshakeError, TlsSetup, Verification};
use tern_protocol::client_reply::{ClientReply, MAX_REPLY_LINE_BYTES, ReplyError, ReplyParser};

/// How long `QUIT` waits for its reply before the connection is just closed.
pub const QUIT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read from the socket at a time.
const READ_CHUNK_BYTES: usize = 8192;

/// One address of one host: where to connect, and the name it goes by (for `Remote-MTA`, the
/// TLS server name and the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name as found in DNS (or the relay host as configured).
    pub name: String,
    /// The address and port to connect to.
    pub addr: SocketAddr,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.name, self.addr)
    }
}

/// Username and password for `AUTH` at a smarthost.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// The SASL authentication identity.
    pub username: &'a str,
    /// The password.
    pub password: &'a str,
}

/// Time limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect plus any TLS handshake.
    pub connect: Duration,
    /// Each reply to a command (and the greeting).
    pub command: Duration,
    /// Sending the data and the reply after its final dot.
    pub data: Duration,
}

/// How to run a connection: what to say, when TLS, whether to authenticate.
pub struct ClientSettings<'a> {
    /// The name given with EHLO/HELO.
    pub helo_name: &'a str,
    /// When to use STARTTLS and whether its certificate must verify.
    pub tls_policy: TlsPolicy,
    /// Trusted roots and the verifier.
    pub tls: &'a TlsSetup,
    /// TLS from the first byte (port 465) instead of STARTTLS.
    pub implicit_tls: bool,
    /// Authenticate with these after TLS (smarthost only).
    pub credentials: Option<Credentials<'a>>,
    /// Time limits.
    pub timeouts: Timeouts,
}

impl ClientSettings<'_> {
    fn verification(&self) -> Verification {
        match self.tls_policy {
            TlsPolicy::Require => Verification::Strict,
            TlsPolicy::Opportunistic | TlsPolicy::Off => Verification::Lenient,
        }
    }

    /// STARTTLS is attempted when offered unless the policy is `off`; credentials override
    /// `off`, since they are never sent in clear.
    fn wants_starttls(&self) -> bool {
        self.tls_policy != TlsPolicy::Off || self.credentials.is_some()
    }
}

/// Why a connection could not be used (any more).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed (refused, unreachable).
    #[error("connection failed: {0}")]
    Connect(io::Error),
    /// TCP connect or the TLS handshake took longer than the connect timeout.
    #[error("connection timed out after {}s", .0.as_secs())]
    ConnectTimeout(Duration),
    /// A reply did not arrive (or data could not be sent) in time.
    #[error("no {awaiting} within {}s", .after.as_secs())]
    Timeout {
        /// What was being waited for, e.g. `reply to MAIL FROM`.
        awaiting: &'static str,
        /// The limit that passed.
        after: Duration,
    },
    /// The peer closed the connection.
    #[error("connection closed by the peer while waiting for {awaiting}")]
    Closed {
        /// What was being waited for.
        awaiting: &'static str,
    },
    /// Reading or writing failed.
    #[error("connection lost: {0}")]
    Io(io::Error),
    /// The peer sent something that is not an SMTP reply.
    #[error("protocol error: {0}")]
    Protocol(#[from] ReplyError),
    /// The greeting, EHLO/HELO, STARTTLS or RSET got a negative reply.
    #[error("{stage} rejected: {reply}")]
    Rejected {
        /// Which step, e.g. `greeting`.
        stage: &'static str,
        /// The reply.
        reply: ClientReply,
    },
    /// Policy `require`, and the peer does not offer STARTTLS.
    #[error("STARTTLS is required but not offered")]
    StartTlsNotOffered,
    /// Policy `require`, and the certificate did not verify.
    #[error("TLS certificate did not verify: {0}")]
    Certificate(String),
    /// The TLS handshake failed.
    #[error("{0}")]
    Handshake(String),
    /// Credentials are configured but the connection is not encrypted.
    #[error("credentials configured but STARTTLS not offered; refusing to send them in clear")]
    AuthWithoutTls,
    /// The peer offers neither AUTH PLAIN nor AUTH LOGIN.
    #[error("no supported AUTH mechanism (PLAIN, LOGIN) offered; offered: {0}")]
    NoAuthMechanism(String),
    /// The peer rejected the credentials.
    #[error("authentication failed: {0}")]
    AuthFailed(ClientReply),
}

impl ClientError {
    /// The failure to report for the recipients this error stranded at `target`.
    pub fn failure(&self, target: &Target) -> Failure {
        let remote = |status: &str| Failure {
            status: status.into(),
            remote_mta: Some(target.name.clone()),
            diagnostic: format!("{target}: {self}"),
        };
        match self {
            ClientError::Connect(_) | ClientError::ConnectTimeout(_) => {
                local_failure("4.4.1", format!("{target}: {self}"))
            }
            ClientError::Timeout { .. } | ClientError::Closed { .. } | ClientError::Io(_) => {
                local_failure("4.4.2", format!("{target}: {self}"))
            }
            ClientError::Protocol(_) => remote(STATUS_PROTOCOL_ERROR),
            ClientError::Rejected { reply, .. } | ClientError::AuthFailed(reply) => {
                reply_failure(reply, &target.name)
            }
            ClientError::StartTlsNotOffered => remote("4.7.4"),
            ClientError::Certificate(_) | ClientError::Handshake(_) => remote("4.7.5"),
            ClientError::AuthWithoutTls | ClientError::NoAuthMechanism(_) => remote("4.7.0"),
        }
    }
}

impl From<HandshakeError> for ClientError {
    fn from(error: HandshakeError) -> Self {
        match error {
            HandshakeError::Certificate(reason) => ClientError::Certificate(reason),
            failed @ HandshakeError::Failed(_) => ClientError::Handshake(failed.to_string()),
        }
    }
}

/// Opens a session with `target`: greeting, EHLO, STARTTLS and AUTH as `settings` say.
/// Under `opportunistic`, a failed TLS handshake is retried once without STARTTLS, as other
/// MTAs do.
pub async fn connect(
    target: &Target,
    settings: &ClientSettings<'_>,
) -> Result<Session, ClientError> {
    let starttls = settings.wants_starttls();
    let result = establish(target, settings, starttls).await;
    match result {
        Err(ClientError::Handshake(reason))
            if starttls
                && !settings.implicit_tls
                && settings.credentials.is_none()
                && settings.tls_policy == TlsPolicy::Opportunistic =>
        {
            warn!(%reason, "TLS handshake failed; reconnecting without STARTTLS (opportunistic)");
            establish(target, settings, false).await
        }
        result => result,
    }
}

async fn establish(
    target: &Target,
    settings: &ClientSettings<'_>,
    starttls: bool,
) -> Result<Session, ClientError> {
    let timeouts = settings.timeouts;
    let tcp = timeout(timeouts.connect, TcpStream::connect(target.addr))
        .await
        .map_err(|_| ClientError::ConnectTimeout(timeouts.connect))?
        .map_err(ClientError::Connect)?;
    let stream = if settings.implicit_tls {
        Stream::Tls(Box::new(handshake(tcp, target, settings).await?))
    } else {
        Stream::Plain(tcp)
    };
    let mut conn = Connection::new(stream);
    let greeting = conn.read_reply(timeouts.command, "greeting").await?;
    if !greeting.is_positive() {
        return Err(ClientError::Rejected { stage: "greeting", reply: greeting });
    }
    let mut caps = greet(&mut conn, settings).await?;
    if starttls && !conn.is_tls() {
        if caps.starttls {
            let upgraded;
            (conn, upgraded) = start_tls(conn, target, settings).await?;
            if upgraded {
                caps = ehlo(&mut conn, settings).await?;
            }
        } else if settings.tls_policy == TlsPolicy::Require {
            return Err(ClientError::StartTlsNotOffered);
        }
    }
    if let Some(credentials) = settings.credentials {
        if !conn.is_tls() {
            return Err(ClientError::AuthWithoutTls);
        }
        authenticate(&mut conn, &caps, credentials, timeouts.command).await?;
    }
    debug!(tls = conn.is_tls(), ?caps, "session established");
    Ok(Session { conn, target: target.clone(), caps, timeouts })
}

/// EHLO, or HELO when the peer rejects EHLO permanently (a 4xx is a reason to try elsewhere).
async fn greet(
    conn: &mut Connection,
    settings: &ClientSettings<'_>,
) -> Result<Capabilities, ClientError> {
    let wait = settings.timeouts.command;
    let reply =
        conn.command(&format!("EHLO {}\r\n", settings.helo_name), wait, "reply to EHLO").await?;
    if reply.is_positive() {
        return Ok(Capabilities::from_ehlo(&reply));
    }
    if reply.class() != 5 {
        return Err(ClientError::Rejected { stage: "EHLO", reply });
    }
    let reply =
        conn.command(&format!("HELO {}\r\n", settings.helo_name), wait, "reply to HELO").await?;
    if !reply.is_positive() {
        return Err(ClientError::Rejected { stage: "HELO", reply });
    }
    Ok(Capabilities::default())
}

/// EHLO after STARTTLS: no HELO fallback, the peer spoke ESMTP a moment ago.
async fn ehlo(
    conn: &mut Connection,
    settings: &ClientSettings<'_>,
) -> Result<Capabilities, ClientError> {
    let line = format!("EHLO {}\r\n", settings.helo_name);
    let reply = conn.command(&line, settings.timeouts.command, "reply to EHLO").await?;
    if !reply.is_positive() {
        return Err(ClientError::Rejected { stage: "EHLO", reply });
    }
    Ok(Capabilities::from_ehlo(&reply))
}

/// STARTTLS and the handshake: the encrypted connection and `true`, or the same connection
/// and `false` when the peer refused STARTTLS and the policy lets the session go on in clear.
async fn start_tls(
    mut conn: Connection,
    target: &Target,
    settings: &ClientSettings<'_>,
) -> Result<(Connection, bool), ClientError> {
    let reply =
        conn.command("STARTTLS\r\n", settings.timeouts.command, "reply to STARTTLS").await?;
    if reply.code != 220 {
        if settings.tls_policy == TlsPolicy::Require || settings.credentials.is_some() {
            return Err(ClientError::Rejected { stage: "STARTTLS", reply });
        }
        warn!(%reply, "STARTTLS refused; continuing without TLS (opportunistic)");
        return Ok((conn, false));
    }
    let (tcp, pipelined) = conn.into_plain()?;
    if pipelined > 0 {
        // RFC 3207 §5: anything sent before the handshake is not to be trusted.
        warn!(bytes = pipelined, "discarding data the peer sent before the TLS handshake");
    }
    let stream = handshake(tcp, target, settings).await?;
    Ok((Connection::new(Stream::Tls(Box::new(stream))), true))
}

async fn handshake(
    tcp: TcpStream,
    target: &Target,
    settings: &ClientSettings<'_>,
) -> Result<TlsStream<TcpStream>, ClientError> {
    let wait = settings.timeouts.connect;
    let handshake =
        timeout(wait, settings.tls.handshake(tcp, &target.name, settings.verification()))
            .await
            .map_err(|_| {
            ClientError::Handshake(format!("TLS handshake timed out after {}s", wait.as_secs()))
        })??;
    if let Some(reason) = handshake.unverified {
        warn!(%reason, "TLS certificate not verified; continuing unauthenticated (opportunistic)");
    }
    Ok(handshake.stream)
}

/// AUTH PLAIN (initial response) or, when PLAIN is not offered, AUTH LOGIN.
async fn authenticate(
    conn: &mut Connection,
    caps: &Capabilities,
    credentials: Credentials<'_>,
    wait: Duration,
) -> Result<(), ClientError> {
    let awaiting = "reply to AUTH";
    let reply = if caps.offers_auth("PLAIN") {
        let token = BASE64.encode(format!("\0{}\0{}", credentials.username, credentials.password));
        let reply = conn.command(&format!("AUTH PLAIN {token}\r\n"), wait, awaiting).await?;
        if reply.code == 334 {
            // A server that does not take an initial response asks for it.
            conn.command(&format!("{token}\r\n"), wait, awaiting).await?
        } else {
            reply
        }
    } else if caps.offers_auth("LOGIN") {
        let mut reply = conn.command("AUTH LOGIN\r\n", wait, awaiting).await?;
        for secret in [credentials.username, credentials.password] {
            if reply.code != 334 {
                break;
            }
            reply = conn.command(&format!("{}\r\n", BASE64.encode(secret)), wait, awaiting).await?;
        }
        reply
    } else {
        return Err(ClientError::NoAuthMechanism(caps.auth.join(" ")));
    };
    if reply.is_positive() {
        debug!("authenticated");
        Ok(())
    } else {
        Err(ClientError::AuthFailed(reply))
    }
}

/// What sending one message produced.
#[derive(Debug)]
pub struct MessageReport {
    /// One outcome per recipient of the message.
    pub outcomes: Vec<(i64, Outcome)>,
    /// Set when the connection is no longer usable; its failure is already in `outcomes`
    /// for the recipients it left without an answer.
    pub broken: Option<Failure>,
}

/// An open, greeted (and maybe encrypted and authenticated) connection.
pub struct Session {
    conn: Connection,
    target: Target,
    caps: Capabilities,
    timeouts: Timeouts,
}

impl Session {
    /// The failure to report for `error` on this session.
    pub fn failure(&self, error: &ClientError) -> Failure {
        error.failure(&self.target)
    }

    /// `RSET` between two messages.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        let reply = self.conn.command("RSET\r\n", self.timeouts.command, "reply to RSET").await?;
        if !reply.is_positive() {
            return Err(ClientError::Rejected { stage: "RSET", reply });
        }
        Ok(())
    }

    /// Asks whether `rcpt` would be taken, without sending anything: `MAIL FROM:<>` (with
    /// `SMTPUTF8` when `smtputf8`), `RCPT TO`, then `RSET`. Returns the reply to `RCPT`, or
    /// `None` when the address needs SMTPUTF8 and the peer does not offer it; a refused `MAIL`
    /// is an error (it says nothing of the recipient).
    pub async fn probe(
        &mut self,
        rcpt: &str,
        smtputf8: bool,
    ) -> Result<Option<ClientReply>, ClientError> {
        let wait = self.timeouts.command;
        if smtputf8 && !self.caps.smtputf8 {
            return Ok(None);
        }
        let mail = if smtputf8 { "MAIL FROM:<> SMTPUTF8\r\n" } else { "MAIL FROM:<>\r\n" };
        let reply = self.conn.command(mail, wait, "reply to MAIL FROM").await?;
        if !reply.is_positive() {
            return Err(ClientError::Rejected { stage: "MAIL FROM", reply });
        }
        let line = format!("RCPT TO:<{rcpt}>\r\n");
        let answer = self.conn.command(&line, wait, "reply to RCPT TO").await?;
        let _ = self.reset().await;
        Ok(Some(answer))
    }

    /// `QUIT`, waiting briefly for its reply; the connection is closed either way.
    pub async fn quit(mut self) {
        if self.conn.send(b"QUIT\r\n", QUIT_TIMEOUT).await.is_ok() {
            let _ = self.conn.read_reply(QUIT_TIMEOUT, "reply to QUIT").await;
        }
        self.conn.shutdown().await;
    }

    /// Sends one message and reports every recipient's outcome.
    pub async fn send(&mut self, msg: &JobMessage) -> MessageReport {
        if msg.recipients.is_empty() {
            return MessageReport { outcomes: Vec::new(), broken: None };
        }
        let mut outcomes: Vec<Option<Outcome>> = vec![None; msg.recipients.len()];
        let broken = match self.refusal(msg) {
            Some(outcome) => {
                outcomes.fill(Some(outcome));
                None
            }
            None => self.transaction(msg, &mut outcomes).await.err(),
        };
        let broken = broken.map(|error| self.failure(&error));
        let outcomes = msg
            .recipients
            .iter()
            .zip(outcomes)
            .map(|(rcpt, outcome)| {
                let outcome = outcome.unwrap_or_else(|| match &broken {
                    Some(failure) => temporary(failure.clone()),
                    // Unreachable by construction; reported rather than panicking.
                    None => temporary(local_failure(STATUS_PROTOCOL_ERROR, "no outcome recorded")),
                });
                log_outcome(msg, &rcpt.address, &outcome);
                (rcpt.entry, outcome)
            })
            .collect();
        MessageReport { outcomes, broken }
    }

    /// Outcomes decided without asking the peer: what its EHLO already ruled out.
    fn refusal(&self, msg: &JobMessage) -> Option<Outcome> {
        let host = &self.target.name;
        let permanent = |status: &str, diagnostic: String| {
            Some(Outcome::Permanent(Failure {
                status: status.into(),
                remote_mta: Some(host.clone()),
                diagnostic,
            }))
        };
        if let Some(limit) = self.caps.max_size()
            && msg.data.len() as u64 > limit
        {
            let len = msg.data.len();
            return permanent(
                "5.3.4",
                format!("message of {len} bytes exceeds the SIZE limit of {limit} bytes of {host}"),
            );
        }
        if msg.smtputf8 && !self.caps.smtputf8 {
            return permanent(
                "5.6.7",
                format!("{host} does not support SMTPUTF8, which the message needs"),
            );
        }
        if msg.eight_bit && !self.caps.eight_bit_mime {
            // Like Postfix and Exim, send 8-bit data to a peer without 8BITMIME rather than
            // bounce it or rewrite the MIME: practically every server today takes it.
            warn!(queue_id = %msg.id, "peer lacks 8BITMIME; sending 8-bit data anyway");
        }
        None
    }

    /// MAIL, RCPT and DATA. Fills `outcomes` as replies come; an error means the connection
    /// broke, and recipients still `None` are the ones it stranded.
    async fn transaction(
        &mut self,
        msg: &JobMessage,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), ClientError> {
        let wait = self.timeouts.command;
        let mail = mail_from(msg, &self.caps);
        let rcpts: Vec<String> = msg.recipients.iter().map(|r| rcpt_to(r, &self.caps)).collect();
        let data_reply = if self.caps.pipelining {
            // RFC 2920: MAIL, every RCPT and DATA in one write, then the replies in order.
            let mut batch = mail;
            batch.extend(rcpts.iter().map(String::as_str));
            batch.push_str("DATA\r\n");
            self.conn.send(batch.as_bytes(), wait).await?;
            let mail_reply = self.conn.read_reply(wait, "reply to MAIL FROM").await?;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for _ in &rcpts {
                rcpt_replies.push(self.conn.read_reply(wait, "reply to RCPT TO").await?);
            }
            let data_reply = self.conn.read_reply(wait, "reply to DATA").await?;
            if !mail_reply.is_positive() {
                outcomes.fill(Some(reply_outcome(&mail_reply, &self.target.name)));
                return self.abandon_data(&data_reply).await;
            }
            for (outcome, reply) in outcomes.iter_mut().zip(&rcpt_replies) {
                *outcome = self.rcpt_outcome(reply);
            }
            data_reply
        } else {
            let mail_reply = self.conn.command(&mail, wait, "reply to MAIL FROM").await?;
            if !mail_reply.is_positive() {
                outcomes.fill(Some(reply_outcome(&mail_reply, &self.target.name)));
                return Ok(());
            }
            for (outcome, rcpt) in outcomes.iter_mut().zip(&rcpts) {
                let reply = self.conn.command(rcpt, wait, "reply to RCPT TO").await?;
                *outcome = self.rcpt_outcome(&reply);
            }
            if outcomes.iter().all(Option::is_some) {
                return Ok(());
            }
            self.conn.command("DATA\r\n", wait, "reply to DATA").await?
        };
        if outcomes.iter().all(Option::is_some) {
            // No recipient was accepted; a pipelined DATA should have been refused.
            return self.abandon_data(&data_reply).await;
        }
        let accepted = outcomes.iter_mut().filter(|o| o.is_none());
        if data_reply.code != 354 {
            let outcome = reply_outcome(&data_reply, &self.target.name);
            accepted.for_each(|o| *o = Some(outcome.clone()));
            return Ok(());
        }
        self.conn.send(&dot_stuff(&msg.data), self.timeouts.data).await?;
        let reply = self.conn.read_reply(self.timeouts.data, "reply to the end of data").await?;
        let outcome = if reply.is_positive() {
            Outcome::Delivered {
                remote_mta: self.target.name.clone(),
                reply: reply.to_string(),
                peer_dsn: self.caps.dsn,
            }
        } else {
            reply_outcome(&reply, &self.target.name)
        };
        accepted.for_each(|o| *o = Some(outcome.clone()));
        Ok(())
    }

    /// `None` (not yet decided) for an accepted recipient, its outcome otherwise.
    fn rcpt_outcome(&self, reply: &ClientReply) -> Option<Outcome> {
        (!reply.is_positive()).then(|| reply_outcome(reply, &self.target.name))
    }

    /// A DATA that should not have been accepted was: end it with an empty body.
    async fn abandon_data(&mut self, data_reply: &ClientReply) -> Result<(), ClientError> {
        if data_reply.code == 354 {
            self.conn.send(b".\r\n", self.timeouts.command).await?;
            self.conn.read_reply(self.timeouts.data, "reply to the end of data").await?;
        }
        Ok(())
    }
}

/// The session's view of each recipient, at debug level: the scheduler logs the one line
/// per recipient and attempt that operators read (with the attempt count and what happens
/// next).
fn log_outcome(msg: &JobMessage, recipient: &str, outcome: &Outcome) {
    match outcome {
        Outcome::Delivered { remote_mta, reply, .. } => {
            debug!(queue_id = %msg.id, %recipient, %remote_mta, %reply, "accepted by the peer");
        }
        Outcome::Temporary(f) | Outcome::Permanent(f) => {
            let (status, diagnostic) = (&f.status, &f.diagnostic);
            let permanent = matches!(outcome, Outcome::Permanent(_));
            debug!(queue_id = %msg.id, %recipient, %status, %diagnostic, permanent, "refused by the peer");
        }
    }
}

/// The socket, before or after TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Framing over the stream: whole replies in, whole commands out, each under a deadline.
struct Connection {
    stream: Stream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
    parser: ReplyParser,
}

impl Connection {
    fn new(stream: Stream) -> Self {
        Connection {
            stream,
            buf: Vec::with_capacity(READ_CHUNK_BYTES),
            parser: ReplyParser::default(),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The plain TCP stream for a TLS handshake, and how many unread bytes were dropped.
    fn into_plain(self) -> Result<(TcpStream, usize), ClientError> {
        match self.stream {
            Stream::Plain(tcp) => Ok((tcp, self.buf.len())),
            Stream::Tls(_) => {
                Err(ClientError::Handshake("STARTTLS on an encrypted connection".into()))
            }
        }
    }

    async fn command(
        &mut self,
        line: &str,
        wait: Duration,
        awaiting: &'static str,
    ) -> Result<ClientReply, ClientError> {
        self.send(line.as_bytes(), wait).await?;
        self.read_reply(wait, awaiting).await
    }

    async fn send(&mut self, bytes: &[u8], wait: Duration) -> Result<(), ClientError> {
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => s.write_all(bytes).await,
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
            }
        };
        timeout(wait, write)
            .await
            .map_err(|_| ClientError::Timeout {
                awaiting: "the peer to take our data",
                after: wait,
            })?
            .map_err(ClientError::Io)
    }

    async fn read_reply(
        &mut self,
        wait: Duration,
        awaiting: &'static str,
    ) -> Result<ClientReply, ClientError> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(line) = self.take_line()? {
                if let Some(reply) = self.parser.push_line(&line)? {
                    return Ok(reply);
                }
            }
            let mut chunk = [0u8; READ_CHUNK_BYTES];
            let read = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut chunk).await,
                    Stream::Tls(s) => s.read(&mut chunk).await,
                }
            };
            let n = timeout_at(deadline, read)
                .await
                .map_err(|_| ClientError::Timeout { awaiting, after: wait })?
                .map_err(ClientError::Io)?;
            if n == 0 {
                return Err(ClientError::Closed { awaiting });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next complete line (without CRLF) from the buffer.
    fn take_line(&mut self) -> Result<Option<Vec<u8>>, ReplyError> {
        let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > MAX_REPLY_LINE_BYTES + 1 {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }

    async fn shutdown(&mut self) {
        let _ = timeout(QUIT_TIMEOUT, async {
            match &mut self.stream {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
            }
        })
        .await;
    }
}
