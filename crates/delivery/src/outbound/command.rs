//! The bytes the client sends: `MAIL FROM` and `RCPT TO` lines with their ESMTP parameters, and
//! the message body dot-stuffed for `DATA`. Pure code; what to send when is `client.rs`'s.

use tern_queue::transport::{JobMessage, JobRecipient};

use super::ehlo::Capabilities;

/// `MAIL FROM:<sender> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8] [RET=..] [ENVID=..]` + CRLF, with
/// each parameter only when the peer advertised its extension.
pub fn mail_from(msg: &JobMessage, caps: &Capabilities) -> String {
    let mut line = format!("MAIL FROM:<{}>", msg.sender);
    if caps.size.is_some() {
        line.push_str(&format!(" SIZE={}", msg.data.len()));
    }
    if msg.eight_bit && caps.eight_bit_mime {
        line.push_str(" BODY=8BITMIME");
    }
    if msg.smtputf8 && caps.smtputf8 {
        line.push_str(" SMTPUTF8");
    }
    if caps.dsn {
        if let Some(ret) = msg.ret.as_deref().filter(|r| is_ret_value(r)) {
            line.push_str(&format!(" RET={}", ret.to_ascii_uppercase()));
        }
        if let Some(envid) = &msg.envid {
            line.push_str(&format!(" ENVID={}", xtext(envid)));
        }
    }
    line.push_str("\r\n");
    line
}

/// `RCPT TO:<address> [NOTIFY=..] [ORCPT=type;xtext]` + CRLF; the DSN parameters only when
/// the peer advertised DSN.
pub fn rcpt_to(rcpt: &JobRecipient, caps: &Capabilities) -> String {
    let mut line = format!("RCPT TO:<{}>", rcpt.address);
    if caps.dsn {
        if !rcpt.notify.is_empty() {
            line.push_str(&format!(" NOTIFY={}", rcpt.notify.join(",").to_ascii_uppercase()));
        }
        if let Some(orcpt) = &rcpt.orcpt {
            // Stored decoded as `rfc822;address`; on the wire the address is xtext.
            let (kind, address) = orcpt.split_once(';').unwrap_or(("rfc822", orcpt));
            line.push_str(&format!(" ORCPT={};{}", kind.trim(), xtext(address.trim())));
        }
    }
    line.push_str("\r\n");
    line
}

fn is_ret_value(ret: &str) -> bool {
    ret.eq_ignore_ascii_case("FULL") || ret.eq_ignore_ascii_case("HDRS")
}

