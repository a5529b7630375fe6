//! The scheduler over a real store and spool, with a scripted transport: grouping by
//! destination, per-recipient results, retries, bounces committed with the results, and
//! in-flight leases; a job that panics; messages falling due while a connection is open ride
//! on it, held like the job's own (a panic after being fed defers them).
//!
//! Tests that wait for retries, delay warnings or a lifetime run on tokio's paused time with a
//! [`Paused`] clock that follows it: the scheduler's timers fire as soon as nothing else can
//! run, so hours of queue time pass in milliseconds, and no test sleeps for real.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::too_many_lines,
    reason = "test code: a broken fixture panics, and a test reads as one story"
)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_queue::retry::RetryPolicy;
use tern_queue::scheduler::{self, Clock, Router, SchedulerConfig};
use tern_queue::transport::{Failure, Job, JobMessage, JobResult, Outcome, Transport};
use tern_queue::{Spool, SpoolConfig};
use tern_store::pool::Pool;
use tern_store::{
    Envelope, Lease, MessageId, NewMessage, QueueFilter, Recipient, Route, SqliteStore, Store,
    StoreRead, Summary,
};
use tokio_util::sync::CancellationToken;

/// Answers by recipient: `temp…` 450, `perm…` 550, anything else 250; records every job.
#[derive(Default)]
struct Scripted {
    jobs: Mutex<Vec<Job>>,
    delay: Duration,
    /// Attempts begun (counted before the delay).
    started: AtomicUsize,
    /// Signalled as each attempt begins.
    begun: tokio::sync::Notify,
    /// Never finishes an attempt (until the scheduler aborts it). Unlike a long delay, this
    /// sets no timer that paused time could jump to.
    stuck: bool,
}

impl Transport for Scripted {
    fn destination(&self, domain: &str) -> String {
        domain.to_string()
    }

    async fn deliver(&self, job: Job) -> JobResult {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.begun.notify_one();
        if self.stuck {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(self.delay).await;
        let mut out = Vec::new();
        for message in &job.messages {
            for rcpt in &message.recipients {
                let failure = |status: &str, code| Failure {
                    status: status.into(),
                    remote_mta: Some(format!("mx.{}", job.domain)),
                    diagnostic: format!("smtp; {code} {status} scripted"),
                };
                let outcome = if rcpt.address.starts_with("temp") {
                    Outcome::Temporary(failure("4.2.0", 450))
                } else if rcpt.address.starts_with("perm") {
                    Outcome::Permanent(failure("5.1.1", 550))
                } else {
                    Outcome::Delivered {
                        remote_mta: format!("mx.{}", job.domain),
                        reply: "250 2.0.0 ok".into(),
                        peer_dsn: false,
                    }
                };
                out.push((rcpt.entry, outcome));
            }
        }
        self.jobs.lock().expect("lock").push(job);
        out
    }
}

/// Tokio's time (paused in the tests that use it) counted from the wall-clock time it was
/// made at: wall-clock-like values, which advance only as the paused time does.
#[derive(Debug)]
struct Paused {
    epoch_ms: i64,
    start: tokio::time::Instant,
}

impl Paused {
    fn new() -> Arc<Paused> {
        Arc::new(Paused { epoch_ms: scheduler::now_ms(), start: tokio::time::Instant::now() })
    }
}

impl Clock for Paused {
    fn now_ms(&self) -> i64 {
        self.epoch_ms + i64::try_from(self.start.elapsed().as_millis()).expect("in range")
    }
}

/// A scheduler configuration going by `clock`, retrying by `retry`.
fn paused_config(clock: &Arc<Paused>, retry: RetryPolicy) -> SchedulerConfig {
    SchedulerConfig { retry, clock: clock.clone(), ..SchedulerConfig::new("mx.tern.test") }
}

/// `message(to)` received now by `clock`.
fn message_at(clock: &Paused, to: &[&str]) -> NewMessage {
    let mut message = message(to);
    message.envelope.received_at_ms = clock.now_ms();
    message
}

struct ToAlice;
impl Router for ToAlice {
    fn route(&self, _: &str) -> Route {
        Route::Local { account: "alice".into() }
    }
}

fn message(to: &[&str]) -> NewMessage {
    let raw = b"From: alice@tern.test\r\nSubject: hello\r\n\r\nbody\r\n".to_vec();
    NewMessage {
        id: MessageId::generate(),
        envelope: Envelope {
            mail_from: "alice@tern.test".into(),
            recipients: to
                .iter()
                .map(|a| Recipient {
                    address: a.to_string(),
                    notify: vec![],
                    orcpt: None,
                    route: Route::Remote,
                })
                .collect(),
            body: None,
            smtputf8: false,
            ret: None,
            envid: Some("ENV-1".into()),
            client: "127.0.0.1:1".parse().expect("literal"),
            helo: "client.test".into(),
            tls: None,
            auth: Some("alice".into()),
            trusted_client: true,
            received_at_ms: scheduler::now_ms(),
        },
        received_header: b"Received: from client.test\r\n".to_vec(),
        summary: Summary::extract(&raw),
        raw,
        search_text: Default::default(),
    }
}

struct Setup {
    dir: PathBuf,
    spool: Spool,
    readers: Pool<Box<dyn StoreRead>>,
    transport: Arc<Scripted>,
    shutdown: CancellationToken,
}

fn setup(delay: Duration) -> Setup {
    let dir = std::env::temp_dir().join(format!("tern-scheduler-{}", MessageId::generate()));
    let store = SqliteStore::open(&dir).expect("open");
    let (spool, _writer) = Spool::start(store, SpoolConfig::default());
    let reader_dir = dir.clone();
    let readers = Pool::new(Arc::new(move || {
        SqliteStore::open_read_only(&reader_dir).map(|s| Box::new(s) as Box<dyn StoreRead>)
    }));
    let transport = Arc::new(Scripted { delay, ..Scripted::default() });
    Setup { dir, spool, readers, transport, shutdown: CancellationToken::new() }
}

fn start(s: &Setup, retry: RetryPolicy) {
    start_with(s, SchedulerConfig { retry, ..SchedulerConfig::new("mx.tern.test") });
}

fn start_with(s: &Setup, config: SchedulerConfig) -> tokio::task::JoinHandle<()> {
    run_over(s, &s.transport, config)
}

/// The scheduler over `s`'s store with `transport` instead of its scripted one.
fn run_over<T: Transport>(
    s: &Setup,
    transport: &Arc<T>,
    config: SchedulerConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(scheduler::run(
        s.readers.clone(),
        s.spool.clone(),
        transport.clone(),
        Arc::new(ToAlice),
        config,
        s.shutdown.clone(),
    ))
}

async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(found) = check() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Awaits `wait` on paused time, with a budget of real time kept by a thread of its own: a
/// test timer would not do, since paused time jumps to the next timer whenever the runtime
/// waits (as it does while the spool's writer thread commits).
async fn in_real_time<T>(what: &str, wait: impl Future<Output = T>) -> T {
    let (expire, expired) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        let _ = expire.send(());
    });
    tokio::select! {
        found = wait => found,
        _ = expired => panic!("timed out waiting for {what}"),
    }
}

