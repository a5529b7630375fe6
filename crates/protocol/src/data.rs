//! Decoding a `DATA` body (RFC 5321 section 4.5.2) from the bytes that follow `354`.
//!
//! The body ends only at `<CRLF>.<CRLF>`, where the leading CRLF belongs to the message (and
//! the very first line counts as following a CRLF). A line starting with `.` loses that dot.
//! A CR not followed by LF, or an LF not preceded by CR, is never a line end: it marks the
//! message as broken (`550 5.6.0`, as Postfix's `smtpd_forbid_bare_newline = reject`), so no
//! mix of bare CR/LF can split one message into two (SMTP smuggling). Bytes past the size
//! limit are counted and dropped, never buffered.

/// Why a decoded body must be refused once its end has been seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// A bare CR or bare LF was present.
    #[error("bare CR or LF in message data")]
    BareNewline,
    /// The body exceeded the size limit.
    #[error("message exceeds size limit")]
    TooLarge,
}

/// Result of feeding bytes to the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// All input was consumed; the end has not been seen.
    NeedMore,
    /// The end-of-data marker ended at this offset of the input; later bytes are commands.
    Done(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line (just after CRLF, or at the start of the body).
    LineStart,
    /// Inside a line.
    Middle,
    /// Inside a line, just after a CR.
    Cr,
    /// A `.` opened the line.
    Dot,
    /// `.` then CR opened the line.
    DotCr,
}

/// Incremental `DATA` decoder; feed it whatever the socket delivers.
#[derive(Debug)]
pub struct DataDecoder {
    state: State,
    body: Vec<u8>,
    max_bytes: usize,
    /// Decoded size including dropped bytes, to tell a client by how much it overshot.
    decoded_len: u64,
    too_large: bool,
    bare_newline: bool,
}

impl DataDecoder {
    /// A decoder that keeps at most `max_bytes` of decoded body.
    pub fn new(max_bytes: usize) -> Self {
        DataDecoder {
            state: State::LineStart,
            body: Vec::new(),
            max_bytes,
            decoded_len: 0,
            too_large: false,
            bare_newline: false,
        }
    }

    /// Consumes `input` until the end-of-data marker or the end of `input`.
    #[expect(
        clippy::arithmetic_side_effects,
        reason = "`i` and `i + pos` index `input`, so each step stays within input.len()"
    )]
    pub fn feed(&mut self, input: &[u8]) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Middle => {
                    let rest = &input[i..];
                    match memchr::memchr2(b'\r', b'\n', rest) {
                        None => {
                            self.push(rest);
                            return DataProgress::NeedMore;
                        }
                        Some(pos) => {
                            self.push(&rest[..pos]);
                            i += pos + 1;
                            if rest[pos] == b'\r' {
                                self.state = State::Cr;
                            } else {
                                self.bare_newline = true;
                                self.push(b"\n");
                            }
                        }
                    }
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        self.push(b"\r\n");
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        // Bare CR: keep it as data and look at this byte again mid-line.
                        self.bare_newline = true;
                        self.push(b"\r");
                        self.state = State::Middle;
                    }
                }
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Middle;
                    }
                }
                State::Dot => {
                    if input[i] == b'\r' {
                        self.state = State::DotCr;
                        i += 1;
                    } else {
                        // The leading dot is removed; `..x` becomes `.x`.
                        self.state = State::Middle;
                    }
                }
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::LineStart;
                        return DataProgress::Done(i + 1);
                    }
                    // `.` + bare CR: not an end.
                    self.bare_newline = true;
                    self.push(b"\r");
                    self.state = State::Middle;
                }
            }
        }
        DataProgress::NeedMore
    }

    fn push(&mut self, bytes: &[u8]) {
        self.decoded_len = self.decoded_len.saturating_add(bytes.len() as u64);
        if self.too_large {
            return;
        }
        if self.body.len().saturating_add(bytes.len()) > self.max_bytes {
            self.too_large = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(bytes);
    }

    /// Decoded size so far, including bytes dropped past the limit.
    pub fn decoded_len(&self) -> u64 {
        self.decoded_len
    }

    /// The decoded body, or why it must be refused. Call after [`DataProgress::Done`].
    pub fn finish(self) -> Result<Vec<u8>, DataError> {
        if self.too_large {
            Err(DataError::TooLarge)
        } else if self.bare_newline {
            Err(DataError::BareNewline)
        } else {
            Ok(self.body)
        }
    }
}

