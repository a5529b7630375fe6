//! The outbound scheduler: finds due queue entries, groups them by destination so messages
//! share connections, runs them through a [`Transport`] within the connection limits, and
//! records each attempt's results together with what the sender is to hear of them, in one
//! durable change. Notices are per message, not per destination: once none of a message's
//! entries is due, its waiting reports become one bounce, one delay warning and one "relayed"
//! report at most (see `reports.rs` for why they are kept in the store meanwhile).
//!
//! Concurrent jobs carrying the same message (its recipients at several destinations) share
//! one copy of it, read once and dropped when the last of them ends (see `bodies.rs`). A job
//! holds few bodies at a time: it loads its messages in chunks of about [`CHUNK_BYTES`] and
//! hands the connection the next chunk when it asks for more, after recording the last one's
//! results, so a flush of large messages over many connections stays small in memory.
//!
//! Leases are kept in the store ([`tern_store::Lease`]), so several processes ("nodes") can
//! share one queue: each round leases due entries to this process's node id until a deadline
//! ([`LEASE`]), renewed while attempts run, so no other node attempts them meanwhile; an
//! attempt's results are recorded, and the lease ends with them, only while the node still
//! holds it. A node that crashes leaves its leases to expire, and the entries, still due, are
//! attempted again by whichever node looks first after the deadline: an entry is never lost,
//! and its result is recorded once. A stopping node releases its leases. Within the process,
//! `in_flight` also holds the entries being attempted, and each task's `Holding` what it holds,
//! released when the task ends, however it ends: a job that panics frees its connection at
//! once and has its entries recorded as a temporary failure (retried after the usual wait,
//! since it may have delivered some of them). The per-destination connection limits are this
//! process's own.
//! The scheduler idles on a timer set to the next due entry, so a large deferred queue costs
//! nothing between attempts. Each look at the queue reads a bounded number of due entries and
//! skips the domains of destinations whose connections are all busy, so one destination's
//! backlog cannot fill the look and starve the rest.
//!
//! Connections are reused for mail that falls due while they are open, as Postfix's
//! connection cache does: an attempt that has sent everything it carries records those
//! results and asks (a [`Refill`]) for more due entries of its destination before closing,
//! waiting up to [`LINGER`] for some; and while a destination's connection is open and making
//! progress, fewer due messages than one connection carries wait up to [`HOLD`] for it rather
//! than open another. Entries handed to a running attempt are leased and held like those it
//! started with, so they are released, renewed and deferred on a panic alike.
//!
//! Every "now" the scheduler decides with (what is due, retry times, lifetimes, delay
//! warnings, lease deadlines) comes from the [`Clock`] in its configuration, and every wait
//! is a tokio timer: tests run it on tokio's paused time with a clock that follows it, so
//! hours of retries pass at once and in a fixed order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_store::pool::Pool;
use tern_store::{
    Lease, MessageId, Mutation, QueueEntry, QueueFilter, QueueReport, StoreError, StoreRead,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{self, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::bodies::{Bodies, Body, BodyRef};
use crate::notice::Original;
pub use crate::notice::Router;
use crate::retry::{Decision, RetryPolicy, Verdict, decide};
use crate::transport::{
    Failure, Feed, Job, JobMessage, JobRecipient, JobResult, Outcome, Transport,
};
use crate::{Spool, SpoolError, reports};

/// Default most outbound connections at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
/// Default most connections to one destination at once.
pub const DEFAULT_MAX_PER_DESTINATION: usize = 20;
/// Default most messages sent over one connection before it is closed.
pub const DEFAULT_MESSAGES_PER_CONNECTION: usize = 100;
/// Due entries read per scheduling round (beyond those already in flight).
const FETCH: u64 = 2_000;
/// Messages whose notices one scheduling round starts sending, at most.
const NOTICES_PER_ROUND: u64 = 100;
/// Longest sleep between two looks at the queue, as a safety net.
const MAX_IDLE: Duration = Duration::from_secs(60);
/// Pause before retrying when the store cannot be read or written.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// Pauses between attempts to record an attempt's results while the store fails (a full
/// disk): growing, then the last one until the store takes the record.
const RECORD_RETRIES: [Duration; 5] = [
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
];
/// How long a lease on the entries being attempted lasts unless renewed: after a crash, the
/// entries wait this long before another node (or this one, restarted) attempts them.
pub const LEASE: Duration = Duration::from_secs(300);
/// How often the leases of attempts still running are renewed (well within [`LEASE`]).
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// How long a connection that has sent all it carries stays open for mail to its destination
/// that may fall due meanwhile (Postfix caches connections for 2 s).
const LINGER: Duration = Duration::from_secs(1);
/// How long due mail for a destination with an open connection waits for it, counted from
/// that connection's last sign of progress (its start or its last request for more), before
/// another connection is opened for it.
const HOLD: Duration = Duration::from_secs(1);
/// Bytes of message bodies one attempt loads at a time (at least one message): with the
/// default 20 connections, about 40 MiB of bodies in memory however large the messages.
const CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// How long shutdown waits for attempts in progress before abandoning them (they are then
/// attempted again after restart).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything the scheduler needs to know.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// This server's name: the `Reporting-MTA` of notices and their `From:` domain.
    pub hostname: String,
    /// Retry schedule, lifetime and delay warnings.
    pub retry: RetryPolicy,
    /// Most outbound connections at once.
    pub max_connections: usize,
    /// Most connections to one destination at once.
    pub max_per_destination: usize,
    /// Most messages sent over one connection.
    pub messages_per_connection: usize,
    /// This process's name in the queue's leases: unique among the processes sharing the
    /// store, and new for each run (a restarted process must not take its crashed
    /// predecessor's leases for its own).
    pub node: String,
    /// Where "now" comes from: the system's clock ([`SystemClock`]); tests give one that
    /// follows tokio's paused time.
    pub clock: Arc<dyn Clock>,
}

/// The time the scheduler goes by, in milliseconds since the Unix epoch.
pub trait Clock: fmt::Debug + Send + Sync {
    /// Now.
    fn now_ms(&self) -> i64;
}

/// The system's wall clock: queue times are stored as wall-clock instants, so they keep
/// their meaning across restarts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

impl SchedulerConfig {
    /// Defaults for `hostname`.
    pub fn new(hostname: impl Into<String>) -> Self {
        SchedulerConfig {
            hostname: hostname.into(),
            retry: RetryPolicy::default(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_destination: DEFAULT_MAX_PER_DESTINATION,
            messages_per_connection: DEFAULT_MESSAGES_PER_CONNECTION,
            node: node_id(),
            clock: Arc::new(SystemClock),
        }
    }

    /// A lease for this node from `now_ms` for [`LEASE`].
    fn lease(&self, now_ms: i64) -> Lease {
        let until_ms = now_ms.saturating_add(LEASE.as_millis() as i64);
        Lease { node: self.node.clone(), now_ms, until_ms }
    }
}

/// A node id unique to this process: the host's name, the process id, and a random part
/// (process ids are reused).
fn node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}:{}", host.trim(), std::process::id(), MessageId::generate())
}

