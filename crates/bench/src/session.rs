//! Running a benchmark: the sessions share one counter of messages, each sends until the
//! counter runs out, and their results merge into one [`Report`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::task::JoinSet;

use crate::client::{Failure, FailureKey, SmtpClient, Transaction};
use crate::report::{ErrorTally, Latency, Pipelining, Report};
use crate::{BenchError, Plan};

/// A session gives up after this many connection attempts in a row that fail.
const MAX_CONSECUTIVE_CONNECT_FAILURES: u32 = 3;
/// Highest latency the histogram tracks, in microseconds (one hour); higher values are clamped.
const MAX_LATENCY_MICROS: u64 = 3_600_000_000;

/// State every session shares.
struct Shared {
    plan: Plan,
    /// Sequence number of the next message to send, starting at 1.
    next: AtomicU64,
    /// Set when any EHLO reply advertised PIPELINING.
    pipelining_advertised: AtomicBool,
    /// Latency of accepted messages in microseconds. One histogram for all sessions: each takes
    /// about 190 KB, and one uncontended lock per message costs far less than the message.
    latency: Mutex<Histogram<u64>>,
    progress: ProgressBar,
}

impl Shared {
    /// Takes the next message's sequence number, or `None` when all are taken.
    fn claim(&self) -> Option<u64> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        (seq <= self.plan.messages).then_some(seq)
    }

    fn record_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(micros.max(1));
    }
}

/// Runs all sessions to completion and gathers their results.
pub(crate) async fn execute(plan: Plan, progress: ProgressBar) -> Result<Report, BenchError> {
    let shared = Arc::new(Shared {
        plan,
        next: AtomicU64::new(1),
        pipelining_advertised: AtomicBool::new(false),
        latency: Mutex::new(Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)?),
        progress,
    });
    let started = Instant::now();
    let mut sessions = JoinSet::new();
    for _ in 0..shared.plan.sessions {
        sessions.spawn(run_session(Arc::clone(&shared)));
    }
    let mut total = SessionStats::default();
    while let Some(result) = sessions.join_next().await {
        total.merge(result?);
    }
    let elapsed = started.elapsed();
    shared.progress.finish_and_clear();

    let plan = &shared.plan;
    if total.connect_attempts > 0 && total.connections == 0 {
        let why = total
            .first_fatal
            .as_ref()
            .map_or_else(|| "no connection succeeded".to_owned(), ToString::to_string);
        return Err(BenchError::Unreachable { server: plan.server.clone(), why });
    }
    Ok(Report {
        server: plan.server.clone(),
        sessions: plan.sessions,
        size_bytes: plan.size_bytes,
        pipelining: match (plan.pipelining, shared.pipelining_advertised.load(Ordering::Relaxed)) {
            (false, _) => Pipelining::Off,
            (true, true) => Pipelining::Used,
            (true, false) => Pipelining::NotAdvertised,
        },
        reconnect: plan.reconnect,
        messages_ok: total.ok,
        messages_failed: total.failed,
        messages_not_sent: plan.messages.saturating_sub(total.ok + total.failed),
        elapsed,
        latency: Latency::from_histogram(
            &shared.latency.lock().unwrap_or_else(PoisonError::into_inner),
        ),
        errors: total.errors,
    })
}

/// What one session (or all of them, merged) observed.
#[derive(Default)]
struct SessionStats {
    ok: u64,
    failed: u64,
    connect_attempts: u64,
    connections: u64,
    errors: BTreeMap<FailureKey, ErrorTally>,
    /// The failure that made a session give up, for the "cannot reach" error.
    first_fatal: Option<Failure>,
}

impl SessionStats {
    fn record_failure(&mut self, failure: &Failure) {
        let tally = self.errors.entry(failure.key()).or_default();
        tally.count += 1;
        if tally.example.is_empty() {
            tally.example = failure.detail.clone();
        }
    }

    fn merge(&mut self, other: SessionStats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.connect_attempts += other.connect_attempts;
        self.connections += other.connections;
        for (key, tally) in other.errors {
            let mine = self.errors.entry(key).or_default();
            mine.count += tally.count;
            if mine.example.is_empty() {
                mine.example = tally.example;
            }
        }
        if self.first_fatal.is_none() {
            self.first_fatal = other.first_fatal;
        }
    }
}

