//! A stored message as POP3 sends it (RFC 1939 section 3): every line ends in CRLF, a line
//! that starts with `.` gets one more, and `.` CRLF ends the response. Pure code over bytes.
//!
//! A line ends at LF; a CR just before it belongs to the line end. A message stored with bare
//! LF line ends, or without a final line end, is sent with CRLF everywhere, and its size in
//! STAT and LIST counts it so: the size is the exact octet count of the message as sent,
//! before dot stuffing, which is what clients compare with what they receive.

/// The lines of a message, without their line ends.
fn lines(message: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = message.strip_suffix(b"\n").unwrap_or(message);
    let empty = message.is_empty();
    body.split(|&b| b == b'\n')
        .filter(move |_| !empty)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
}

/// The message's size as sent: its lines with CRLF ends, before dot stuffing.
pub fn size(message: &[u8]) -> u64 {
    lines(message).fold(0u64, |sum, line| {
        sum.saturating_add(u64::try_from(line.len()).unwrap_or(u64::MAX)).saturating_add(2)
    })
}

/// Appends the message to `out`, dot-stuffed and ended by `.` CRLF. With `body_lines`
/// (TOP), only the header, the blank line after it and that many body lines are sent.
pub fn write(message: &[u8], body_lines: Option<u64>, out: &mut Vec<u8>) {
    let mut in_header = true;
    let mut sent_body_lines = 0u64;
    for line in lines(message) {
        if !in_header && let Some(limit) = body_lines {
            if sent_body_lines >= limit {
                break;
            }
            sent_body_lines = sent_body_lines.saturating_add(1);
        }
        if in_header && line.is_empty() {
            in_header = false;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(message: &[u8], body_lines: Option<u64>) -> String {
        let mut out = Vec::new();
        write(message, body_lines, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    /// What a client keeps: the lines between the status line and `.`, unstuffed.
    fn received(wire: &str) -> Vec<u8> {
        let body = wire.strip_suffix(".\r\n").expect("terminator");
        body.split_inclusive("\r\n")
            .map(|line| line.strip_prefix('.').unwrap_or(line))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn sizes_count_crlf_line_ends_before_stuffing() {
        // (stored, size as sent)
        let cases: &[(&[u8], u64)] = &[
            (b"", 0),
            (b"A: b\r\n\r\nhi\r\n", 12),
            (b"A: b\n\nhi\n", 12),
            (b"A: b\r\n\r\nhi", 12),
            (b"A: b\r\n\r\n.hi\r\n..\r\n", 17),
            (b"x\r\r\n", 4),
            (b"\n", 2),
        ];
        for (stored, want) in cases {
            assert_eq!(size(stored), *want, "{:?}", String::from_utf8_lossy(stored));
            let wire = sent(stored, None);
            assert_eq!(received(&wire).len() as u64, *want, "{wire:?}");
        }
    }

    #[test]
    fn dots_are_stuffed_and_line_ends_made_crlf() {
        assert_eq!(
            sent(b"Subject: x\n\n.\n..two\nend", None),
            "Subject: x\r\n\r\n..\r\n...two\r\nend\r\n.\r\n"
        );
        assert_eq!(sent(b"", None), ".\r\n");
    }

    #[test]
    fn top_sends_the_header_and_n_body_lines() {
        let message = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        assert_eq!(sent(message, Some(0)), "A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(sent(message, Some(2)), "A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n");
        assert_eq!(sent(message, Some(u64::MAX)), sent(message, None));
        // No blank line: it is all header.
        assert_eq!(sent(b"A: 1\r\nB: 2\r\n", Some(0)), "A: 1\r\nB: 2\r\n.\r\n");
    }
}
