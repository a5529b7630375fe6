//! The `[outbound]` section of the configuration file as delivery reads it: typed keys in
//! seconds and counts, defaults from this crate's (and the scheduler's) constants, and the
//! conversion into the client's [`OutboundConfig`].

use std::path::PathBuf;
use std::time::Duration;

use super::{OutboundConfig, RelayHost, TlsPolicy};

/// The `[outbound]` section.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSection {
    /// Send everything through this smarthost (`host:port`) instead of the recipients' MX.
    pub relay_host: Option<String>,
    /// Speak TLS from the first byte to the smarthost (port 465) instead of STARTTLS.
    pub relay_implicit_tls: bool,
    /// Login for AUTH at the smarthost (sent only over TLS).
    pub relay_username: Option<String>,
    /// Password for AUTH at the smarthost.
    pub relay_password: Option<String>,
    /// DNS servers (`ip:port`) for MX lookups; empty uses /etc/resolv.conf.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Seconds a DNS query may take before the attempt is retried later.
    pub dns_timeout_secs: u64,
    /// Port MX hosts are contacted on (25; other values are for test setups).
    pub mx_port: u16,
    /// STARTTLS policy: `opportunistic`, `require` or `off`.
    pub tls: TlsPolicy,
    /// Per-domain STARTTLS policy, e.g. `{ "bank.example" = "require" }`.
    pub tls_domains: std::collections::BTreeMap<String, TlsPolicy>,
    /// Extra trusted CA certificates (PEM) for verifying remote servers.
    pub tls_ca_file: Option<PathBuf>,
    /// Seconds to connect (and finish the TLS handshake).
    pub connect_timeout_secs: u64,
    /// Seconds to wait for each reply.
    pub command_timeout_secs: u64,
    /// Seconds to wait for the reply after the message data.
    pub data_timeout_secs: u64,
    /// Most outbound connections at once.
    pub max_connections: usize,
    /// Most connections to one destination (domain, or the smarthost) at once.
    pub max_per_destination: usize,
    /// Most messages sent over one connection.
    pub messages_per_connection: usize,
}

impl Default for OutboundSection {
    fn default() -> Self {
        use tern_queue::scheduler;
        OutboundSection {
            relay_host: None,
            relay_implicit_tls: false,
            relay_username: None,
            relay_password: None,
            dns_servers: Vec::new(),
            dns_timeout_secs: super::DEFAULT_DNS_TIMEOUT.as_secs(),
            mx_port: super::DEFAULT_MX_PORT,
            tls: TlsPolicy::default(),
            tls_domains: Default::default(),
            tls_ca_file: None,
            connect_timeout_secs: super::DEFAULT_CONNECT_TIMEOUT.as_secs(),
            command_timeout_secs: super::DEFAULT_COMMAND_TIMEOUT.as_secs(),
            data_timeout_secs: super::DEFAULT_DATA_TIMEOUT.as_secs(),
            max_connections: scheduler::DEFAULT_MAX_CONNECTIONS,
            max_per_destination: scheduler::DEFAULT_MAX_PER_DESTINATION,
            messages_per_connection: scheduler::DEFAULT_MESSAGES_PER_CONNECTION,
        }
    }
}

impl OutboundSection {
    /// The SMTP client's settings; `helo_name` is this server's hostname.
    pub fn client(&self, helo_name: &str) -> OutboundConfig {
        // The binary's configuration has refused a relay host that is not `host:port`; the
        // policies were parsed with the file.
        OutboundConfig {
            dns_servers: self.dns_servers.clone(),
            dns_timeout: Duration::from_secs(self.dns_timeout_secs),
            mx_port: self.mx_port,
            relay_host: self.relay_host.as_deref().and_then(parse_host_port).map(|(host, port)| {
                RelayHost {
                    host,
                    port,
                    implicit_tls: self.relay_implicit_tls,
                    username: self.relay_username.clone(),
                    password: self.relay_password.clone(),
                }
            }),
            tls: self.tls,
            tls_domains: self
                .tls_domains
                .iter()
                .map(|(domain, &policy)| (domain.to_ascii_lowercase(), policy))
                .collect(),
            tls_ca_file: self.tls_ca_file.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            command_timeout: Duration::from_secs(self.command_timeout_secs),
            data_timeout: Duration::from_secs(self.data_timeout_secs),
            ..OutboundConfig::new(helo_name)
        }
    }
}

/// Splits `host:port` (`[v6]:port` too); `None` unless both parts are there and the port is
/// not 0.
pub fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok().filter(|p| *p > 0)?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}
