//! Wiring of outbound delivery: the SMTP transport from `[outbound]` and the scheduler from
//! `[queue]`. Notices to senders are routed by the door's routing (`tern-ingest`).

use std::sync::Arc;

use tern_delivery::outbound::{MxResolver, SmtpTransport};
use tern_queue::Spool;
use tern_queue::scheduler::{self, Router, SchedulerConfig};
use tern_store::StoreRead;
use tern_store::pool::Pool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The outbound scheduler, ready to spawn; it runs until `shutdown`.
pub fn scheduler(
    config: &Config,
    hostname: &str,
    resolver: Option<tern_delivery::outbound::TokioResolver>,
    readers: Pool<Box<dyn StoreRead>>,
    spool: Spool,
    router: Arc<dyn Router>,
    shutdown: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    // One resolver for the server: the authentication checks' when they run, so both share
    // its cache.
    let client = config.outbound.client(hostname);
    let transport = match resolver {
        Some(resolver) => {
            SmtpTransport::with_resolver(client, MxResolver::from_resolver(resolver))?
        }
        None => SmtpTransport::new(client)?,
    };
    let o = &config.outbound;
    let scheduler_config = SchedulerConfig {
        retry: config.queue.retry_policy(),
        max_connections: o.max_connections,
        max_per_destination: o.max_per_destination,
        messages_per_connection: o.messages_per_connection,
        ..SchedulerConfig::new(hostname)
    };
    Ok(scheduler::run(readers, spool, Arc::new(transport), router, scheduler_config, shutdown))
}
