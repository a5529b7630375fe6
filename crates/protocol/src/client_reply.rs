//! The client's side of replies: one [`ClientReply`] from the lines of a (possibly multi-line)
//! server response, with its enhanced status code, as an SMTP client reads it. The server's own
//! replies, which it writes, are [`crate::ClientReply`]. Pure code over lines; reading them off a
//! socket is the caller's job (the outbound client in `tern-delivery`, the load generator in
//! `tern-bench`).
//!
//! Hand-written rather than smtp-proto's `ResponseReceiver` because the client must bound a
//! reply by lines as well as bytes: that receiver keeps buffering a stream of empty
//! continuation lines (`250-`) without limit.

use std::fmt;

/// Longest reply line accepted, in bytes without the line ending (RFC 5321 asks for 512).
pub const MAX_REPLY_LINE_BYTES: usize = 4096;
/// Most lines in one reply (an EHLO reply has about twenty).
pub const MAX_REPLY_LINES: usize = 128;

/// One complete server reply, e.g. `250-mx.example.com` + `250 8BITMIME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReply {
    /// The three-digit reply code.
    pub code: u16,
    /// The RFC 3463 enhanced status code of the first line (`5.1.1`), when it has one.
    pub status: Option<String>,
    /// The text of each line, with the code and a leading enhanced status code removed.
    pub lines: Vec<String>,
}

impl ClientReply {
    /// The first digit of the code: 2 success, 3 intermediate, 4 transient, 5 permanent.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// A 2xx reply.
    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// The text of all lines joined with spaces, without code or status.
    pub fn text(&self) -> String {
        self.lines.iter().filter(|line| !line.is_empty()).cloned().collect::<Vec<_>>().join(" ")
    }
}

/// `550 5.1.1 <x@y>: Recipient address rejected`: lines joined with spaces, as a DSN's
/// `Diagnostic-Code` and the logs show it.
impl fmt::Display for ClientReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(status) = &self.status {
            write!(f, " {status}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Why bytes from the server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a three-digit code and a separator.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// A continuation line carries a different code than the first line.
    #[error("reply code changed from {first} to {later} within one reply")]
    CodeChanged {
        /// The first line's code.
        first: u16,
        /// The offending line's code.
        later: u16,
    },
    /// A line is longer than [`MAX_REPLY_LINE_BYTES`].
    #[error("reply line longer than {MAX_REPLY_LINE_BYTES} bytes")]
    LineTooLong,
    /// The reply has more than [`MAX_REPLY_LINES`] lines.
    #[error("reply longer than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Collects the lines of one reply; feed it lines until it returns the reply.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: Option<u16>,
    status: Option<String>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// Takes one line (without CRLF). Returns the reply once its last line arrived; the parser
    /// is then ready for the next reply.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<ClientReply>, ReplyError> {
        if line.len() > MAX_REPLY_LINE_BYTES {
            return Err(ReplyError::LineTooLong);
        }
        if self.lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let (code, last, text) = split_line(line)?;
        let (status, text) = split_status(&text);
        match self.code {
            None => {
                self.code = Some(code);
                self.status = status.map(str::to_owned);
            }
            Some(first) if first != code => {
                return Err(ReplyError::CodeChanged { first, later: code });
            }
            Some(_) => {}
        }
        self.lines.push(text.to_owned());
        if !last {
            return Ok(None);
        }
        let reply = ClientReply {
            code,
            status: self.status.take(),
            lines: std::mem::take(&mut self.lines),
        };
        self.code = None;
        Ok(Some(reply))
    }
}

/// Parses a whole reply from `bytes` (CRLF-separated lines); for tests and fixed texts.
pub fn parse_reply(bytes: &[u8]) -> Result<ClientReply, ReplyError> {
    let mut parser = ReplyParser::default();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(reply) = parser.push_line(line)? {
            return Ok(reply);
        }
    }
    Err(ReplyError::Malformed("reply ended before its last line".into()))
}

/// `250-text` → (250, false, "text"); `250 text` and `250` → last line.
fn split_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    let (digits, rest) = line.split_at_checked(3).ok_or_else(malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || digits.first() == Some(&b'0') {
        return Err(malformed());
    }
    let code = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u16>().ok())
        .ok_or_else(malformed)?;
    let (last, text) = match rest.split_first() {
        None => (true, &[][..]),
        Some((b' ', text)) => (true, text),
        Some((b'-', text)) => (false, text),
        Some(_) => return Err(malformed()),
    };
    // Servers may send Latin-1 or worse in free text; it is only shown, never obeyed.
    Ok((code, last, String::from_utf8_lossy(text).trim().to_owned()))
}

