//! The message a benchmark sends: generated once per session at the exact size asked for,
//! dot-stuffed, with slots for a sequence number so every message differs without being
//! rebuilt. Pure code over bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::BenchError;

/// Width of the zero-padded sequence number in the Subject and Message-ID headers.
const SEQUENCE_DIGITS: usize = 10;
/// Longest body line in characters, CRLF excluded (RFC 5322 recommends at most 78).
const MAX_BODY_LINE_CHARS: usize = 76;

/// What a generated message contains.
pub(crate) struct MessageSpec<'a> {
    /// Envelope sender and From header.
    pub(crate) from: &'a str,
    /// Envelope recipient and To header.
    pub(crate) to: &'a str,
    /// Exact size of the message (headers, blank line and body), before dot-stuffing.
    pub(crate) size_bytes: usize,
    /// Date header value.
    pub(crate) date: String,
    /// Makes Message-IDs unique across runs.
    pub(crate) run_token: String,
}

/// A message ready to send after DATA: dot-stuffed and terminated by `.` CRLF, with slots for
/// the sequence number so each message differs without being rebuilt.
#[derive(Debug, Clone)]
pub(crate) struct MessageBuffer {
    wire: Vec<u8>,
    /// Offsets in `wire` of the [`SEQUENCE_DIGITS`]-wide sequence number fields.
    sequence_slots: Vec<usize>,
}

impl MessageBuffer {
    /// Builds the message; fails if `size_bytes` cannot even hold the headers.
    pub(crate) fn new(spec: &MessageSpec<'_>) -> Result<MessageBuffer, BenchError> {
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
            return Err(BenchError::Arguments(format!(
                "--size {} is smaller than the message headers ({} bytes)",
                spec.size_bytes,
                headers.len()
            )));
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
    pub(crate) fn set_sequence(&mut self, seq: u64) {
        for &slot in &self.sequence_slots {
            let mut n = seq;
            for byte in self.wire[slot..slot + SEQUENCE_DIGITS].iter_mut().rev() {
                *byte = b'0' + (n % 10) as u8;
                n /= 10;
            }
        }
    }

    /// A fixed message (no sequence numbers: each copy is byte for byte the same).
    pub(crate) fn from_bytes(message: &[u8]) -> MessageBuffer {
        MessageBuffer { wire: dot_stuff(message), sequence_slots: Vec::new() }
    }

    /// The bytes to send after the 354 reply, final `.` CRLF included.
    pub(crate) fn wire(&self) -> &[u8] {
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
pub(crate) fn rfc5322_date(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    mail_parser::DateTime::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX)).to_rfc822()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::MAX_MESSAGES;

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
}
