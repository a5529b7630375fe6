//! What an attempt's outcomes mean for the queue: the retry schedule, expiry, delay warnings,
//! and which recipients the sender must hear about (RFC 3461 `NOTIFY`). Pure code: time comes
//! in as an argument, so every rule is tested without a clock. [`QueueSection`] is the
//! configuration file's `[queue]` section that sets the [`RetryPolicy`].

use std::time::Duration;

use tern_store::{EntryState, EntryUpdate, QueueEntry};

use crate::dsn::{ReportKind, ReportRecipient};
use crate::transport::{Failure, Outcome};

/// First retry after a temporary failure (Postfix's `minimal_backoff_time`).
pub const DEFAULT_FIRST_RETRY: Duration = Duration::from_secs(5 * 60);
/// Longest wait between attempts; the wait doubles up to this (about Postfix's 4,000 s).
pub const DEFAULT_MAX_RETRY: Duration = Duration::from_secs(60 * 60);
/// How long a message is retried before it bounces (Postfix's `maximal_queue_lifetime`).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(5 * 24 * 60 * 60);
/// When the sender is told their mail is delayed.
pub const DEFAULT_DELAY_WARNING: Duration = Duration::from_secs(4 * 60 * 60);

/// When to retry, when to give up and when to warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt; each later wait doubles.
    pub first: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
    /// Age after which a still-failing recipient bounces.
    pub lifetime: Duration,
    /// Age after which the sender gets one delay warning; `None` turns warnings off.
    pub delay_warning: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: DEFAULT_FIRST_RETRY,
            max: DEFAULT_MAX_RETRY,
            lifetime: DEFAULT_LIFETIME,
            delay_warning: Some(DEFAULT_DELAY_WARNING),
        }
    }
}

/// The `[queue]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSection {
    /// Seconds before the first retry; each later wait doubles.
    pub retry_first_secs: u64,
    /// Longest wait between retries, in seconds.
    pub retry_max_secs: u64,
    /// Seconds a message is retried before it bounces.
    pub lifetime_secs: u64,
    /// Seconds after which the sender is told of the delay; 0 turns warnings off.
    pub delay_warning_secs: u64,
}

impl Default for QueueSection {
    fn default() -> Self {
        let retry = RetryPolicy::default();
        QueueSection {
            retry_first_secs: retry.first.as_secs(),
            retry_max_secs: retry.max.as_secs(),
            lifetime_secs: retry.lifetime.as_secs(),
            delay_warning_secs: retry.delay_warning.map_or(0, |d| d.as_secs()),
        }
    }
}

impl QueueSection {
    /// The scheduler's retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(self.retry_first_secs),
            max: Duration::from_secs(self.retry_max_secs),
            lifetime: Duration::from_secs(self.lifetime_secs),
            delay_warning: (self.delay_warning_secs > 0)
                .then(|| Duration::from_secs(self.delay_warning_secs)),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failed attempt (1 for the first): `first`, doubling,
    /// capped at `max`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.max)
    }
}

/// The sender asked to hear about this kind of event (RFC 3461 §4.1: without `NOTIFY`, a
/// server reports failures and may report delays; Tern does both).
pub fn wants(notify: &[String], kind: ReportKind) -> bool {
    let has = |word: &str| notify.iter().any(|n| n.eq_ignore_ascii_case(word));
    if has("NEVER") {
        return false;
    }
    match kind {
        ReportKind::Failed => notify.is_empty() || has("FAILURE"),
        ReportKind::Delayed => notify.is_empty() || has("DELAY"),
        ReportKind::Delivered | ReportKind::Relayed => has("SUCCESS"),
    }
}

/// The decision for one entry after one attempt.
#[derive(Debug, Clone)]
pub struct Decision {
    /// What to record for the entry.
    pub update: EntryUpdate,
    /// What to tell the sender, if anything.
    pub report: Option<ReportRecipient>,
    /// How the attempt ended, for logs and metrics.
    pub verdict: Verdict,
}

/// How an attempt ended for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered.
    Delivered,
    /// Will be retried.
    Deferred,
    /// Given up (permanent failure or expiry): bounced to the sender, or held when the
    /// sender is `<>`.
    Bounced,
}