/// RFC 3461 xtext: printable ASCII except `+` and `=` as is, every other byte as `+XX`.
pub fn xtext(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if (b'!'..=b'~').contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The message as `DATA` carries it: every line ending CRLF (a bare LF becomes CRLF, as the
/// message may have been stored with either), a `.` doubled at the start of a line, and the
/// terminating `.` line.
///
/// Large bodies are the common case here, and nearly all of their lines already end in CRLF
/// and start with something other than `.`: the lines are found with `memchr` and copied in
/// runs between the places that need a change (a bare LF, a leading dot), not one by one
/// (a line-by-line copy was a quarter of the CPU of sending 1 MiB messages).
pub fn dot_stuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 5);
    // The last line's LF (if any) is the terminator's business below.
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if !data.is_empty() {
        if body.first() == Some(&b'.') {
            out.push(b'.');
        }
        let mut copied = 0;
        for lf in memchr::memchr_iter(b'\n', body) {
            if lf == 0 || body[lf - 1] != b'\r' {
                // A bare LF: copy up to it, then CRLF.
                out.extend_from_slice(&body[copied..lf]);
                out.extend_from_slice(b"\r\n");
                copied = lf + 1;
            }
            if body.get(lf + 1) == Some(&b'.') {
                out.extend_from_slice(&body[copied..=lf]);
                out.push(b'.');
                copied = lf + 1;
            }
        }
        let last = &body[copied..];
        out.extend_from_slice(last.strip_suffix(b"\r").unwrap_or(last));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tern_store::MessageId;

    use super::*;

    #[test]
    fn xtext_encodes_plus_equals_space_and_non_ascii() {
        let cases = [
            ("abc123", "abc123"),
            ("a+b=c", "a+2Bb+3Dc"),
            ("with space", "with+20space"),
            ("tab\there", "tab+09here"),
            ("ü", "+C3+BC"),
            ("<id@host>", "<id@host>"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(xtext(input), expected, "{input:?}");
        }
    }

    #[test]
    fn dot_stuffing() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n.\r\n"),
            (b".hidden\r\n", b"..hidden\r\n.\r\n"),
            (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
            (b"a\r\n..two\r\n", b"a\r\n...two\r\n.\r\n"),
            (b"no final newline", b"no final newline\r\n.\r\n"),
            (b"bare\nlf\n.dot\n", b"bare\r\nlf\r\n..dot\r\n.\r\n"),
            (b"mid.dot\r\n", b"mid.dot\r\n.\r\n"),
            (b"", b".\r\n"),
            (b"\r\n", b"\r\n.\r\n"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                String::from_utf8_lossy(&dot_stuff(input)),
                String::from_utf8_lossy(expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// The plain line-by-line form `dot_stuff` must match byte for byte.
    fn reference(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        if !data.is_empty() {
            for line in body.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.first() == Some(&b'.') {
                    out.push(b'.');
                }
                out.extend_from_slice(line);
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    #[test]
    fn dot_stuffing_matches_the_line_by_line_form_on_every_small_input() {
        // Every string of up to 7 bytes over the bytes that matter, and longer pseudo-random
        // ones.
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=7u32 {
            for n in 0..4usize.pow(len) {
                inputs.push((0..len).map(|i| alphabet[(n >> (2 * i)) & 3]).collect());
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (seed % 300) as usize;
            let input = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % 4) as usize]
                })
                .collect();
            inputs.push(input);
        }
        for input in inputs {
            assert_eq!(dot_stuff(&input), reference(&input), "{input:?}");
        }
    }

    fn message() -> JobMessage {
        JobMessage {
            id: MessageId::generate(),
            sender: "a@src.test".into(),
            data: Arc::new(b"Subject: x\r\n\r\nhi\r\n".to_vec()),
            smtputf8: false,
            eight_bit: false,
            envid: None,
            ret: None,
            recipients: Vec::new(),
        }
    }

    #[test]
    fn mail_from_parameters_follow_the_peer() {
        let all = Capabilities {
            size: Some(1000),
            eight_bit_mime: true,
            smtputf8: true,
            dsn: true,
            ..Default::default()
        };
        let mut msg = message();
        assert_eq!(mail_from(&msg, &Capabilities::default()), "MAIL FROM:<a@src.test>\r\n");
        assert_eq!(mail_from(&msg, &all), "MAIL FROM:<a@src.test> SIZE=18\r\n");
        msg.sender = String::new();
        msg.eight_bit = true;
        msg.smtputf8 = true;
        msg.ret = Some("hdrs".into());
        msg.envid = Some("id+1 x".into());
        assert_eq!(
            mail_from(&msg, &all),
            "MAIL FROM:<> SIZE=18 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1+20x\r\n"
        );
        // Without DSN, 8BITMIME or SIZE at the peer those parameters are left out.
        assert_eq!(mail_from(&msg, &Capabilities::default()), "MAIL FROM:<>\r\n");
        msg.ret = Some("bogus".into());
        assert_eq!(
            mail_from(&msg, &Capabilities { dsn: true, ..Default::default() }),
            "MAIL FROM:<> ENVID=id+2B1+20x\r\n"
        );
    }

    #[test]
    fn rcpt_to_parameters_follow_the_peer() {
        let rcpt = JobRecipient {
            entry: 1,
            address: "b@dest.test".into(),
            notify: vec!["success".into(), "FAILURE".into()],
            orcpt: Some("rfc822;a+b@orig.test".into()),
        };
        let dsn = Capabilities { dsn: true, ..Default::default() };
        assert_eq!(rcpt_to(&rcpt, &Capabilities::default()), "RCPT TO:<b@dest.test>\r\n");
        assert_eq!(
            rcpt_to(&rcpt, &dsn),
            "RCPT TO:<b@dest.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@orig.test\r\n"
        );
        let plain = JobRecipient { notify: Vec::new(), orcpt: None, ..rcpt };
        assert_eq!(rcpt_to(&plain, &dsn), "RCPT TO:<b@dest.test>\r\n");
    }
}
