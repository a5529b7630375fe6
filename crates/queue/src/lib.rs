//! The spool: the single writer behind the door (`tern-ingest`) by which mail enters the store.
//!
//! Sessions [`Spool::submit`] a finished message and wait; a single writer thread takes every
//! message that arrived while its previous commit was running, writes them in one transaction
//! (one fsync) and then answers them all. Under load many sessions share each fsync (group
//! commit); when idle a lone message commits at once. A session is told "queued" only after
//! its message is durable, and told of a failure otherwise, never both.
//!
//! The same writer applies every other change to stored mail (delete, mark read, prune), so
//! there is exactly one writer, and publishes an [`Event`] after each change for live views
//! and waiters. [`maintenance`] prunes old mail and merges the search index through it.

mod bodies;
pub mod dsn;
pub mod maintenance;
pub mod notice;
mod reports;
pub mod retry;
pub mod scheduler;
pub mod space;
pub mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tern_store::{
    Lease, MessageId, MessageRow, Mutation, NewMessage, QueueEntry, Selection, Store, StoreError,
};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

/// Events buffered per subscriber before a slow one starts missing them.
pub const EVENT_CAPACITY: usize = 1024;

/// A change to stored mail, published after it is durable.
#[derive(Debug, Clone)]
pub enum Event {
    /// New messages were committed, in commit order.
    Committed(Arc<Vec<MessageRow>>),
    /// These messages were deleted.
    Deleted(Arc<Vec<MessageId>>),
    /// These messages were marked read (`true`) or unread.
    ReadChanged(Arc<Vec<MessageId>>, bool),
    /// These messages' tags changed.
    TagsChanged(Arc<Vec<MessageId>>),
    /// Every message was deleted.
    Truncated,
    /// The outbound queue changed (an attempt was recorded, an operator command, a release):
    /// the scheduler looks for due work, queue views refresh.
    QueueChanged,
}

/// Default bound on messages waiting for the writer; senders wait when it is full.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;
/// Default most messages in one commit.
pub const DEFAULT_MAX_BATCH_MESSAGES: usize = 1024;
/// Default most raw bytes in one commit, so a batch of huge messages stays bounded.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Tuning of the group-commit writer.
#[derive(Debug, Clone, Copy)]
pub struct SpoolConfig {
    /// Messages that may wait for the writer before `submit` applies backpressure.
    pub queue_capacity: usize,
    /// Most messages in one transaction.
    pub max_batch_messages: usize,
    /// Most raw bytes in one transaction (a single larger message still commits alone).
    pub max_batch_bytes: usize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_batch_messages: DEFAULT_MAX_BATCH_MESSAGES,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
        }
    }
}

/// Why a message was not queued. The client must get a 4xx, never 250.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// The store failed the commit that carried this message.
    #[error("store commit failed: {0}")]
    Store(Arc<StoreError>),
    /// The writer has stopped (shutdown or a crash of its thread).
    #[error("spool writer is not running")]
    Closed,
}

/// Counters describing group commit, for logs and metrics.
#[derive(Debug, Default)]
pub struct SpoolStats {
    commits: AtomicU64,
    messages: AtomicU64,
    failed_commits: AtomicU64,
    max_batch: AtomicU64,
    commit_micros: AtomicU64,
    bytes: AtomicU64,
    deleted: AtomicU64,
}

/// A point-in-time copy of [`SpoolStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Successful transactions.
    pub commits: u64,
    /// Messages made durable.
    pub messages: u64,
    /// Transactions that failed (their messages were refused).
    pub failed_commits: u64,
    /// Largest number of messages in one transaction.
    pub max_batch: u64,
    /// Time spent in successful commits, in microseconds.
    pub commit_micros: u64,
    /// Raw bytes of the messages made durable.
    pub bytes: u64,
    /// Messages deleted (by request or by retention).
    pub deleted: u64,
}

