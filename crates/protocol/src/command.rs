//! Parsing one command line into a [`Command`].
//!
//! The grammar work is done by `smtp-proto`; this module adds what a server must check on top:
//! stray control bytes, parameters that Tern did not advertise, DSN parameter rules
//! (RFC 3461), the address literals smtp-proto refuses, and the mapping of every failure to the
//! precise reply it deserves.

use std::borrow::Cow;

use smtp_proto::{Error as ProtoError, Request};

use crate::reply::{Reply, Status};

/// A parsed client command, owning its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO domain`
    Helo(String),
    /// `EHLO domain`
    Ehlo(String),
    /// `MAIL FROM:<path> [params]`
    Mail(MailFrom),
    /// `RCPT TO:<path> [params]`
    Rcpt(RcptTo),
    /// `DATA`
    Data,
    /// `BDAT size [LAST]` (RFC 3030); the chunk bytes follow the line.
    Bdat {
        /// Chunk size in bytes.
        size: u64,
        /// True for the final chunk.
        last: bool,
    },
    /// `RSET`
    Rset,
    /// `NOOP [string]`
    Noop,
    /// `QUIT`
    Quit,
    /// `VRFY string`
    Vrfy(String),
    /// `EXPN string`
    Expn(String),
    /// `HELP [topic]`
    Help,
    /// `STARTTLS`
    StartTls,
    /// `AUTH mechanism [initial-response]`
    Auth {
        /// The mechanism name as smtp-proto's bit flag.
        mechanism: u64,
        /// The initial response, possibly empty.
        initial_response: String,
    },
    /// A command Tern knows but does not offer (ETRN, ATRN, BURL, LHLO).
    NotImplemented(&'static str),
}

/// How the message body is declared at `MAIL FROM` (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Body {
    /// No BODY parameter.
    #[default]
    Unspecified,
    /// `BODY=7BIT`
    SevenBit,
    /// `BODY=8BITMIME`
    EightBitMime,
}

/// DSN `RET` (RFC 3461 section 4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// Return the full message in a bounce.
    Full,
    /// Return headers only.
    Hdrs,
}

/// `MAIL FROM` with the parameters Tern supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailFrom {
    /// The reverse path; empty for the null sender `<>`.
    pub address: String,
    /// Declared `SIZE=` in bytes, if any.
    pub size: Option<u64>,
    /// Declared `BODY=`.
    pub body: Body,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// DSN `RET=`.
    pub ret: Option<Ret>,
    /// DSN `ENVID=` (xtext-decoded).
    pub envid: Option<String>,
}

/// DSN `NOTIFY=` (RFC 3461 section 4.1) as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notify {
    /// `NOTIFY=NEVER`
    pub never: bool,
    /// `SUCCESS`
    pub success: bool,
    /// `FAILURE`
    pub failure: bool,
    /// `DELAY`
    pub delay: bool,
}

impl Notify {
    /// True when the client gave any NOTIFY value.
    pub fn is_set(&self) -> bool {
        self.never || self.success || self.failure || self.delay
    }
}

/// `RCPT TO` with the parameters Tern supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptTo {
    /// The forward path.
    pub address: String,
    /// DSN `NOTIFY=`.
    pub notify: Notify,
    /// DSN `ORCPT=rfc822;...` address (xtext-decoded).
    pub orcpt: Option<String>,
}

