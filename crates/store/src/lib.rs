//! Where accepted mail lives: the [`Store`] traits and their embedded SQLite backend.
//!
//! The store knows messages, envelopes and summaries; it knows nothing of SMTP sessions or
//! sockets. The crate is layered: the neutral model at the bottom (`id`, `inbox`, `summary`,
//! `accounts`' rules, `queue`'s records and leases, `search`'s parsed query, `model`), the
//! traits here, and the SQLite backend on top in [`sqlite`] (FTS5, WAL, checkpointer,
//! migrations, and the search query compiled to SQL). No `rusqlite` type appears in a public
//! signature outside [`sqlite`], so another backend (PostgreSQL) implements the same traits
//! beside it.
//!
//! Writes arrive from the spool's single writer thread: batches of messages from its group
//! commit ([`Store::commit_batch`]: one transaction and one fsync for the whole batch, so a
//! message is either wholly durable or absent), changes ([`Store::apply`]), queue leases
//! ([`Store::lease_due`]) and index upkeep ([`Store::maintain_index`]). Reads
//! ([`StoreRead`]) run on any number of handles beside it.
//!
//! # Synchronous traits, on purpose
//!
//! The traits stay synchronous; async callers reach them through two doors that already
//! exist, the spool (a channel to the writer thread) and [`pool::Pool`] run under
//! `spawn_blocking`. Decided with a PostgreSQL backend in mind, because:
//!
//! - Group commit is a sequential loop on one thread: take everything queued, write it in one
//!   transaction, answer everyone. It needs no async, and a blocking backend (SQLite is one:
//!   every call is file I/O and fsync) would otherwise need a `spawn_blocking` inside every
//!   async method anyway.
//! - Sync traits are object-safe as they are (`Box<dyn StoreRead>` in the pool, `&mut dyn
//!   Store` in the spool's writer calls); async methods in a `dyn` trait need a boxed future
//!   per call (`async-trait`) and `Send` bounds spread through every caller.
//! - PostgreSQL fits without changing them: a `PostgresStore` holds a `tokio_postgres::Client`
//!   (its connection task spawned on the server's runtime) and a `tokio::runtime::Handle`, and
//!   each method is `handle.block_on(…)` of the query. That is allowed on the writer's own
//!   thread and on `spawn_blocking` threads, which are not runtime workers. A batch is still one
//!   transaction and one round of WAL flush; [`Store::lease_due`] is one `UPDATE queue …
//!   WHERE id IN (SELECT id … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …`. The synchronous
//!   `postgres` crate (the same client behind its own small runtime) also fits.
//! - The cost is one blocking thread per read in progress, bounded by tokio's blocking pool;
//!   at Tern's scale (an MTA and a catcher, not a database proxy) that is cheap.
//!
//! Revisit when reads need what only async gives, many queries pipelined on one PostgreSQL
//! connection or more concurrent readers than blocking threads: then add an async read trait
//! for the readers beside [`StoreRead`]. The writer stays a thread, since group commit is
//! sequential by nature.

pub mod accounts;
pub mod id;
pub mod inbox;
pub mod model;
pub mod pool;
pub mod queue;
pub mod search;
pub mod sqlite;
pub mod summary;

pub use accounts::{AccountError, AccountInfo, AccountStore, Alias, Resolution};
pub use id::MessageId;
pub use inbox::Inbox;
pub use model::{
    Envelope, InboxCount, MaildirCopy, MessagePage, MessageRow, Mutation, NewMessage, Recipient,
    Route, Selection, StoredMessage, TlsInfo,
};
pub use queue::{
    EntryState, EntryUpdate, Lease, NewEntry, QueueCommand, QueueCounts, QueueEntry, QueueFilter,
    QueueReport, QueueTarget, QueueTops, ReportAction,
};
pub use search::{SearchError, SearchQuery};
pub use sqlite::SqliteStore;
pub use summary::{Mailbox, SearchText, Summary};

