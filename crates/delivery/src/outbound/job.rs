//! One job, start to finish: route the destination (MX hosts or the smarthost) to a list of
//! addresses, open a session with the first that answers, send every message over it with
//! `RSET` between them, reconnect once if it breaks, and give every recipient an outcome.
//! Before closing a working connection it asks the job's feed, when it has one, for more
//! messages to the same destination, and sends those over it too.

use std::net::SocketAddr;

use tern_queue::transport::{Failure, Feed, Job, JobMessage, JobResult, Outcome};
use tracing::{Instrument, debug, info_span, warn};

use super::client::{self, ClientSettings, Credentials, Session, Target, Timeouts};
use super::outcome::{local_failure, temporary};
use super::{Inner, MAX_ADDRESSES_PER_JOB, MAX_RECONNECTS_PER_JOB};

/// Delivers `job` and reports an outcome for every recipient.
pub(super) async fn deliver(inner: &Inner, job: Job) -> JobResult {
    let span = info_span!("outbound", destination = %job.domain, messages = job.messages.len());
    deliver_job(inner, job).instrument(span).await
}

async fn deliver_job(inner: &Inner, job: Job) -> JobResult {
    let Job { domain, mut messages, feed } = job;
    let mut results = JobResult::new();
    let targets = match route(inner, &domain).await {
        Ok(targets) => targets,
        Err(outcome) => {
            strand(&messages, &outcome, &mut results);
            return results;
        }
    };
    let settings = settings(inner, &domain);
    let mut connections = 0;
    let mut last_failure = None;
    while !messages.is_empty() && connections <= MAX_RECONNECTS_PER_JOB {
        connections += 1;
        let (mut session, span) = match connect_any(&targets, &settings).await {
            Ok(connected) => connected,
            Err(failure) => {
                last_failure = Some(failure);
                break;
            }
        };
        let mut fed = Fed { messages: &mut messages, results: &mut results };
        match fed.send_while_fed(&mut session, feed.as_ref()).instrument(span.clone()).await {
            None => session.quit().instrument(span).await,
            Some(failure) => last_failure = Some(failure),
        }
    }
    if !messages.is_empty() {
        let failure = last_failure
            .unwrap_or_else(|| local_failure("4.4.2", "connection lost and not re-established"));
        strand(&messages, &temporary(failure), &mut results);
    }
    results
}

/// A job's progress over its connections: the messages it has not sent yet (the feed adds
/// some, each leaves once it has its outcome), and the outcomes not yet handed to the feed.
struct Fed<'a> {
    messages: &'a mut Vec<JobMessage>,
    results: &'a mut JobResult,
}

impl Fed<'_> {
    /// Sends the messages not yet sent over `session`, then whatever `feed` gives for it,
    /// until the feed has nothing more; the failure when the connection broke meanwhile.
    async fn send_while_fed(
        &mut self,
        session: &mut Session,
        feed: Option<&Feed>,
    ) -> Option<Failure> {
        let mut used = false;
        loop {
            let (handled, broken) = send_all(session, self.messages, used, self.results).await;
            used = true;
            // Handled messages have their outcomes: their bodies are not kept for the rest of
            // the connection (a long one would hold everything it ever sent).
            self.messages.drain(..handled);
            if broken.is_some() {
                return broken;
            }
            let more = match feed {
                Some(feed) => feed.more(self.results).await,
                None => return None,
            };
            if more.is_empty() {
                return None;
            }
            debug!(messages = more.len(), "more messages for this connection");
            self.messages.extend(more);
        }
    }
}