/// Decides what `outcome` means for `entry` at `now_ms`.
pub fn decide(
    policy: &RetryPolicy,
    entry: &QueueEntry,
    outcome: &Outcome,
    now_ms: i64,
) -> Decision {
    let age = age(entry, now_ms);
    match outcome {
        Outcome::Delivered { remote_mta, reply, peer_dsn } => {
            // A next hop that speaks DSN takes the success report over (RFC 3461 §4.2).
            let kind = ReportKind::Relayed;
            let report = (!peer_dsn && may_notify(entry, kind)).then(|| ReportRecipient {
                address: entry.recipient.clone(),
                orcpt: entry.orcpt.clone(),
                action: kind,
                status: "2.0.0".into(),
                remote_mta: Some(remote_mta.clone()),
                diagnostic: Some(format!("smtp; {reply}")),
                last_attempt_ms: Some(now_ms),
                will_retry_until_ms: None,
            });
            Decision { update: EntryUpdate::Done, report, verdict: Verdict::Delivered }
        }
        Outcome::Permanent(failure) => give_up(entry, failure, failure.status.clone(), now_ms),
        Outcome::Temporary(failure) if age >= policy.lifetime => {
            // RFC 3463 X.4.7: delivery time expired.
            let mut failure = failure.clone();
            // The verdict is Tern's, so it is not labelled as the peer's reply it quotes.
            failure.diagnostic = format!(
                "x-tern; gave up after {} attempts over {}; the last error was: {}",
                entry.attempts + 1,
                human(policy.lifetime),
                failure.diagnostic,
            );
            give_up(entry, &failure, "4.4.7".into(), now_ms)
        }
        Outcome::Temporary(failure) => {
            let next_attempt_ms = now_ms + millis(policy.backoff(entry.attempts + 1));
            let warn = warns(policy, entry, now_ms);
            let report = warn.then(|| ReportRecipient {
                address: entry.recipient.clone(),
                orcpt: entry.orcpt.clone(),
                action: ReportKind::Delayed,
                status: failure.status.clone(),
                remote_mta: failure.remote_mta.clone(),
                diagnostic: Some(failure.diagnostic.clone()),
                last_attempt_ms: Some(now_ms),
                will_retry_until_ms: Some(entry.created_at_ms + millis(policy.lifetime)),
            });
            Decision {
                update: EntryUpdate::Defer {
                    next_attempt_ms,
                    error: failure.diagnostic.clone(),
                    delay_warned: warn,
                },
                report,
                verdict: Verdict::Deferred,
            }
        }
    }
}

/// Whether the sender of `entry` is told of `kind`: they asked (or did not say otherwise), the
/// mail is not itself a notice (sender `<>`), and it came from a trusted client — a sender
/// address given by anyone else may be forged, and a notice would carry the message to it.
fn may_notify(entry: &QueueEntry, kind: ReportKind) -> bool {
    entry.trusted_client && !entry.sender.is_empty() && wants(&entry.notify, kind)
}

/// The sender is owed a delay warning about `entry` at `now_ms` if it is still failing.
fn warns(policy: &RetryPolicy, entry: &QueueEntry, now_ms: i64) -> bool {
    policy.delay_warning.is_some_and(|after| age(entry, now_ms) >= after)
        && !entry.delay_warned
        && may_notify(entry, ReportKind::Delayed)
}

/// `entry` as a delay warning lists it when the warning comes from an attempt at another of
/// the message's destinations: a recipient already retried, not yet warned about, whose
/// last error stands for its state. `None` if it has not failed yet or is owed no warning.
pub fn still_delayed(
    policy: &RetryPolicy,
    entry: &QueueEntry,
    now_ms: i64,
) -> Option<ReportRecipient> {
    let last_attempt_ms = entry.last_attempt_ms?;
    if entry.state != EntryState::Queued || !warns(policy, entry, now_ms) {
        return None;
    }
    let error = entry.last_error.clone().unwrap_or_default();
    let status = error.split_whitespace().find(|t| is_temporary_status(t)).unwrap_or("4.0.0");
    Some(ReportRecipient {
        address: entry.recipient.clone(),
        orcpt: entry.orcpt.clone(),
        action: ReportKind::Delayed,
        status: status.to_string(),
        remote_mta: None,
        diagnostic: Some(error),
        last_attempt_ms: Some(last_attempt_ms),
        will_retry_until_ms: Some(entry.created_at_ms + millis(policy.lifetime)),
    })
}

