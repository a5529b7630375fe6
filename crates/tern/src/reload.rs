//! `systemctl reload` (SIGHUP) for `tern serve`: the configuration is read again — the same
//! file, environment and flags as at start — and what can change live is applied: `log.level`
//! here, and the TLS certificate, which `tern-tls` reloads on the same signal. Every other
//! section that changed is named in the log as needing a restart. A file that no longer loads
//! is logged and the running configuration kept: a reload never stops the server.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::ServeArgs;
use crate::config::Config;

/// Replaces the log filter of the installed subscriber.
pub type SetFilter = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// The filter for `log.level`.
pub fn log_filter(level: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::try_new(level).map_err(|e| anyhow::anyhow!("log.level = {level:?}: {e}"))
}

/// Reloads on SIGHUP; owns what it needs to read the configuration again.
pub struct Reloader {
    args: ServeArgs,
    running: Config,
    set_filter: Option<SetFilter>,
}

impl Reloader {
    /// `args` as `tern serve` got them, the configuration running, and the log filter's
    /// setter (`None` when `RUST_LOG` fixes the filter).
    pub fn new(args: ServeArgs, running: &Config, set_filter: Option<SetFilter>) -> Self {
        Reloader { args, running: running.clone(), set_filter }
    }

    /// Installs the SIGHUP handler now — before the server says it is ready, so a reload can
    /// never meet the default action, which is to exit — and reloads on each signal until
    /// `shutdown`.
    pub fn start(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let hangups = signal(SignalKind::hangup())
            .map_err(|e| anyhow::anyhow!("installing the SIGHUP handler: {e}"))?;
        tokio::spawn(self.watch(hangups, shutdown));
        Ok(())
    }

    async fn watch(mut self, mut hangups: Signal, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    self.reload();
                }
            }
        }
    }

    fn reload(&mut self) {
        let new = match crate::serve::resolve(self.args.clone()) {
            Ok(new) => new,
            Err(e) => {
                error!(error = %format!("{e:#}"), "SIGHUP: the configuration does not load; the running one stays");
                return;
            }
        };
        let mut applied = Vec::new();
        if new.log.level != self.running.log.level {
            match (&self.set_filter, log_filter(&new.log.level)) {
                (Some(set), Ok(filter)) => match set(filter) {
                    Ok(()) => {
                        applied.push("log.level");
                        self.running.log.level = new.log.level.clone();
                    }
                    Err(e) => warn!(error = %e, "SIGHUP: log.level not applied"),
                },
                (None, _) => warn!("SIGHUP: log.level not applied: RUST_LOG sets the filter"),
                (_, Err(e)) => warn!(error = %format!("{e:#}"), "SIGHUP: log.level not applied"),
            }
        }
        let restart = changed_sections(&self.running, &new);
        let (applied, restart) = (applied.join(","), restart.join(","));
        info!(%applied, needs_restart = %restart, "SIGHUP: configuration reloaded; TLS certificates re-read");
    }
}

/// The keys and sections of `new` that differ from `old` (compared as they print).
fn changed_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let fields: [(&'static str, &dyn std::fmt::Debug, &dyn std::fmt::Debug); 18] = [
        ("hostname", &old.hostname, &new.hostname),
        ("data_dir", &old.data_dir, &new.data_dir),
        ("mode", &old.mode, &new.mode),
        ("log", &old.log, &new.log),
        ("smtp", &old.smtp, &new.smtp),
        ("spool", &old.spool, &new.spool),
        ("http", &old.http, &new.http),
        ("retention", &old.retention, &new.retention),
        ("listener", &old.listeners, &new.listeners),
        ("tls", &old.tls, &new.tls),
        ("relay", &old.relay, &new.relay),
        ("limits", &old.limits, &new.limits),
        ("lists", &old.lists, &new.lists),
        ("outbound", &old.outbound, &new.outbound),
        ("queue", &old.queue, &new.queue),
        ("auth", &old.auth, &new.auth),
        ("dkim", &old.dkim, &new.dkim),
        ("pop3", &old.pop3, &new.pop3),
    ];
    fields.into_iter().filter(|(_, a, b)| !same(*a, *b)).map(|(name, _, _)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_sections_are_named() {
        let old = Config::default();
        let mut new = Config::default();
        assert!(changed_sections(&old, &new).is_empty());
        new.smtp.max_recipients += 1;
        new.hostname = Some("other.test".into());
        assert_eq!(changed_sections(&old, &new), ["hostname", "smtp"]);
    }
}
