//! The local deliverer: writes the Maildir copy of every committed local message whose account
//! has a Maildir, then records it as written through the spool's writer. It catches up on
//! start (copies pending from before a crash) and wakes on each commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tern_queue::{Event, Spool};
use tern_store::pool::Pool;
use tern_store::{MessageId, Mutation, StoreError, StoreRead};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::maildir::Maildir;

/// Copies handled per round.
const BATCH: u64 = 256;
/// Wait before retrying after a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Runs until shutdown.
pub async fn run_local(
    readers: Pool<Box<dyn StoreRead>>,
    spool: Spool,
    hostname: String,
    shutdown: CancellationToken,
) {
    let mut events = spool.subscribe();
    let mut failing = false;
    loop {
        let failed = match deliver_pending(&readers, &spool, &hostname).await {
            Ok(None) => false,
            Ok(Some(problem)) => {
                report(&mut failing, &problem);
                true
            }
            Err(e) => {
                report(&mut failing, &format!("cannot read pending copies: {e}"));
                true
            }
        };
        if !failed && std::mem::take(&mut failing) {
            info!("local delivery: pending Maildir copies written; working again");
        }
        let pause = if failed { RETRY_AFTER } else { Duration::from_secs(60) };
        // Wake on the next commit (new local mail), a retry timer, or shutdown.
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
            event = events.recv() => match event {
                Ok(Event::Committed(_)) | Err(RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Logs a failed round: the first of a run as a warning, the rest at debug level (a full
/// disk fails every round, for every copy).
fn report(failing: &mut bool, problem: &str) {
    if std::mem::replace(failing, true) {
        debug!(problem, "local delivery: still failing; retrying");
    } else {
        warn!(problem, "local delivery: Maildir copies not written; retrying every 5 s");
    }
}

/// Writes every pending copy; what went wrong when some failed (to retry later).
async fn deliver_pending(
    readers: &Pool<Box<dyn StoreRead>>,
    spool: &Spool,
    hostname: &str,
) -> Result<Option<String>, StoreError> {
    let mut problem = None;
    loop {
        let pool = readers.clone();
        let pending = tokio::task::spawn_blocking(move || pool.with(|r| r.pending_maildir(BATCH)))
            .await
            .map_err(|e| StoreError::Corrupt { id: String::new(), reason: e.to_string() })??;
        if pending.is_empty() {
            return Ok(problem);
        }
        let count = pending.len();
        let pool = readers.clone();
        let host = hostname.to_string();
        let (written, failed) =
            tokio::task::spawn_blocking(move || write_copies(&pool, pending, &host))
                .await
                .map_err(|e| StoreError::Corrupt { id: String::new(), reason: e.to_string() })?;
        let failed_now = failed.is_some();
        problem = problem.or(failed);
        if !written.is_empty()
            && let Err(e) = spool.apply(Mutation::MaildirDelivered(written)).await
        {
            // Written but not recorded: written again next round (a duplicate, never a loss).
            return Ok(Some(format!("cannot record written copies: {e}")));
        }
        if failed_now || (count as u64) < BATCH {
            return Ok(problem);
        }
    }
}

/// Writes `pending`; the copies written, and the first failure (the others are counted in
/// it) when some were not.
fn write_copies(
    readers: &Pool<Box<dyn StoreRead>>,
    pending: Vec<tern_store::MaildirCopy>,
    hostname: &str,
) -> (Vec<(MessageId, String)>, Option<String>) {
    let mut written = Vec::new();
    let mut first: Option<String> = None;
    let mut failures = 0usize;
    let mut bodies: HashMap<MessageId, Arc<Vec<u8>>> = HashMap::new();
    for copy in pending {
        let body = match bodies.get(&copy.id) {
            Some(body) => body.clone(),
            None => match readers.with(|r| r.message(&copy.id)) {
                Ok(Some(message)) => {
                    let body = Arc::new(message.full_message());
                    bodies.insert(copy.id, body.clone());
                    body
                }
                // Deleted meanwhile: nothing left to copy.
                Ok(None) => {
                    written.push((copy.id, copy.account));
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    first.get_or_insert_with(|| format!("cannot read message {}: {e}", copy.id));
                    continue;
                }
            },
        };
        match Maildir::new(&copy.maildir).deliver(&body, hostname) {
            Ok(path) => {
                debug!(queue_id = %copy.id, account = %copy.account, path = %path.display(), "delivered to Maildir");
                written.push((copy.id, copy.account));
            }
            Err(e) => {
                failures += 1;
                first.get_or_insert_with(|| {
                    format!("message {} for {}: {e}", copy.id, copy.account)
                });
            }
        }
    }
    let failed = first.map(|first| match failures {
        1 => first,
        n => format!("{first} (and {} more copies)", n - 1),
    });
    (written, failed)
}