/// `4.x.y`: an RFC 3463 code for a temporary failure, as it appears in a remote reply.
fn is_temporary_status(token: &str) -> bool {
    let mut fields = token.split('.');
    fields.next() == Some("4")
        && fields
            .by_ref()
            .take(2)
            .filter(|f| (1..=3).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()))
            .count()
            == 2
        && fields.next().is_none()
}

/// A recipient that will not be delivered: bounce it, unless the mail is itself a bounce
/// (sender `<>`), which is held for the postmaster rather than bounced in a loop, or came from
/// an untrusted client (mail forwarded off the machine from an `mx` listener), which is held
/// for the postmaster rather than bounced to an address that may be forged.
fn give_up(entry: &QueueEntry, failure: &Failure, status: String, now_ms: i64) -> Decision {
    let held = match (entry.sender.is_empty(), entry.trusted_client) {
        (true, _) => Some("undeliverable notice held for the postmaster"),
        (false, false) => {
            Some("undeliverable mail from an unverified sender held for the postmaster")
        }
        (false, true) => None,
    };
    if let Some(why) = held {
        let error = format!("{why}: {}", failure.diagnostic);
        return Decision {
            update: EntryUpdate::Hold { error },
            report: None,
            verdict: Verdict::Bounced,
        };
    }
    let report = wants(&entry.notify, ReportKind::Failed).then(|| ReportRecipient {
        address: entry.recipient.clone(),
        orcpt: entry.orcpt.clone(),
        action: ReportKind::Failed,
        status,
        remote_mta: failure.remote_mta.clone(),
        diagnostic: Some(failure.diagnostic.clone()),
        last_attempt_ms: Some(now_ms),
        will_retry_until_ms: None,
    });
    Decision { update: EntryUpdate::Done, report, verdict: Verdict::Bounced }
}

