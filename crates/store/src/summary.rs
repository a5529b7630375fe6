//! The parsed facts kept beside each message (from, to, subject, snippet …), extracted once at
//! ingest with mail-parser so listing never re-parses raw bytes.

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
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
    /// `Bcc:` mailboxes from the header (rarely present; hidden recipients come from the
    /// envelope, see [`crate::model::Envelope::hidden_recipients`]).
    #[serde(default)]
    pub bcc: Vec<Mailbox>,
    /// `Reply-To:` mailboxes.
    #[serde(default)]
    pub reply_to: Vec<Mailbox>,
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
    /// Tags from the `X-Tags:` header (comma-separated, as Mailpit reads them).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Decoded text of a message for the full-text index; built at ingest, never stored whole.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchText {
    /// Every text body (HTML reduced to text), decoded from its transfer encoding and charset.
    pub body: String,
    /// Attachment file names.
    pub attachments: String,
    /// Every header as `Name: decoded value` lines.
    pub headers: String,
}

impl Summary {
    /// Extracts the summary; a message mail-parser cannot read still gets its size.
    pub fn extract(raw: &[u8]) -> Summary {
        Self::extract_with_text(raw).0
    }

    /// Extracts the summary and the text the search index needs, parsing once.
    pub fn extract_with_text(raw: &[u8]) -> (Summary, SearchText) {
        let size = raw.len() as u64;
        let Some(message) = MessageParser::default().parse(raw) else {
            let text = SearchText {
                body: String::from_utf8_lossy(raw).into_owned(),
                ..SearchText::default()
            };
            return (Summary { size, ..Summary::default() }, text);
        };
        let text = SearchText {
            body: (0..message.text_body_count())
                .filter_map(|i| message.body_text(i))
                .collect::<Vec<_>>()
                .join("\n"),
            attachments: message
                .attachments()
                .filter_map(|a| a.attachment_name())
                .collect::<Vec<_>>()
                .join("\n"),
            headers: message
                .headers()
                .iter()
                .map(|h| format!("{}: {}", h.name(), header_text(h.value())))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let tags = message
            .header("X-Tags")
            .map(header_text)
            .map(|v| v.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect())
            .unwrap_or_default();
        let summary = Summary {
            from: message.from().and_then(|a| mailboxes(a).into_iter().next()),
            to: message.to().map(mailboxes).unwrap_or_default(),
            cc: message.cc().map(mailboxes).unwrap_or_default(),
            subject: message.subject().unwrap_or_default().to_string(),
            date: message.date().map(|d| d.to_timestamp()),
            message_id: message.message_id().map(str::to_string),
            size,
            attachments: u32::try_from(message.attachment_count()).unwrap_or(u32::MAX),
            snippet: message.body_text(0).map(|text| snippet(&text)).unwrap_or_default(),
            bcc: message.bcc().map(mailboxes).unwrap_or_default(),
            reply_to: message.reply_to().map(mailboxes).unwrap_or_default(),
            tags,
        };
        (summary, text)
    }
}

/// A header value as searchable text, whatever its parsed form.
fn header_text(value: &HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Text(text) => text.to_string(),
        HeaderValue::TextList(list) => list.join(", "),
        HeaderValue::Address(address) => address
            .iter()
            .map(|a| match (a.name.as_deref(), a.address.as_deref()) {
                (Some(name), Some(addr)) => format!("{name} <{addr}>"),
                (None, Some(addr)) => addr.to_string(),
                (Some(name), None) => name.to_string(),
                (None, None) => String::new(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        HeaderValue::DateTime(date) => date.to_rfc822(),
        HeaderValue::ContentType(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{sub}", ct.ctype()),
            None => ct.ctype().to_string(),
        },
        HeaderValue::Received(_) | HeaderValue::Empty => String::new(),
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
