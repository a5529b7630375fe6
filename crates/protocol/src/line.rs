//! Finding command lines in a receive buffer.
//!
//! A line ends at LF (a preceding CR is part of the terminator). A peer that sends more than
//! the limit without a line end is told so; the caller then discards input up to the next LF
//! instead of buffering it, so a 1 MiB line costs no more memory than a short one.

/// What [`scan_line`] found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineScan {
    /// A complete line of this many bytes, terminator included.
    Line(usize),
    /// No line end yet and the buffer is still within the limit: read more.
    Incomplete,
    /// No line end within `max_len` bytes: the line is too long.
    TooLong,
}

/// Looks for one line at the start of `buf`, allowing at most `max_len` bytes including CRLF.
pub fn scan_line(buf: &[u8], max_len: usize) -> LineScan {
    let window = &buf[..buf.len().min(max_len)];
    match memchr::memchr(b'\n', window) {
        Some(pos) => LineScan::Line(pos.saturating_add(1)),
        None if buf.len() >= max_len => LineScan::TooLong,
        None => LineScan::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], usize, LineScan)] = &[
            (b"NOOP\r\n", 512, LineScan::Line(6)),
            (b"NOOP\r\nQUIT\r\n", 512, LineScan::Line(6)),
            (b"NOOP", 512, LineScan::Incomplete),
            (b"", 512, LineScan::Incomplete),
            (b"NOOP\n", 512, LineScan::Line(5)),
            (b"NOOPNOOP", 8, LineScan::TooLong),
            (b"NOOPNOO\n", 8, LineScan::Line(8)),
            (b"NOOPNOOP\n", 8, LineScan::TooLong),
        ];
        for (input, max, want) in cases {
            assert_eq!(scan_line(input, *max), *want, "input {:?}", String::from_utf8_lossy(input));
        }
    }
}