/// How long `entry` has been queued at `now_ms`.
fn age(entry: &QueueEntry, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(now_ms - entry.created_at_ms).unwrap_or(0))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `5 days`, `4 hours`, `90 minutes`, `30 seconds`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{} hours", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::{EntryState, MessageId};

    const HOUR: i64 = 3_600_000;

    fn entry(notify: &[&str], sender: &str, age_ms: i64, now: i64) -> QueueEntry {
        QueueEntry {
            id: 1,
            message_id: MessageId::generate(),
            sender: sender.into(),
            recipient: "bob@dest.test".into(),
            domain: "dest.test".into(),
            notify: notify.iter().map(|s| s.to_string()).collect(),
            orcpt: Some("rfc822;Bob@dest.test".into()),
            state: EntryState::Queued,
            attempts: 0,
            created_at_ms: now - age_ms,
            next_attempt_ms: now - age_ms,
            last_attempt_ms: None,
            last_error: None,
            delay_warned: false,
            trusted_client: true,
        }
    }

    /// Mail an `mx` client forwarded off the machine: its sender may be forged, so it hears
    /// nothing from Tern whatever it asked for — no success, no delay warning, no bounce (the
    /// undeliverable entry is held for the postmaster instead).
    #[test]
    fn an_untrusted_clients_sender_is_never_sent_a_notice() {
        let p = RetryPolicy::default();
        let now = 1_000 * HOUR;
        let untrusted = |notify: &[&str], age_ms| QueueEntry {
            trusted_client: false,
            ..entry(notify, "victim@elsewhere.example", age_ms, now)
        };
        let relayed = Outcome::Delivered {
            remote_mta: "mx1.dest.test".into(),
            reply: "250 2.0.0 Ok".into(),
            peer_dsn: false,
        };
        let e = untrusted(&["SUCCESS", "FAILURE", "DELAY"], 5 * HOUR);
        assert!(decide(&p, &e, &relayed, now).report.is_none(), "success");
        let d = decide(&p, &e, &Outcome::Temporary(failure("4.4.1")), now);
        assert!(d.report.is_none(), "delay warning");
        assert!(matches!(d.update, EntryUpdate::Defer { delay_warned: false, .. }));
        for (e, outcome) in [
            (untrusted(&[], 0), Outcome::Permanent(failure("5.1.1"))),
            (untrusted(&[], 5 * 24 * HOUR), Outcome::Temporary(failure("4.4.1"))),
        ] {
            let d = decide(&p, &e, &outcome, now);
            assert!(d.report.is_none(), "bounce");
            assert_eq!(d.verdict, Verdict::Bounced);
            let EntryUpdate::Hold { error } = d.update else { panic!("{:?}", d.update) };
            assert!(error.contains("held for the postmaster"), "{error}");
        }
    }

    fn failure(status: &str) -> Failure {
        Failure {
            status: status.into(),
            remote_mta: Some("mx1.dest.test".into()),
            diagnostic: format!(
                "smtp; {} {status} nope",
                if status.starts_with('4') { 450 } else { 550 }
            ),
        }
    }

    #[test]
    fn backoff_doubles_from_five_minutes_up_to_an_hour() {
        let p = RetryPolicy::default();
        let mins: Vec<u64> = (1..=7).map(|n| p.backoff(n).as_secs() / 60).collect();
        assert_eq!(mins, [5, 10, 20, 40, 60, 60, 60]);
        assert_eq!(p.backoff(u32::MAX), p.max, "no overflow");
    }

    #[test]
    fn notify_rules_follow_rfc_3461() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&n(&[]), ReportKind::Failed));
        assert!(wants(&n(&[]), ReportKind::Delayed));
        assert!(!wants(&n(&[]), ReportKind::Relayed));
        assert!(!wants(&n(&["NEVER"]), ReportKind::Failed));
        assert!(wants(&n(&["success"]), ReportKind::Relayed));
        assert!(!wants(&n(&["SUCCESS"]), ReportKind::Failed));
        assert!(!wants(&n(&["FAILURE"]), ReportKind::Delayed));
        assert!(wants(&n(&["FAILURE", "DELAY"]), ReportKind::Delayed));
    }

    #[test]
    fn temporary_failures_are_deferred_then_expire_into_a_bounce() {
        let p = RetryPolicy::default();
        let now = 1_000 * HOUR;
        let young = entry(&[], "alice@tern.test", HOUR, now);
        let d = decide(&p, &young, &Outcome::Temporary(failure("4.2.0")), now);
        assert_eq!(d.verdict, Verdict::Deferred);
        assert_eq!(
            d.update,
            EntryUpdate::Defer {
                next_attempt_ms: now + 5 * 60_000,
                error: "smtp; 450 4.2.0 nope".into(),
                delay_warned: false
            }
        );
        assert!(d.report.is_none(), "no warning before four hours");

        let old = entry(&[], "alice@tern.test", 5 * 24 * HOUR, now);
        let d = decide(&p, &old, &Outcome::Temporary(failure("4.2.0")), now);
        assert_eq!(d.update, EntryUpdate::Done);
        let report = d.report.expect("bounce");
        assert_eq!((report.action, report.status.as_str()), (ReportKind::Failed, "4.4.7"));
        assert!(report.diagnostic.expect("text").contains("gave up after 1 attempts over 5 days"));
    }

    #[test]
    fn one_delay_warning_after_four_hours_unless_switched_off() {
        let p = RetryPolicy::default();
        let now = 1_000 * HOUR;
        let mut e = entry(&[], "alice@tern.test", 4 * HOUR, now);
        let d = decide(&p, &e, &Outcome::Temporary(failure("4.4.1")), now);
        let report = d.report.expect("warning");
        assert_eq!(report.action, ReportKind::Delayed);
        assert_eq!(report.will_retry_until_ms, Some(e.created_at_ms + 5 * 24 * HOUR));
        assert!(matches!(d.update, EntryUpdate::Defer { delay_warned: true, .. }));
        e.delay_warned = true;
        assert!(decide(&p, &e, &Outcome::Temporary(failure("4.4.1")), now).report.is_none());
        e.delay_warned = false;
        let off = RetryPolicy { delay_warning: None, ..p };
        assert!(decide(&off, &e, &Outcome::Temporary(failure("4.4.1")), now).report.is_none());
        let failure_only = entry(&["FAILURE"], "alice@tern.test", 4 * HOUR, now);
        assert!(
            decide(&p, &failure_only, &Outcome::Temporary(failure("4.4.1")), now).report.is_none()
        );
    }

    #[test]
    fn permanent_failures_bounce_once_and_never_loop() {
        let p = RetryPolicy::default();
        let now = 1_000 * HOUR;
        let d = decide(
            &p,
            &entry(&[], "alice@tern.test", 0, now),
            &Outcome::Permanent(failure("5.1.1")),
            now,
        );
        assert_eq!((d.update, d.verdict), (EntryUpdate::Done, Verdict::Bounced));
        let report = d.report.expect("bounce");
        assert_eq!(report.status, "5.1.1");
        assert_eq!(report.orcpt.as_deref(), Some("rfc822;Bob@dest.test"));

        let never = entry(&["NEVER"], "alice@tern.test", 0, now);
        let d = decide(&p, &never, &Outcome::Permanent(failure("5.1.1")), now);
        assert_eq!(d.update, EntryUpdate::Done);
        assert!(d.report.is_none());

        let bounce = entry(&[], "", 0, now);
        let d = decide(&p, &bounce, &Outcome::Permanent(failure("5.1.1")), now);
        assert!(matches!(d.update, EntryUpdate::Hold { .. }), "a bounce is never bounced");
        assert!(d.report.is_none());
    }

    #[test]
    fn success_is_reported_only_when_asked_and_the_next_hop_cannot() {
        let p = RetryPolicy::default();
        let now = 1_000 * HOUR;
        let delivered = |peer_dsn| Outcome::Delivered {
            remote_mta: "mx1.dest.test".into(),
            reply: "250 2.0.0 Ok".into(),
            peer_dsn,
        };
        let asked = entry(&["SUCCESS"], "alice@tern.test", 0, now);
        let report = decide(&p, &asked, &delivered(false), now).report.expect("relayed");
        assert_eq!((report.action, report.status.as_str()), (ReportKind::Relayed, "2.0.0"));
        assert!(decide(&p, &asked, &delivered(true), now).report.is_none());
        assert!(
            decide(&p, &entry(&[], "alice@tern.test", 0, now), &delivered(false), now)
                .report
                .is_none()
        );
    }

    #[test]
    fn a_warning_lists_other_recipients_still_retried_with_their_last_error() {
        let p = RetryPolicy::default();
        let now = 1_000 * HOUR;
        let mut e = entry(&[], "alice@tern.test", 5 * HOUR, now);
        assert!(still_delayed(&p, &e, now).is_none(), "not attempted yet: nothing to report");
        e.attempts = 2;
        e.last_attempt_ms = Some(now - HOUR);
        e.last_error = Some("smtp; 451 4.7.1 greylisted".into());
        let report = still_delayed(&p, &e, now).expect("listed");
        assert_eq!((report.action, report.status.as_str()), (ReportKind::Delayed, "4.7.1"));
        assert_eq!(report.diagnostic.as_deref(), Some("smtp; 451 4.7.1 greylisted"));
        assert_eq!(report.last_attempt_ms, Some(now - HOUR));
        e.last_error = Some("connection refused".into());
        assert_eq!(still_delayed(&p, &e, now).expect("listed").status, "4.0.0");
        let young = QueueEntry { created_at_ms: now - HOUR, ..e.clone() };
        assert!(still_delayed(&p, &young, now).is_none(), "too young for a warning");
        let warned = QueueEntry { delay_warned: true, ..e.clone() };
        assert!(still_delayed(&p, &warned, now).is_none(), "warned already");
        let held = QueueEntry { state: EntryState::Held, ..e };
        assert!(still_delayed(&p, &held, now).is_none(), "held, not retried");
    }
}
