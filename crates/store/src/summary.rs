//! The parsed facts kept beside each message (from, to, subject, snippet …), extracted once at
//! ingest with mail-parser so listing never re-parses raw bytes.

use mail_parser::{
    AddressList, HeaderValue, Message, MessageParser, MessagePart, PartKind, PartRole,
};
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
            // The text bodies; mail-parser lists the HTML body there when a message has no text
            // alternative, and `part_text` reduces it to words.
            body: message.text_body().map(part_text).collect::<Vec<_>>().join("\n"),
            attachments: attachment_parts(&message)
                .filter_map(|a| a.attachment_name())
                .collect::<Vec<_>>()
                .join("\n"),
            headers: message
                .headers()
                .iter()
                .map(|h| format!("{}: {}", h.name().as_str(), header_text(h.value())))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let tags = message
            .headers()
            .value("X-Tags")
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
            attachments: u32::try_from(attachment_parts(&message).filter(is_attachment).count())
                .unwrap_or(u32::MAX),
            snippet: snippet_of(&message),
            bcc: message.bcc().map(mailboxes).unwrap_or_default(),
            reply_to: message.reply_to().map(mailboxes).unwrap_or_default(),
            tags,
        };
        (summary, text)
    }
}

/// A header value as searchable text, whatever its parsed form.
fn header_text(value: HeaderValue<'_>) -> String {
    match value {
        HeaderValue::Text(text) => text.to_string(),
        HeaderValue::TextList(list) => list.iter().collect::<Vec<_>>().join(", "),
        HeaderValue::Address(address) => address
            .mailboxes()
            .map(|a| match (a.name(), a.address()) {
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

/// The parts that are not body text: mail-parser's attachments and the inline images,
/// sounds and videos shown in the body, which mail-parser leaves out of its attachments
/// while their file names are still worth searching.
fn attachment_parts<'m>(message: &'m Message<'_>) -> impl Iterator<Item = MessagePart<'m>> {
    message.root().parts().filter(|part| part.is_attachment() || part.role() == PartRole::MediaBody)
}

/// A part counts as an attachment as Mailpit counts them: `Content-Disposition: attachment`,
/// or `application/octet-stream` whatever its disposition (inline images do not count).
fn is_attachment(part: &MessagePart<'_>) -> bool {
    let disposition =
        part.content_disposition().map(|d| d.ctype().eq_ignore_ascii_case("attachment"));
    let octet_stream = part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("application")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("octet-stream"))
    });
    disposition == Some(true) || octet_stream
}

/// The snippet, from the HTML body when there is one (as Mailpit does), else the text body.
fn snippet_of(message: &Message<'_>) -> String {
    let html = message.html_body().next().filter(|p| matches!(p.kind(), PartKind::Html));
    match html.or_else(|| message.text_body().next()) {
        Some(part) => snippet(&part_text(part)),
        None => String::new(),
    }
}

/// A body part as plain text: HTML is reduced to its words.
fn part_text(part: MessagePart<'_>) -> String {
    match part.kind() {
        PartKind::Html => part.text().map(|html| html_to_text(&html)).unwrap_or_default(),
        PartKind::Text => part.text().map(String::from).unwrap_or_default(),
        _ => String::new(),
    }
}

/// HTML reduced to text for search and snippets: tags become spaces (so `<p>a</p><p>b</p>` is
/// two words), `<script>`/`<style>` contents are dropped, common entities decoded.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        out.push(' ');
        let after = &rest[open..];
        let lower_name: String = after[1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let skip_to = match lower_name.as_str() {
            "script" | "style" | "head" => {
                let closing = format!("</{lower_name}");
                after.to_ascii_lowercase().find(&closing).unwrap_or(after.len())
            }
            _ => 0,
        };
        let after = &after[skip_to..];
        match after.find('>') {
            Some(close) => rest = &after[close + 1..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    decode_entities(&out)
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        // Bytes, not chars: 12 bytes may end inside a multi-byte character, and `;` is ASCII,
        // so where it is found is always a character boundary.
        let Some(semi) = tail.as_bytes()[..tail.len().min(12)].iter().position(|&b| b == b';')
        else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn mailboxes(address: AddressList<'_>) -> Vec<Mailbox> {
    address
        .mailboxes()
        .map(|a| Mailbox {
            name: a.name().unwrap_or_default().to_string(),
            address: a.address().unwrap_or_default().to_string(),
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

    /// Found by the `message_summary` fuzz target: an `&` followed within 12 bytes by a
    /// multi-byte character made the search for `;` slice inside that character (a panic at
    /// end of DATA, for any client sending such HTML).
    #[test]
    fn an_entity_search_never_splits_a_character() {
        assert_eq!(decode_entities("&n}wI\u{fffd}\u{fffd}; x"), "&n}wI\u{fffd}\u{fffd}; x");
        assert_eq!(decode_entities("a&éé;b"), "a&éé;b");
        assert_eq!(decode_entities("&amp;é&lt;"), "&é<");
        assert_eq!(html_to_text("<p>&ééééééé</p>").trim(), "&ééééééé");
    }

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
    fn html_becomes_words() {
        assert_eq!(
            html_to_text(
                "<h1>Message 119</h1><p>code&nbsp;48213 &amp; more</p><style>p{x}</style>end"
            )
            .split_whitespace()
            .collect::<Vec<_>>(),
            ["Message", "119", "code", "48213", "&", "more", "end"]
        );
        assert_eq!(html_to_text("a &unknown; b &#233; &#x41;"), "a &unknown; b é A");
        assert_eq!(html_to_text("unclosed <b"), "unclosed  ");
    }

    #[test]
    fn inline_images_are_not_attachments() {
        let raw = b"Subject: a\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/html\r\n\r\n<p>hi</p><p>there</p>\r\n--B\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\nContent-ID: <i>\r\n\r\nPNG\r\n--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nPDF\r\n--B--\r\n";
        let (s, text) = Summary::extract_with_text(raw);
        assert_eq!(s.attachments, 1);
        assert_eq!(s.snippet, "hi there");
        assert!(text.body.contains("hi") && text.body.contains("there"));
        assert_eq!(text.attachments, "a.pdf");
    }

    #[test]
    fn inline_images_keep_their_names_for_search() {
        let raw = b"Subject: a\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\nContent-Type: image/png; name=logo.png\r\nContent-Disposition: inline; filename=logo.png\r\n\r\nPNG\r\n--B--\r\n";
        let (s, text) = Summary::extract_with_text(raw);
        assert_eq!(s.attachments, 0);
        assert_eq!(text.attachments, "logo.png");
    }

    #[test]
    fn empty_message_has_a_summary() {
        let s = Summary::extract(b"");
        assert_eq!(s.size, 0);
        assert_eq!(s.subject, "");
    }
}
