//! What the store keeps about a message: its envelope, its bytes and its summary.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::id::MessageId;
use crate::inbox::Inbox;
use crate::summary::{Mailbox, SearchText, Summary};

/// Where a recipient's copy goes. Capture is the catcher; later issues add mailboxes and relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Route {
    /// Kept for inspection (the mail catcher); never delivered anywhere.
    Capture,
    /// Delivered into a local account's mailbox, in the same commit as the message.
    Local {
        /// The account's login.
        account: String,
    },
    /// For another domain: queued for delivery to its MX.
    Remote,
}

impl Route {
    /// The name stored in the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            Route::Capture => "capture",
            Route::Local { .. } => "local",
            Route::Remote => "remote",
        }
    }

    /// The mailbox's account for local delivery.
    pub fn account(&self) -> Option<&str> {
        match self {
            Route::Local { account } => Some(account),
            _ => None,
        }
    }
}

/// One envelope recipient with its DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The forward path as given at RCPT TO.
    pub address: String,
    /// `NOTIFY=` values as given, e.g. `["SUCCESS", "FAILURE"]`; empty when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// `ORCPT=` address, xtext-decoded, with its `rfc822;` type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// Where this copy goes.
    pub route: Route,
}

/// TLS facts of the session that carried the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`.
    pub protocol: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// Everything the SMTP transaction said about a message besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path; empty for the null sender.
    pub mail_from: String,
    /// Accepted recipients in RCPT order.
    pub recipients: Vec<Recipient>,
    /// `BODY=` as given (`7BIT`, `8BITMIME`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `SMTPUTF8` was requested.
    #[serde(default)]
    pub smtputf8: bool,
    /// DSN `RET=` (`FULL` or `HDRS`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    /// DSN `ENVID=`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The HELO/EHLO name the client gave.
    pub helo: String,
    /// TLS facts when the session was encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The authenticated identity, when the client authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The client authenticated or connected from a trusted network (and always in the
    /// catcher, and for Tern's own messages). Only such a sender is sent delivery notices: an
    /// address given by anyone else on an `mx` listener may be forged, and notices to it would
    /// make Tern a reflector. Envelopes stored before this field existed read as trusted.
    #[serde(default = "trusted_by_default")]
    pub trusted_client: bool,
    /// When the message was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

fn trusted_by_default() -> bool {
    true
}

/// A message on its way into the store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its id (the queue id the client is told).
    pub id: MessageId,
    /// The transaction's envelope.
    pub envelope: Envelope,
    /// The `Received:` trace header Tern prepends, CRLF-terminated.
    pub received_header: Vec<u8>,
    /// The message exactly as the client sent it (after dot-unstuffing).
    pub raw: Vec<u8>,
    /// Parsed header facts for listing and search.
    pub summary: Summary,
    /// Decoded text for the full-text index.
    pub search_text: SearchText,
}

impl NewMessage {
    /// The row lists will show for this message once it is committed: tags from `X-Tags` and
    /// plus-addressing, Bcc from the header and from envelope recipients not named in the
    /// headers (as Mailpit shows them).
    pub fn row(&self) -> MessageRow {
        let mut summary = self.summary.clone();
        // Size as delivered (and as `/raw` serves it): the trace header counts too.
        summary.size = (self.received_header.len() + self.raw.len()) as u64;
        summary.bcc.extend(self.envelope.hidden_recipients(&self.summary));
        for rcpt in &self.envelope.recipients {
            if let Some(tag) = Inbox::of(&rcpt.address).tag
                && !summary.tags.contains(&tag)
            {
                summary.tags.push(tag);
            }
        }
        MessageRow {
            id: self.id,
            received_at_ms: self.envelope.received_at_ms,
            read: false,
            summary,
            username: self.envelope.auth.clone(),
        }
    }
}

impl Envelope {
    /// Envelope recipients that no To/Cc/Bcc header names: the message's blind copies.
    pub fn hidden_recipients(&self, summary: &Summary) -> Vec<Mailbox> {
        let named = |address: &str| {
            summary
                .to
                .iter()
                .chain(&summary.cc)
                .chain(&summary.bcc)
                .any(|m| m.address.eq_ignore_ascii_case(address))
        };
        self.recipients
            .iter()
            .filter(|r| !named(&r.address))
            .map(|r| Mailbox { name: String::new(), address: r.address.clone() })
            .collect()
    }
}

/// A message as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    /// Its id.
    pub id: MessageId,
    /// When it was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// Whether it has been read.
    pub read: bool,
    /// Header facts, with tags and blind copies merged in.
    pub summary: Summary,
    /// The authenticated identity that sent it, if any.
    pub username: Option<String>,
}

