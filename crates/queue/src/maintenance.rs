//! Background upkeep of the store, in small steps through the spool's writer so ingest never
//! waits long behind it: pruning captured mail by count and age (the `[retention]` section),
//! and merging the search index that ingest commits leave unmerged to stay cheap.
//!
//! It lives beside the spool because it only ever changes stored mail through
//! [`Spool::apply`], like every other writer of the store; the binary only starts [`run`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tern_store::Mutation;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Spool;

/// Default most messages kept (Mailpit's default too).
pub const DEFAULT_MAX_MESSAGES: u64 = 50_000;
/// Default age limit in seconds: 0, messages are kept however old.
pub const DEFAULT_MAX_AGE_SECS: u64 = 0;

/// How often upkeep runs.
const INTERVAL: Duration = Duration::from_secs(2);
/// Most messages deleted per writer step.
const PRUNE_BATCH: u64 = 1000;
/// Work per index-merge step, in index pages.
const MERGE_PAGES: u64 = 500;

/// The `[retention]` section: pruning runs in the background, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Keep at most this many messages; 0 keeps all.
    pub max_messages: u64,
    /// Delete messages older than this many seconds; 0 keeps them forever.
    pub max_age_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { max_messages: DEFAULT_MAX_MESSAGES, max_age_secs: DEFAULT_MAX_AGE_SECS }
    }
}

/// Prunes and merges every [`INTERVAL`] until `shutdown`.
pub async fn run(spool: Spool, limits: RetentionConfig, shutdown: CancellationToken) {
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

/// Deletes what is over the limits, one batch per writer step, until a batch comes back short.
async fn prune(spool: &Spool, limits: &RetentionConfig, shutdown: &CancellationToken) {
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
