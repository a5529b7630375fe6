//! The one DNS resolver of a Tern server. Outbound delivery (MX, A, AAAA) and message
//! authentication (SPF, DKIM keys, DMARC, ARC) ask the same hickory resolver, so they share
//! its cache and its configuration: the name servers of `outbound.dns_servers`, or the
//! system's (`/etc/resolv.conf`) when none are set, each query bounded by
//! `outbound.dns_timeout_secs`.
//!
//! [`settings`] turns that configuration into hickory's [`ResolverConfig`] and
//! [`ResolverOpts`] (mail-auth builds its resolver from those), [`resolver`] builds one
//! directly (tests, tools), and [`txt_texts`] reads a name's TXT records as text.

use std::net::SocketAddr;
use std::time::Duration;

pub use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
pub use hickory_resolver::proto::rr::RData;

/// Queries per name server before a lookup fails.
pub const DNS_ATTEMPTS: usize = 2;

/// The resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct DnsError(String);

/// Hickory's configuration for `servers` (UDP, then TCP for truncated answers, on each
/// server's port) or, when `servers` is empty, the system's name servers; each query bounded
/// by `timeout` and tried [`DNS_ATTEMPTS`] times.
pub fn settings(servers: &[SocketAddr], timeout: Duration) -> (ResolverConfig, ResolverOpts) {
    let (config, mut options) = if servers.is_empty() {
        match hickory_resolver::system_conf::read_system_conf() {
            Ok(system) => system,
            // No usable /etc/resolv.conf (a minimal container): the server must still start —
            // the catcher never needs DNS — and lookups then fail as temporary errors until
            // `outbound.dns_servers` is set.
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration; set outbound.dns_servers for DNS lookups");
                (ResolverConfig::from_name_servers(vec![]), ResolverOpts::default())
            }
        }
    } else {
        let name_servers = servers.iter().map(|server| name_server(*server)).collect();
        let mut options = ResolverOpts::default();
        // Configured name servers are the whole truth; /etc/hosts is for the system's.
        options.use_hosts_file = ResolveHosts::Never;
        (ResolverConfig::from_name_servers(name_servers), options)
    };
    options.timeout = timeout;
    options.attempts = DNS_ATTEMPTS;
    // Many MTAs have no IPv6 route; try IPv4 addresses first, then IPv6.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    (config, options)
}

/// A resolver built from [`settings`].
pub fn resolver(servers: &[SocketAddr], timeout: Duration) -> Result<TokioResolver, DnsError> {
    let (config, options) = settings(servers, timeout);
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|e| DnsError(e.to_string()))
}

/// Every TXT record at `name`, each record's character-strings joined (RFC 7208 §3.3, RFC 6376
/// §3.6.2.2); none when the name does not exist or holds no TXT record.
pub async fn txt_texts(resolver: &TokioResolver, name: &str) -> Result<Vec<String>, String> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.txt_lookup(fqdn).await {
        Ok(lookup) => Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => {
                    Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect())
                }
                _ => None,
            })
            .collect()),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn name_server(server: SocketAddr) -> NameServerConfig {
    let mut udp = ConnectionConfig::udp();
    udp.port = server.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = server.port();
    NameServerConfig::new(server.ip(), true, vec![udp, tcp])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_servers_are_the_whole_truth() {
        let server = SocketAddr::from(([127, 0, 0, 1], 5353));
        let (config, options) = settings(&[server], Duration::from_secs(3));
        let ips: Vec<_> = config.name_servers().iter().map(|ns| ns.ip).collect();
        assert_eq!(ips, [server.ip()]);
        assert_eq!(options.use_hosts_file, ResolveHosts::Never);
        assert_eq!((options.timeout, options.attempts), (Duration::from_secs(3), DNS_ATTEMPTS));
    }
}