impl StatsSnapshot {
    /// Average messages per successful commit.
    pub fn mean_batch(&self) -> f64 {
        if self.commits == 0 { 0.0 } else { self.messages as f64 / self.commits as f64 }
    }
}

impl SpoolStats {
    /// Reads the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
            max_batch: self.max_batch.load(Ordering::Relaxed),
            commit_micros: self.commit_micros.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
        }
    }
}

/// Work for the store's write side, run by the writer thread in arrival order.
type StoreCall = Box<dyn FnOnce(&mut dyn Store) + Send>;

enum Job {
    /// Messages that commit together: all in one transaction or none.
    Commit {
        messages: Vec<NewMessage>,
        done: oneshot::Sender<Result<(), SpoolError>>,
    },
    Mutate {
        mutation: Mutation,
        done: oneshot::Sender<Result<Vec<MessageId>, SpoolError>>,
    },
    Call(StoreCall),
}

/// Handle used by sessions and the API to change stored mail; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    jobs: mpsc::Sender<Job>,
    stats: Arc<SpoolStats>,
    events: broadcast::Sender<Event>,
    queue_changed: Arc<Notify>,
    reserve: Option<Arc<space::Reserve>>,
}

/// Owns the writer thread; [`SpoolWriter::join`] waits until every submitted message is answered.
pub struct SpoolWriter {
    thread: JoinHandle<()>,
    stats: Arc<SpoolStats>,
}

impl Spool {
    /// Starts the writer thread over `store`.
    pub fn start<S: Store>(store: S, config: SpoolConfig) -> (Spool, SpoolWriter) {
        let (jobs, rx) = mpsc::channel(config.queue_capacity.max(1));
        let stats = Arc::new(SpoolStats::default());
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let queue_changed = Arc::new(Notify::new());
        let writer = Writer {
            store,
            config,
            stats: stats.clone(),
            events: events.clone(),
            queue_changed: queue_changed.clone(),
            failing: None,
        };
        let thread = std::thread::Builder::new()
            .name("tern-spool-writer".into())
            .spawn(move || writer.run(rx))
            .unwrap_or_else(|e| panic!("cannot start the spool writer thread: {e}"));
        let spool = Spool { jobs, stats: stats.clone(), events, queue_changed, reserve: None };
        (spool, SpoolWriter { thread, stats })
    }

    /// Keeps `reserve` free: see [`Spool::room`].
    pub fn with_reserve(mut self, reserve: space::Reserve) -> Spool {
        self.reserve = Some(Arc::new(reserve));
        self
    }

    /// Whether a new message of `size` bytes (what the client declared; 0 when unknown) fits
    /// above the free-space reserve; always when there is none.
    pub fn room(&self, size: u64) -> Result<(), space::NoRoom> {
        self.reserve.as_ref().map_or(Ok(()), |reserve| reserve.room(size))
    }

    /// Queues `message` and returns its id once it is durable.
    pub async fn submit(&self, message: NewMessage) -> Result<MessageId, SpoolError> {
        let id = message.id;
        self.submit_all(vec![message]).await?;
        Ok(id)
    }

