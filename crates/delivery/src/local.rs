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
use tracing::{debug, warn};

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
    loop {
        let failed = match deliver_pending(&readers, &spool, &hostname).await {
            Ok(failed) => failed,
            Err(e) => {
                warn!(error = %e, "local delivery: cannot read pending copies");
                true
            }
        };
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

/// Writes every pending copy; true when some failed (to retry later).
async fn deliver_pending(
    readers: &Pool<Box<dyn StoreRead>>,
    spool: &Spool,
    hostname: &str,
) -> Result<bool, StoreError> {
    let mut any_failed = false;
    loop {
        let pool = readers.clone();
        let pending = tokio::task::spawn_blocking(move || pool.with(|r| r.pending_maildir(BATCH)))
            .await
            .map_err(|e| StoreError::Corrupt { id: String::new(), reason: e.to_string() })??;
        if pending.is_empty() {
            return Ok(any_failed);
        }
        let count = pending.len();
        let pool = readers.clone();
        let host = hostname.to_string();
        let (written, failed) =
            tokio::task::spawn_blocking(move || write_copies(&pool, pending, &host))
                .await
                .map_err(|e| StoreError::Corrupt { id: String::new(), reason: e.to_string() })?;
        any_failed |= failed;
        if !written.is_empty()
            && let Err(e) = spool.apply(Mutation::MaildirDelivered(written)).await
        {
            warn!(error = %e, "local delivery: cannot record written copies");
            return Ok(true);
        }
        if failed || (count as u64) < BATCH {
            return Ok(any_failed);
        }
    }
}

fn write_copies(
    readers: &Pool<Box<dyn StoreRead>>,
    pending: Vec<tern_store::MaildirCopy>,
    hostname: &str,
) -> (Vec<(MessageId, String)>, bool) {
    let mut written = Vec::new();
    let mut failed = false;
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
                    warn!(queue_id = %copy.id, error = %e, "local delivery: cannot read message");
                    failed = true;
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
                warn!(queue_id = %copy.id, account = %copy.account, error = %e, "Maildir delivery failed; will retry");
                failed = true;
            }
        }
    }
    (written, failed)
}