/// On paused time: waits until `check` holds, looking again after each change the spool
/// commits.
async fn until_changed<T>(spool: &Spool, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let mut changes = spool.subscribe();
    in_real_time(what, async {
        loop {
            if let Some(found) = check() {
                return found;
            }
            // A lagging receiver only means looking again.
            let _ = changes.recv().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_recorded_per_recipient_with_a_bounce_for_the_failure() {
    let s = setup(Duration::ZERO);
    let first = message(&["bob@a.test", "temp@a.test", "perm@b.test"]);
    let second = message(&["carol@a.test"]);
    s.spool.submit(first.clone()).await.expect("queued");
    s.spool.submit(second.clone()).await.expect("queued");
    start(&s, RetryPolicy::default());

    let readers = s.readers.clone();
    let (entries, bounce) = until("one deferred entry and a bounce", || {
        let (entries, _) = readers.with(|r| r.queue_entries(&QueueFilter::default())).ok()?;
        let ids = readers.with(|r| r.list_ids(10)).ok()?;
        let bounce = ids.iter().find_map(|id| {
            let m = readers.with(|r| r.message(id)).ok()??;
            m.envelope.mail_from.is_empty().then_some(m)
        })?;
        (entries.len() == 1 && entries[0].attempts == 1).then_some((entries, bounce))
    })
    .await;

    // Only the 450 recipient waits, five minutes out, with the remote reply kept.
    let deferred = &entries[0];
    assert_eq!(deferred.recipient, "temp@a.test");
    assert_eq!(deferred.last_error.as_deref(), Some("smtp; 450 4.2.0 scripted"));
    let wait = deferred.next_attempt_ms - deferred.last_attempt_ms.expect("attempted");
    assert_eq!(wait, 5 * 60 * 1000);

    // The bounce is about the 550 recipient only, addressed to the sender's mailbox.
    assert_eq!(bounce.envelope.recipients[0].address, "alice@tern.test");
    assert_eq!(bounce.envelope.recipients[0].route, Route::Local { account: "alice".into() });
    let text = String::from_utf8_lossy(&bounce.raw);
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Final-Recipient: rfc822; perm@b.test"), "{text}");
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(text.contains("Original-Envelope-Id: ENV-1"), "{text}");
    assert!(!text.contains("Final-Recipient: rfc822; temp@a.test"), "{text}");

    // The second message, fully delivered and remote-only, is gone; the first waits.
    let present = |id| s.readers.with(|r| r.message(&id)).expect("read").is_some();
    assert!(!present(second.id));
    assert!(present(first.id));

    // Both messages for a.test went over one connection; b.test had its own.
    let jobs = s.transport.jobs.lock().expect("lock");
    let a: Vec<_> = jobs.iter().filter(|j| j.domain == "a.test").collect();
    assert_eq!(
        a.len(),
        1,
        "one job for a.test: {:?}",
        jobs.iter().map(|j| &j.domain).collect::<Vec<_>>()
    );
    assert_eq!(a[0].messages.len(), 2);
    assert_eq!(a[0].messages[0].recipients.len(), 2, "bob and temp share the message");
    assert_eq!(
        a[0].messages[0].data.as_slice(),
        [first.received_header.as_slice(), &first.raw].concat()
    );
    s.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn retries_come_on_schedule_and_an_entry_is_never_attempted_twice_at_once() {
    // A slow transport and a retry interval shorter than one attempt: the lease must keep
    // the entry from being handed out again while its attempt runs.
    let s = setup(Duration::from_millis(600));
    let clock = Paused::new();
    s.spool.submit(message_at(&clock, &["temp@a.test"])).await.expect("queued");
    let retry = RetryPolicy {
        first: Duration::from_millis(100),
        max: Duration::from_millis(100),
        ..RetryPolicy::default()
    };
    start_with(&s, paused_config(&clock, retry));
    let readers = s.readers.clone();
    until_changed(&s.spool, "three attempts", || {
        let (entries, _) = readers.with(|r| r.queue_entries(&QueueFilter::default())).ok()?;
        (entries.first()?.attempts >= 3).then_some(())
    })
    .await;
    s.shutdown.cancel();
    let jobs = s.transport.jobs.lock().expect("lock");
    let (entries, _) = s.readers.with(|r| r.queue_entries(&QueueFilter::default())).expect("list");
    assert!(
        jobs.len() as u32 <= entries[0].attempts + 1,
        "{} jobs for {} recorded attempts: an entry was attempted concurrently",
        jobs.len(),
        entries[0].attempts
    );
}

/// Never finishes a job for `stuck.test` (until the test ends); delivers everything else.
#[derive(Default)]
struct Stuck {
    delivered: Mutex<Vec<String>>,
}

impl Transport for Stuck {
    fn destination(&self, domain: &str) -> String {
        domain.to_string()
    }

    async fn deliver(&self, job: Job) -> JobResult {
        if job.domain == "stuck.test" {
            std::future::pending::<()>().await;
        }
        let mut out = Vec::new();
        for message in &job.messages {
            for rcpt in &message.recipients {
                self.delivered.lock().expect("lock").push(rcpt.address.clone());
                out.push((
                    rcpt.entry,
                    Outcome::Delivered {
                        remote_mta: "mx.test".into(),
                        reply: "250 ok".into(),
                        peer_dsn: false,
                    },
                ));
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_destination_with_a_long_backlog_does_not_starve_the_others() {
    // More due entries for one destination than the scheduler reads per look (2,000), all
    // older than the one entry for another domain; that destination takes its one connection
    // and never gives it back.
    let dir = std::env::temp_dir().join(format!("tern-scheduler-{}", MessageId::generate()));
    let mut store = SqliteStore::open(&dir).expect("open");
    let backlog: Vec<NewMessage> =
        (0..2_100).map(|n| message(&[format!("user{n}@stuck.test").as_str()])).collect();
    tern_store::Store::commit_batch(&mut store, &backlog).expect("commit the backlog");
    let (spool, _writer) = Spool::start(store, SpoolConfig::default());
    spool.submit(message(&["carol@other.test"])).await.expect("queued");
    let readers = Pool::new(Arc::new(move || {
        SqliteStore::open_read_only(&dir).map(|s| Box::new(s) as Box<dyn StoreRead>)
    }));
    let transport = Arc::new(Stuck::default());
    let shutdown = CancellationToken::new();
    let config = SchedulerConfig {
        max_per_destination: 1,
        messages_per_connection: 1,
        ..SchedulerConfig::new("mx.tern.test")
    };
    tokio::spawn(scheduler::run(
        readers,
        spool.clone(),
        transport.clone(),
        Arc::new(ToAlice),
        config,
        shutdown.clone(),
    ));
    until("the entry for other.test to be delivered", || {
        let delivered = transport.delivered.lock().expect("lock");
        delivered.iter().any(|a| a == "carol@other.test").then_some(())
    })
    .await;
    shutdown.cancel();
}

/// Panics on its first job; delivers everything after that.
#[derive(Default)]
struct PanicsOnce {
    calls: Mutex<u32>,
    delivered: Mutex<Vec<String>>,
}

impl Transport for PanicsOnce {
    fn destination(&self, domain: &str) -> String {
        domain.to_string()
    }

    async fn deliver(&self, job: Job) -> JobResult {
        let first = {
            let mut calls = self.calls.lock().expect("lock");
            *calls += 1;
            *calls == 1
        };
        assert!(!first, "the transport fails unexpectedly");
        let mut out = Vec::new();
        for message in &job.messages {
            for rcpt in &message.recipients {
                self.delivered.lock().expect("lock").push(rcpt.address.clone());
                let delivered = Outcome::Delivered {
                    remote_mta: "mx.test".into(),
                    reply: "250 ok".into(),
                    peer_dsn: false,
                };
                out.push((rcpt.entry, delivered));
            }
        }
        out
    }
}

#[tokio::test(start_paused = true)]
async fn a_job_that_panics_is_deferred_and_its_destination_stays_open() {
    let s = setup(Duration::ZERO);
    let clock = Paused::new();
    let first = message_at(&clock, &["bob@a.test"]);
    s.spool.submit(first.clone()).await.expect("queued");
    let transport = Arc::new(PanicsOnce::default());
    // One connection per destination: a leaked one would block a.test for good.
    // A minute of paused time passes in no real time, and is long enough that the deferral
    // is seen before the retry (time moves on while the spool's writer thread commits).
    let retry = RetryPolicy {
        first: Duration::from_secs(60),
        max: Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    let config = SchedulerConfig { max_per_destination: 1, ..paused_config(&clock, retry) };
    tokio::spawn(scheduler::run(
        s.readers.clone(),
        s.spool.clone(),
        transport.clone(),
        Arc::new(ToAlice),
        config,
        s.shutdown.clone(),
    ));
    // The panic is recorded as a temporary failure, not lost and not retried at once.
    let readers = s.readers.clone();
    let deferred = until_changed(&s.spool, "the panicked attempt to be recorded", || {
        let (entries, _) = readers.with(|r| r.queue_entries(&QueueFilter::default())).ok()?;
        entries.into_iter().find(|e| e.attempts == 1)
    })
    .await;
    assert!(deferred.last_error.expect("error").contains("failed unexpectedly"));
    // Then delivered on the retry, and another message to the same destination goes too.
    let second = message_at(&clock, &["carol@a.test"]);
    s.spool.submit(second.clone()).await.expect("queued");
    until_changed(&s.spool, "both messages delivered and gone", || {
        let gone = |id| readers.with(|r| r.message(&id)).ok().flatten().is_none();
        (gone(first.id) && gone(second.id)).then_some(())
    })
    .await;
    let delivered = transport.delivered.lock().expect("lock").clone();
    assert_eq!(delivered.iter().filter(|a| *a == "bob@a.test").count(), 1, "{delivered:?}");
    s.shutdown.cancel();
}

/// Holds every job until `together` jobs are in progress at once, then delivers them all.
struct Together {
    barrier: tokio::sync::Barrier,
    jobs: Mutex<Vec<Job>>,
}

impl Transport for Together {
    fn destination(&self, domain: &str) -> String {
        domain.to_string()
    }

    async fn deliver(&self, job: Job) -> JobResult {
        self.barrier.wait().await;
        let delivered = Outcome::Delivered {
            remote_mta: "mx.test".into(),
            reply: "250 ok".into(),
            peer_dsn: false,
        };
        let out = job.messages[0].recipients.iter().map(|r| (r.entry, delivered.clone())).collect();
        self.jobs.lock().expect("lock").push(job);
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_for_one_message_share_one_copy_of_it() {
    let s = setup(Duration::ZERO);
    let domains = 3;
    let to: Vec<String> = (0..domains).map(|n| format!("bob@d{n}.test")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    let sent = message(&to);
    s.spool.submit(sent.clone()).await.expect("queued");
    let transport =
        Arc::new(Together { barrier: tokio::sync::Barrier::new(domains), jobs: Mutex::default() });
    run_over(&s, &transport, SchedulerConfig::new("mx.tern.test"));
    let readers = s.readers.clone();
    until("the message to be delivered everywhere", || {
        readers.with(|r| r.message(&sent.id)).ok()?.is_none().then_some(())
    })
    .await;
    let jobs = transport.jobs.lock().expect("lock");
    assert_eq!(jobs.len(), domains, "one job per destination, all in progress at once");
    let first = &jobs[0].messages[0].data;
    assert_eq!(first.as_slice(), [sent.received_header.as_slice(), &sent.raw].concat());
    for job in jobs.iter() {
        assert!(Arc::ptr_eq(first, &job.messages[0].data), "{} has its own copy", job.domain);
    }
    s.shutdown.cancel();
}

/// The outcome of a recipient the next hop accepted.
fn delivered() -> Outcome {
    Outcome::Delivered { remote_mta: "mx.test".into(), reply: "250 ok".into(), peer_dsn: false }
}

/// Delivers every message it is given; after the first job's first batch it waits for `gate`,
/// then asks the job's feed for more until there is none, as the SMTP client does before QUIT.
#[derive(Default)]
struct Feeds {
    gate: tokio::sync::Notify,
    jobs: AtomicUsize,
    /// Recipients delivered, in order, with the job that carried them.
    delivered: Mutex<Vec<(usize, String)>>,
    /// What the feed gave, request by request.
    fed: Mutex<Vec<usize>>,
    /// Panics "sending" what the feed gives.
    panics: bool,
}

impl Feeds {
    fn deliver_all(&self, job: usize, messages: &[JobMessage], out: &mut JobResult) {
        for rcpt in messages.iter().flat_map(|m| &m.recipients) {
            self.delivered.lock().expect("lock").push((job, rcpt.address.clone()));
            out.push((rcpt.entry, delivered()));
        }
    }
}

impl Transport for Feeds {
    fn destination(&self, domain: &str) -> String {
        domain.to_string()
    }

    async fn deliver(&self, job: Job) -> JobResult {
        let n = self.jobs.fetch_add(1, Ordering::SeqCst);
        let mut out = JobResult::new();
        self.deliver_all(n, &job.messages, &mut out);
        if n == 0 {
            self.gate.notified().await;
        }
        let Some(feed) = &job.feed else { return out };
        loop {
            let more = feed.more(&mut out).await;
            assert!(out.is_empty(), "the outcomes handed over are taken");
            self.fed.lock().expect("lock").push(more.len());
            if more.is_empty() {
                return out;
            }
            assert!(!self.panics, "the transport fails unexpectedly");
            self.deliver_all(n, &more, &mut out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_falling_due_while_a_connection_is_open_ride_on_it() {
    let s = setup(Duration::ZERO);
    let transport = Arc::new(Feeds::default());
    run_over(&s, &transport, SchedulerConfig::new("mx.tern.test"));
    let first = message(&["bob@a.test"]);
    s.spool.submit(first.clone()).await.expect("queued");
    until("the first connection", || (transport.jobs.load(Ordering::SeqCst) == 1).then_some(()))
        .await;
    // Four more fall due while that connection is open: they wait for it rather than open
    // connections of their own (up to 20 are allowed).
    let mut sent = vec![first];
    for n in 0..4 {
        let next = message(&[&format!("rcpt{n}@a.test")]);
        s.spool.submit(next.clone()).await.expect("queued");
        sent.push(next);
    }
    transport.gate.notify_one();
    let readers = s.readers.clone();
    until("every message delivered and gone", || {
        let gone = |id| readers.with(|r| r.message(&id)).ok().flatten().is_none();
        sent.iter().all(|m| gone(m.id)).then_some(())
    })
    .await;
    let delivered = transport.delivered.lock().expect("lock").clone();
    assert!(delivered.iter().all(|(job, _)| *job == 0), "one connection: {delivered:?}");
    assert_eq!(delivered.len(), 5, "each once: {delivered:?}");
    // The connection lingers for more, then is told there is none.
    until("the connection to close", || {
        (transport.fed.lock().expect("lock").last() == Some(&0)).then_some(())
    })
    .await;
    assert_eq!(transport.jobs.load(Ordering::SeqCst), 1);
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_fed_to_a_job_that_panics_are_deferred_not_lost() {
    let s = setup(Duration::ZERO);
    let transport = Arc::new(Feeds { panics: true, ..Feeds::default() });
    let retry = RetryPolicy { first: Duration::from_secs(3600), ..RetryPolicy::default() };
    run_over(&s, &transport, SchedulerConfig { retry, ..SchedulerConfig::new("mx.tern.test") });
    let first = message(&["bob@a.test"]);
    s.spool.submit(first.clone()).await.expect("queued");
    until("the first connection", || (transport.jobs.load(Ordering::SeqCst) == 1).then_some(()))
        .await;
    let fed = message(&["carol@a.test"]);
    s.spool.submit(fed.clone()).await.expect("queued");
    transport.gate.notify_one();
    let readers = s.readers.clone();
    // The first message's outcome was handed over before the panic: recorded, gone.
    // The fed one was held by the job: deferred by its panic, neither lost nor sent again
    // at once.
    let deferred = until("the fed entry deferred", || {
        let (entries, _) = readers.with(|r| r.queue_entries(&QueueFilter::default())).ok()?;
        entries.into_iter().find(|e| e.message_id == fed.id && e.attempts == 1)
    })
    .await;
    assert!(deferred.last_error.expect("error").contains("failed unexpectedly"));
    assert!(readers.with(|r| r.message(&first.id)).expect("read").is_none());
    assert_eq!(transport.jobs.load(Ordering::SeqCst), 1);
    s.shutdown.cancel();
}

/// The notices in the store (messages from `<>`), as text.
fn notices(readers: &Pool<Box<dyn StoreRead>>) -> Vec<String> {
    let ids = readers.with(|r| r.list_ids(1_000)).expect("list");
    ids.iter()
        .filter_map(|id| readers.with(|r| r.message(id)).expect("read"))
        .filter(|m| m.envelope.mail_from.is_empty())
        .map(|m| String::from_utf8_lossy(&m.raw).into_owned())
        .collect()
}

fn of_kind<'a>(notices: &'a [String], action: &str) -> Vec<&'a String> {
    notices.iter().filter(|n| n.contains(&format!("Action: {action}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_at_thirty_destinations_gets_one_bounce_listing_them_all() {
    let s = setup(Duration::ZERO);
    let to: Vec<String> = (0..30).map(|n| format!("perm{n}@d{n}.test")).collect();
    let sent = message(&to.iter().map(String::as_str).collect::<Vec<_>>());
    s.spool.submit(sent.clone()).await.expect("queued");
    start(&s, RetryPolicy::default());
    let readers = s.readers.clone();
    // The original stays until its notice is stored, then goes: nothing else keeps it.
    until("the original to go", || {
        readers.with(|r| r.message(&sent.id)).ok()?.is_none().then_some(())
    })
    .await;
    let notices = notices(&s.readers);
    assert_eq!(notices.len(), 1, "one bounce for the message, not one per destination");
    for address in &to {
        let line = format!("Final-Recipient: rfc822; {address}\r\nAction: failed");
        assert!(notices[0].contains(&line), "{address} missing:\n{}", notices[0]);
    }
    assert_eq!(s.transport.jobs.lock().expect("lock").len(), 30, "one job per destination");
    s.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn delivered_failed_and_deferred_recipients_get_one_notice_of_each_kind() {
    let s = setup(Duration::ZERO);
    let clock = Paused::new();
    let mut sent = message_at(
        &clock,
        &[
            "bob@a.test",
            "perm1@b.test",
            "perm2@c.test",
            "temp1@d.test",
            "temp2@e.test",
            "carol@f.test",
        ],
    );
    // Carol's sender asked to hear of success (the scripted next hop does not speak DSN).
    sent.envelope.recipients[5].notify = vec!["SUCCESS".into()];
    s.spool.submit(sent.clone()).await.expect("queued");
    // Warn at the first deferral; retry, to see that the warning is not repeated. An hour
    // of paused time passes in no real time, and leaves each attempt's notices time to go
    // out before the next attempt (time moves on while the spool's writer thread commits).
    let retry = RetryPolicy {
        first: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
        delay_warning: Some(Duration::ZERO),
        ..RetryPolicy::default()
    };
    start_with(&s, paused_config(&clock, retry));
    let readers = s.readers.clone();
    // A third attempt: the second one's notices (there must be none) have gone out by then.
    until_changed(&s.spool, "both deferred recipients retried twice", || {
        let (entries, _) = readers.with(|r| r.queue_entries(&QueueFilter::default())).ok()?;
        (entries.len() == 2 && entries.iter().all(|e| e.attempts >= 3)).then_some(())
    })
    .await;
    let notices = notices(&s.readers);
    let failed = of_kind(&notices, "failed");
    assert_eq!(failed.len(), 1, "one bounce: {notices:#?}");
    for (address, listed) in [
        ("perm1@b.test", true),
        ("perm2@c.test", true),
        ("temp1@d.test", false),
        ("bob@a.test", false),
    ] {
        let line = format!("Final-Recipient: rfc822; {address}");
        assert_eq!(failed[0].contains(&line), listed, "{address} in the bounce:\n{}", failed[0]);
    }
    let delayed = of_kind(&notices, "delayed");
    assert_eq!(delayed.len(), 1, "one delay warning for the message: {notices:#?}");
    for address in ["temp1@d.test", "temp2@e.test"] {
        let line = format!("Final-Recipient: rfc822; {address}\r\nAction: delayed");
        assert!(delayed[0].contains(&line), "{address} not in the warning:\n{}", delayed[0]);
    }
    assert!(!delayed[0].contains("perm1@b.test"), "{}", delayed[0]);
    let relayed = of_kind(&notices, "relayed");
    assert_eq!(relayed.len(), 1, "{notices:#?}");
    assert!(relayed[0].contains("Final-Recipient: rfc822; carol@f.test"), "{}", relayed[0]);
    assert_eq!(notices.len(), 3, "{notices:#?}");
    s.shutdown.cancel();
}

/// Another node on the same database sees the scheduler's lease while it attempts an entry,
/// and gets the entry once the scheduler stops (its leases released, not left to expire).
/// On paused time, so the stop's grace period for the stuck attempt passes at once.
#[tokio::test(start_paused = true)]
async fn entries_being_attempted_are_leased_in_the_store_and_released_at_shutdown() {
    let stuck = Arc::new(Scripted { stuck: true, ..Scripted::default() });
    let s = Setup { transport: stuck, ..setup(Duration::ZERO) };
    let clock = Paused::new();
    let run = start_with(&s, paused_config(&clock, RetryPolicy::default()));
    s.spool.submit(message_at(&clock, &["bob@slow.test"])).await.expect("queued");
    in_real_time("the attempt to start", s.transport.begun.notified()).await;
    assert_eq!(s.transport.started.load(Ordering::SeqCst), 1);
    let mut other = SqliteStore::open(&s.dir).expect("open");
    let lease = |other: &mut SqliteStore| {
        let now_ms = clock.now_ms();
        let lease = Lease { node: "other".into(), now_ms, until_ms: now_ms + 60_000 };
        other.lease_due(&lease, 10, &[]).expect("lease")
    };
    assert!(lease(&mut other).is_empty(), "the entry is leased while it is attempted");
    s.shutdown.cancel();
    run.await.expect("the scheduler stops");
    let taken = lease(&mut other);
    assert_eq!(taken.len(), 1, "released at shutdown, the entry is free at once");
    assert_eq!(taken[0].recipient, "bob@slow.test");
}

/// Hours of queue time on the paused clock: a recipient that keeps failing is retried on the
/// doubling schedule, warned about once it is older than the warning age, and bounced as
/// expired (4.4.7) at the first attempt past its lifetime.
#[tokio::test(start_paused = true)]
async fn a_recipient_failing_past_its_lifetime_is_warned_about_then_bounced_as_expired() {
    let s = setup(Duration::ZERO);
    let clock = Paused::new();
    let sent = message_at(&clock, &["temp@a.test"]);
    s.spool.submit(sent.clone()).await.expect("queued");
    let minutes = |m: u64| Duration::from_secs(m * 60);
    // Attempts at 0, 5, 15, 35, 75 and 135 minutes; the warning follows the one at 35.
    let retry = RetryPolicy {
        first: minutes(5),
        max: minutes(60),
        lifetime: minutes(120),
        delay_warning: Some(minutes(30)),
    };
    start_with(&s, paused_config(&clock, retry));
    let readers = s.readers.clone();
    until_changed(&s.spool, "the original to go with its entry", || {
        readers.with(|r| r.message(&sent.id)).ok()?.is_none().then_some(())
    })
    .await;
    let elapsed = clock.now_ms() - sent.envelope.received_at_ms;
    assert!(elapsed >= 135 * 60 * 1000, "bounced after {elapsed} ms of queue time");
    let notices = notices(&s.readers);
    let delayed = of_kind(&notices, "delayed");
    assert_eq!(delayed.len(), 1, "one delay warning: {notices:#?}");
    assert!(delayed[0].contains("Final-Recipient: rfc822; temp@a.test"), "{}", delayed[0]);
    let failed = of_kind(&notices, "failed");
    assert_eq!(failed.len(), 1, "one bounce: {notices:#?}");
    assert!(failed[0].contains("Status: 4.4.7"), "{}", failed[0]);
    assert!(failed[0].contains("gave up after 6 attempts over 2 hours"), "{}", failed[0]);
    // Expiry is Tern's verdict: labelled as its own, not as the peer's last reply.
    assert!(
        failed[0].contains("Diagnostic-Code: x-tern; gave up after 6 attempts"),
        "{}",
        failed[0]
    );
    assert_eq!(s.transport.jobs.lock().expect("lock").len(), 6, "one job per attempt");
    s.shutdown.cancel();
}

/// A real store whose records of attempts fail while `full` is set, as on a full disk.
struct FullDisk {
    inner: SqliteStore,
    full: Arc<std::sync::atomic::AtomicBool>,
    refused: Arc<AtomicUsize>,
}

impl Store for FullDisk {
    fn commit_batch(&mut self, batch: &[NewMessage]) -> Result<(), tern_store::StoreError> {
        self.inner.commit_batch(batch)
    }
    fn apply(
        &mut self,
        mutation: &tern_store::Mutation,
    ) -> Result<Vec<MessageId>, tern_store::StoreError> {
        if matches!(mutation, tern_store::Mutation::QueueAttempted { .. })
            && self.full.load(Ordering::SeqCst)
        {
            self.refused.fetch_add(1, Ordering::SeqCst);
            let source = std::io::Error::from_raw_os_error(28);
            return Err(tern_store::StoreError::Io { path: "tern.db".into(), source });
        }
        self.inner.apply(mutation)
    }
    fn lease_due(
        &mut self,
        lease: &Lease,
        limit: u64,
        skip: &[String],
    ) -> Result<Vec<tern_store::QueueEntry>, tern_store::StoreError> {
        self.inner.lease_due(lease, limit, skip)
    }
    fn renew_leases(
        &mut self,
        lease: &Lease,
        entries: &[i64],
    ) -> Result<Vec<i64>, tern_store::StoreError> {
        self.inner.renew_leases(lease, entries)
    }
    fn release_leases(
        &mut self,
        node: &str,
        entries: &[i64],
    ) -> Result<(), tern_store::StoreError> {
        self.inner.release_leases(node, entries)
    }
}

#[tokio::test(start_paused = true)]
async fn a_result_the_store_cannot_take_is_recorded_once_it_can_never_attempted_again() {
    let mut s = setup(Duration::ZERO);
    let full = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let refused = Arc::new(AtomicUsize::new(0));
    let store = FullDisk {
        inner: SqliteStore::open(&s.dir).expect("open"),
        full: full.clone(),
        refused: refused.clone(),
    };
    (s.spool, _) = Spool::start(store, SpoolConfig::default());
    let clock = Paused::new();
    start_with(&s, paused_config(&clock, RetryPolicy::default()));
    s.spool.submit(message_at(&clock, &["bob@a.test"])).await.expect("queued");
    // Ten refusals: minutes of a full disk, longer than any fixed number of retries.
    in_real_time("ten refused records", async {
        while refused.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;
    // Delivered but not recorded: still queued, and not attempted again.
    let readers = s.readers.clone();
    let entries = || readers.with(|r| r.queue_entries(&QueueFilter::default())).expect("read").0;
    assert_eq!(entries().len(), 1);
    assert_eq!(entries()[0].attempts, 0, "nothing recorded yet");
    assert_eq!(s.transport.started.load(Ordering::SeqCst), 1);
    full.store(false, Ordering::SeqCst);
    until_changed(&s.spool, "the result to be recorded", || entries().is_empty().then_some(()))
        .await;
    assert_eq!(s.transport.started.load(Ordering::SeqCst), 1, "delivered once");
    s.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carrying_large_messages_loads_them_a_chunk_at_a_time() {
    let s = setup(Duration::ZERO);
    let transport = Arc::new(Feeds::default());
    let mut sent = Vec::new();
    for n in 0..12 {
        let mut large = message(&[&format!("rcpt{n}@a.test")]);
        large.raw.extend(std::iter::repeat_n(b'x', 700 * 1024));
        s.spool.submit(large.clone()).await.expect("queued");
        sent.push(large.id);
    }
    run_over(&s, &transport, SchedulerConfig::new("mx.tern.test"));
    until("the connection", || (transport.jobs.load(Ordering::SeqCst) == 1).then_some(())).await;
    transport.gate.notify_one();
    until("the connection to close", || {
        (transport.fed.lock().expect("lock").last() == Some(&0)).then_some(())
    })
    .await;
    // About 2 MiB a chunk: three messages of 700 KiB each, then the next three when the
    // connection asks for more; then nothing more is due.
    assert_eq!(*transport.fed.lock().expect("lock"), [3, 3, 3, 0]);
    assert_eq!(transport.delivered.lock().expect("lock").len(), 12, "each once");
    assert_eq!(transport.jobs.load(Ordering::SeqCst), 1, "one connection");
    let readers = s.readers.clone();
    until("every message delivered and gone", || {
        let gone = |id| readers.with(|r| r.message(&id)).ok().flatten().is_none();
        sent.iter().all(|id| gone(*id)).then_some(())
    })
    .await;
    s.shutdown.cancel();
}