/// Why a command line was refused; each maps to one reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The verb is unknown.
    #[error("command not recognized")]
    Unknown,
    /// The line holds bytes no command may contain (CR, NUL, other controls).
    #[error("invalid characters in command")]
    InvalidCharacters,
    /// The arguments do not follow the command's syntax.
    #[error("syntax: {0}")]
    Syntax(&'static str),
    /// The reverse path is not a valid address.
    #[error("invalid sender address")]
    BadSender,
    /// The forward path is not a valid address.
    #[error("invalid recipient address")]
    BadRecipient,
    /// A known parameter has a bad value.
    #[error("invalid {0} parameter")]
    BadParameter(&'static str),
    /// A parameter Tern did not advertise.
    #[error("unsupported parameter {0}")]
    UnsupportedParameter(String),
}

impl CommandError {
    /// The reply that tells the client exactly what was wrong.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unknown => crate::reply::canned::unknown_command(),
            CommandError::InvalidCharacters => {
                Reply::new(500, Status(5, 5, 2), "Error: invalid characters in command")
            }
            CommandError::Syntax(syntax) => {
                Reply::new(501, Status(5, 5, 4), format!("Syntax: {syntax}"))
            }
            CommandError::BadSender => {
                Reply::new(553, Status(5, 1, 7), "Error: invalid sender address syntax")
            }
            CommandError::BadRecipient => {
                Reply::new(553, Status(5, 1, 3), "Error: invalid recipient address syntax")
            }
            CommandError::BadParameter(param) => {
                Reply::new(501, Status(5, 5, 4), format!("Error: invalid {param} parameter"))
            }
            CommandError::UnsupportedParameter(param) => {
                Reply::new(555, Status(5, 5, 4), format!("Error: unsupported parameter {param}"))
            }
        }
    }
}

/// Parses one complete command line (terminator included).
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    let body = strip_terminator(line);
    if body.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(CommandError::InvalidCharacters);
    }
    // smtp-proto wants the LF; give it a canonical CRLF-free line plus LF.
    let mut canonical = Vec::with_capacity(body.len().saturating_add(1));
    canonical.extend_from_slice(body);
    canonical.push(b'\n');
    let request = Request::parse(&mut canonical.iter()).map_err(map_proto_error);
    match request {
        Err(CommandError::BadRecipient) => {
            rcpt_to_literal(body).ok_or(CommandError::BadRecipient)?.map(Command::Rcpt)
        }
        request => convert(request?, body),
    }
}

/// Stands in for an address literal while smtp-proto parses the line (`.invalid` is reserved,
/// RFC 2606, so no real address has it).
const LITERAL_STAND_IN: &str = "address-literal.invalid";

/// `RCPT TO:<user@[192.0.2.1]>` or `<user@[IPv6:::1]>` (RFC 5321 section 4.1.3), which
/// smtp-proto 0.2.5 refuses as bad syntax: the literal is swapped for a stand-in domain, the
/// line parsed, and the literal put back into the address. Whether the literal is a valid IP
/// and one of ours is the relay policy's question. `None` when there is no literal.
fn rcpt_to_literal(body: &[u8]) -> Option<Result<RcptTo, CommandError>> {
    let start = body.windows(2).position(|w| w == b"@[")?.saturating_add(1);
    let length = body.get(start..)?.iter().position(|&b| b == b']')?.saturating_add(1);
    let literal = body.get(start..start.saturating_add(length))?;
    // RFC 5321 dcontent: printable ASCII except `[`, `\` and `]`.
    let inner = literal.get(1..literal.len().saturating_sub(1))?;
    if inner.is_empty() || !inner.iter().all(|&b| b.is_ascii_graphic() && b != b'[' && b != b'\\') {
        return None;
    }
    let mut line = body.get(..start)?.to_vec();
    line.extend_from_slice(LITERAL_STAND_IN.as_bytes());
    line.extend_from_slice(body.get(start.saturating_add(length)..)?);
    let literal = std::str::from_utf8(literal).ok()?;
    let mut canonical = line.clone();
    canonical.push(b'\n');
    let Ok(Request::Rcpt { to }) = Request::parse(&mut canonical.iter()) else { return None };
    Some(rcpt_to(to, &line).and_then(|mut to| {
        let local_part =
            to.address.strip_suffix(LITERAL_STAND_IN).and_then(|rest| rest.strip_suffix('@'));
        to.address = format!("{}@{literal}", local_part.ok_or(CommandError::BadRecipient)?);
        Ok(to)
    }))
}