/// Splits a leading RFC 3463 status (`class.subject.detail`, class 2, 4 or 5) off `text`.
fn split_status(text: &str) -> (Option<&str>, &str) {
    let (candidate, rest) = text.split_once(' ').unwrap_or((text, ""));
    if is_enhanced_status(candidate) { (Some(candidate), rest.trim_start()) } else { (None, text) }
}

/// `5.1.1`, `4.7.0`, `2.0.0`: a class of 2, 4 or 5 and two numbers of one to three digits.
pub fn is_enhanced_status(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(class), Some(subject), Some(detail), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let number = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    matches!(class, "2" | "4" | "5") && number(subject) && number(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        // (input, code, status, lines, as displayed)
        type Case<'a> = (&'a str, u16, Option<&'a str>, &'a [&'a str], &'a str);
        let cases: &[Case<'_>] = &[
            ("220 mx.test ESMTP\r\n", 220, None, &["mx.test ESMTP"], "220 mx.test ESMTP"),
            ("250 2.0.0 Ok\r\n", 250, Some("2.0.0"), &["Ok"], "250 2.0.0 Ok"),
            ("354\r\n", 354, None, &[""], "354"),
            ("250 \r\n", 250, None, &[""], "250"),
            (
                "550-5.1.1 The account\r\n550-5.1.1 does not\r\n550 5.1.1 exist\r\n",
                550,
                Some("5.1.1"),
                &["The account", "does not", "exist"],
                "550 5.1.1 The account does not exist",
            ),
            (
                "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                250,
                None,
                &["mx.test", "PIPELINING", "8BITMIME"],
                "250 mx.test PIPELINING 8BITMIME",
            ),
            ("451 4.7.1 Try later\n", 451, Some("4.7.1"), &["Try later"], "451 4.7.1 Try later"),
            ("550 5.1.10 x\r\n", 550, Some("5.1.10"), &["x"], "550 5.1.10 x"),
            // Not an enhanced status: class 3, or a version-like number.
            ("250 3.1.1 text\r\n", 250, None, &["3.1.1 text"], "250 3.1.1 text"),
            ("250 2.0 ok\r\n", 250, None, &["2.0 ok"], "250 2.0 ok"),
        ];
        for &(input, code, status, lines, display) in cases {
            let reply = parse_reply(input.as_bytes()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(reply.code, code, "{input:?}");
            assert_eq!(reply.status.as_deref(), status, "{input:?}");
            assert_eq!(reply.lines, lines, "{input:?}");
            assert_eq!(reply.to_string(), display, "{input:?}");
        }
    }

    #[test]
    fn rejects_malformed_replies() {
        let cases: &[(&[u8], ReplyError)] = &[
            (b"\r\n", ReplyError::Malformed(String::new())),
            (b"25\r\n", ReplyError::Malformed("25".into())),
            (b"abc hello\r\n", ReplyError::Malformed("abc hello".into())),
            (b"250x\r\n", ReplyError::Malformed("250x".into())),
            (b"050 zero class\r\n", ReplyError::Malformed("050 zero class".into())),
            (b"250-a\r\n550 b\r\n", ReplyError::CodeChanged { first: 250, later: 550 }),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_reply(input).as_ref(),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bounds_line_length_and_count() {
        let long = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE_BYTES));
        assert_eq!(parse_reply(long.as_bytes()), Err(ReplyError::LineTooLong));
        let many = "250-\r\n".repeat(MAX_REPLY_LINES + 1) + "250 end\r\n";
        assert_eq!(parse_reply(many.as_bytes()), Err(ReplyError::TooManyLines));
        let just_enough = "250-\r\n".repeat(MAX_REPLY_LINES - 1) + "250 end\r\n";
        assert_eq!(parse_reply(just_enough.as_bytes()).map(|r| r.lines.len()), Ok(MAX_REPLY_LINES));
    }

    #[test]
    fn non_utf8_text_is_replaced_not_rejected() {
        let reply = parse_reply(b"550 5.7.1 bad \xff text\r\n").expect("reply");
        assert_eq!((reply.code, reply.status.as_deref()), (550, Some("5.7.1")));
        assert_eq!(reply.lines, ["bad \u{fffd} text"]);
    }

    #[test]
    fn parser_is_reusable_across_replies() {
        let mut parser = ReplyParser::default();
        assert_eq!(parser.push_line(b"250-a"), Ok(None));
        let first = parser.push_line(b"250 b").expect("ok").expect("reply");
        assert_eq!(first.lines, ["a", "b"]);
        let second = parser.push_line(b"354 go ahead").expect("ok").expect("reply");
        assert_eq!((second.code, second.lines.as_slice()), (354, &["go ahead".to_string()][..]));
    }
}
