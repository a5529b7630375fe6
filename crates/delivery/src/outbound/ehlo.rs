//! What the next hop said it supports: the ESMTP extensions of an EHLO reply that the client
//! acts on. Pure code over a parsed [`ClientReply`]; unknown keywords are ignored.

use tern_protocol::client_reply::ClientReply;

/// The extensions of one EHLO reply (all off after a HELO).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE n` (RFC 1870): the advertised limit in bytes; `Some(0)` means "no fixed limit".
    pub size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `AUTH` mechanisms, upper-cased (RFC 4954), in the server's order.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the extensions from an EHLO reply; the first line is the greeting, not a keyword.
    pub fn from_ehlo(reply: &ClientReply) -> Self {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            caps.add_line(line);
        }
        caps
    }

    /// The size limit to enforce before sending, in bytes: `None` when none was advertised.
    pub fn max_size(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }

    /// Whether `mechanism` (upper case) was offered with `AUTH`.
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }

    fn add_line(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else { return };
        let keyword = keyword.to_ascii_uppercase();
        // Old servers advertise `AUTH=LOGIN PLAIN` as well as (or instead of) `AUTH LOGIN PLAIN`.
        let (keyword, first_param) = match keyword.split_once('=') {
            Some(("AUTH", first)) => ("AUTH".to_owned(), Some(first.to_owned())),
            _ => (keyword, None),
        };
        match keyword.as_str() {
            "STARTTLS" => self.starttls = true,
            "PIPELINING" => self.pipelining = true,
            "8BITMIME" => self.eight_bit_mime = true,
            "SMTPUTF8" => self.smtputf8 = true,
            "DSN" => self.dsn = true,
            "ENHANCEDSTATUSCODES" => self.enhanced_status_codes = true,
            // A SIZE whose value does not parse is treated as "no fixed limit", as
            // SIZE without a value is.
            "SIZE" => self.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
            "AUTH" => {
                for mechanism in first_param.into_iter().chain(words.map(str::to_ascii_uppercase)) {
                    if !mechanism.is_empty() && !self.offers_auth(&mechanism) {
                        self.auth.push(mechanism);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::client_reply::parse_reply;

    fn caps(reply: &str) -> Capabilities {
        Capabilities::from_ehlo(&parse_reply(reply.as_bytes()).expect("reply"))
    }

    #[test]
    fn reads_the_extensions_the_client_uses() {
        let c = caps(
            "250-mx.test Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n\
             250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n\
             250-AUTH PLAIN login\r\n250 CHUNKING\r\n",
        );
        let expected = Capabilities {
            starttls: true,
            pipelining: true,
            size: Some(10_240_000),
            eight_bit_mime: true,
            smtputf8: true,
            dsn: true,
            enhanced_status_codes: true,
            auth: vec!["PLAIN".into(), "LOGIN".into()],
        };
        assert_eq!(c, expected);
        assert_eq!(c.max_size(), Some(10_240_000));
        assert!(c.offers_auth("LOGIN") && !c.offers_auth("CRAM-MD5"));
    }

    #[test]
    fn table() {
        let cases: &[(&str, Capabilities)] = &[
            ("250 mx.test\r\n", Capabilities::default()),
            // The greeting line is never a keyword, even when it looks like one.
            ("250-STARTTLS\r\n250 DSN\r\n", Capabilities { dsn: true, ..Default::default() }),
            ("250-mx\r\n250 SIZE\r\n", Capabilities { size: Some(0), ..Default::default() }),
            ("250-mx\r\n250 SIZE lots\r\n", Capabilities { size: Some(0), ..Default::default() }),
            ("250-mx\r\n250 size 100\r\n", Capabilities { size: Some(100), ..Default::default() }),
            (
                "250-mx\r\n250-AUTH=LOGIN PLAIN\r\n250 AUTH LOGIN XOAUTH2\r\n",
                Capabilities {
                    auth: vec!["LOGIN".into(), "PLAIN".into(), "XOAUTH2".into()],
                    ..Default::default()
                },
            ),
            ("250-mx\r\n250-\r\n250 X-UNKNOWN 1\r\n", Capabilities::default()),
        ];
        for (reply, expected) in cases {
            assert_eq!(&caps(reply), expected, "{reply:?}");
        }
        assert_eq!(caps("250-mx\r\n250 SIZE 0\r\n").max_size(), None);
    }
}
