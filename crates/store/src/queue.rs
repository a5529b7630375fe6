//! The outbound queue's records: one entry per remote recipient of a message, written in the
//! same transaction as the message, and the queries and changes the scheduler and the queue
//! management commands need.
//!
//! The store keeps the facts (state, attempts, next attempt, last error); when to retry and
//! what to tell the sender is decided by the scheduler in `tern-queue`. Finished entries are
//! removed, and a message whose last entry finishes is removed too unless it also has a copy
//! that stays (a local mailbox or the catcher) or reports waiting for their notice.
//!
//! Entries being attempted are leased to the node attempting them ([`Lease`]), in the store,
//! so several nodes can share one queue: a lease keeps the others off until its deadline, and
//! an attempt's results are recorded only while its node still holds the lease.
//!
//! What the sender is to hear of (a failed, delayed or relayed recipient) is written as a
//! report in the same transaction as the attempt's results, and kept with the message until
//! the scheduler sends one notice for all of a message's waiting reports: then the notice is
//! stored and the reports dropped in one transaction, so a crash loses no report and sends
//! none twice.

use serde::Serialize;

use crate::id::MessageId;

/// Where an entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Waiting for its next attempt (which may be due now).
    Queued,
    /// Put on hold by an operator, or a bounce that could not be delivered (kept for the
    /// postmaster instead of bouncing a bounce); never attempted until released.
    Held,
}

impl EntryState {
    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Queued => "queued",
            EntryState::Held => "held",
        }
    }

    /// The state or action named by [`Self::as_str`], if `text` is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "queued" => Some(EntryState::Queued),
            "held" => Some(EntryState::Held),
            _ => None,
        }
    }
}

/// One remote recipient of a message, waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    /// The entry's number.
    pub id: i64,
    /// The message it belongs to (its queue id).
    pub message_id: MessageId,
    /// Reverse path for `MAIL FROM` (empty for `<>`).
    pub sender: String,
    /// The recipient.
    pub recipient: String,
    /// The recipient's domain, lowercased.
    pub domain: String,
    /// DSN `NOTIFY=` values (empty when the sender gave none).
    pub notify: Vec<String>,
    /// DSN `ORCPT=`, with its type.
    pub orcpt: Option<String>,
    /// Queued or held.
    pub state: EntryState,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the entry was created (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When the next attempt is due (ms since the Unix epoch).
    pub next_attempt_ms: i64,
    /// When the last attempt ran, if any.
    pub last_attempt_ms: Option<i64>,
    /// What went wrong last time: the remote server's reply or the local error.
    pub last_error: Option<String>,
    /// A delay warning was sent for it.
    pub delay_warned: bool,
    /// The message came from a trusted client (`Envelope::trusted_client`): only
    /// then is its sender told what became of it.
    pub trusted_client: bool,
}

/// A node's claim on queue entries while it attempts them: until `until_ms` no other node
/// leases them, and only the holder may record their results. A node that dies leaves its
/// leases to expire, and then the entries come back to whichever node looks first; a node
/// that is still working renews them. Every backend implements it with one atomic statement
/// (SQLite: an `UPDATE … RETURNING` under its write lock; PostgreSQL: `SELECT … FOR UPDATE
/// SKIP LOCKED` in the same transaction as the `UPDATE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it: a name unique to one running process (see `tern-queue`'s scheduler).
    pub node: String,
    /// Now (ms since the Unix epoch): entries due by then, and leases that ended by then, are
    /// free to take.
    pub now_ms: i64,
    /// When the lease ends unless renewed (ms since the Unix epoch).
    pub until_ms: i64,
}

/// A recipient to add to the queue for an already stored message (the catcher's release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Reverse path for `MAIL FROM`.
    pub sender: String,
    /// The recipient.
    pub recipient: String,
    /// DSN `NOTIFY=` values; `["NEVER"]` for mail whose sender must not be told.
    pub notify: Vec<String>,
}

/// What an attempt did to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryUpdate {
    /// Finished (delivered, or bounced): remove the entry.
    Done,
    /// Try again at `next_attempt_ms`.
    Defer {
        /// When to try next (ms since the Unix epoch).
        next_attempt_ms: i64,
        /// Why this attempt failed.
        error: String,
        /// A delay warning has now been sent.
        delay_warned: bool,
    },
    /// Keep it, but never try again until released (an undeliverable bounce).
    Hold {
        /// Why.
        error: String,
    },
}

/// What a report says happened to a recipient (RFC 3464 `Action:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportAction {
    /// Given up on.
    Failed,
    /// Still being retried.
    Delayed,
    /// Delivered to a local mailbox.
    Delivered,
    /// Handed to a next hop that will not report further.
    Relayed,
}

impl ReportAction {
    /// The name stored in the database (the RFC 3464 action).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportAction::Failed => "failed",
            ReportAction::Delayed => "delayed",
            ReportAction::Delivered => "delivered",
            ReportAction::Relayed => "relayed",
        }
    }

    /// The state or action named by [`Self::as_str`], if `text` is one.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "failed" => Some(ReportAction::Failed),
            "delayed" => Some(ReportAction::Delayed),
            "delivered" => Some(ReportAction::Delivered),
            "relayed" => Some(ReportAction::Relayed),
            _ => None,
        }
    }
}

/// One recipient the sender is to be told about, waiting for its message's notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueReport {
    /// The message it is about.
    pub message_id: MessageId,
    /// The entry's reverse path: the notice goes there.
    pub sender: String,
    /// The recipient.
    pub recipient: String,
    /// DSN `ORCPT=`, with its type.
    pub orcpt: Option<String>,
    /// What happened.
    pub action: ReportAction,
    /// RFC 3463 status code.
    pub status: String,
    /// The server that answered, if one did.
    pub remote_mta: Option<String>,
    /// Its answer, or what went wrong.
    pub diagnostic: Option<String>,
    /// When the attempt ran (ms since the Unix epoch).
    pub last_attempt_ms: Option<i64>,
    /// Until when it is retried (ms since the Unix epoch), for delayed recipients.
    pub retry_until_ms: Option<i64>,
}

/// Which entries a queue command applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueTarget {
    /// Every entry.
    All,
    /// Every entry of these messages.
    Messages(Vec<MessageId>),
}

/// An operator's queue command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueCommand {
    /// Make queued entries due now (held ones stay held).
    Retry,
    /// Hold entries: no attempts until released.
    Hold,
    /// Release held entries and make them due now.
    Release,
    /// Remove entries without delivering them (and their message if nothing else keeps it).
    Delete,
}

/// Filter for listing the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    /// Only entries of this message.
    pub message: Option<MessageId>,
    /// Only entries in this state.
    pub state: Option<EntryState>,
    /// Most entries returned (0 = no limit).
    pub limit: u64,
    /// Entries skipped first.
    pub start: u64,
}

/// Counts over the whole queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Entries waiting (due or not).
    pub queued: u64,
    /// Entries held.
    pub held: u64,
    /// Messages with at least one entry.
    pub messages: u64,
}

/// What a sample of the queue holds most of (see `StoreRead::queue_tops`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueTops {
    /// Recipient domains with their entry counts, most first.
    pub destinations: Vec<(String, u64)>,
    /// Last errors (the remote reply or the local failure) with their entry counts, most
    /// first.
    pub errors: Vec<(String, u64)>,
    /// Entries read (the whole queue when it is no longer than the sample).
    pub sampled: u64,
}

/// The domain part of an address, lowercased (the whole string when it has no `@`).
pub fn domain_of(address: &str) -> String {
    address.rsplit_once('@').map_or(address, |(_, domain)| domain).to_lowercase()
}
