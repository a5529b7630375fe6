//! AUTH failure throttling per client: a growing delay, then a temporary lockout.
//!
//! Failures are counted in a fixed window that opens at a client's first failure
//! (default 10 minutes). Before answering each AUTH attempt the session waits
//! `delay_per_failure × failures so far` (capped at `max_delay`); when the count reaches
//! `max_failures` the client is locked out for `lockout` and every attempt gets `421 4.7.0`.
//! When the window or the lockout ends, the client starts over with a clean slate. A
//! successful AUTH clears the client's record.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ClientKey;
use super::bounded::{BoundedMap, Expiring};
use crate::config;
use crate::denial::Denial;

/// How failed AUTH attempts are throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthThrottleSettings {
    /// Delay added before answering for each failure in the current window.
    pub delay_per_failure: Duration,
    /// The delay never exceeds this.
    pub max_delay: Duration,
    /// Failures in one window that trigger a lockout.
    pub max_failures: u32,
    /// How long failures are counted, from the first one.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

impl Default for AuthThrottleSettings {
    fn default() -> Self {
        AuthThrottleSettings {
            delay_per_failure: config::DEFAULT_AUTH_DELAY_PER_FAILURE,
            max_delay: config::DEFAULT_AUTH_MAX_DELAY,
            max_failures: config::DEFAULT_AUTH_MAX_FAILURES,
            window: config::DEFAULT_AUTH_FAILURE_WINDOW,
            lockout: config::DEFAULT_AUTH_LOCKOUT,
        }
    }
}

/// One client's failures in its current window.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_ends: Instant,
    locked_until: Option<Instant>,
}

impl Expiring for Failures {
    fn expires_at(&self) -> Instant {
        self.locked_until.unwrap_or(self.window_ends)
    }
}

/// Throttles failed AUTH attempts per client; cheap to clone (clones share the state).
#[derive(Debug, Clone)]
pub struct AuthThrottle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: AuthThrottleSettings,
    clients: Mutex<BoundedMap<Failures>>,
}

impl AuthThrottle {
    /// A throttle with `settings`, remembering at most `max_tracked_clients` clients.
    pub fn new(settings: AuthThrottleSettings, max_tracked_clients: usize) -> Self {
        let clients = Mutex::new(BoundedMap::new(max_tracked_clients));
        AuthThrottle { shared: Arc::new(Shared { settings, clients }) }
    }

    /// Before handling an AUTH attempt from `ip`: how long to wait before answering it, or the
    /// `421 4.7.0` lockout reply (after which the session closes the connection).
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<Duration, Denial> {
        let settings = self.shared.settings;
        let mut clients = self.clients();
        let Some(failures) = clients.live_mut(ClientKey::of(ip), now) else {
            return Ok(Duration::ZERO);
        };
        if failures.locked_until.is_some() {
            return Err(Denial::AUTH_LOCKED_OUT);
        }
        Ok(settings.delay_per_failure.saturating_mul(failures.count).min(settings.max_delay))
    }

    /// Records a failed AUTH attempt from `ip` at `now`; the failure that reaches
    /// `max_failures` starts the lockout.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        let settings = self.shared.settings;
        let key = ClientKey::of(ip);
        let mut clients = self.clients();
        let mut failures = match clients.live_mut(key, now) {
            Some(failures) if failures.locked_until.is_some() => return,
            Some(failures) => *failures,
            None => {
                Failures { count: 0, window_ends: later(now, settings.window), locked_until: None }
            }
        };
        failures.count = failures.count.saturating_add(1);
        if failures.count >= settings.max_failures {
            failures.locked_until = Some(later(now, settings.lockout));
        }
        clients.insert(key, failures, now);
    }

    /// Records a successful AUTH from `ip`: its failures are forgotten.
    pub fn record_success(&self, ip: IpAddr) {
        self.clients().remove(ClientKey::of(ip));
    }

    /// Clients currently remembered (bounded by `max_tracked_clients`).
    pub fn tracked_clients(&self) -> usize {
        self.clients().len()
    }

    /// Held for one lookup-and-update; see [`super`] for why poisoning is ignored.
    fn clients(&self) -> MutexGuard<'_, BoundedMap<Failures>> {
        self.shared.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `instant + duration`; configuration bounds durations far below where this could overflow,
/// and an impossible overflow must not panic the server.
fn later(instant: Instant, duration: Duration) -> Instant {
    instant.checked_add(duration).unwrap_or(instant)
}
