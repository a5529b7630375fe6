//! The benchmark's SMTP client: one connection past its greeting, sending prebuilt commands
//! and the prepared message, and reading each reply under the reply timeout. Every way a step
//! can fail becomes a [`Failure`] counted by stage and kind; none ends the run.

use std::fmt;
use std::time::Duration;

use tern_protocol::client_reply::{ClientReply, MAX_REPLY_LINE_BYTES, ReplyError, ReplyParser};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::Plan;

/// The commands of one transaction, built once per run.
#[derive(Debug, Clone)]
pub(crate) struct Commands {
    mail: Vec<u8>,
    rcpt: Vec<u8>,
    /// MAIL, RCPT and DATA in one buffer, for PIPELINING.
    pipelined: Vec<u8>,
}

/// The DATA command.
const DATA: &[u8] = b"DATA\r\n";

impl Commands {
    pub(crate) fn new(from: &str, to: &str) -> Commands {
        let mail = format!("MAIL FROM:<{from}>\r\n").into_bytes();
        let rcpt = format!("RCPT TO:<{to}>\r\n").into_bytes();
        let pipelined = [mail.as_slice(), rcpt.as_slice(), DATA].concat();
        Commands { mail, rcpt, pipelined }
    }
}

/// Where in the SMTP dialogue something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Stage {
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
pub(crate) enum FailureKind {
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
pub(crate) type FailureKey = (Stage, FailureKind);

/// One failed step, with the server's text or the error message as detail.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// Where in the dialogue.
    pub(crate) stage: Stage,
    /// What went wrong.
    pub(crate) kind: FailureKind,
    /// The server's reply text (enhanced status first) or the error message.
    pub(crate) detail: String,
}

impl Failure {
    fn new(stage: Stage, kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure { stage, kind, detail: detail.into() }
    }

    /// A failure made of an unexpected reply.
    fn reply(stage: Stage, reply: &ClientReply) -> Failure {
        Failure::new(stage, FailureKind::Reply(reply.code), reply_detail(reply))
    }

    pub(crate) fn key(&self) -> FailureKey {
        (self.stage, self.kind)
    }

    /// 421 means the server is closing the connection; do not try RSET on it.
    pub(crate) fn closes_connection(&self) -> bool {
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
pub(crate) enum Transaction {
    /// The final reply after the dot was 2xx.
    Accepted,
    /// Some reply was not the expected one; every such reply is listed.
    Rejected(Vec<Failure>),
}

/// One SMTP connection past its greeting.
pub(crate) struct SmtpClient {
    stream: BufReader<TcpStream>,
    /// Scratch buffer for reply lines.
    line: Vec<u8>,
    reply_timeout: Duration,
    /// Whether the EHLO reply listed PIPELINING.
    pub(crate) pipelining_advertised: bool,
}

impl SmtpClient {
    /// Connects, reads the banner and greets with EHLO, or HELO if EHLO is refused.
    pub(crate) async fn open(plan: &Plan) -> Result<SmtpClient, Failure> {
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
            client.pipelining_advertised = advertises(&reply, "PIPELINING");
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
    pub(crate) async fn transaction(
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
    pub(crate) async fn reset(&mut self) -> Result<(), Failure> {
        let reply = self.command(b"RSET\r\n", Stage::Rset).await?;
        if reply.is_positive() { Ok(()) } else { Err(Failure::reply(Stage::Rset, &reply)) }
    }

    /// Says QUIT and waits briefly for the answer; errors no longer matter here.
    pub(crate) async fn quit(mut self) {
        if self.send(b"QUIT\r\n", Stage::Quit).await.is_ok() {
            let _ = self.reply(Stage::Quit).await;
        }
    }

    async fn command(&mut self, command: &[u8], stage: Stage) -> Result<ClientReply, Failure> {
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

    async fn reply(&mut self, stage: Stage) -> Result<ClientReply, Failure> {
        let read = read_reply(&mut self.stream, &mut self.line);
        match tokio::time::timeout(self.reply_timeout, read).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(Failure::new(stage, e.kind(), e.to_string())),
            Err(_) => Err(Failure::new(stage, FailureKind::Timeout, "waiting for reply")),
        }
    }
}

/// Reads one complete, possibly multi-line, reply; the parser bounds its lines and their count.
async fn read_reply<R>(reader: &mut R, line: &mut Vec<u8>) -> Result<ClientReply, ReadError>
where
    R: AsyncBufRead + Unpin,
{
    // The longest line the parser takes, plus its CRLF.
    const LIMIT: u64 = MAX_REPLY_LINE_BYTES as u64 + 2;
    let mut parser = ReplyParser::default();
    loop {
        line.clear();
        let read =
            (&mut *reader).take(LIMIT).read_until(b'\n', line).await.map_err(ReadError::Io)?;
        let Some(text) = line.strip_suffix(b"\n") else {
            return Err(if read as u64 == LIMIT {
                ReadError::Malformed(ReplyError::LineTooLong)
            } else {
                ReadError::Closed
            });
        };
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if let Some(reply) = parser.push_line(text).map_err(ReadError::Malformed)? {
            return Ok(reply);
        }
    }
}

/// Whether an EHLO reply lists this extension keyword (case-insensitive); the first line is
/// the server's name, not a keyword.
fn advertises(reply: &ClientReply, keyword: &str) -> bool {
    reply.lines.iter().skip(1).any(|line| {
        line.split_ascii_whitespace().next().is_some_and(|word| word.eq_ignore_ascii_case(keyword))
    })
}

/// A reply as the report shows it: the enhanced status, then the lines joined by ` / `.
fn reply_detail(reply: &ClientReply) -> String {
    let text = reply.lines.join(" / ");
    match &reply.status {
        Some(status) if text.is_empty() => status.clone(),
        Some(status) => format!("{status} {text}"),
        None => text,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::client_reply::parse_reply;

    #[test]
    fn ehlo_keywords_and_failure_details() {
        let ehlo = parse_reply(b"250-mx\r\n250-pipelining\r\n250 SIZE 10\r\n").unwrap();
        assert!(advertises(&ehlo, "PIPELINING"));
        assert!(!advertises(&ehlo, "mx"), "the greeting line is not a keyword");
        let detail = |text: &str| reply_detail(&parse_reply(text.as_bytes()).unwrap());
        assert_eq!(detail("550 5.1.1 no such user\r\n"), "5.1.1 no such user");
        assert_eq!(detail("554 no\r\n"), "no");
        assert_eq!(detail("451-4.3.0 a\r\n451 4.3.0 b\r\n"), "4.3.0 a / b");
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

        let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE_BYTES + 1));
        let mut input = long.as_bytes();
        let mut reader = BufReader::new(&mut input);
        assert!(matches!(
            read_reply(&mut reader, &mut line).await,
            Err(ReadError::Malformed(ReplyError::LineTooLong))
        ));
    }
}
