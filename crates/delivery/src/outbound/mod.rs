//! Outbound SMTP: Tern's [`Transport`] for mail leaving the machine. A job for a destination
//! domain is routed through DNS (MX, or implicit MX) or to a configured smarthost, and its
//! messages go over one SMTP connection, host after host until one answers.
//!
//! Layout, top down: this file holds the configuration and [`SmtpTransport`]; `section.rs` is
//! the configuration file's `[outbound]` section; `job.rs` walks
//! the host list and keeps the connection for the job's messages; `client.rs` is one SMTP
//! client connection; `mx.rs` resolves domains; `tls.rs` trusts and verifies certificates; `mta_sts.rs` reads
//! and fetches MTA-STS policies;
//! `ehlo.rs`, `command.rs` and `outcome.rs` are pure code over replies, which
//! `tern_protocol::client_reply` parses.
//!
//! Delivery never decides retry timing: every recipient gets an
//! [`Outcome`](tern_queue::transport::Outcome) and the scheduler in `tern-queue` takes it from
//! there.

mod client;
mod command;
mod ehlo;
mod job;
pub mod mta_sts;
mod mx;
mod outcome;
mod section;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tern_queue::transport::{Job, JobResult, Transport};

pub(crate) use client::{ClientSettings, Target, Timeouts, connect};
pub use ehlo::Capabilities;
pub use mx::{DNS_ATTEMPTS, MxError, MxHost, MxResolver};
pub use section::{OutboundSection, parse_host_port};
pub use tern_dns::TokioResolver;
pub use tls::{Handshake, HandshakeError, TlsSetup, Verification};

/// Default time each DNS query may take.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default port of MX hosts.
pub const DEFAULT_MX_PORT: u16 = 25;
/// Default time for a TCP connect plus TLS handshake (RFC 5321 leaves it open; Postfix: 30 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time for each reply (RFC 5321 §4.5.3.2: 5 minutes).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Default time for sending the data and the reply after its final dot (RFC 5321: 10 minutes).
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Default port of a smarthost (submission with STARTTLS).
pub const DEFAULT_RELAY_PORT: u16 = 587;
/// The destination key of every job when all mail goes through a smarthost.
pub const RELAY_DESTINATION: &str = "[relay]";
/// Most addresses (over all MX hosts) tried for one job before it is deferred.
pub const MAX_ADDRESSES_PER_JOB: usize = 10;
/// Connections one job may open after its first one broke mid-job.
pub const MAX_RECONNECTS_PER_JOB: usize = 1;

/// Outbound SMTP settings.
#[derive(Debug, Clone)]
pub struct OutboundConfig {
    /// The name Tern gives with EHLO/HELO: this server's host name.
    pub helo_name: String,
    /// Name servers to ask (UDP, TCP for truncated answers); empty: the system's
    /// (`/etc/resolv.conf`).
    pub dns_servers: Vec<SocketAddr>,
    /// Time each DNS query may take.
    pub dns_timeout: Duration,
    /// TCP port of MX hosts (25; tests use others).
    pub mx_port: u16,
    /// Send everything through this smarthost instead of MX hosts.
    pub relay_host: Option<RelayHost>,
    /// When to use TLS: the default for every destination.
    pub tls: TlsPolicy,
    /// TLS policy per destination domain (lower case), overriding `tls`.
    pub tls_domains: HashMap<String, TlsPolicy>,
    /// PEM file of further trusted root certificates, besides webpki-roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Time for a TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Time for each reply to a command, and the greeting.
    pub command_timeout: Duration,
    /// Time for sending the data and for the reply after its final dot.
    pub data_timeout: Duration,
}

impl OutboundConfig {
    /// MX delivery with opportunistic TLS, the system's DNS and the default timeouts.
    pub fn new(helo_name: impl Into<String>) -> Self {
        OutboundConfig {
            helo_name: helo_name.into(),
            dns_servers: Vec::new(),
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            mx_port: DEFAULT_MX_PORT,
            relay_host: None,
            tls: TlsPolicy::default(),
            tls_domains: HashMap::new(),
            tls_ca_file: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            data_timeout: DEFAULT_DATA_TIMEOUT,
        }
    }

    /// The TLS policy for mail to `domain`.
    pub fn tls_policy(&self, domain: &str) -> TlsPolicy {
        self.tls_domains.get(&domain.to_ascii_lowercase()).copied().unwrap_or(self.tls)
    }
}

/// When to use TLS towards a peer. In configuration files it is one of the names below, in
/// any case; anything else is refused with [`UnknownTlsPolicy`] when the file is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum TlsPolicy {
    /// STARTTLS and a verified certificate, or no delivery (the mail waits).
    Require,
    /// STARTTLS whenever offered; an unverified certificate is logged and accepted, a failed
    /// handshake retried in clear.
    #[default]
    Opportunistic,
    /// Never STARTTLS (credentials for a smarthost still require it).
    Off,
}

impl TlsPolicy {
    /// The configuration name: `require`, `opportunistic` or `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::Require => "require",
            TlsPolicy::Opportunistic => "opportunistic",
            TlsPolicy::Off => "off",
        }
    }
}