    /// Queues `messages` (a message and the notices it triggers) to commit in one transaction:
    /// once this returns `Ok` all are durable, and on an error none is stored.
    pub async fn submit_all(&self, messages: Vec<NewMessage>) -> Result<(), SpoolError> {
        let (done, answer) = oneshot::channel();
        self.jobs.send(Job::Commit { messages, done }).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Applies a change through the writer and returns the ids it touched.
    pub async fn apply(&self, mutation: Mutation) -> Result<Vec<MessageId>, SpoolError> {
        let (done, answer) = oneshot::channel();
        self.jobs.send(Job::Mutate { mutation, done }).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Runs `call` on the store's write side, in order with the other changes (the writer
    /// is the only one; leases and index upkeep go through it too).
    async fn with_store<R: Send + 'static>(
        &self,
        call: impl FnOnce(&mut dyn Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, SpoolError> {
        let (done, answer) = oneshot::channel();
        let job: StoreCall = Box::new(move |store| {
            let _ = done.send(call(store).map_err(|e| SpoolError::Store(Arc::new(e))));
        });
        self.jobs.send(Job::Call(job)).await.map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)?
    }

    /// Does up to about `pages` pages of search-index upkeep ([`Store::maintain_index`]).
    pub async fn maintain_index(&self, pages: u64) -> Result<(), SpoolError> {
        self.with_store(move |store| store.maintain_index(pages)).await
    }

    /// Leases due queue entries ([`Store::lease_due`]) through the writer.
    pub async fn lease_due(
        &self,
        lease: Lease,
        limit: u64,
        skip: Vec<String>,
    ) -> Result<Vec<QueueEntry>, SpoolError> {
        self.with_store(move |store| store.lease_due(&lease, limit, &skip)).await
    }

    /// Renews leases ([`Store::renew_leases`]); returns the entries still held.
    pub async fn renew_leases(
        &self,
        lease: Lease,
        entries: Vec<i64>,
    ) -> Result<Vec<i64>, SpoolError> {
        self.with_store(move |store| store.renew_leases(&lease, &entries)).await
    }

    /// Gives up leases ([`Store::release_leases`]).
    pub async fn release_leases(&self, node: String, entries: Vec<i64>) -> Result<(), SpoolError> {
        self.with_store(move |store| store.release_leases(&node, &entries)).await
    }

    /// Subscribes to changes published after they are durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Woken (one permit, kept until taken) whenever the outbound queue may have new due
    /// work: a commit with remote recipients, an attempt recorded, an operator's command. The
    /// scheduler waits on it instead of on every commit event, so plain ingest never wakes it.
    pub fn queue_changed(&self) -> &Notify {
        &self.queue_changed
    }

    /// Group-commit counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

impl SpoolWriter {
    /// Waits for the writer to answer everything and stop; it stops once every [`Spool`]
    /// handle is dropped.
    pub fn join(self) -> StatsSnapshot {
        if self.thread.join().is_err() {
            tracing::error!("spool writer thread panicked");
        }
        self.stats.snapshot()
    }
}

/// The raw bytes of a job's messages.
fn raw_bytes(messages: &[NewMessage]) -> usize {
    messages.iter().map(|m| m.raw.len()).sum()
}

/// The single writer: owns the store's write side.
struct Writer<S> {
    store: S,
    config: SpoolConfig,
    stats: Arc<SpoolStats>,
    events: broadcast::Sender<Event>,
    queue_changed: Arc<Notify>,
    /// Commits failed in a row and the messages they refused: the first failure is logged,
    /// the rest only counted until a commit succeeds again (a full disk must not write an
    /// error line per refused message).
    failing: Option<(u64, u64)>,
}

impl<S: Store> Writer<S> {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch: Vec<NewMessage> = Vec::with_capacity(self.config.max_batch_messages);
        let mut dones = Vec::with_capacity(self.config.max_batch_messages);
        let mut next = rx.blocking_recv();
        while let Some(job) = next.take() {
            let (messages, done) = match job {
                Job::Mutate { mutation, done } => {
                    let _ = done.send(self.mutate(&mutation));
                    next = rx.blocking_recv();
                    continue;
                }
                Job::Call(call) => {
                    call(&mut self.store);
                    next = rx.blocking_recv();
                    continue;
                }
                Job::Commit { messages, done } => (messages, done),
            };
            let mut bytes = raw_bytes(&messages);
            batch.extend(messages);
            dones.push(done);
            // Everything that queued up while the last commit ran joins this one; a mutation
            // waits for the batch ahead of it, keeping the order clients saw. A job's messages
            // are never split across commits (a batch may pass the limit by one job's notices).
            while batch.len() < self.config.max_batch_messages
                && bytes < self.config.max_batch_bytes
            {
                match rx.try_recv() {
                    Ok(Job::Commit { messages, done }) => {
                        bytes += raw_bytes(&messages);
                        batch.extend(messages);
                        dones.push(done);
                    }
                    Ok(mutation) => {
                        next = Some(mutation);
                        break;
                    }
                    Err(_) => break,
                }
            }
            let result = self.commit(&batch);
            for done in dones.drain(..) {
                // A session that went away no longer needs its answer; its message is stored.
                let _ = done.send(result.clone());
            }
            batch.clear();
            if next.is_none() {
                next = rx.blocking_recv();
            }
        }
    }

    fn commit(&mut self, batch: &[NewMessage]) -> Result<(), SpoolError> {
        let started = Instant::now();
        let result = self.store.commit_batch(batch).map_err(|e| SpoolError::Store(Arc::new(e)));
        let n = batch.len() as u64;
        let stats = &self.stats;
        match &result {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.messages.fetch_add(n, Ordering::Relaxed);
                stats.max_batch.fetch_max(n, Ordering::Relaxed);
                let bytes: u64 = batch.iter().map(|m| m.raw.len() as u64).sum();
                stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                stats
                    .commit_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                tracing::trace!(messages = n, "spool commit");
                metrics::histogram!("tern_spool_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("tern_spool_batch_messages").record(n as f64);
                metrics::counter!("tern_messages_accepted_total").increment(n);
                metrics::counter!("tern_message_bytes_total").increment(bytes);
                if self.events.receiver_count() > 0 {
                    let rows = batch.iter().map(NewMessage::row).collect();
                    let _ = self.events.send(Event::Committed(Arc::new(rows)));
                }
                let remote = |m: &NewMessage| {
                    m.envelope.recipients.iter().any(|r| r.route == tern_store::Route::Remote)
                };
                if batch.iter().any(remote) {
                    self.queue_changed.notify_one();
                    let _ = self.events.send(Event::QueueChanged);
                }
                if let Some((commits, messages)) = self.failing.take() {
                    tracing::info!(
                        failed_commits = commits,
                        refused = messages,
                        "spool commits succeed again"
                    );
                }
            }
            Err(e) => {
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tern_messages_rejected_total", "reason" => "storage")
                    .increment(n);
                self.failed(n, e);
            }
        }
        result
    }

    /// Logs the first of a run of failed commits; the others are counted (and logged at
    /// debug level) until one succeeds.
    fn failed(&mut self, messages: u64, error: &SpoolError) {
        match &mut self.failing {
            None => {
                tracing::error!(
                    messages,
                    %error,
                    "spool commit failed; mail is refused with 451 4.3.0 until commits succeed again"
                );
                self.failing = Some((1, messages));
            }
            Some((commits, refused)) => {
                *commits += 1;
                *refused += messages;
                tracing::debug!(messages, %error, "spool commit failed again");
            }
        }
    }

    fn mutate(&mut self, mutation: &Mutation) -> Result<Vec<MessageId>, SpoolError> {
        let ids = self.store.apply(mutation).map_err(|e| SpoolError::Store(Arc::new(e)))?;
        // Notices (bounces) the queue stored are new mail like any other.
        if let Mutation::QueueNotified { notices, .. } = mutation
            && !notices.is_empty()
        {
            metrics::counter!("tern_notices_generated_total").increment(notices.len() as u64);
            if self.events.receiver_count() > 0 {
                let rows = notices.iter().map(NewMessage::row).collect();
                let _ = self.events.send(Event::Committed(Arc::new(rows)));
            }
        }
        if matches!(
            mutation,
            Mutation::QueueAttempted { .. }
                | Mutation::QueueNotified { .. }
                | Mutation::QueueCommand { .. }
                | Mutation::Enqueue { .. }
        ) {
            self.queue_changed.notify_one();
            let _ = self.events.send(Event::QueueChanged);
        }
        if !ids.is_empty() {
            let touched = Arc::new(ids.clone());
            let event = match mutation {
                Mutation::Delete(Selection::All) => Some(Event::Truncated),
                Mutation::Delete(_)
                | Mutation::Prune { .. }
                | Mutation::QueueAttempted { .. }
                | Mutation::QueueNotified { .. }
                | Mutation::QueueCommand { .. } => Some(Event::Deleted(touched)),
                Mutation::SetRead(_, read) => Some(Event::ReadChanged(touched, *read)),
                Mutation::SetTags(..) | Mutation::RenameTag { .. } | Mutation::DeleteTag(_) => {
                    Some(Event::TagsChanged(touched))
                }
                Mutation::MaildirDelivered(_) | Mutation::Enqueue { .. } => None,
            };
            if matches!(event, Some(Event::Deleted(_) | Event::Truncated)) {
                self.stats.deleted.fetch_add(ids.len() as u64, Ordering::Relaxed);
            }
            if let Some(event) = event {
                let _ = self.events.send(event);
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tern_store::{Envelope, Summary};

    /// A store that records batch sizes and can be told to fail.
    struct Recording {
        batches: Arc<Mutex<Vec<usize>>>,
        fail: bool,
        delay: std::time::Duration,
    }

    impl Store for Recording {
        fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), StoreError> {
            std::thread::sleep(self.delay);
            if self.fail {
                return Err(StoreError::Io {
                    path: "test".into(),
                    source: std::io::Error::other("disk full"),
                });
            }
            self.batches.lock().expect("lock").push(batch.len());
            Ok(())
        }
        fn apply(&mut self, _: &tern_store::Mutation) -> Result<Vec<MessageId>, StoreError> {
            Ok(vec![])
        }
        fn lease_due(
            &mut self,
            _: &Lease,
            _: u64,
            _: &[String],
        ) -> Result<Vec<QueueEntry>, StoreError> {
            Ok(vec![])
        }
        fn renew_leases(&mut self, _: &Lease, _: &[i64]) -> Result<Vec<i64>, StoreError> {
            Ok(vec![])
        }
        fn release_leases(&mut self, _: &str, _: &[i64]) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A message with an empty envelope, for tests in this crate.
    pub(crate) fn message() -> NewMessage {
        NewMessage {
            id: MessageId::generate(),
            envelope: Envelope {
                mail_from: String::new(),
                recipients: vec![],
                body: None,
                smtputf8: false,
                ret: None,
                envid: None,
                client: "127.0.0.1:1".parse().expect("literal"),
                helo: "x".into(),
                tls: None,
                auth: None,
                trusted_client: true,
                received_at_ms: 0,
            },
            received_header: vec![],
            raw: b"x".to_vec(),
            summary: Summary::default(),
            search_text: Default::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_submits_share_commits() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let store = Recording {
            batches: batches.clone(),
            fail: false,
            delay: std::time::Duration::from_millis(5),
        };
        let (spool, writer) = Spool::start(store, SpoolConfig::default());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let spool = spool.clone();
                tokio::spawn(async move { spool.submit(message()).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("join").expect("queued");
        }
        drop(spool);
        let stats = tokio::task::spawn_blocking(move || writer.join()).await.expect("join");
        let batches = batches.lock().expect("lock");
        assert_eq!(batches.iter().sum::<usize>(), 200);
        assert!(batches.len() < 200, "no batching happened: {batches:?}");
        assert_eq!(stats.messages, 200);
        assert_eq!(stats.max_batch as usize, *batches.iter().max().expect("some"));
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_to_every_sender() {
        let store =
            Recording { batches: Arc::default(), fail: true, delay: std::time::Duration::ZERO };
        let (spool, writer) = Spool::start(store, SpoolConfig::default());
        assert!(matches!(spool.submit(message()).await, Err(SpoolError::Store(_))));
        drop(spool);
        let stats = tokio::task::spawn_blocking(move || writer.join()).await.expect("join");
        assert_eq!(stats.failed_commits, 1);
        assert_eq!(stats.messages, 0);
    }
}
