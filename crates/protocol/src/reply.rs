//! Server replies: a three-digit code, an RFC 3463 enhanced status code and text.
//!
//! Replies are values so the session can queue several of them (PIPELINING) and write them in
//! one flush. Multi-line replies (EHLO, HELP) keep one entry per line.

use std::borrow::Cow;
use std::fmt;

/// An RFC 3463 enhanced status code such as `5.5.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u8, pub u8, pub u8);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply, possibly spanning several lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (RFC 5321 section 4.2).
    pub code: u16,
    /// The enhanced status code; `None` only where RFC 2034 says not to send one
    /// (the greeting and the EHLO/HELO response).
    pub status: Option<Status>,
    /// Text lines; a reply always has at least one.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, status: Status, text: impl Into<Cow<'static, str>>) -> Self {
        Reply { code, status: Some(status), lines: vec![text.into()] }
    }

    /// A reply without an enhanced status code (greeting, EHLO).
    pub fn plain(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        debug_assert!(!lines.is_empty());
        Reply { code, status: None, lines }
    }

    /// True for 4xx and 5xx replies.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the wire form (`CODE-` continuation lines, `CODE ` last line, CRLF endings).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            let text = sanitize(line);
            let rendered = match self.status {
                Some(status) => format!("{}{sep}{status} {text}\r\n", self.code),
                None => format!("{}{sep}{text}\r\n", self.code),
            };
            out.extend_from_slice(rendered.as_bytes());
        }
    }

    /// The wire form as a string, for logs and tests.
    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Reply text may echo peer input; CR and LF there would forge extra reply lines.
fn sanitize(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|b| b == b'\r' || b == b'\n') {
        Cow::Owned(text.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(text)
    }
}

/// Replies used by more than one part of the session, named by what they mean.
pub mod canned {
    use super::{Reply, Status};

    /// `503 5.5.1` for a command sent in the wrong order.
    pub fn bad_sequence(text: &'static str) -> Reply {
        Reply::new(503, Status(5, 5, 1), text)
    }
    /// `500 5.5.2` for an unknown command.
    pub fn unknown_command() -> Reply {
        Reply::new(500, Status(5, 5, 2), "Error: command not recognized")
    }
    /// `500 5.5.2` for a command line longer than the limit.
    pub fn line_too_long() -> Reply {
        Reply::new(500, Status(5, 5, 2), "Error: line too long")
    }
    /// `421 4.3.0` when the server is shutting down.
    pub fn shutting_down() -> Reply {
        Reply::new(421, Status(4, 3, 0), "Server shutting down, closing connection")
    }
    /// `552 5.3.4` for a message over the size limit.
    pub fn too_big() -> Reply {
        Reply::new(552, Status(5, 3, 4), "Error: message exceeds fixed maximum message size")
    }
    /// `451 4.3.0` when the spool could not commit the message.
    pub fn storage_failed() -> Reply {
        Reply::new(451, Status(4, 3, 0), "Error: queue file write error, try again later")
    }
    /// `452 4.3.1` at `MAIL FROM` when the store's disk is below its free-space reserve.
    pub fn insufficient_storage() -> Reply {
        Reply::new(452, Status(4, 3, 1), "Insufficient system storage, try again later")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_status() {
        let r = Reply::new(250, Status(2, 1, 0), "Ok");
        assert_eq!(r.to_wire(), "250 2.1.0 Ok\r\n");
    }

    #[test]
    fn multi_line_plain() {
        let r = Reply::plain(250, vec!["mx.example".into(), "PIPELINING".into(), "SIZE 10".into()]);
        assert_eq!(r.to_wire(), "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    }

    #[test]
    fn peer_text_cannot_forge_lines() {
        let r = Reply::new(501, Status(5, 5, 4), String::from("bad\r\n250 fake"));
        assert_eq!(r.to_wire(), "501 5.5.4 bad  250 fake\r\n");
    }
}
