//! JSON shapes of the API, named and typed as Mailpit's API v1 names them (`ID`, `From`,
//! `messages_count` …), so Mailpit clients read Tern unchanged.

use serde::Serialize;
use tern_store::{Mailbox, MessagePage, MessageRow};

/// `Address`: a name and an address.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Address {
    /// Display name, possibly empty.
    #[serde(rename = "Name")]
    pub name: String,
    /// The address.
    #[serde(rename = "Address")]
    pub address: String,
}

impl From<&Mailbox> for Address {
    fn from(m: &Mailbox) -> Self {
        Address { name: m.name.clone(), address: m.address.clone() }
    }
}

impl Address {
    /// The mailbox, or an empty address when there is none (Mailpit never sends null).
    pub fn or_empty(mailbox: Option<&Mailbox>) -> Address {
        mailbox
            .map(Address::from)
            .unwrap_or(Address { name: String::new(), address: String::new() })
    }
}

/// Converts mailboxes; always a list, never null.
pub fn addresses(list: &[Mailbox]) -> Vec<Address> {
    list.iter().map(Address::from).collect()
}

/// `MessageSummary`: one message in a list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageSummary {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "MessageID")]
    pub message_id: String,
    pub read: bool,
    pub from: Address,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    pub reply_to: Vec<Address>,
    pub subject: String,
    pub created: String,
    pub username: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub attachments: u64,
    pub snippet: String,
}

impl From<&MessageRow> for MessageSummary {
    fn from(row: &MessageRow) -> Self {
        let s = &row.summary;
        MessageSummary {
            id: row.id.to_string(),
            message_id: s.message_id.clone().unwrap_or_default(),
            read: row.read,
            from: Address::or_empty(s.from.as_ref()),
            to: addresses(&s.to),
            cc: addresses(&s.cc),
            bcc: addresses(&s.bcc),
            reply_to: addresses(&s.reply_to),
            subject: s.subject.clone(),
            created: rfc3339_ms(row.received_at_ms),
            username: row.username.clone().unwrap_or_default(),
            tags: s.tags.clone(),
            size: s.size,
            attachments: u64::from(s.attachments),
            snippet: s.snippet.clone(),
        }
    }
}

/// `MessagesSummary`: a page of a list or search.
#[derive(Debug, Clone, Serialize)]
pub struct MessagesSummary {
    pub total: u64,
    pub unread: u64,
    pub messages_count: u64,
    pub messages_unread: u64,
    pub start: u64,
    pub tags: Vec<String>,
    pub messages: Vec<MessageSummary>,
}

impl MessagesSummary {
    /// The JSON for a page that starts at `start`.
    pub fn new(page: &MessagePage, start: u64) -> Self {
        MessagesSummary {
            total: page.total,
            unread: page.unread,
            messages_count: page.matching,
            messages_unread: page.matching_unread,
            start,
            tags: page.tags.clone(),
            messages: page.rows.iter().map(MessageSummary::from).collect(),
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds, e.g.
/// `2026-11-22T10:00:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let seconds = mail_parser::DateTime::from_timestamp(ms.div_euclid(1000)).to_rfc3339();
    let millis = ms.rem_euclid(1000);
    match seconds.strip_suffix('Z') {
        Some(base) => format!("{base}.{millis:03}Z"),
        None => seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_341_600_123), "2026-11-22T10:00:00.123Z");
    }
}
