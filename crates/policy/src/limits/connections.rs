//! Concurrent connections per client, counted by a guard that releases its slot on drop.
//!
//! The map holds only clients with at least one open connection, so its size is bounded by the
//! listener's global connection limit; an entry is removed when its count returns to zero.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::ClientKey;
use crate::denial::Denial;

/// Counts open connections per client; cheap to clone (all clones share the counts).
#[derive(Debug, Clone)]
pub struct ConnectionCounter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max_per_client: u32,
    open: Mutex<HashMap<ClientKey, u32>>,
}

impl Shared {
    /// The lock is held for one map update; a panic elsewhere cannot leave the counts torn,
    /// so a poisoned lock is still usable.
    fn open(&self) -> MutexGuard<'_, HashMap<ClientKey, u32>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ConnectionCounter {
    /// A counter allowing `max_per_client` concurrent connections per client.
    pub fn new(max_per_client: u32) -> Self {
        ConnectionCounter {
            shared: Arc::new(Shared { max_per_client, open: Mutex::new(HashMap::new()) }),
        }
    }

    /// Takes a slot for a new connection from `ip`, or refuses with
    /// `421 4.7.0 Too many connections from your address`. Keep the guard for the whole
    /// connection; dropping it frees the slot.
    pub fn acquire(&self, ip: IpAddr) -> Result<ConnectionGuard, Denial> {
        let key = ClientKey::of(ip);
        let mut open = self.shared.open();
        let count = open.entry(key).or_insert(0);
        if *count >= self.shared.max_per_client {
            if *count == 0 {
                open.remove(&key);
            }
            return Err(Denial::TOO_MANY_CONNECTIONS);
        }
        *count += 1;
        Ok(ConnectionGuard { shared: Arc::clone(&self.shared), key })
    }

    /// Open connections from the client `ip` belongs to.
    pub fn open_connections(&self, ip: IpAddr) -> u32 {
        self.shared.open().get(&ClientKey::of(ip)).copied().unwrap_or(0)
    }

    /// Clients with at least one open connection.
    pub fn clients(&self) -> usize {
        self.shared.open().len()
    }
}

/// One counted connection; its slot is released when this is dropped.
#[derive(Debug)]
#[must_use = "the connection slot is released as soon as the guard is dropped"]
pub struct ConnectionGuard {
    shared: Arc<Shared>,
    key: ClientKey,
}

impl ConnectionGuard {
    /// The client this connection is counted against.
    pub fn client(&self) -> ClientKey {
        self.key
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut open = self.shared.open();
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}
