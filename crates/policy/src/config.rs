//! The policy configuration as written in `tern.toml`, every default in one place, and its
//! conversion into the runtime types ([`RelayPolicy`], [`Limits`], [`AccessLists`]).
//!
//! Parsing is two-stage: serde reads plain values (strings, integers) with `deny_unknown_fields`
//! so typos fail loudly; `TryFrom` then resolves them into typed values and names the key and
//! value of the first one that is wrong. The key names assume the sections are called
//! `[relay]`, `[limits]` and `[lists]`.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::address::AddressError;
use crate::limits::{AuthThrottleSettings, Limits, Rate, Tarpit};
use crate::lists::{AccessLists, DomainPattern};
use crate::relay::RelayPolicy;

/// Default for whether an authenticated user's `MAIL FROM` must be one of their addresses.
pub const DEFAULT_REQUIRE_SENDER_OWNERSHIP: bool = true;

/// Default most concurrent connections per client (Postfix's
/// `smtpd_client_connection_count_limit`).
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: u32 = 50;
/// Default most new connections per client per minute (also the largest burst). Postfix ships
/// `smtpd_client_connection_rate_limit = 0` (off); 100 a minute stays far above any real sender.
pub const DEFAULT_MAX_CONNECTION_RATE_PER_MINUTE: u32 = 100;
/// Default most messages per connection. Postfix has no such limit and Exim's
/// `smtp_accept_max_per_connection` is 1000; 100 keeps one connection from monopolizing a
/// session for long, and the `421` makes a well-behaved client simply reconnect.
pub const DEFAULT_MAX_MESSAGES_PER_CONNECTION: u32 = 100;
/// Default most recipients per message (Postfix's `smtpd_recipient_limit`); enforced by the
/// session, more get `452 4.5.3`.
pub const DEFAULT_MAX_RECIPIENTS_PER_MESSAGE: usize = 1000;
/// Default errors a session may make before error replies are delayed (Postfix's
/// `smtpd_soft_error_limit` is 10; 3 is enough for a confused but honest client).
pub const DEFAULT_TARPIT_AFTER_ERRORS: u32 = 3;
/// Default extra delay per error beyond the free ones (Postfix's `smtpd_error_sleep_time`, 1 s).
pub const DEFAULT_TARPIT_STEP: Duration = Duration::from_secs(1);
/// Default longest tarpit delay before one error reply.
pub const DEFAULT_TARPIT_MAX_DELAY: Duration = Duration::from_secs(10);
/// Default delay before answering an AUTH attempt, per failure already in the window.
pub const DEFAULT_AUTH_DELAY_PER_FAILURE: Duration = Duration::from_millis(500);
/// Default longest delay before answering an AUTH attempt.
pub const DEFAULT_AUTH_MAX_DELAY: Duration = Duration::from_secs(5);
/// Default failed AUTH attempts per client per window that trigger a lockout.
pub const DEFAULT_AUTH_MAX_FAILURES: u32 = 10;
/// Default window in which AUTH failures are counted, from the first one.
pub const DEFAULT_AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Default lockout after too many AUTH failures.
pub const DEFAULT_AUTH_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Default most clients the connection-rate and AUTH throttles each remember (about 100 bytes
/// each, so about 10 MB per map at the bound).
pub const DEFAULT_MAX_TRACKED_CLIENTS: usize = 100_000;

/// Longest any configured tarpit or AUTH delay may be: RFC 5321 section 4.5.3.2 clients wait
/// 5 minutes for most replies, so a longer delay only turns into a timeout.
pub const MAX_CONFIGURED_DELAY: Duration = Duration::from_secs(5 * 60);
/// Longest any configured window or lockout may be (30 days).
pub const MAX_CONFIGURED_PERIOD: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A configuration value that cannot be used, naming its key and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not a CIDR network or single IP address.
    #[error(
        "{key}: {value:?} is not an IP network (write CIDR such as 192.0.2.0/24 or \
         2001:db8::/32, or a single address)"
    )]
    InvalidNetwork {
        /// The key, with the list index: `relay.trusted_networks[2]`.
        key: String,
        /// The value as written.
        value: String,
    },
    /// Not an IP address.
    #[error("{key}: {value:?} is not an IP address")]
    InvalidIp {
        /// The key, with the list index.
        key: String,
        /// The value as written.
        value: String,
    },
    /// Not a usable domain name.
    #[error("{key}: {value:?} is not a valid domain ({reason})")]
    InvalidDomain {
        /// The key, with the list index.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: AddressError,
    },
    /// A number outside its allowed range.
    #[error("{key}: {value} is out of range (allowed: {min} to {max})")]
    OutOfRange {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: u64,
        /// Smallest allowed value.
        min: u64,
        /// Largest allowed value.
        max: u64,
    },
}