/// Why a look at the queue failed.
#[derive(Debug, thiserror::Error)]
enum Fault {
    #[error(transparent)]
    Read(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] SpoolError),
}

/// The running scheduler's shared parts.
struct Shared<T> {
    readers: Pool<Box<dyn StoreRead>>,
    spool: Spool,
    transport: Arc<T>,
    router: Arc<dyn Router>,
    config: SchedulerConfig,
    bodies: Bodies,
    /// Where running attempts ask for more work for their connection.
    refills: mpsc::UnboundedSender<Refill>,
}

/// A running attempt's request for more due entries for its open connection.
struct Refill {
    /// The attempt's task.
    task: task::Id,
    destination: String,
    /// Entries whose results the attempt has recorded since its last request: it no longer
    /// holds them.
    recorded: HashSet<i64>,
    /// Most messages it may still take.
    room: usize,
    /// Where the entries go; dropped unanswered means "none: close the connection". `None`:
    /// the attempt only reports what it recorded (it still has messages of its own to send).
    reply: Option<oneshot::Sender<Vec<MessageEntries>>>,
}

/// An attempt waiting for more due entries for its open connection (see [`Refill`]).
struct Parked {
    task: task::Id,
    room: usize,
    reply: oneshot::Sender<Vec<MessageEntries>>,
}

/// A message with its due entries at one destination.
type MessageEntries = (MessageId, Vec<QueueEntry>);

/// What a running task holds, so it is released however the task ends (even by a panic).
enum Holding {
    /// A delivery attempt over one connection to `destination`.
    Attempt { destination: String, batch: Vec<MessageEntries> },
    /// Recording a deferral for the entries of an attempt that panicked: they stay leased
    /// until it is recorded, so they are not attempted again at once.
    Deferral { entries: Vec<i64> },
    /// Sending a message's waiting reports as its notices.
    Notices { message: MessageId },
}

