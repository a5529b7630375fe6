//! Background pruning of captured mail by count and age, in small steps through the writer so
//! ingest never waits long behind a big delete.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_queue::Spool;
use tern_store::Mutation;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RetentionSection;

/// How often the limits are checked.
const PRUNE_INTERVAL: Duration = Duration::from_secs(2);
/// Most messages deleted per writer step.
const PRUNE_BATCH: u64 = 1000;

/// Runs until shutdown.
pub async fn run(spool: Spool, limits: RetentionSection, shutdown: CancellationToken) {
    if limits.max_messages == 0 && limits.max_age_secs == 0 {
        return;
    }
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            let now_ms =
                SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
            let mutation = Mutation::Prune {
                max_messages: (limits.max_messages > 0).then_some(limits.max_messages),
                older_than_ms: (limits.max_age_secs > 0)
                    .then(|| now_ms - (limits.max_age_secs as i64).saturating_mul(1000)),
                batch: PRUNE_BATCH,
            };
            match spool.apply(mutation).await {
                Ok(ids) if ids.is_empty() => break,
                Ok(ids) => {
                    info!(deleted = ids.len(), "retention: pruned old messages");
                    if (ids.len() as u64) < PRUNE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "retention: prune failed");
                    break;
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }
}
