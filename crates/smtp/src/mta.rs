//! The mail server's rules, shared by all sessions: per-client limits and connection
//! admission (the access lists' IP entries). The relay policy and the access lists are shared
//! with the door (`tern-ingest`), whose checks and routing apply them to messages. Without it
//! (the catcher) no client is limited beyond the session limits.

use std::net::IpAddr;
use std::sync::Arc;

use tern_policy::{
    AccessLists, AuthThrottle, ConnectionCounter, ConnectionGuard, ConnectionRate, Denial, Limits,
    RelayPolicy,
};
use tokio::time::Instant;

/// Policy and the per-client state that enforces it.
pub struct Mta {
    /// Local domains, trusted networks, sender ownership (shared with the door's routing).
    pub relay: Arc<RelayPolicy>,
    /// Per-client limits.
    pub limits: Limits,
    /// Allow/block lists (shared with the door's checks).
    pub lists: Arc<AccessLists>,
    connections: ConnectionCounter,
    rate: ConnectionRate,
    /// AUTH failures per client.
    pub auth_throttle: AuthThrottle,
}

impl Mta {
    /// Builds the shared state from the policy.
    pub fn new(relay: RelayPolicy, limits: Limits, lists: AccessLists) -> Self {
        Mta {
            connections: limits.connection_counter(),
            rate: limits.connection_rate(),
            auth_throttle: limits.auth_throttle(),
            relay: Arc::new(relay),
            limits,
            lists: Arc::new(lists),
        }
    }

    /// Admits a new connection: access lists, connection rate, concurrent connections. The
    /// guard holds the client's connection slot until it is dropped; a client of the trusted
    /// networks (unless `limits.exempt_trusted_networks` is off) is not counted and has none.
    pub fn admit(&self, ip: IpAddr) -> Result<Option<ConnectionGuard>, Denial> {
        self.lists.check_connect(ip)?;
        if self.limits.exempt_trusted_networks && self.relay.is_trusted(ip) {
            return Ok(None);
        }
        self.rate.check(ip, Instant::now().into_std())?;
        self.connections.acquire(ip).map(Some)
    }
}
