//! The parsed facts kept beside each message (from, to, subject, snippet …), extracted once at
//! ingest with mail-parser so listing never re-parses raw bytes.

use mail_parser::{Address, MessageParser};
use serde::{Deserialize, Serialize};

/// Length of the text snippet, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// A display name and address from a header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mailbox {
    /// Display name, decoded; empty when absent.
    pub name: String,
    /// The address; empty for groups without members.
    pub address: String,
}

/// Header facts of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// `From:`, first mailbox.
    pub from: Option<Mailbox>,
    /// `To:` mailboxes.
    pub to: Vec<Mailbox>,
    /// `Cc:` mailboxes.
    pub cc: Vec<Mailbox>,
    /// Decoded `Subject:`, empty when absent.
    pub subject: String,
    /// `Date:` as seconds since the Unix epoch.
    pub date: Option<i64>,
    /// `Message-ID:` without angle brackets.
    pub message_id: Option<String>,
    /// Size of the raw message in bytes.
    pub size: u64,
    /// Number of attachments.
    pub attachments: u32,
    /// The first characters of the text body, whitespace collapsed.
    pub snippet: String,
}

impl Summary {
    /// Extracts the summary; a message mail-parser cannot read still gets its size.
    pub fn extract(raw: &[u8]) -> Summary {
        let size = raw.len() as u64;
        let Some(message) = MessageParser::default().parse(raw) else {
            return Summary { size, ..Summary::default() };
        };
        Summary {
            from: message.from().and_then(|a| mailboxes(a).into_iter().next()),
            to: message.to().map(mailboxes).unwrap_or_default(),
            cc: message.cc().map(mailboxes).unwrap_or_default(),
            subject: message.subject().unwrap_or_default().to_string(),
            date: message.date().map(|d| d.to_timestamp()),
            message_id: message.message_id().map(str::to_string),
            size,
            attachments: u32::try_from(message.attachment_count()).unwrap_or(u32::MAX),
            snippet: message.body_text(0).map(|text| snippet(&text)).unwrap_or_default(),
        }
    }
}

fn mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
    address
        .iter()
        .map(|a| Mailbox {
            name: a.name.as_deref().unwrap_or_default().to_string(),
            address: a.address.as_deref().unwrap_or_default().to_string(),
        })
        .collect()
}

fn snippet(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() >= SNIPPET_CHARS {
            return out.chars().take(SNIPPET_CHARS).collect();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_encoded_headers_and_body() {
        let raw = b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n\
To: a@example.com, \"B\" <b@example.com>\r\n\
Cc: c@example.com\r\n\
Subject: =?utf-8?b?SGVsbG8gd8O2cmxk?=\r\n\
Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <abc@example.org>\r\n\
\r\n\
Hello   there\r\n  world\r\n";
        let s = Summary::extract(raw);
        assert_eq!(
            s.from,
            Some(Mailbox { name: "Jörg".into(), address: "jorg@example.org".into() })
        );
        assert_eq!(s.to.len(), 2);
        assert_eq!(s.to[1].name, "B");
        assert_eq!(s.cc[0].address, "c@example.com");
        assert_eq!(s.subject, "Hello wörld");
        assert_eq!(s.date, Some(1795341600));
        assert_eq!(s.message_id.as_deref(), Some("abc@example.org"));
        assert_eq!(s.snippet, "Hello there world");
        assert_eq!(s.size, raw.len() as u64);
    }

    #[test]
    fn empty_message_has_a_summary() {
        let s = Summary::extract(b"");
        assert_eq!(s.size, 0);
        assert_eq!(s.subject, "");
    }
}