/// Runs until `shutdown`.
pub async fn run<T: Transport>(
    readers: Pool<Box<dyn StoreRead>>,
    spool: Spool,
    transport: Arc<T>,
    router: Arc<dyn Router>,
    config: SchedulerConfig,
    shutdown: CancellationToken,
) {
    let bodies = Bodies::default();
    let (refills, mut refill_requests) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared { readers, spool, transport, router, config, bodies, refills });
    let mut in_flight: HashSet<i64> = HashSet::new();
    let mut active = Active::default();
    let mut jobs = JoinSet::new();
    let mut renewed = tokio::time::Instant::now();
    let mut store_failing = false;
    loop {
        let wait = match dispatch(&shared, &mut in_flight, &mut active, &mut jobs).await {
            Ok(wait) => {
                if std::mem::take(&mut store_failing) {
                    info!("queue: due entries can be leased again");
                }
                wait
            }
            // Logged once per run of failures (a full disk fails every look).
            Err(e) if store_failing => {
                debug!(error = %e, "queue: cannot lease due entries yet");
                STORE_RETRY
            }
            Err(e) => {
                warn!(error = %e, "queue: cannot lease due entries; retrying every 5 s");
                store_failing = true;
                STORE_RETRY
            }
        };
        if renewed.elapsed() >= RENEW_EVERY {
            renew(&shared, &in_flight).await;
            renewed = tokio::time::Instant::now();
        }
        let wait = wait.min(RENEW_EVERY.saturating_sub(renewed.elapsed()));
        metrics::gauge!("tern_queue_in_flight").set(in_flight.len() as f64);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            Some(ended) = jobs.join_next_with_id() => {
                finish(&shared, ended, &mut in_flight, &mut active, &mut jobs);
            }
            Some(refill) = refill_requests.recv() => active.park(refill, &mut in_flight),
            _ = shared.spool.queue_changed().notified() => {}
        }
        while let Ok(refill) = refill_requests.try_recv() {
            active.park(refill, &mut in_flight);
        }
        while let Some(ended) = jobs.try_join_next_with_id() {
            finish(&shared, ended, &mut in_flight, &mut active, &mut jobs);
        }
    }
    // Connections waiting for more close now, and no more requests are taken.
    active.waiting.clear();
    drop(refill_requests);
    // Let attempts in progress record their results; whatever is cut off is retried later.
    let _ =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while jobs.join_next().await.is_some() {} })
            .await;
    jobs.abort_all();
    // Whatever was cut off is free for the other nodes (and the next run) at once. The
    // entries whose results were recorded meanwhile hold no lease any more: releasing them
    // changes nothing, and a record sent before the abort reaches the writer before this.
    let node = shared.config.node.clone();
    if let Err(e) = shared.spool.release_leases(node, in_flight.into_iter().collect()).await {
        warn!(error = %e, "queue: leases not released; they expire on their own");
    }
}

/// Renews the leases of the entries being attempted; an entry whose lease was lost (this
/// node stalled past the deadline and another took it over) is logged: its result will be
/// refused.
async fn renew<T: Transport>(shared: &Shared<T>, in_flight: &HashSet<i64>) {
    if in_flight.is_empty() {
        return;
    }
    let entries: Vec<i64> = in_flight.iter().copied().collect();
    let lease = shared.config.lease(shared.config.clock.now_ms());
    match shared.spool.renew_leases(lease, entries.clone()).await {
        Ok(held) if held.len() < entries.len() => {
            let lost: Vec<i64> = entries.into_iter().filter(|e| !held.contains(e)).collect();
            let lost: Vec<String> = lost.iter().map(i64::to_string).collect();
            warn!(entries = %lost.join(","), "queue: leases lost to another node");
        }
        Ok(_) => {}
        Err(e) => warn!(error = %e, "queue: cannot renew leases"),
    }
}

/// Connections open per destination, the domains each one's work came from, and what each
/// running task holds.
#[derive(Default)]
struct Active {
    connections: HashMap<String, usize>,
    domains: HashMap<String, HashSet<String>>,
    leases: HashMap<task::Id, Holding>,
    /// Messages whose notices are being sent.
    notifying: HashSet<MessageId>,
    /// Attempts waiting for more entries for their connection, by destination, each until
    /// its [`LINGER`] ends.
    waiting: HashMap<String, Vec<(Instant, Parked)>>,
    /// When each destination's connections last showed progress (see [`HOLD`]).
    progress: HashMap<String, Instant>,
}

impl Active {
    fn running(&self) -> usize {
        self.connections.values().sum()
    }

    fn at(&self, destination: &str) -> usize {
        self.connections.get(destination).copied().unwrap_or(0)
    }

    /// The domains of destinations with every allowed connection in use: the next look at
    /// the queue skips their entries, so a long backlog for one destination cannot fill the
    /// look and starve the others.
    fn busy_domains(&self, max_per_destination: usize) -> Vec<String> {
        self.connections
            .iter()
            .filter(|(_, n)| **n >= max_per_destination)
            .filter(|(destination, _)| !self.waiting.contains_key(*destination))
            .filter_map(|(destination, _)| self.domains.get(destination))
            .flatten()
            .cloned()
            .collect()
    }

