//! New connections per client per time window, by the generic cell rate algorithm (GCRA).
//!
//! GCRA is a token bucket stored as a single instant per client, the "theoretical arrival time"
//! (TAT): a client may make `count` connections at once, then one every `per / count`. With the
//! default 100 per 60 s, a client can open 100 connections in a burst and then one every 0.6 s.
//! A refused attempt does not use up allowance, so a client hammering the port is refused
//! cheaply and is let in again as soon as its rate drops. An entry whose TAT has passed carries no
//! information and is dropped.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::ClientKey;
use super::bounded::{BoundedMap, Expiring};
use crate::config;
use crate::denial::Denial;

/// At most `count` events per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per window (and the largest burst); 0 allows nothing.
    pub count: u32,
    /// The window.
    pub per: Duration,
}

impl Default for Rate {
    fn default() -> Self {
        Rate { count: config::DEFAULT_MAX_CONNECTION_RATE_PER_MINUTE, per: Duration::from_secs(60) }
    }
}

/// Theoretical arrival time of a client's next connection.
#[derive(Debug, Clone, Copy)]
struct Tat(Instant);

impl Expiring for Tat {
    fn expires_at(&self) -> Instant {
        self.0
    }
}

/// Limits new connections per client; cheap to clone (clones share the state).
#[derive(Debug, Clone)]
pub struct ConnectionRate {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    rate: Rate,
    clients: Mutex<BoundedMap<Tat>>,
}

impl ConnectionRate {
    /// A limiter allowing `rate` per client, remembering at most `max_tracked_clients`.
    pub fn new(rate: Rate, max_tracked_clients: usize) -> Self {
        let clients = Mutex::new(BoundedMap::new(max_tracked_clients));
        ConnectionRate { shared: Arc::new(Shared { rate, clients }) }
    }

    /// Records a connection attempt from `ip` at `now`, or refuses it with
    /// `421 4.7.0 Connection rate limit exceeded`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Denial> {
        let Rate { count, per } = self.shared.rate;
        if count == 0 {
            return Err(Denial::CONNECTION_RATE_EXCEEDED);
        }
        let interval = per / count;
        let burst_tolerance = per.saturating_sub(interval);
        let key = ClientKey::of(ip);
        let mut clients = self.clients();
        let tat = clients.live_mut(key, now).map_or(now, |tat| tat.0.max(now));
        if tat.saturating_duration_since(now) > burst_tolerance {
            return Err(Denial::CONNECTION_RATE_EXCEEDED);
        }
        let next = tat.checked_add(interval).unwrap_or(tat);
        clients.insert(key, Tat(next), now);
        Ok(())
    }

    /// Clients currently remembered (bounded by `max_tracked_clients`).
    pub fn tracked_clients(&self) -> usize {
        self.clients().len()
    }

    /// Held for one lookup-and-update; see [`super`] for why poisoning is ignored.
    fn clients(&self) -> MutexGuard<'_, BoundedMap<Tat>> {
        self.shared.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
