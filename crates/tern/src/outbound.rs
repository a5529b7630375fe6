//! Wiring of outbound delivery: the SMTP transport from `[outbound]`, the scheduler from
//! `[queue]`, and where notices to senders go (a local mailbox, or back out).

use std::sync::Arc;

use tern_delivery::outbound::SmtpTransport;
use tern_queue::Spool;
use tern_queue::scheduler::{self, Router, SchedulerConfig};
use tern_smtp::{Directory, LocalTarget, Mta};
use tern_store::pool::Pool;
use tern_store::{Route, StoreRead};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Config;

/// Routes notices (bounces, delay warnings) like the SMTP session routes recipients.
struct NoticeRouter {
    mta: Option<Arc<Mta>>,
    directory: Option<Arc<dyn Directory>>,
}

impl Router for NoticeRouter {
    fn route(&self, address: &str) -> Route {
        let (Some(mta), Some(directory)) = (&self.mta, &self.directory) else {
            // The catcher keeps everything.
            return Route::Capture;
        };
        if !mta.relay.is_local_domain(&tern_store::queue::domain_of(address)) {
            return Route::Remote;
        }
        match directory.resolve(address) {
            Ok(LocalTarget::Account { login }) => Route::Local { account: login },
            // No mailbox (or the directory failed): kept in the store, where the admin API
            // shows it, rather than lost.
            Ok(_) => Route::Capture,
            Err(e) => {
                warn!(to = address, error = %e, "notice kept: cannot resolve its recipient");
                Route::Capture
            }
        }
    }
}

/// Where notices to senders go, by the same rules as the SMTP session's recipients.
pub fn notice_router(
    mta: Option<Arc<Mta>>,
    directory: Option<Arc<dyn Directory>>,
) -> Arc<dyn Router> {
    Arc::new(NoticeRouter { mta, directory })
}

/// The outbound scheduler, ready to spawn; it runs until `shutdown`.
pub fn scheduler(
    config: &Config,
    hostname: &str,
    readers: Pool<Box<dyn StoreRead>>,
    spool: Spool,
    router: Arc<dyn Router>,
    shutdown: CancellationToken,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let transport = SmtpTransport::new(config.outbound.client(hostname))?;
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