    fn close(&mut self, destination: &str) {
        if let Some(n) = self.connections.get_mut(destination) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.connections.remove(destination);
                self.domains.remove(destination);
                self.progress.remove(destination);
            }
        }
    }

    /// Takes a running attempt's request for more: what it recorded is no longer held, and it
    /// waits for due entries of its destination (answered by [`Active::feed`]) until its
    /// linger ends.
    fn park(&mut self, refill: Refill, in_flight: &mut HashSet<i64>) {
        in_flight.retain(|e| !refill.recorded.contains(e));
        let Some(Holding::Attempt { batch, .. }) = self.leases.get_mut(&refill.task) else {
            return;
        };
        for (_, entries) in batch.iter_mut() {
            entries.retain(|e| !refill.recorded.contains(&e.id));
        }
        batch.retain(|(_, entries)| !entries.is_empty());
        let Some(reply) = refill.reply else { return };
        if refill.room == 0 {
            // A full connection closes: mail for its destination waits for it no more.
            self.progress.remove(&refill.destination);
            return;
        }
        let now = Instant::now();
        self.progress.insert(refill.destination.clone(), now);
        let waiting = self.waiting.entry(refill.destination).or_default();
        waiting.push((now + LINGER, Parked { task: refill.task, room: refill.room, reply }));
    }

    /// Hands due `messages` of `destination` to the attempts waiting there, as many as each
    /// may take; returns the entries of those it could not hand over (the attempt was gone).
    fn feed(
        &mut self,
        destination: &str,
        messages: &mut std::iter::Peekable<std::vec::IntoIter<MessageEntries>>,
        in_flight: &mut HashSet<i64>,
    ) -> Vec<i64> {
        let mut refused = Vec::new();
        while messages.peek().is_some() {
            let Some((_, refill)) = self.waiting.get_mut(destination).and_then(Vec::pop) else {
                break;
            };
            let given: Vec<MessageEntries> = messages.by_ref().take(refill.room).collect();
            let ids = given.iter().flat_map(|(_, es)| es.iter().map(|e| e.id)).collect::<Vec<_>>();
            if refill.reply.send(given.clone()).is_err() {
                refused.extend(ids);
                continue;
            }
            in_flight.extend(ids);
            let domains = self.domains.entry(destination.to_string()).or_default();
            domains.extend(given.iter().flat_map(|(_, es)| es.iter().map(|e| e.domain.clone())));
            if let Some(Holding::Attempt { batch, .. }) = self.leases.get_mut(&refill.task) {
                batch.extend(given);
            }
        }
        if self.waiting.get(destination).is_some_and(Vec::is_empty) {
            self.waiting.remove(destination);
        }
        refused
    }

    /// Whether `due` more messages for `destination` wait for its open connection instead
    /// of opening another: fewer than one connection carries, and that connection showed
    /// progress within [`HOLD`].
    fn holds(&self, destination: &str, due: usize, messages_per_connection: usize) -> bool {
        due < messages_per_connection
            && self.at(destination) > 0
            && self.progress.get(destination).is_some_and(|at| at.elapsed() < HOLD)
    }

    /// Closes the connections whose linger ended unfed (their requests are dropped).
    fn expire_waiting(&mut self) {
        let now = Instant::now();
        self.waiting.retain(|_, waiting| {
            waiting.retain(|(until, _)| *until > now);
            !waiting.is_empty()
        });
    }

    /// The next moment a waiting connection's linger or a destination's hold ends.
    fn next_deadline(&self) -> Option<Instant> {
        let lingers = self.waiting.values().flatten().map(|(until, _)| *until);
        let holds = self.progress.values().map(|at| *at + HOLD).filter(|at| *at > Instant::now());
        lingers.chain(holds).min()
    }
}

