//! The one DNS resolver of a Tern server. Outbound delivery (MX, A, AAAA) and message
//! authentication (SPF, DKIM keys, DMARC, ARC) ask the same hickory resolver, so they share
//! its cache and its configuration: the name servers of `outbound.dns_servers`, or the
//! system's (`/etc/resolv.conf`) when none are set, each query bounded by
//! `outbound.dns_timeout_secs`.
//!
//! [`settings`] turns that configuration into hickory's [`ResolverConfig`] and
//! [`ResolverOpts`] (mail-auth builds its resolver from those), [`resolver`] builds one
//! directly (tests, tools), and [`txt_texts`] reads a name's TXT records as text.
//! [`is_internal`] tells the addresses a name may resolve to that are not on the Internet,
//! for the features that must not be pointed inside (the link check, validation callouts).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// Loopback, private, link-local, shared (CGNAT), multicast, unspecified, broadcast,
/// documentation and reserved addresses, and IPv6 forms that carry such an IPv4 address
/// (mapped, NAT64, 6to4); Teredo is refused whole.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_internal_v4(ip),
        IpAddr::V6(ip) => is_internal_v6(ip),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 198 && (b & 0xfe) == 18)
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let embedded = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        is_internal_v4(Ipv4Addr::new(a, b, c, d))
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_internal_v4(v4);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        // Site-local (deprecated), documentation, Teredo.
        || (segments[0] & 0xffc0) == 0xfec0
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        || (segments[0] == 0x2001 && segments[1] == 0)
        // IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) carry the IPv4 address last.
        || (segments[..6] == [0; 6] && embedded(segments[6], segments[7]))
        || (segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(segments[6], segments[7]))
        || (segments[0] == 0x2002 && embedded(segments[1], segments[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        let internal = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().expect("ip")), "{ip} is internal");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1", "::ffff:8.8.8.8"] {
            assert!(!is_internal(ip.parse().expect("ip")), "{ip} is public");
        }
    }

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