/// One page of a listing or search, with the counts Mailpit's API reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagePage {
    /// The messages of this page, newest first.
    pub rows: Vec<MessageRow>,
    /// Messages matching the query (all messages without one).
    pub matching: u64,
    /// Unread messages matching the query.
    pub matching_unread: u64,
    /// All messages in the store.
    pub total: u64,
    /// All unread messages in the store.
    pub unread: u64,
    /// Every tag in use.
    pub tags: Vec<String>,
}

/// An inbox with its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxCount {
    /// The folded recipient address.
    pub address: String,
    /// Messages filed under it.
    pub total: u64,
    /// Unread messages filed under it.
    pub unread: u64,
}

/// A local copy still to be written to its account's Maildir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirCopy {
    /// The message.
    pub id: MessageId,
    /// The account it is for.
    pub account: String,
    /// The account's Maildir (holding `tmp`, `new`, `cur`).
    pub maildir: std::path::PathBuf,
}

/// Which messages a change applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every message.
    All,
    /// These messages.
    Ids(Vec<MessageId>),
    /// Messages matching a search query (Mailpit syntax).
    Search(String),
    /// Messages filed under this inbox (a folded address).
    Inbox(String),
    /// Messages matching a parsed query (used to scope changes to one account's mailbox).
    Matching(crate::search::SearchQuery),
}

/// A change to stored messages, applied by the single writer.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Delete the selected messages.
    Delete(Selection),
    /// Mark the selected messages read or unread.
    SetRead(Selection, bool),
    /// Replace the tags of the selected messages (none: remove them all).
    SetTags(Selection, Vec<String>),
    /// Rename a tag on every message that has it (into an existing tag, the two merge);
    /// returns the messages that had it.
    RenameTag {
        /// The tag now.
        from: String,
        /// Its new name.
        to: String,
    },
    /// Remove a tag from every message; returns the messages that had it.
    DeleteTag(String),
    /// These (message, account) Maildir copies are written.
    MaildirDelivered(Vec<(MessageId, String)>),
    /// Delete the oldest messages beyond `max_messages`, and those received before
    /// `older_than_ms`, at most `batch` at a time.
    Prune {
        /// Keep at most this many messages.
        max_messages: Option<u64>,
        /// Delete messages received before this time (ms since the epoch).
        older_than_ms: Option<i64>,
        /// Most messages deleted by one prune step.
        batch: u64,
    },
    /// Record a delivery attempt's results and what the sender must hear of them, atomically:
    /// a crash leaves either both or neither. The reports wait with the message until
    /// [`Mutation::QueueNotified`] turns them into notices. Messages with nothing left to
    /// deliver, report or keep are removed.
    QueueAttempted {
        /// The node that attempted them: only entries it still holds the lease of
        /// ([`crate::queue::Lease`]) are changed; the others' results and reports are refused.
        node: String,
        /// What happened to each entry attempted.
        updates: Vec<(i64, crate::queue::EntryUpdate)>,
        /// When the attempt ran (ms since the epoch).
        attempted_at_ms: i64,
        /// Recipients the sender is to be told about, each with the entry it is about.
        reports: Vec<(i64, crate::queue::QueueReport)>,
    },
    /// Send a message's waiting reports: store the notices (DSNs) made of them and drop the
    /// reports, atomically, so each is sent once. Nothing changes if any of `reports` is gone
    /// (sent already). The message goes if nothing else keeps it.
    QueueNotified {
        /// The message the reports are about.
        message: MessageId,
        /// The reports the notices carry (ids from `StoreRead::queue_reports`).
        reports: Vec<i64>,
        /// New messages for the sender, routed like any other message.
        notices: Vec<NewMessage>,
        /// A delay warning is among them: no entry of the message warns again.
        delay_warned: bool,
    },
    /// An operator's queue command (retry, hold, release, delete).
    QueueCommand {
        /// The entries it applies to.
        target: crate::queue::QueueTarget,
        /// What to do.
        command: crate::queue::QueueCommand,
        /// Now (ms since the epoch): "due now" for retry and release.
        now_ms: i64,
    },
    /// Queue a stored message for more recipients (the catcher's release).
    Enqueue {
        /// The stored message.
        message: MessageId,
        /// The recipients to send it to.
        entries: Vec<crate::queue::NewEntry>,
        /// Now (ms since the epoch): the entries are due at once.
        now_ms: i64,
    },
}

/// A message read back from the store.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// The transaction's envelope.
    pub envelope: Envelope,
    /// The `Received:` header Tern prepended.
    pub received_header: Vec<u8>,
    /// The bytes the client sent.
    pub raw: Vec<u8>,
    /// Parsed header facts, with tags and blind copies merged in.
    pub summary: Summary,
    /// Whether it has been read.
    pub read: bool,
}

impl StoredMessage {
    /// The message as Tern delivers it: trace header, then the client's bytes.
    pub fn full_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.received_header.len() + self.raw.len());
        out.extend_from_slice(&self.received_header);
        out.extend_from_slice(&self.raw);
        out
    }
}