#[cfg(test)]
#[expect(clippy::arithmetic_side_effects, reason = "offsets into small test inputs")]
mod tests {
    use super::*;

    /// Feeds `input` whole and in every two-way split; all must agree.
    fn decode(input: &[u8], max: usize) -> (Result<Vec<u8>, DataError>, Option<usize>) {
        let whole = run(&[input], max);
        for split in 0..=input.len() {
            let (a, b) = input.split_at(split);
            assert_eq!(run(&[a, b], max), whole, "split at {split} of {input:?}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes, max), whole, "byte by byte {input:?}");
        whole
    }

    fn run(parts: &[&[u8]], max: usize) -> (Result<Vec<u8>, DataError>, Option<usize>) {
        let mut d = DataDecoder::new(max);
        let mut offset = 0;
        for part in parts {
            if let DataProgress::Done(n) = d.feed(part) {
                return (d.finish(), Some(offset + n));
            }
            offset += part.len();
        }
        (Ok(b"<incomplete>".to_vec()), None)
    }

    #[test]
    fn plain_bodies() {
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b"Subject: x\r\n\r\nhello\r\n.\r\n", b"Subject: x\r\n\r\nhello\r\n", 24),
            (b".\r\n", b"", 3),
            (b"..\r\n.\r\n", b".\r\n", 7),
            (b"..x\r\n.\r\n", b".x\r\n", 8),
            (b".x\r\n.\r\n", b"x\r\n", 7),
            (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", 10),
            (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", 6),
            (b"\x00.\r\n.\r\n", b"\x00.\r\n", 7),
            (b"caf\xc3\xa9 \xff\r\n.\r\n", b"caf\xc3\xa9 \xff\r\n", 12),
        ];
        for (input, want, end) in cases {
            let (body, done) = decode(input, 1 << 20);
            assert_eq!(body.as_deref(), Ok(*want), "input {input:?}");
            assert_eq!(done, Some(*end), "input {input:?}");
        }
    }

    #[test]
    fn smuggling_endings_never_end_the_message() {
        let endings: &[&[u8]] = &[
            b"\n.\n",
            b"\n.\r",
            b"\r.\n",
            b"\r.\r",
            b"\n.\r\n",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r\n\x00.\r\n",
            b"\r\n.\x00\r\n",
            b"\r\n.\r\r\n",
            b"\r\r\n.\r\r\n",
            b"\n\n.\r\n",
        ];
        for ending in endings {
            let mut input = b"Subject: a\r\n\r\nbody".to_vec();
            input.extend_from_slice(ending);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\nsmuggled\r\n");
            // Without a real end, the decoder must still be waiting.
            assert_eq!(run(&[&input], 1 << 20).1, None, "ending {ending:?} ended the message");
            input.extend_from_slice(b"\r\n.\r\n");
            let (body, done) = decode(&input, 1 << 20);
            assert_eq!(done, Some(input.len()), "ending {ending:?}");
            // Endings built only from CRLF pairs and NULs are legal data; the rest are refused.
            let legal = *ending == b"\r\n\x00.\r\n" || *ending == b"\r\n.\x00\r\n";
            if legal {
                assert!(body.is_ok(), "ending {ending:?}");
            } else {
                assert_eq!(body, Err(DataError::BareNewline), "ending {ending:?}");
            }
        }
    }

    #[test]
    fn final_dot_without_line_end_waits() {
        assert_eq!(run(&[b"a\r\n."], 100).1, None);
        assert_eq!(run(&[b"a\r\n.\r"], 100).1, None);
    }

    #[test]
    fn size_limit_drops_excess_but_finds_the_end() {
        let mut input = vec![b'x'; 100];
        input.extend_from_slice(b"\r\n.\r\nNOOP\r\n");
        let (body, done) = decode(&input, 50);
        assert_eq!(body, Err(DataError::TooLarge));
        assert_eq!(done, Some(105));
        let (body, _) = decode(&input, 102);
        assert_eq!(body.map(|b| b.len()), Ok(102));
    }
}