/// Releases what an ended task held. An attempt that panicked frees its connection at once,
/// but its entries stay leased until a deferral is recorded for them: the attempt may have
/// delivered some of them, so retrying at once could deliver twice, and the job must not
/// stay counted against its destination.
fn finish<T: Transport>(
    shared: &Arc<Shared<T>>,
    ended: Result<(task::Id, ()), JoinError>,
    in_flight: &mut HashSet<i64>,
    active: &mut Active,
    jobs: &mut JoinSet<()>,
) {
    let (id, panic) = match ended {
        Ok((id, ())) => (id, None),
        Err(e) => (e.id(), e.try_into_panic().ok()),
    };
    let Some(lease) = active.leases.remove(&id) else { return };
    let entries: Vec<i64> = match lease {
        Holding::Attempt { destination, batch } => {
            active.close(&destination);
            let entries = batch.iter().flat_map(|(_, es)| es.iter().map(|e| e.id)).collect();
            if let Some(panic) = panic {
                let queue_ids: Vec<String> = batch.iter().map(|(id, _)| id.to_string()).collect();
                error!(
                    destination,
                    queue_ids = %queue_ids.join(","),
                    panic = panic_text(&*panic),
                    "queue: delivery job panicked; its recipients are deferred"
                );
                let shared = shared.clone();
                let handle =
                    jobs.spawn(async move { defer_all(&shared, &destination, batch).await });
                active.leases.insert(handle.id(), Holding::Deferral { entries });
                return;
            }
            entries
        }
        Holding::Deferral { entries } => {
            if let Some(panic) = panic {
                error!(panic = panic_text(&*panic), "queue: recording a deferral panicked");
            }
            entries
        }
        Holding::Notices { message } => {
            if let Some(panic) = panic {
                // The reports stay in the store: the next round tries again.
                error!(queue_id = %message, panic = panic_text(&*panic), "queue: sending notices panicked");
            }
            active.notifying.remove(&message);
            return;
        }
    };
    for entry in &entries {
        in_flight.remove(entry);
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

/// Starts jobs for due entries within the limits; returns how long to sleep at most.
async fn dispatch<T: Transport>(
    shared: &Arc<Shared<T>>,
    in_flight: &mut HashSet<i64>,
    active: &mut Active,
    jobs: &mut JoinSet<()>,
) -> Result<Duration, Fault> {
    let config = &shared.config;
    let now = config.clock.now_ms();
    let mut running = active.running();
    if running < config.max_connections || !active.waiting.is_empty() {
        let skip = active.busy_domains(config.max_per_destination);
        let due = shared.spool.lease_due(config.lease(now), FETCH, skip).await?;
        let mut unstarted = Vec::new();
        for (destination, messages) in group(shared.transport.as_ref(), due, in_flight) {
            let mut messages = messages.into_iter().peekable();
            unstarted.extend(active.feed(&destination, &mut messages, in_flight));
            while messages.peek().is_some()
                && running < config.max_connections
                && active.at(&destination) < config.max_per_destination
                && !active.holds(&destination, messages.len(), config.messages_per_connection)
            {
                let batch: Vec<_> =
                    messages.by_ref().take(config.messages_per_connection).collect();
                start_attempt(shared, in_flight, active, jobs, &destination, batch);
                running += 1;
            }
            unstarted.extend(messages.flat_map(|(_, es)| es).map(|e| e.id));
        }
        // Leased but over the limits: free again for the next look, here or at another node.
        if !unstarted.is_empty() {
            shared.spool.release_leases(config.node.clone(), unstarted).await?;
        }
    }
    active.expire_waiting();
    start_notices(shared, active, jobs, now).await?;
    let pool = shared.readers.clone();
    let next = blocking(move || pool.with(|r| r.next_due_ms(now))).await?;
    let wait = match next {
        Some(at) => Duration::from_millis(u64::try_from(at - config.clock.now_ms()).unwrap_or(0))
            .min(MAX_IDLE),
        None => MAX_IDLE,
    };
    let deadline = active.next_deadline().map(|at| at.saturating_duration_since(Instant::now()));
    Ok(deadline.map_or(wait, |deadline| wait.min(deadline)))
}

/// Starts one connection's attempt at `destination`, holding its entries until it ends.
fn start_attempt<T: Transport>(
    shared: &Arc<Shared<T>>,
    in_flight: &mut HashSet<i64>,
    active: &mut Active,
    jobs: &mut JoinSet<()>,
    destination: &str,
    batch: Vec<MessageEntries>,
) {
    in_flight.extend(batch.iter().flat_map(|(_, es)| es.iter().map(|e| e.id)));
    *active.connections.entry(destination.to_string()).or_default() += 1;
    active.progress.insert(destination.to_string(), Instant::now());
    let domains = active.domains.entry(destination.to_string()).or_default();
    for (_, message_entries) in &batch {
        domains.extend(message_entries.iter().map(|e| e.domain.clone()));
    }
    let (task_shared, task_destination, task_batch) =
        (shared.clone(), destination.to_string(), batch.clone());
    let handle = jobs.spawn(async move {
        attempt(&task_shared, &task_destination, task_batch).await;
    });
    let holding = Holding::Attempt { destination: destination.to_string(), batch };
    active.leases.insert(handle.id(), holding);
}

/// Starts sending the notices of messages whose reports wait and which have nothing due
/// that could add to them.
async fn start_notices<T: Transport>(
    shared: &Arc<Shared<T>>,
    active: &mut Active,
    jobs: &mut JoinSet<()>,
    now: i64,
) -> Result<(), StoreError> {
    let pool = shared.readers.clone();
    let ready =
        blocking(move || pool.with(|r| r.reported_messages(now, NOTICES_PER_ROUND))).await?;
    for message in ready {
        if !active.notifying.insert(message) {
            continue;
        }
        let shared = shared.clone();
        let handle = jobs.spawn(async move { notify(&shared, message).await });
        active.leases.insert(handle.id(), Holding::Notices { message });
    }
    Ok(())
}

/// Due entries not in flight, by destination, then by message (in due order), so one job
/// carries whole messages with all their recipients at that destination.
fn group<T: Transport>(
    transport: &T,
    due: Vec<QueueEntry>,
    in_flight: &HashSet<i64>,
) -> Vec<(String, Vec<MessageEntries>)> {
    let mut destinations: Vec<(String, Vec<MessageEntries>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut message_index: HashMap<(usize, MessageId), usize> = HashMap::new();
    for entry in due.into_iter().filter(|e| !in_flight.contains(&e.id)) {
        let destination = transport.destination(&entry.domain);
        let d = *index.entry(destination.clone()).or_insert_with(|| {
            destinations.push((destination, Vec::new()));
            destinations.len() - 1
        });
        let messages = &mut destinations[d].1;
        let m = *message_index.entry((d, entry.message_id)).or_insert_with(|| {
            messages.push((entry.message_id, Vec::new()));
            messages.len() - 1
        });
        messages[m].1.push(entry);
    }
    destinations
}

/// A message an attempt carries, with its entries at the attempt's destination.
struct Loaded<'a> {
    id: MessageId,
    /// Keeps `body` the one copy other jobs carrying this message share.
    _hold: BodyRef<'a>,
    body: Arc<Body>,
    entries: Vec<QueueEntry>,
}

/// One connection's worth of work: load the messages (a chunk at a time), send them, record
/// what happened; and while the connection lasts, record what it has done and feed it more
/// (see [`refill`]).
async fn attempt<T: Transport>(shared: &Shared<T>, destination: &str, batch: Vec<MessageEntries>) {
    let mut pending: VecDeque<MessageEntries> = batch.into();
    let Some(mut carried) = load_chunk(shared, destination, &mut pending).await else { return };
    if carried.is_empty() {
        return;
    }
    let (feed, mut requests) = Feed::channel();
    let job = Job {
        domain: destination.to_string(),
        messages: carried.iter().map(job_message).collect(),
        feed: Some(feed),
    };
    let mut room =
        shared.config.messages_per_connection.saturating_sub(pending.len() + carried.len());
    let delivery = shared.transport.deliver(job);
    tokio::pin!(delivery);
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut delivery => break outcomes,
            Some((done, reply)) = requests.recv() => {
                let mut work = Work { carried: &mut carried, pending: &mut pending, room: &mut room };
                let more = refill(shared, destination, &mut work, done).await;
                // The transport gone meanwhile leaves the entries leased to this attempt,
                // which records them below as having no result.
                let _ = reply.send(more);
            }
        }
    };
    let mut outcomes: HashMap<i64, Outcome> = outcomes.into_iter().collect();
    strand_pending(&carried, &pending, &mut outcomes);
    let entries = carried.iter().flat_map(|m| &m.entries);
    record(shared, destination, entries.chain(pending.iter().flat_map(|(_, es)| es)), &outcomes)
        .await;
}