impl fmt::Display for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not `require`, `opportunistic` or `off`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TLS policy {0:?} (expected require, opportunistic or off)")]
pub struct UnknownTlsPolicy(pub String);

impl FromStr for TlsPolicy {
    type Err = UnknownTlsPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "require" => Ok(TlsPolicy::Require),
            "opportunistic" => Ok(TlsPolicy::Opportunistic),
            "off" => Ok(TlsPolicy::Off),
            _ => Err(UnknownTlsPolicy(s.to_owned())),
        }
    }
}

impl TryFrom<String> for TlsPolicy {
    type Error = UnknownTlsPolicy;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A smarthost all outbound mail goes through.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayHost {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (587 for STARTTLS submission, 465 with `implicit_tls`, 25).
    pub port: u16,
    /// TLS from the first byte (port 465) instead of STARTTLS.
    pub implicit_tls: bool,
    /// AUTH username; with it, the connection must be encrypted.
    pub username: Option<String>,
    /// AUTH password (empty when absent).
    pub password: Option<String>,
}

impl RelayHost {
    /// A smarthost at `host:port` without credentials, STARTTLS as the policy says.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        RelayHost { host: host.into(), port, implicit_tls: false, username: None, password: None }
    }
}

/// Never prints the password.
impl fmt::Debug for RelayHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayHost")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("implicit_tls", &self.implicit_tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The outbound configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The DNS resolver could not be set up (e.g. no usable `/etc/resolv.conf`).
    #[error("DNS resolver: {0}")]
    Resolver(String),
    /// The extra CA file could not be read or holds no certificate.
    #[error("TLS CA file {}: {reason}", path.display())]
    CaFile {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS client could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
}

/// Delivers jobs over SMTP to MX hosts or a smarthost.
#[derive(Debug, Clone)]
pub struct SmtpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: OutboundConfig,
    resolver: MxResolver,
    tls: tls::TlsSetup,
}

impl SmtpTransport {
    /// Sets up DNS and TLS from `config` (reads `tls_ca_file` and, without `dns_servers`,
    /// `/etc/resolv.conf`). Needs no runtime; delivering does.
    pub fn new(config: OutboundConfig) -> Result<Self, OutboundError> {
        let resolver = MxResolver::new(&config.dns_servers, config.dns_timeout)?;
        Self::with_resolver(config, resolver)
    }

    /// [`SmtpTransport::new`] over a resolver shared with the rest of the server
    /// (`dns_servers` and `dns_timeout` of `config` are then the caller's business).
    pub fn with_resolver(
        config: OutboundConfig,
        resolver: MxResolver,
    ) -> Result<Self, OutboundError> {
        let tls = tls::TlsSetup::new(config.tls_ca_file.as_deref())?;
        Ok(SmtpTransport { inner: Arc::new(Inner { config, resolver, tls }) })
    }

    /// The configuration in use.
    pub fn config(&self) -> &OutboundConfig {
        &self.inner.config
    }

    /// The resolver in use, e.g. for `tern check`.
    pub fn resolver(&self) -> &MxResolver {
        &self.inner.resolver
    }
}

impl Transport for SmtpTransport {
    fn destination(&self, domain: &str) -> String {
        match self.inner.config.relay_host {
            Some(_) => RELAY_DESTINATION.to_owned(),
            None => domain.to_ascii_lowercase(),
        }
    }

    async fn deliver(&self, job: Job) -> JobResult {
        job::deliver(&self.inner, job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_policy_names_round_trip() {
        for policy in [TlsPolicy::Require, TlsPolicy::Opportunistic, TlsPolicy::Off] {
            assert_eq!(policy.as_str().parse(), Ok(policy));
        }
        assert_eq!("REQUIRE".parse(), Ok(TlsPolicy::Require));
        assert_eq!("maybe".parse::<TlsPolicy>(), Err(UnknownTlsPolicy("maybe".into())));
    }

    #[test]
    fn per_domain_tls_policy_overrides_the_default() {
        let mut config = OutboundConfig::new("mx.tern.test");
        config.tls_domains.insert("bank.test".into(), TlsPolicy::Require);
        assert_eq!(config.tls_policy("Bank.Test"), TlsPolicy::Require);
        assert_eq!(config.tls_policy("other.test"), TlsPolicy::Opportunistic);
    }

    #[test]
    fn a_transport_is_built_without_a_runtime() {
        let mut config = OutboundConfig::new("mx.tern.test");
        config.dns_servers = vec![SocketAddr::from(([127, 0, 0, 1], 53))];
        let transport = SmtpTransport::new(config).expect("transport");
        assert_eq!(transport.destination("Dest.Test"), "dest.test");
    }

    #[test]
    fn relay_debug_hides_the_password() {
        let relay =
            RelayHost { password: Some("hunter2".into()), ..RelayHost::new("smtp.test", 587) };
        assert!(!format!("{relay:?}").contains("hunter2"));
    }
}