/// One session: claims messages from the shared counter and sends them until none are left.
///
/// A transport failure (timeout, closed connection, garbage) fails the message in flight and
/// drops the connection; the next message opens a new one. The session gives up after
/// [`MAX_CONSECUTIVE_CONNECT_FAILURES`] failed connection attempts in a row.
async fn run_session(shared: Arc<Shared>) -> SessionStats {
    let plan = &shared.plan;
    let mut stats = SessionStats::default();
    let mut message = plan.template.clone();
    let mut client: Option<SmtpClient> = None;
    let mut connect_failures = 0;

    while let Some(seq) = shared.claim() {
        let mut connected = match client.take() {
            Some(connected) => connected,
            None => {
                stats.connect_attempts += 1;
                match SmtpClient::open(plan).await {
                    Ok(opened) => {
                        stats.connections += 1;
                        connect_failures = 0;
                        if opened.pipelining_advertised {
                            shared.pipelining_advertised.store(true, Ordering::Relaxed);
                        }
                        opened
                    }
                    Err(failure) => {
                        stats.failed += 1;
                        stats.record_failure(&failure);
                        shared.progress.inc(1);
                        connect_failures += 1;
                        if connect_failures >= MAX_CONSECUTIVE_CONNECT_FAILURES {
                            stats.first_fatal = Some(failure);
                            break;
                        }
                        continue;
                    }
                }
            }
        };

        message.set_sequence(seq);
        let started = Instant::now();
        let outcome = connected.transaction(&plan.commands, message.wire(), plan.pipelining).await;
        shared.progress.inc(1);
        match outcome {
            Ok(Transaction::Accepted) => {
                stats.ok += 1;
                shared.record_latency(started.elapsed());
                client = Some(connected);
            }
            Ok(Transaction::Rejected(failures)) => {
                stats.failed += 1;
                failures.iter().for_each(|f| stats.record_failure(f));
                let closing = failures.iter().any(Failure::closes_connection);
                if !closing {
                    match connected.reset().await {
                        Ok(()) => client = Some(connected),
                        Err(failure) => stats.record_failure(&failure),
                    }
                }
            }
            Err(failure) => {
                stats.failed += 1;
                stats.record_failure(&failure);
            }
        }
        if plan.reconnect
            && let Some(done) = client.take()
        {
            done.quit().await;
        }
    }
    if let Some(done) = client {
        done.quit().await;
    }
    stats
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::client::{FailureKind, Stage};
    use crate::{BenchArgs, DEFAULT_EHLO, DEFAULT_FROM, DEFAULT_TO, MAX_SIZE_BYTES};

    /// What the test sink saw.
    #[derive(Default)]
    struct SinkLog {
        /// Unstuffed size of every accepted message.
        sizes: Vec<usize>,
        connections: usize,
        pipelined_groups: usize,
    }

    /// A minimal SMTP sink: advertises PIPELINING, rejects RCPT TO <reject@...> with 550 and
    /// accepts everything else.
    async fn start_sink() -> (String, Arc<Mutex<SinkLog>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(SinkLog::default()));
        let sink_log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                sink_log.lock().unwrap().connections += 1;
                tokio::spawn(sink_session(stream, Arc::clone(&sink_log)));
            }
        });
        (addr, log)
    }

    async fn sink_session(stream: TcpStream, log: Arc<Mutex<SinkLog>>) {
        let mut stream = BufReader::new(stream);
        stream.write_all(b"220 sink ESMTP\r\n").await.unwrap();
        let mut line = Vec::new();
        let mut valid_rcpt = false;
        loop {
            line.clear();
            if stream.read_until(b'\n', &mut line).await.unwrap() == 0 {
                return;
            }
            let verb = line[..4.min(line.len())].to_ascii_uppercase();
            let reply: &[u8] = match &verb[..] {
                b"EHLO" => b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
                b"MAIL" => {
                    if !stream.buffer().is_empty() {
                        log.lock().unwrap().pipelined_groups += 1;
                    }
                    valid_rcpt = false;
                    b"250 ok\r\n"
                }
                b"RCPT" if line.starts_with(b"RCPT TO:<reject@") => b"550 5.1.1 no such user\r\n",
                b"RCPT" => {
                    valid_rcpt = true;
                    b"250 ok\r\n"
                }
                b"DATA" if !valid_rcpt => b"554 5.5.1 no valid recipients\r\n",
                b"DATA" => {
                    stream.write_all(b"354 go\r\n").await.unwrap();
                    let mut size = 0;
                    loop {
                        line.clear();
                        stream.read_until(b'\n', &mut line).await.unwrap();
                        if line == b".\r\n" {
                            break;
                        }
                        size += line.len() - usize::from(line.starts_with(b"."));
                    }
                    log.lock().unwrap().sizes.push(size);
                    b"250 2.0.0 queued\r\n"
                }
                b"RSET" => b"250 ok\r\n",
                b"QUIT" => {
                    let _ = stream.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => b"500 what\r\n",
            };
            stream.write_all(reply).await.unwrap();
        }
    }

    fn args(server: &str) -> BenchArgs {
        BenchArgs {
            server: server.to_owned(),
            sessions: 3,
            messages: 25,
            size_bytes: 1500,
            from: DEFAULT_FROM.to_owned(),
            message_file: None,
            to: DEFAULT_TO.to_owned(),
            ehlo: DEFAULT_EHLO.to_owned(),
            pipelining: false,
            reconnect: false,
            json: true,
            timeout_secs: 5,
        }
    }

    async fn bench(args: &BenchArgs) -> Result<Report, BenchError> {
        execute(Plan::from_args(args)?, ProgressBar::hidden()).await
    }

    #[tokio::test]
    async fn benchmark_runs_against_a_sink() {
        let (server, log) = start_sink().await;
        let report = bench(&args(&server)).await.unwrap();
        assert_eq!((report.messages_ok, report.messages_failed), (25, 0));
        assert_eq!(report.pipelining, Pipelining::Off);
        assert!(report.latency.is_some() && report.errors.is_empty());
        {
            let log = log.lock().unwrap();
            assert_eq!(log.sizes, vec![1500; 25]);
            assert_eq!((log.connections, log.pipelined_groups), (3, 0));
        }
        let json = report.to_json().unwrap();
        assert!(json.starts_with(r#"{"server":"127.0.0.1:"#), "{json}");
        assert!(json.contains(r#""messages_ok":25,"messages_failed":0,"#), "{json}");

        let report =
            bench(&BenchArgs { pipelining: true, reconnect: true, ..args(&server) }).await.unwrap();
        assert_eq!((report.messages_ok, report.pipelining), (25, Pipelining::Used));
        let log = log.lock().unwrap();
        assert_eq!((log.connections, log.pipelined_groups), (3 + 25, 25));
    }

    #[tokio::test]
    async fn rejections_are_counted_by_stage_and_code() {
        let (server, _log) = start_sink().await;
        for pipelining in [false, true] {
            let report = bench(&BenchArgs {
                to: "reject@tern.test".to_owned(),
                pipelining,
                ..args(&server)
            })
            .await
            .unwrap();
            assert_eq!((report.messages_ok, report.messages_failed), (0, 25));
            let rcpt = &report.errors[&(Stage::Rcpt, FailureKind::Reply(550))];
            assert_eq!((rcpt.count, rcpt.example.as_str()), (25, "5.1.1 no such user"));
            // Pipelined, DATA is sent anyway and refused as well.
            let data = report.errors.get(&(Stage::Data, FailureKind::Reply(554)));
            assert_eq!(data.map(|t| t.count), pipelining.then_some(25));
            assert!(report.to_string().contains("RCPT 550 x25"));
        }
    }

    #[tokio::test]
    async fn unreachable_server_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = bench(&args(&addr)).await.unwrap_err().to_string();
        assert!(error.contains("cannot reach SMTP server"), "{error}");
    }

    #[test]
    fn bad_arguments_are_refused() {
        let bad = |a: BenchArgs| Plan::from_args(&a).unwrap_err().to_string();
        assert!(bad(BenchArgs { to: "a@b>\r\nDATA".into(), ..args("x:1") }).contains("--to"));
        assert!(
            bad(BenchArgs { size_bytes: 10, ..args("x:1") })
                .contains("smaller than the message headers")
        );
        let huge = BenchArgs { sessions: 10_000, size_bytes: MAX_SIZE_BYTES, ..args("x:1") };
        assert!(bad(huge).contains("holds in memory"));
    }
}