/// Entries never loaded because the connection ended first (the transport gave up on it):
/// they share the fate of the last message loaded (a destination that cannot be reached, or
/// is refused for good), or a temporary failure.
fn strand_pending(
    carried: &[Loaded<'_>],
    pending: &VecDeque<MessageEntries>,
    outcomes: &mut HashMap<i64, Outcome>,
) {
    let last = carried.last().and_then(|m| m.entries.last()).and_then(|e| outcomes.get(&e.id));
    let outcome = match last {
        Some(outcome @ (Outcome::Temporary(_) | Outcome::Permanent(_))) => outcome.clone(),
        _ => Outcome::Temporary(Failure {
            status: "4.4.2".into(),
            remote_mta: None,
            diagnostic: "the connection ended before this message was sent".into(),
        }),
    };
    for (_, entries) in pending {
        for entry in entries {
            outcomes.insert(entry.id, outcome.clone());
        }
    }
}

/// What a running attempt carries: the messages loaded (bodies in memory, results not yet
/// recorded), the entries it holds but has not loaded yet, and how many more messages the
/// scheduler may give it.
struct Work<'w, 'a> {
    carried: &'w mut Vec<Loaded<'a>>,
    pending: &'w mut VecDeque<MessageEntries>,
    room: &'w mut usize,
}

/// Records the outcomes a connection reports (`done`), then gives it the next chunk of its
/// own messages, or, when it has sent them all, asks the scheduler loop for more due messages
/// for it, at most `room`; none means close it.
async fn refill<'a, T: Transport>(
    shared: &'a Shared<T>,
    destination: &str,
    work: &mut Work<'_, 'a>,
    done: JobResult,
) -> Vec<JobMessage> {
    let outcomes: HashMap<i64, Outcome> = done.into_iter().collect();
    let carried = &mut *work.carried;
    let finished: Vec<&QueueEntry> =
        carried.iter().flat_map(|m| &m.entries).filter(|e| outcomes.contains_key(&e.id)).collect();
    if !finished.is_empty() {
        record(shared, destination, finished.into_iter(), &outcomes).await;
    }
    let recorded: HashSet<i64> = outcomes.into_keys().collect();
    for message in carried.iter_mut() {
        message.entries.retain(|e| !recorded.contains(&e.id));
    }
    carried.retain(|m| !m.entries.is_empty());
    if work.pending.is_empty() {
        let batch = more_from_scheduler(shared, destination, recorded, *work.room).await;
        *work.room = work.room.saturating_sub(batch.len());
        work.pending.extend(batch);
    } else if !recorded.is_empty() {
        // What was recorded is no longer held: tell the scheduler, without asking for more.
        let _ = shared.refills.send(Refill {
            task: task::id(),
            destination: destination.into(),
            recorded,
            room: *work.room,
            reply: None,
        });
    }
    let Some(loaded) = load_chunk(shared, destination, work.pending).await else {
        return Vec::new();
    };
    let messages = loaded.iter().map(job_message).collect();
    carried.extend(loaded);
    messages
}

/// Asks the scheduler loop for up to `room` due messages for `destination`, telling it which
/// entries were `recorded` since the last request; none when it has none (or is gone).
async fn more_from_scheduler<T: Transport>(
    shared: &Shared<T>,
    destination: &str,
    recorded: HashSet<i64>,
    room: usize,
) -> Vec<MessageEntries> {
    let (reply, answer) = oneshot::channel();
    let task = task::id();
    let reply = Some(reply);
    let request = Refill { task, destination: destination.into(), recorded, room, reply };
    if shared.refills.send(request).is_err() {
        return Vec::new();
    }
    answer.await.unwrap_or_default()
}

