//! One notice per message, not per destination: what the sender is to hear of an attempt
//! (failed, delayed or relayed recipients) is stored as reports kept with the message, and
//! a message's waiting reports become its notices once nothing being attempted could still
//! add to them.
//!
//! Why stored rather than gathered in memory: a message's recipients at different
//! destinations finish at different times, and an attempt's results must be recorded when it
//! ends (attempting again would deliver twice). So each attempt records its results and its
//! reports in one transaction; when the message has no queued entry due (every recipient due
//! with the others has been attempted), the scheduler builds one notice per kind (one bounce
//! listing every failed recipient, as RFC 3464 intends, one delay warning, one "relayed"
//! report) and stores them while dropping the reports, in one transaction. A crash between
//! the two loses nothing (the reports wait in the store, and are sent after restart) and
//! sends nothing twice (a report goes with the notice that carries it).
//!
//! A message gets one delay warning: the warning marks every entry of the message as warned,
//! and lists, besides the recipients whose attempt produced it, the message's other
//! recipients still being retried (with their last error).
//!
//! Pure code: reading and writing the store is the scheduler's.

use tern_store::{MessageId, NewMessage, QueueEntry, QueueReport, ReportAction};

use crate::dsn::{ReportKind, ReportRecipient};
use crate::notice::{Original, Router};
use crate::retry::{RetryPolicy, still_delayed};

impl From<ReportKind> for ReportAction {
    fn from(kind: ReportKind) -> Self {
        match kind {
            ReportKind::Failed => ReportAction::Failed,
            ReportKind::Delayed => ReportAction::Delayed,
            ReportKind::Delivered => ReportAction::Delivered,
            ReportKind::Relayed => ReportAction::Relayed,
        }
    }
}

impl From<ReportAction> for ReportKind {
    fn from(action: ReportAction) -> Self {
        match action {
            ReportAction::Failed => ReportKind::Failed,
            ReportAction::Delayed => ReportKind::Delayed,
            ReportAction::Delivered => ReportKind::Delivered,
            ReportAction::Relayed => ReportKind::Relayed,
        }
    }
}

/// `report` about a recipient of `message`, to keep until the message's notice is sent to
/// `sender`.
pub(crate) fn to_store(message: MessageId, sender: &str, report: ReportRecipient) -> QueueReport {
    QueueReport {
        message_id: message,
        sender: sender.to_string(),
        recipient: report.address,
        orcpt: report.orcpt,
        action: report.action.into(),
        status: report.status,
        remote_mta: report.remote_mta,
        diagnostic: report.diagnostic,
        last_attempt_ms: report.last_attempt_ms,
        retry_until_ms: report.will_retry_until_ms,
    }
}

fn from_store(report: &QueueReport) -> ReportRecipient {
    ReportRecipient {
        address: report.recipient.clone(),
        orcpt: report.orcpt.clone(),
        action: report.action.into(),
        status: report.status.clone(),
        remote_mta: report.remote_mta.clone(),
        diagnostic: report.diagnostic.clone(),
        last_attempt_ms: report.last_attempt_ms,
        will_retry_until_ms: report.retry_until_ms,
    }
}

/// What one message's waiting reports become.
pub(crate) struct Notices {
    /// One per sender and kind, in the order the reports came.
    pub(crate) messages: Vec<NewMessage>,
    /// A delay warning is among them.
    pub(crate) delay_warned: bool,
}

/// The notices for `original`'s waiting `reports`; `entries` are its queue entries still
/// waiting, listed in a delay warning when they are delayed too.
pub(crate) fn notices(
    original: &Original<'_>,
    hostname: &str,
    router: &dyn Router,
    reports: &[QueueReport],
    entries: &[QueueEntry],
    policy: &RetryPolicy,
    now_ms: i64,
) -> Notices {
    let mut groups: Vec<(&str, ReportKind, Vec<ReportRecipient>)> = Vec::new();
    for report in reports {
        let kind = ReportKind::from(report.action);
        let recipient = from_store(report);
        match groups.iter_mut().find(|(s, k, _)| *s == report.sender && *k == kind) {
            Some((_, _, same)) => same.push(recipient),
            None => groups.push((&report.sender, kind, vec![recipient])),
        }
    }
    let mut delay_warned = false;
    for (sender, kind, recipients) in &mut groups {
        if *kind != ReportKind::Delayed {
            continue;
        }
        delay_warned = true;
        let others: Vec<ReportRecipient> = entries
            .iter()
            .filter(|e| e.sender == *sender && !recipients.iter().any(|r| r.address == e.recipient))
            .filter_map(|e| still_delayed(policy, e, now_ms))
            .collect();
        recipients.extend(others);
    }
    let messages = groups
        .iter()
        .map(|(sender, kind, recipients)| {
            original.notice(hostname, router, sender, *kind, recipients, now_ms)
        })
        .collect();
    Notices { messages, delay_warned }
}
