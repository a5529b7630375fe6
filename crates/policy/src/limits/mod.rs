//! Per-client and per-session limits: how much one client may ask of the server.
//!
//! Shared state, one instance per server, cloned cheaply into each connection task:
//! - [`ConnectionCounter`]: concurrent connections per client, released by a drop guard.
//! - [`ConnectionRate`]: new connections per client per time window.
//! - [`AuthThrottle`]: a growing delay per failed AUTH, then a temporary lockout.
//!
//! Plain numbers the session applies itself: messages per connection
//! ([`Limits::check_new_message`]) and the error [`Tarpit`]. Recipients per message are counted
//! by the session against its own setting; [`config::DEFAULT_MAX_RECIPIENTS_PER_MESSAGE`] and
//! [`Denial::TOO_MANY_RECIPIENTS`] are here so every limit's default and reply live together.
//!
//! A "client" is a [`ClientKey`]: an IPv4 address, or the /64 an IPv6 address belongs to (one
//! host usually owns a whole /64, so counting single IPv6 addresses would let it walk around every
//! limit). Each shared structure is a `std::sync::Mutex` around a map; the lock is held only for
//! one lookup-and-update, never across I/O or an `.await` (the API is synchronous), so contention
//! is a few hundred nanoseconds per connection or AUTH attempt. A poisoned lock is used anyway:
//! no update leaves an entry half-written, so a panic in another thread cannot corrupt it. Maps that remember clients after
//! they leave ([`ConnectionRate`], [`AuthThrottle`]) are bounded by `max_tracked_clients`.
//!
//! Nothing here reads a clock or sleeps: callers pass `now` and perform the returned delays.

mod auth;
mod bounded;
mod connections;
mod rate;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};

pub use auth::{AuthThrottle, AuthThrottleSettings};
pub use connections::{ConnectionCounter, ConnectionGuard};
pub use rate::{ConnectionRate, Rate};

use crate::config;
use crate::denial::Denial;

/// Prefix length that groups IPv6 clients: addresses in one /64 count as one client.
pub const IPV6_CLIENT_PREFIX_LEN: u8 = 64;

/// The unit every per-client limit counts by: an IPv4 address, or an IPv6 /64 network.
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, seen on dual-stack listeners) count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The client `ip` belongs to.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - u32::from(IPV6_CLIENT_PREFIX_LEN));
                ClientKey(IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask)))
            }
        }
    }

    /// The network this key stands for, for logs: `192.0.2.1/32` or `2001:db8::/64`.
    pub fn network(self) -> IpNet {
        match self.0 {
            IpAddr::V6(v6) => Ipv6Net::new(v6, IPV6_CLIENT_PREFIX_LEN)
                .map_or_else(|_| IpNet::from(self.0), IpNet::V6),
            IpAddr::V4(_) => IpNet::from(self.0),
        }
    }
}

/// The error tarpit: after a few free errors, each further error reply is delayed a little
/// more, which costs a well-behaved client nothing and slows down a scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tarpit {
    /// Errors answered without delay.
    pub free_errors: u32,
    /// Extra delay for each error beyond the free ones.
    pub step: Duration,
    /// The delay never exceeds this.
    pub max_delay: Duration,
}

impl Default for Tarpit {
    fn default() -> Self {
        Tarpit {
            free_errors: config::DEFAULT_TARPIT_AFTER_ERRORS,
            step: config::DEFAULT_TARPIT_STEP,
            max_delay: config::DEFAULT_TARPIT_MAX_DELAY,
        }
    }
}

impl Tarpit {
    /// How long to wait before sending an error reply, given the number of errors the session
    /// has made so far **including this one**. With the defaults: errors 1–3 → 0 s, error 4 →
    /// 1 s, error 5 → 2 s, …, error 13 and later → 10 s.
    pub fn delay(&self, errors_so_far: u32) -> Duration {
        let charged = errors_so_far.saturating_sub(self.free_errors);
        self.step.saturating_mul(charged).min(self.max_delay)
    }
}

/// All limits, resolved from [`config::LimitsConfig`]; also the factory for the shared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most concurrent connections per client.
    pub max_connections_per_client: u32,
    /// Most new connections per client per window.
    pub connection_rate: Rate,
    /// Most messages (mail transactions) one connection may carry.
    pub max_messages_per_connection: u32,
    /// The error tarpit.
    pub tarpit: Tarpit,
    /// AUTH failure throttling.
    pub auth: AuthThrottleSettings,
    /// Most clients remembered by each of [`ConnectionRate`] and [`AuthThrottle`].
    pub max_tracked_clients: usize,
    /// Trusted networks' clients skip the connection count and rate limits.
    pub exempt_trusted_networks: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections_per_client: config::DEFAULT_MAX_CONNECTIONS_PER_IP,
            connection_rate: Rate::default(),
            max_messages_per_connection: config::DEFAULT_MAX_MESSAGES_PER_CONNECTION,
            tarpit: Tarpit::default(),
            auth: AuthThrottleSettings::default(),
            max_tracked_clients: config::DEFAULT_MAX_TRACKED_CLIENTS,
            exempt_trusted_networks: true,
        }
    }
}

impl Limits {
    /// A fresh concurrent-connection counter with these limits.
    pub fn connection_counter(&self) -> ConnectionCounter {
        ConnectionCounter::new(self.max_connections_per_client)
    }

    /// A fresh connection-rate limiter with these limits.
    pub fn connection_rate(&self) -> ConnectionRate {
        ConnectionRate::new(self.connection_rate, self.max_tracked_clients)
    }

    /// A fresh AUTH throttle with these limits.
    pub fn auth_throttle(&self) -> AuthThrottle {
        AuthThrottle::new(self.auth, self.max_tracked_clients)
    }

    /// Checked at `MAIL FROM`: may a connection that already carried `messages_so_far`
    /// messages start another? The denial is a `421`: the client reconnects and goes on.
    pub fn check_new_message(&self, messages_so_far: u32) -> Result<(), Denial> {
        if messages_so_far >= self.max_messages_per_connection {
            return Err(Denial::TOO_MANY_MESSAGES);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_keys_are_single_addresses() {
        let a = ClientKey::of("192.0.2.1".parse().unwrap());
        let b = ClientKey::of("192.0.2.2".parse().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.network().to_string(), "192.0.2.1/32");
    }

    #[test]
    fn ipv6_keys_group_a_slash_64() {
        let a = ClientKey::of("2001:db8:1:2::1".parse().unwrap());
        let b = ClientKey::of("2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap());
        let c = ClientKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.network().to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let mapped = ClientKey::of("::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(mapped, ClientKey::of("192.0.2.1".parse().unwrap()));
    }
}