/// Loads the next messages of `pending`, about [`CHUNK_BYTES`] of them (at least one). When
/// the store cannot be read, every entry still pending is released (due again at once) and
/// the chunk is `None`.
async fn load_chunk<'a, T: Transport>(
    shared: &'a Shared<T>,
    destination: &str,
    pending: &mut VecDeque<MessageEntries>,
) -> Option<Vec<Loaded<'a>>> {
    let mut chunk = Vec::new();
    let mut bytes = 0;
    while bytes < CHUNK_BYTES {
        let Some(next) = pending.pop_front() else { break };
        let Some(loaded) = load_or_release(shared, destination, vec![next]).await else {
            // Those loaded already are sent; the rest wait for another attempt.
            let rest = pending.drain(..).flat_map(|(_, es)| es).map(|e| e.id).collect();
            release(shared, destination, rest).await;
            return if chunk.is_empty() { None } else { Some(chunk) };
        };
        bytes += loaded.iter().map(|m| m.body.data.len()).sum::<usize>();
        chunk.extend(loaded);
    }
    Some(chunk)
}

/// Gives up the leases of `leased` entries (never attempted): due again at once.
async fn release<T: Transport>(shared: &Shared<T>, destination: &str, leased: Vec<i64>) {
    if leased.is_empty() {
        return;
    }
    let node = shared.config.node.clone();
    if let Err(e) = shared.spool.release_leases(node, leased).await {
        warn!(destination, error = %e, "queue: leases not released; they expire on their own");
    }
}

/// [`load`], releasing the batch's leases when the store cannot be read: not attempted, the
/// entries are due again at once, here or at another node.
async fn load_or_release<'a, T: Transport>(
    shared: &'a Shared<T>,
    destination: &str,
    batch: Vec<MessageEntries>,
) -> Option<Vec<Loaded<'a>>> {
    let leased: Vec<i64> = batch.iter().flat_map(|(_, es)| es.iter().map(|e| e.id)).collect();
    let loaded = load(shared, destination, batch).await;
    if loaded.is_none() {
        release(shared, destination, leased).await;
    }
    loaded
}

/// Records a temporary failure for every entry of an attempt that panicked: they are tried
/// again after the usual wait.
async fn defer_all<T: Transport>(
    shared: &Shared<T>,
    destination: &str,
    batch: Vec<MessageEntries>,
) {
    let failure = Failure {
        status: "4.3.0".into(),
        remote_mta: None,
        diagnostic: "the delivery attempt failed unexpectedly (an internal error); will retry"
            .into(),
    };
    let entries = batch.iter().flat_map(|(_, entries)| entries);
    let outcomes = entries.clone().map(|e| (e.id, Outcome::Temporary(failure.clone()))).collect();
    record(shared, destination, entries, &outcomes).await;
}

/// Reads the batch's messages; a message deleted meanwhile took its entries with it and is
/// left out. `None` when the store cannot be read (the entries stay due).
async fn load<'a, T: Transport>(
    shared: &'a Shared<T>,
    destination: &str,
    batch: Vec<MessageEntries>,
) -> Option<Vec<Loaded<'a>>> {
    let mut messages = Vec::with_capacity(batch.len());
    for (id, entries) in batch {
        let hold = shared.bodies.hold(id);
        let pool = shared.readers.clone();
        match hold.load(|| blocking(move || pool.with(|r| r.message(&id)))).await {
            Ok(Some(body)) => messages.push(Loaded { id, _hold: hold, body, entries }),
            Ok(None) => {}
            Err(e) => {
                warn!(destination, error = %e, "queue: cannot load messages; will retry");
                tokio::time::sleep(STORE_RETRY).await;
                return None;
            }
        }
    }
    Some(messages)
}

/// Decides what each outcome means and records it, with what the sender is to be told of
/// it, in one change.
async fn record<'e, T: Transport>(
    shared: &Shared<T>,
    destination: &str,
    entries: impl Iterator<Item = &'e QueueEntry>,
    outcomes: &HashMap<i64, Outcome>,
) {
    let now = shared.config.clock.now_ms();
    let mut updates = Vec::new();
    let mut reports = Vec::new();
    for entry in entries {
        let outcome = outcomes.get(&entry.id).cloned().unwrap_or_else(|| {
            Outcome::Temporary(Failure {
                status: "4.0.0".into(),
                remote_mta: None,
                diagnostic: "no result from the delivery attempt".into(),
            })
        });
        let Decision { update, report, verdict } =
            decide(&shared.config.retry, entry, &outcome, now);
        log_attempt(entry, &outcome, verdict);
        updates.push((entry.id, update));
        if let Some(report) = report {
            reports.push((entry.id, reports::to_store(entry.message_id, &entry.sender, report)));
        }
    }
    let node = shared.config.node.clone();
    let mutation = Mutation::QueueAttempted { node, updates, attempted_at_ms: now, reports };
    // What happened must be recorded, not re-enacted: attempting again would deliver twice.
    // So the record is retried until the store takes it; should the process stop meanwhile,
    // the entries' leases run out and they are attempted again.
    apply_durably(&shared.spool, mutation, destination).await;
}