fn strip_terminator(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn map_proto_error(err: ProtoError) -> CommandError {
    match err {
        ProtoError::UnknownCommand => CommandError::Unknown,
        ProtoError::InvalidSenderAddress => CommandError::BadSender,
        ProtoError::InvalidRecipientAddress => CommandError::BadRecipient,
        ProtoError::SyntaxError { syntax } => CommandError::Syntax(syntax),
        ProtoError::InvalidParameter { param } => CommandError::BadParameter(param),
        ProtoError::UnsupportedParameter { param } => CommandError::UnsupportedParameter(param),
        // A complete line was given, so "needs more data" means it ended mid-argument.
        ProtoError::NeedsMoreData { .. } => CommandError::Syntax("incomplete command"),
        ProtoError::ResponseTooLong | ProtoError::InvalidResponse { .. } => {
            CommandError::Syntax("invalid command")
        }
    }
}

fn convert(request: Request<Cow<'_, str>>, raw: &[u8]) -> Result<Command, CommandError> {
    Ok(match request {
        Request::Helo { host } => Command::Helo(host.into_owned()),
        Request::Ehlo { host } => Command::Ehlo(host.into_owned()),
        Request::Mail { from } => Command::Mail(mail_from(from, raw)?),
        Request::Rcpt { to } => Command::Rcpt(rcpt_to(to, raw)?),
        Request::Data => Command::Data,
        Request::Bdat { chunk_size, is_last } => Command::Bdat {
            size: argument(raw, 1).and_then(saturating_number).unwrap_or(chunk_size as u64),
            last: is_last,
        },
        Request::Rset => Command::Rset,
        Request::Noop { .. } => Command::Noop,
        Request::Quit => Command::Quit,
        Request::Vrfy { value } => Command::Vrfy(value.into_owned()),
        Request::Expn { value } => Command::Expn(value.into_owned()),
        Request::Help { .. } => Command::Help,
        Request::StartTls => Command::StartTls,
        Request::Auth { mechanism, initial_response } => {
            Command::Auth { mechanism, initial_response: initial_response.into_owned() }
        }
        Request::Lhlo { .. } => Command::NotImplemented("LHLO"),
        Request::Etrn { .. } => Command::NotImplemented("ETRN"),
        Request::Atrn { .. } => Command::NotImplemented("ATRN"),
        Request::Burl { .. } => Command::NotImplemented("BURL"),
    })
}

/// The `n`th word of a command line.
fn argument(raw: &[u8], n: usize) -> Option<&[u8]> {
    raw.split(u8::is_ascii_whitespace).filter(|word| !word.is_empty()).nth(n)
}

/// A decimal number a client sent, saturating at `u64::MAX`, or `None` when `digits` is not
/// one. smtp-proto 0.2.5 restarts a number that passed `usize::MAX` at its next digit (so
/// `BDAT 18446744073709551616000` reads as 0): the sizes a client gives are read again here,
/// so that one can only ever be too large, never small.
fn saturating_number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits.iter().fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d.saturating_sub(b'0')))
        }),
    )
}

/// `SIZE=` from a `MAIL` line's parameters, read with [`saturating_number`].
fn mail_size(raw: &[u8]) -> Option<u64> {
    raw.split(u8::is_ascii_whitespace).rev().find_map(|word| {
        let (key, value) = word.split_at_checked(5)?;
        key.eq_ignore_ascii_case(b"SIZE=").then(|| saturating_number(value))?
    })
}

fn mail_from(
    from: smtp_proto::MailFrom<Cow<'_, str>>,
    raw: &[u8],
) -> Result<MailFrom, CommandError> {
    use smtp_proto as sp;
    let unsupported = [
        (from.flags & sp::MAIL_BODY_BINARYMIME != 0, "BODY=BINARYMIME"),
        (from.flags & sp::MAIL_REQUIRETLS != 0, "REQUIRETLS"),
        (from.flags & sp::MAIL_CONPERM != 0, "CONPERM"),
        (from.by != 0, "BY"),
        (from.mtrk.is_some(), "MTRK"),
        (from.hold_for != 0 || from.hold_until != 0, "FUTURERELEASE"),
        (from.mt_priority != 0, "MT-PRIORITY"),
        (from.trans_id.is_some(), "TRANSID"),
        (from.solicit.is_some(), "SOLICIT"),
    ];
    if let Some((_, name)) = unsupported.iter().find(|(present, _)| *present) {
        return Err(CommandError::UnsupportedParameter((*name).to_string()));
    }
    let body = if from.flags & sp::MAIL_BODY_8BITMIME != 0 {
        Body::EightBitMime
    } else if from.flags & sp::MAIL_BODY_7BIT != 0 {
        Body::SevenBit
    } else {
        Body::Unspecified
    };
    let ret = match (from.flags & sp::MAIL_RET_FULL != 0, from.flags & sp::MAIL_RET_HDRS != 0) {
        (true, true) => return Err(CommandError::BadParameter("RET")),
        (true, false) => Some(Ret::Full),
        (false, true) => Some(Ret::Hdrs),
        (false, false) => None,
    };
    let address = from.address.into_owned();
    let smtputf8 = from.flags & sp::MAIL_SMTPUTF8 != 0;
    if !address.is_ascii() && !smtputf8 {
        return Err(CommandError::BadSender);
    }
    Ok(MailFrom {
        address,
        size: Some(mail_size(raw).unwrap_or(from.size as u64)).filter(|&size| size != 0),
        body,
        smtputf8,
        ret,
        envid: from.env_id.map(Cow::into_owned),
    })
}

