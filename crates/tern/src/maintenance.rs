//! Background upkeep of the store, in small steps through the writer so ingest never waits
//! long behind it: pruning captured mail by count and age, and merging the search index that
//! ingest commits leave unmerged to stay cheap.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_queue::Spool;
use tern_store::Mutation;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RetentionSection;

/// How often upkeep runs.
const INTERVAL: Duration = Duration::from_secs(2);
/// Most messages deleted per writer step.
const PRUNE_BATCH: u64 = 1000;
/// Work per index-merge step, in index pages.
const MERGE_PAGES: u64 = 500;

/// Runs until shutdown.
pub async fn run(spool: Spool, limits: RetentionSection, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        prune(&spool, &limits, &shutdown).await;
        if let Err(e) = spool.maintain_index(MERGE_PAGES).await {
            warn!(error = %e, "search index merge failed");
        }
    }
}

async fn prune(spool: &Spool, limits: &RetentionSection, shutdown: &CancellationToken) {
    if limits.max_messages == 0 && limits.max_age_secs == 0 {
        return;
    }
    while !shutdown.is_cancelled() {
        let now_ms =
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let mutation = Mutation::Prune {
            max_messages: (limits.max_messages > 0).then_some(limits.max_messages),
            older_than_ms: (limits.max_age_secs > 0)
                .then(|| now_ms - (limits.max_age_secs as i64).saturating_mul(1000)),
            batch: PRUNE_BATCH,
        };
        match spool.apply(mutation).await {
            Ok(ids) => {
                if !ids.is_empty() {
                    info!(deleted = ids.len(), "retention: pruned old messages");
                }
                if (ids.len() as u64) < PRUNE_BATCH {
                    return;
                }
            }
            Err(e) => {
                warn!(error = %e, "retention: prune failed");
                return;
            }
        }
    }
}