/// The `[relay]` section: which domains are ours and who may relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Domains we receive mail for (case and a trailing dot do not matter). Subdomains are not
    /// implied: list each one.
    pub local_domains: Vec<String>,
    /// Networks whose clients may relay without AUTH, as CIDR (`10.0.0.0/8`, `2001:db8::/32`) or
    /// single addresses. Empty by default — not even loopback, because a proxy on the same host
    /// would make every client look local.
    pub trusted_networks: Vec<String>,
    /// This server's own IP addresses, so that `user@[192.0.2.1]` counts as local.
    pub local_ips: Vec<String>,
    /// Whether an authenticated user's `MAIL FROM` must be one of their addresses
    /// (`553 5.7.1` otherwise).
    pub require_sender_ownership: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            local_domains: Vec::new(),
            trusted_networks: Vec::new(),
            local_ips: Vec::new(),
            require_sender_ownership: DEFAULT_REQUIRE_SENDER_OWNERSHIP,
        }
    }
}

impl TryFrom<RelayConfig> for RelayPolicy {
    type Error = ConfigError;

    fn try_from(config: RelayConfig) -> Result<Self, ConfigError> {
        let mut policy = RelayPolicy::new(config.require_sender_ownership);
        for (i, domain) in config.local_domains.iter().enumerate() {
            policy.add_local_domain(domain).map_err(|reason| ConfigError::InvalidDomain {
                key: format!("relay.local_domains[{i}]"),
                value: domain.clone(),
                reason,
            })?;
        }
        for network in parse_networks("relay.trusted_networks", &config.trusted_networks)? {
            policy.add_trusted_network(network);
        }
        for (i, ip) in config.local_ips.iter().enumerate() {
            let parsed = ip.trim().parse::<IpAddr>().map_err(|_| ConfigError::InvalidIp {
                key: format!("relay.local_ips[{i}]"),
                value: ip.clone(),
            })?;
            policy.add_local_ip(parsed);
        }
        Ok(policy)
    }
}

/// The `[limits]` section: how much one client may ask of the server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most concurrent connections per client IP (an IPv6 client is its /64); more are greeted
    /// with `421 4.7.0` and closed.
    pub max_connections_per_ip: u32,
    /// Most new connections per client IP per minute, also the largest burst; more get `421`.
    pub max_connection_rate_per_minute: u32,
    /// Most messages one connection may carry; the next `MAIL FROM` gets `421 4.7.0`.
    pub max_messages_per_connection: u32,
    /// Error replies a session gets without delay; each further one is delayed.
    pub tarpit_after_errors: u32,
    /// Extra delay per error beyond `tarpit_after_errors`, in milliseconds.
    pub tarpit_step_ms: u64,
    /// Longest delay before one error reply, in milliseconds (0 turns the tarpit off).
    pub tarpit_max_delay_ms: u64,
    /// Delay before answering AUTH per failure already counted, in milliseconds.
    pub auth_delay_per_failure_ms: u64,
    /// Longest delay before answering AUTH, in milliseconds.
    pub auth_max_delay_ms: u64,
    /// Failed AUTH attempts per client in one window that lock the client out.
    pub auth_max_failures: u32,
    /// Window in which AUTH failures are counted, from the first one, in seconds.
    pub auth_failure_window_secs: u64,
    /// How long a client is locked out after too many AUTH failures, in seconds.
    pub auth_lockout_secs: u64,
    /// Most clients the connection-rate and AUTH throttles each remember; the oldest entries are
    /// evicted beyond this.
    pub max_tracked_clients: usize,
    /// Clients of `relay.trusted_networks` are not held to `max_connections_per_ip` and
    /// `max_connection_rate_per_minute` (as Postfix exempts `$mynetworks` from its client
    /// limits): an application server sending through Tern opens many sessions.
    pub exempt_trusted_networks: bool,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_connection_rate_per_minute: DEFAULT_MAX_CONNECTION_RATE_PER_MINUTE,
            max_messages_per_connection: DEFAULT_MAX_MESSAGES_PER_CONNECTION,
            tarpit_after_errors: DEFAULT_TARPIT_AFTER_ERRORS,
            tarpit_step_ms: millis(DEFAULT_TARPIT_STEP),
            tarpit_max_delay_ms: millis(DEFAULT_TARPIT_MAX_DELAY),
            auth_delay_per_failure_ms: millis(DEFAULT_AUTH_DELAY_PER_FAILURE),
            auth_max_delay_ms: millis(DEFAULT_AUTH_MAX_DELAY),
            auth_max_failures: DEFAULT_AUTH_MAX_FAILURES,
            auth_failure_window_secs: DEFAULT_AUTH_FAILURE_WINDOW.as_secs(),
            auth_lockout_secs: DEFAULT_AUTH_LOCKOUT.as_secs(),
            max_tracked_clients: DEFAULT_MAX_TRACKED_CLIENTS,
            exempt_trusted_networks: true,
        }
    }
}

impl TryFrom<LimitsConfig> for Limits {
    type Error = ConfigError;