/// Sends `message`'s waiting reports as its notices (one per kind), stored in the same
/// change that drops the reports.
async fn notify<T: Transport>(shared: &Shared<T>, message: MessageId) {
    let pool = shared.readers.clone();
    let read = blocking(move || {
        pool.with(|r| {
            let filter = QueueFilter { message: Some(message), ..QueueFilter::default() };
            Ok((r.queue_reports(&message)?, r.queue_entries(&filter)?.0))
        })
    })
    .await;
    let (reports, entries) = match read {
        Ok(read) => read,
        Err(e) => {
            warn!(queue_id = %message, error = %e, "queue: cannot read reports; will retry");
            return;
        }
    };
    if reports.is_empty() {
        return;
    }
    let hold = shared.bodies.hold(message);
    let pool = shared.readers.clone();
    let body = match hold.load(|| blocking(move || pool.with(|r| r.message(&message)))).await {
        Ok(Some(body)) => body,
        // Deleted: its reports went with it.
        Ok(None) => return,
        Err(e) => {
            warn!(queue_id = %message, error = %e, "queue: cannot load a message to report on");
            return;
        }
    };
    let now = shared.config.clock.now_ms();
    let original = Original { id: message, envelope: &body.envelope, data: &body.data };
    let (ids, reports): (Vec<i64>, Vec<QueueReport>) = reports.into_iter().unzip();
    let config = &shared.config;
    let notices = reports::notices(
        &original,
        &config.hostname,
        &*shared.router,
        &reports,
        &entries,
        &config.retry,
        now,
    );
    let mutation = Mutation::QueueNotified {
        message,
        reports: ids,
        notices: notices.messages,
        delay_warned: notices.delay_warned,
    };
    apply_durably(&shared.spool, mutation, &message.to_string()).await;
}

/// Applies `mutation`, retrying while the store fails (pausing as [`RECORD_RETRIES`] says):
/// the first failure is logged, then only the recovery, so a full disk does not write a line
/// per retry. `about` names what is recorded (a destination or a queue id) in those lines.
async fn apply_durably(spool: &Spool, mutation: Mutation, about: &str) {
    let mut failures = 0usize;
    loop {
        match spool.apply(mutation.clone()).await {
            Ok(_) if failures > 0 => {
                info!(about, failures, "queue: change recorded after the store failed");
                return;
            }
            Ok(_) => return,
            Err(e) => {
                let pause = RECORD_RETRIES[failures.min(RECORD_RETRIES.len() - 1)];
                if failures == 0 {
                    warn!(about, error = %e, "queue: cannot record a change; retrying until the store takes it");
                } else {
                    debug!(about, error = %e, retry_in = ?pause, "queue: cannot record a change yet");
                }
                failures += 1;
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn job_message(message: &Loaded<'_>) -> JobMessage {
    let Loaded { id, body, entries, .. } = message;
    let envelope = &body.envelope;
    JobMessage {
        id: *id,
        sender: entries.first().map(|e| e.sender.clone()).unwrap_or_default(),
        data: body.data.clone(),
        smtputf8: envelope.smtputf8,
        eight_bit: envelope.body.as_deref().is_some_and(|b| b.eq_ignore_ascii_case("8BITMIME")),
        envid: envelope.envid.clone(),
        ret: envelope.ret.clone(),
        recipients: entries
            .iter()
            .map(|e| JobRecipient {
                entry: e.id,
                address: e.recipient.clone(),
                notify: e.notify.clone(),
                orcpt: e.orcpt.clone(),
            })
            .collect(),
    }
}

fn log_attempt(entry: &QueueEntry, outcome: &Outcome, verdict: Verdict) {
    let queue_id = entry.message_id;
    let to = &entry.recipient;
    match (outcome, verdict) {
        (Outcome::Delivered { remote_mta, reply, .. }, _) => {
            metrics::counter!("tern_outbound_delivered_total").increment(1);
            info!(%queue_id, to, relay = remote_mta, reply, "delivered");
        }
        (Outcome::Temporary(f) | Outcome::Permanent(f), Verdict::Deferred) => {
            metrics::counter!("tern_outbound_deferred_total").increment(1);
            info!(%queue_id, to, status = f.status, error = f.diagnostic, attempts = entry.attempts + 1, "deferred");
        }
        (Outcome::Temporary(f) | Outcome::Permanent(f), _) => {
            metrics::counter!("tern_outbound_bounced_total").increment(1);
            warn!(%queue_id, to, status = f.status, error = f.diagnostic, "bounced");
        }
    }
}

async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
) -> Result<R, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Corrupt { id: String::new(), reason: e.to_string() })?
}

/// Now by the system's clock, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
