//! The `Received:` trace header (RFC 5321 section 4.4) Tern prepends to every message.

use std::net::{IpAddr, SocketAddr};

/// Facts for one `Received:` header.
pub struct Trace<'a, Id> {
    /// The name the client gave in HELO/EHLO.
    pub helo: &'a str,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our hostname.
    pub hostname: &'a str,
    /// The `with` protocol: SMTP, ESMTP, ESMTPS, ESMTPA, UTF8SMTP … (RFC 3848, RFC 6531).
    pub protocol: &'a str,
    /// TLS protocol and cipher when the session was encrypted.
    pub tls: Option<(&'a str, &'a str)>,
    /// The queue id.
    pub id: Id,
    /// The recipient, named only when there is exactly one (privacy of the others).
    pub single_recipient: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub unix_time: i64,
}

impl<Id: std::fmt::Display> Trace<'_, Id> {
    /// The header, folded, CRLF-terminated.
    pub fn render(&self) -> Vec<u8> {
        let ip = match self.peer.ip() {
            IpAddr::V4(v4) => format!("[{v4}]"),
            IpAddr::V6(v6) => format!("[IPv6:{v6}]"),
        };
        let date = mail_parser::DateTime::from_timestamp(self.unix_time).to_rfc822();
        let mut out = format!("Received: from {} ({ip})\r\n", self.helo);
        if let Some((protocol, cipher)) = self.tls {
            out.push_str(&format!("\t(using {protocol} with cipher {cipher})\r\n"));
        }
        out.push_str(&format!(
            "\tby {} (Tern) with {} id {}",
            self.hostname, self.protocol, self.id
        ));
        if let Some(rcpt) = self.single_recipient {
            out.push_str(&format!("\r\n\tfor <{rcpt}>"));
        }
        out.push_str(&format!(";\r\n\t{date}\r\n"));
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_facts() {
        let id = "01JD5Z8Q4K6V0Y8T3W2R1N9M7B";
        let header = Trace {
            helo: "client.example",
            peer: "[::1]:2500".parse().expect("literal"),
            hostname: "mx.tern.test",
            protocol: "ESMTP",
            tls: None,
            id,
            single_recipient: Some("b@tern.test"),
            unix_time: 0,
        }
        .render();
        let text = String::from_utf8(header).expect("ascii");
        assert_eq!(
            text,
            format!(
                "Received: from client.example ([IPv6:::1])\r\n\tby mx.tern.test (Tern) with ESMTP id {id}\r\n\tfor <b@tern.test>;\r\n\tThu, 1 Jan 1970 00:00:00 +0000\r\n"
            )
        );
    }
}