/// Failures of the storage layer. None of them is ever answered with a 250.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend (its database) refused an operation; the source is the backend's own
    /// error, kept for logs. Each backend converts its errors into this one.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A file or directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Data in the store could not be decoded (corruption or a newer schema).
    #[error("corrupt record {id}: {reason}")]
    Corrupt {
        /// The record's id.
        id: String,
        /// What was wrong.
        reason: String,
    },
    /// A search query could not be parsed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// An account or alias operation was refused (unknown login, taken address, bad input).
    #[error(transparent)]
    Account(#[from] AccountError),
    /// The message a change refers to is not stored (any more).
    #[error("no message {0}")]
    NoSuchMessage(MessageId),
    /// The store was written by a newer Tern.
    #[error("store schema version {found} is newer than this binary supports ({supported})")]
    SchemaTooNew {
        /// Version found on disk.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

/// The write side of a backend, owned by the spool's single writer thread.
///
/// `commit_batch` must not return `Ok` before every message of the batch is on stable storage;
/// the spool acknowledges clients (`250 queued`) on that promise.
pub trait Store: Send + 'static {
    /// Writes every message of `batch` in one durable transaction: all or none.
    fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), StoreError>;

    /// Applies a change (delete, mark read, prune) and returns the ids it touched.
    fn apply(&mut self, mutation: &Mutation) -> Result<Vec<MessageId>, StoreError>;

    /// Does up to about `budget_pages` pages of search-index upkeep, in small steps so the
    /// writer is never held long: SQLite merges the FTS5 segments ingest commits leave
    /// unmerged to stay cheap. A backend whose index needs no such help keeps this default,
    /// which does nothing.
    fn maintain_index(&mut self, budget_pages: u64) -> Result<(), StoreError> {
        let _ = budget_pages;
        Ok(())
    }

    /// Leases to `lease.node`, until `lease.until_ms`, up to `limit` queued entries due at
    /// `lease.now_ms`, oldest due first, and returns them. Entries another node holds an
    /// unexpired lease on are skipped; expired leases are taken over. Entries for the domains
    /// in `skip` are left out: their destinations are busy, and they must not crowd the
    /// others out of the `limit`. Atomic: two nodes never lease the same entry.
    fn lease_due(
        &mut self,
        lease: &Lease,
        limit: u64,
        skip: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError>;

    /// Extends `lease.node`'s leases on `entries` to `lease.until_ms`; returns the entries it
    /// still held (the others were taken over, or finished).
    fn renew_leases(&mut self, lease: &Lease, entries: &[i64]) -> Result<Vec<i64>, StoreError>;

    /// Gives up `node`'s leases on `entries`, making them free to lease again at once.
    fn release_leases(&mut self, node: &str, entries: &[i64]) -> Result<(), StoreError>;
}

/// The read side of a backend; any number of readers may run beside the writer.
pub trait StoreRead: Send + 'static {
    /// One message with its raw bytes, or `None`.
    fn message(&self, id: &MessageId) -> Result<Option<StoredMessage>, StoreError>;

    /// Message ids, newest first, at most `limit` of them.
    fn list_ids(&self, limit: usize) -> Result<Vec<MessageId>, StoreError>;

    /// Number of stored messages.
    fn count(&self) -> Result<u64, StoreError>;

    /// One page of messages, newest first, optionally filtered by a search.
    fn page(
        &self,
        query: Option<&SearchQuery>,
        start: u64,
        limit: u64,
    ) -> Result<MessagePage, StoreError>;

    /// Messages matching `query` with ids greater than `after`, oldest first, at most `limit`.
    fn matching_after(
        &self,
        query: Option<&SearchQuery>,
        after: Option<MessageId>,
        limit: u64,
    ) -> Result<Vec<MessageRow>, StoreError>;

    /// Those of `ids` that match `query`, oldest first (a waiter checking new commits).
    fn matching_among(
        &self,
        query: Option<&SearchQuery>,
        ids: &[MessageId],
    ) -> Result<Vec<MessageRow>, StoreError>;

    /// Local copies whose Maildir file is not written yet, oldest first.
    fn pending_maildir(&self, limit: u64) -> Result<Vec<model::MaildirCopy>, StoreError>;

    /// Inboxes with their counts, busiest first; with `account`, only over that account's
    /// mailbox.
    fn inboxes(&self, account: Option<&str>) -> Result<Vec<InboxCount>, StoreError>;

    /// Queued outbound entries due at `now_ms` (ms since the epoch), oldest due first, leased
    /// or not (the scheduler takes its work with [`Store::lease_due`]).
    /// Entries for the domains in `skip` are left out: their destinations are busy, and they
    /// must not crowd the others out of the `limit`.
    fn due_entries(
        &self,
        now_ms: i64,
        limit: u64,
        skip: &[String],
    ) -> Result<Vec<QueueEntry>, StoreError>;

    /// When the earliest queued outbound entry due after `after_ms` is due (entries due
    /// earlier are being worked on, or wait for capacity).
    fn next_due_ms(&self, after_ms: i64) -> Result<Option<i64>, StoreError>;

    /// Outbound entries matching `filter`, and how many match in all.
    fn queue_entries(&self, filter: &QueueFilter) -> Result<(Vec<QueueEntry>, u64), StoreError>;

    /// Counts over the whole outbound queue.
    fn queue_counts(&self) -> Result<QueueCounts, StoreError>;

    /// Messages received since `since_ms`, counted per `bucket_ms` (each bucket named by its
    /// start, a multiple of `bucket_ms`), oldest first; empty buckets are left out. Reads the
    /// time index over that span only, never the whole store.
    fn received_histogram(
        &self,
        since_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError>;

    /// The busiest destination domains and the commonest last errors among the first
    /// `sample` queue entries (oldest first), at most `limit` of each: bounded however long the
    /// queue grows.
    fn queue_tops(&self, sample: u64, limit: u64) -> Result<QueueTops, StoreError>;

    /// Messages with reports waiting for their notice and no queued entry due at `now_ms`
    /// (nothing being attempted whose outcome could still join the notice), at most `limit`.
    fn reported_messages(&self, now_ms: i64, limit: u64) -> Result<Vec<MessageId>, StoreError>;

    /// The reports waiting for `message`'s notice, with their ids, oldest first.
    fn queue_reports(&self, message: &MessageId) -> Result<Vec<(i64, QueueReport)>, StoreError>;

    /// The newest message's id.
    fn latest_id(&self) -> Result<Option<MessageId>, StoreError>;

    /// Every tag of the messages matching `query` (of all messages without one), sorted.
    fn tags_of(&self, query: Option<&SearchQuery>) -> Result<Vec<String>, StoreError>;

    /// Size of the store on disk, in bytes.
    fn size_bytes(&self) -> Result<u64, StoreError>;
}