/// The addresses to try for `domain`, in order, or the outcome for everyone when there are none.
async fn route(inner: &Inner, domain: &str) -> Result<Vec<Target>, Outcome> {
    let config = &inner.config;
    if let Some(relay) = &config.relay_host {
        // The system resolver (getaddrinfo), so /etc/hosts and container DNS names work.
        let lookup = tokio::net::lookup_host((relay.host.as_str(), relay.port));
        let resolved = tokio::time::timeout(config.dns_timeout, lookup)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("lookup timed out")));
        let addrs = resolved.map_err(|e| {
            let diagnostic = format!("cannot resolve relay host {}: {e}", relay.host);
            Outcome::Temporary(local_failure("4.4.3", diagnostic))
        })?;
        let targets = addrs.map(|addr| Target { name: relay.host.clone(), addr });
        return Ok(targets.take(MAX_ADDRESSES_PER_JOB).collect());
    }
    let hosts = inner.resolver.resolve(domain).await.map_err(|e| e.outcome())?;
    let targets = hosts.iter().flat_map(|host| {
        host.addrs.iter().map(|ip| Target {
            name: host.name.clone(),
            addr: SocketAddr::new(*ip, config.mx_port),
        })
    });
    Ok(targets.take(MAX_ADDRESSES_PER_JOB).collect())
}

fn settings<'a>(inner: &'a Inner, domain: &str) -> ClientSettings<'a> {
    let config = &inner.config;
    let relay = config.relay_host.as_ref();
    let credentials = relay.and_then(|relay| {
        let username = relay.username.as_deref()?;
        Some(Credentials { username, password: relay.password.as_deref().unwrap_or("") })
    });
    ClientSettings {
        helo_name: &config.helo_name,
        tls_policy: match relay {
            Some(_) => config.tls,
            None => config.tls_policy(domain),
        },
        tls: &inner.tls,
        implicit_tls: relay.is_some_and(|relay| relay.implicit_tls),
        credentials,
        timeouts: Timeouts {
            connect: config.connect_timeout,
            command: config.command_timeout,
            data: config.data_timeout,
        },
    }
}

/// The first target that completes greeting, EHLO, TLS and AUTH; else the last one's failure.
async fn connect_any(
    targets: &[Target],
    settings: &ClientSettings<'_>,
) -> Result<(Session, tracing::Span), Failure> {
    let mut last = local_failure("4.4.4", "no address to connect to");
    for target in targets {
        let span = info_span!(
            "smtp_connection",
            host = %target.name,
            addr = %target.addr,
            tls = %settings.tls_policy
        );
        match client::connect(target, settings).instrument(span.clone()).await {
            Ok(session) => return Ok((session, span)),
            Err(error) => {
                span.in_scope(|| warn!(%error, "connection attempt failed"));
                last = error.failure(target);
            }
        }
    }
    Err(last)
}

/// Sends `messages` in order over `session` (`used` when it carried a message before).
/// Returns how many got outcomes, and the failure when the connection broke before the rest
/// could be sent.
async fn send_all(
    session: &mut Session,
    messages: &[JobMessage],
    used: bool,
    results: &mut JobResult,
) -> (usize, Option<Failure>) {
    for (i, msg) in messages.iter().enumerate() {
        if (used || i > 0)
            && let Err(error) = session.reset().await
        {
            warn!(%error, "RSET failed; closing the connection");
            return (i, Some(session.failure(&error)));
        }
        let report = session.send(msg).instrument(info_span!("message", queue_id = %msg.id)).await;
        results.extend(report.outcomes);
        if report.broken.is_some() {
            return (i + 1, report.broken);
        }
    }
    (messages.len(), None)
}

/// Every recipient of `messages` gets `outcome`.
fn strand(messages: &[JobMessage], outcome: &Outcome, results: &mut JobResult) {
    for msg in messages {
        for rcpt in &msg.recipients {
            if let Outcome::Temporary(f) | Outcome::Permanent(f) = outcome {
                let permanent = matches!(outcome, Outcome::Permanent(_));
                debug!(queue_id = %msg.id, recipient = %rcpt.address, status = %f.status,
                    diagnostic = %f.diagnostic, permanent, "not delivered");
            }
            results.push((rcpt.entry, outcome.clone()));
        }
    }
}