    fn try_from(c: LimitsConfig) -> Result<Self, ConfigError> {
        let max_delay_ms = millis(MAX_CONFIGURED_DELAY);
        let max_period_secs = MAX_CONFIGURED_PERIOD.as_secs();
        let positive = u64::from(u32::MAX);
        in_range("limits.max_connections_per_ip", c.max_connections_per_ip.into(), 1, positive)?;
        in_range(
            "limits.max_connection_rate_per_minute",
            c.max_connection_rate_per_minute.into(),
            1,
            positive,
        )?;
        in_range(
            "limits.max_messages_per_connection",
            c.max_messages_per_connection.into(),
            1,
            positive,
        )?;
        in_range("limits.tarpit_step_ms", c.tarpit_step_ms, 0, max_delay_ms)?;
        in_range("limits.tarpit_max_delay_ms", c.tarpit_max_delay_ms, 0, max_delay_ms)?;
        in_range("limits.auth_delay_per_failure_ms", c.auth_delay_per_failure_ms, 0, max_delay_ms)?;
        in_range("limits.auth_max_delay_ms", c.auth_max_delay_ms, 0, max_delay_ms)?;
        in_range("limits.auth_max_failures", c.auth_max_failures.into(), 1, positive)?;
        in_range(
            "limits.auth_failure_window_secs",
            c.auth_failure_window_secs,
            1,
            max_period_secs,
        )?;
        in_range("limits.auth_lockout_secs", c.auth_lockout_secs, 1, max_period_secs)?;
        let tracked = u64::try_from(c.max_tracked_clients).unwrap_or(u64::MAX);
        in_range("limits.max_tracked_clients", tracked, 1, u64::from(u32::MAX))?;
        Ok(Limits {
            max_connections_per_client: c.max_connections_per_ip,
            connection_rate: Rate {
                count: c.max_connection_rate_per_minute,
                per: Duration::from_secs(60),
            },
            max_messages_per_connection: c.max_messages_per_connection,
            tarpit: Tarpit {
                free_errors: c.tarpit_after_errors,
                step: Duration::from_millis(c.tarpit_step_ms),
                max_delay: Duration::from_millis(c.tarpit_max_delay_ms),
            },
            auth: AuthThrottleSettings {
                delay_per_failure: Duration::from_millis(c.auth_delay_per_failure_ms),
                max_delay: Duration::from_millis(c.auth_max_delay_ms),
                max_failures: c.auth_max_failures,
                window: Duration::from_secs(c.auth_failure_window_secs),
                lockout: Duration::from_secs(c.auth_lockout_secs),
            },
            max_tracked_clients: c.max_tracked_clients,
            exempt_trusted_networks: c.exempt_trusted_networks,
        })
    }
}

/// The `[lists]` section: allow and block lists. An allow entry overrides a block entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListsConfig {
    /// Client networks (CIDR or single addresses) never refused by `block_ips`.
    pub allow_ips: Vec<String>,
    /// Client networks (CIDR or single addresses) refused at connect with `554 5.7.1`.
    pub block_ips: Vec<String>,
    /// Sender domains never refused by `block_sender_domains`; `.example.org` also covers
    /// every subdomain.
    pub allow_sender_domains: Vec<String>,
    /// Sender domains refused at `MAIL FROM` with `554 5.7.1`; `.example.org` also covers every
    /// subdomain.
    pub block_sender_domains: Vec<String>,
}

impl TryFrom<ListsConfig> for AccessLists {
    type Error = ConfigError;

    fn try_from(config: ListsConfig) -> Result<Self, ConfigError> {
        Ok(AccessLists {
            allow_ips: parse_networks("lists.allow_ips", &config.allow_ips)?,
            block_ips: parse_networks("lists.block_ips", &config.block_ips)?,
            allow_sender_domains: parse_patterns(
                "lists.allow_sender_domains",
                &config.allow_sender_domains,
            )?,
            block_sender_domains: parse_patterns(
                "lists.block_sender_domains",
                &config.block_sender_domains,
            )?,
        })
    }
}

/// Parses CIDR networks or single addresses; host bits are cleared (`10.1.2.3/8` is
/// `10.0.0.0/8`).
fn parse_networks(key: &str, values: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    let parse = |(i, value): (usize, &String)| {
        let text = value.trim();
        let network = text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
        network.map(|network| network.trunc()).map_err(|_| ConfigError::InvalidNetwork {
            key: format!("{key}[{i}]"),
            value: value.clone(),
        })
    };
    values.iter().enumerate().map(parse).collect()
}

fn parse_patterns(key: &str, values: &[String]) -> Result<Vec<DomainPattern>, ConfigError> {
    let parse = |(i, value): (usize, &String)| {
        DomainPattern::parse(value).map_err(|reason| ConfigError::InvalidDomain {
            key: format!("{key}[{i}]"),
            value: value.clone(),
            reason,
        })
    };
    values.iter().enumerate().map(parse).collect()
}

fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(ConfigError::OutOfRange { key, value, min, max })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