fn rcpt_to(to: smtp_proto::RcptTo<Cow<'_, str>>, raw: &[u8]) -> Result<RcptTo, CommandError> {
    use smtp_proto as sp;
    if to.flags & (sp::RCPT_CONNEG | sp::RCPT_RRVS_REJECT | sp::RCPT_RRVS_CONTINUE) != 0 {
        return Err(CommandError::UnsupportedParameter("RRVS/CONNEG".into()));
    }
    let notify = Notify {
        never: to.flags & sp::RCPT_NOTIFY_NEVER != 0,
        success: to.flags & sp::RCPT_NOTIFY_SUCCESS != 0,
        failure: to.flags & sp::RCPT_NOTIFY_FAILURE != 0,
        delay: to.flags & sp::RCPT_NOTIFY_DELAY != 0,
    };
    // RFC 3461: NEVER must appear alone.
    if notify.never && (notify.success || notify.failure || notify.delay) {
        return Err(CommandError::BadParameter("NOTIFY"));
    }
    let mut address = to.address.into_owned();
    if address.is_empty() {
        // smtp-proto folds `<postmaster>` into the empty path; RFC 5321 requires accepting it.
        if contains_ignore_case(raw, b"<postmaster>") {
            address = "postmaster".into();
        } else {
            return Err(CommandError::BadRecipient);
        }
    }
    Ok(RcptTo { address, notify, orcpt: to.orcpt.map(Cow::into_owned) })
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse_command(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err_code(line: &[u8]) -> String {
        match parse_command(line) {
            Ok(cmd) => panic!("{:?} parsed as {cmd:?}", String::from_utf8_lossy(line)),
            Err(e) => {
                let r = e.reply();
                format!("{} {}", r.code, r.status.map(|s| s.to_string()).unwrap_or_default())
            }
        }
    }

    #[test]
    fn accepted_commands() {
        assert_eq!(ok("EHLO client.example\r\n"), Command::Ehlo("client.example".into()));
        assert_eq!(ok("helo x\r\n"), Command::Helo("x".into()));
        assert_eq!(ok("DATA\r\n"), Command::Data);
        assert_eq!(ok("RSET\n"), Command::Rset);
        assert_eq!(ok("NOOP hello\r\n"), Command::Noop);
        assert_eq!(ok("QUIT\r\n"), Command::Quit);
        assert_eq!(ok("HELP\r\n"), Command::Help);
        assert_eq!(ok("BDAT 100 LAST\r\n"), Command::Bdat { size: 100, last: true });
        assert_eq!(ok("BDAT 0\r\n"), Command::Bdat { size: 0, last: false });
        assert_eq!(ok("VRFY bob\r\n"), Command::Vrfy("bob".into()));
    }

    /// Numbers past what fits saturate (smtp-proto's parser), so a size a client sends can
    /// only ever be too large, never wrap to a small one.
    #[test]
    fn oversized_numbers_saturate() {
        // Past u64::MAX, then more digits: smtp-proto alone reads this as 0.
        let huge = "184467440737095516150000";
        assert_eq!(
            ok(&format!("BDAT {huge} LAST\r\n")),
            Command::Bdat { size: u64::MAX, last: true }
        );
        assert_eq!(
            ok("BDAT 18446744073709551614\r\n"),
            Command::Bdat { size: u64::MAX - 1, last: false }
        );
        let Command::Mail(m) = ok(&format!("MAIL FROM:<a@b.example> SIZE={huge}\r\n")) else {
            panic!()
        };
        assert_eq!(m.size, Some(u64::MAX));
    }

    #[test]
    fn mail_parameters() {
        let Command::Mail(m) =
            ok("MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=QQ314159\r\n")
        else {
            panic!()
        };
        assert_eq!(m.address, "a@b.example");
        assert_eq!(m.size, Some(1000));
        assert_eq!(m.body, Body::EightBitMime);
        assert_eq!(m.ret, Some(Ret::Hdrs));
        assert_eq!(m.envid.as_deref(), Some("QQ314159"));
        let Command::Mail(m) = ok("MAIL FROM:<>\r\n") else { panic!() };
        assert_eq!(m.address, "");
        let Command::Mail(m) = ok("MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8\r\n")
        else {
            panic!()
        };
        assert!(m.smtputf8);
    }

    #[test]
    fn rcpt_parameters() {
        let Command::Rcpt(r) =
            ok("RCPT TO:<b@c.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@c.example\r\n")
        else {
            panic!()
        };
        assert!(r.notify.success && r.notify.failure && !r.notify.never);
        assert_eq!(r.orcpt.as_deref(), Some("b@c.example"));
        let Command::Rcpt(r) = ok("RCPT TO:<Postmaster>\r\n") else { panic!() };
        assert_eq!(r.address, "postmaster");
    }

    #[test]
    fn address_literals_are_recipients_not_syntax_errors() {
        for (line, address) in [
            ("RCPT TO:<alice@[127.0.0.1]>\r\n", "alice@[127.0.0.1]"),
            ("RCPT TO:<alice@[IPv6:::1]> NOTIFY=NEVER\r\n", "alice@[IPv6:::1]"),
            ("RCPT TO: <a.b@[IPv6:2001:db8::1]>\r\n", "a.b@[IPv6:2001:db8::1]"),
        ] {
            let Command::Rcpt(r) = ok(line) else { panic!("{line:?}") };
            assert_eq!(r.address, address);
        }
        let Command::Rcpt(r) = ok("RCPT TO:<x@[::1]> NOTIFY=NEVER\r\n") else { panic!() };
        assert!(r.notify.never, "parameters after a literal are kept");
        for line in [
            &b"RCPT TO:<@[127.0.0.1]>\r\n"[..],
            b"RCPT TO:<a@[]>\r\n",
            b"RCPT TO:<a@[1 2]>\r\n",
            b"RCPT TO:<a@[127.0.0.1]x>\r\n",
            b"RCPT TO:<a@b@[127.0.0.1]>\r\n",
        ] {
            assert_eq!(err_code(line), "553 5.1.3", "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn refused_lines() {
        let cases: &[(&[u8], &str)] = &[
            (b"FOO\r\n", "500 5.5.2"),
            (b"RSET\rQUIT\r\n", "500 5.5.2"),
            (b"NOOP\x00\r\n", "500 5.5.2"),
            (b"MAIL FROM:<a@b\r\n", "501 5.5.4"),
            (b"MAIL TO:<a@b>\r\n", "501 5.5.4"),
            (b"MAIL FROM:<a@@b>\r\n", "553 5.1.7"),
            (b"RCPT TO:<>\r\n", "553 5.1.3"),
            (b"RCPT TO:<b@c> NOTIFY=NEVER,SUCCESS\r\n", "501 5.5.4"),
            (b"RCPT TO:<b@c> NOTIFY=SOMETIMES\r\n", "501 5.5.4"),
            (b"MAIL FROM:<a@b> BODY=BINARYMIME\r\n", "555 5.5.4"),
            (b"MAIL FROM:<a@b> RET=FULL RET=HDRS\r\n", "501 5.5.4"),
            (b"MAIL FROM:<a@b> FOO=BAR\r\n", "555 5.5.4"),
            (b"MAIL FROM:<\xce\xb4@b.example>\r\n", "553 5.1.7"),
            (b"EHLO\r\n", "501 5.5.4"),
            (b"BDAT x\r\n", "501 5.5.4"),
        ];
        for (line, want) in cases {
            assert_eq!(&err_code(line), want, "line {:?}", String::from_utf8_lossy(line));
        }
    }
}
