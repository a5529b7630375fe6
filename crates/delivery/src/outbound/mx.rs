//! Where mail for a domain goes: MX records (RFC 5321 §5.1) through hickory-resolver, ordered
//! by preference with equal preferences shuffled, each host resolved to its A and AAAA
//! addresses. Implicit MX when a domain has none, null MX (RFC 7505), and which DNS answers
//! are final (`NXDOMAIN`, null MX) and which are worth a retry (timeouts, `SERVFAIL`).
//!
//! Host names that do not resolve: a host with no addresses is skipped. When no host has any,
//! the domain is unroutable: permanently (`5.4.4`) if every host name is `NXDOMAIN` (the
//! domain's DNS points at names that do not exist), temporarily (`4.4.4`) otherwise, and
//! `4.4.3` when a lookup itself failed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use rand::seq::SliceRandom;
use tern_queue::transport::{Failure, Outcome};

use super::OutboundError;
use super::outcome::local_failure;

/// Queries per name server before a lookup fails.
pub use tern_dns::DNS_ATTEMPTS;

/// One mail exchanger and its addresses, A before AAAA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    /// The host name without the trailing dot (`mx1.example.com`), or the address literal.
    pub name: String,
    /// Its addresses, in the order to try them.
    pub addrs: Vec<IpAddr>,
}

/// Why a domain has no host to deliver to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MxError {
    /// The domain publishes a null MX: it accepts no mail.
    #[error("domain {domain} does not accept mail (null MX)")]
    NullMx {
        /// The recipient domain.
        domain: String,
    },
    /// The domain does not exist.
    #[error("domain {domain} not found")]
    NoSuchDomain {
        /// The recipient domain.
        domain: String,
    },
    /// The domain exists but has no MX and no address records.
    #[error("domain {domain} has no MX, A or AAAA records")]
    NoMailHost {
        /// The recipient domain.
        domain: String,
    },
    /// None of the domain's MX host names exists.
    #[error("no MX host of {domain} exists: {hosts}")]
    MxHostsNotFound {
        /// The recipient domain.
        domain: String,
        /// The MX host names, comma-separated.
        hosts: String,
    },
    /// The MX hosts have no addresses, for now at least.
    #[error("no address for any MX host of {domain}: {hosts}")]
    NoAddresses {
        /// The recipient domain.
        domain: String,
        /// The MX host names, comma-separated.
        hosts: String,
    },
    /// A lookup failed (timeout, `SERVFAIL`, network error): try again later.
    #[error("DNS lookup of {name} failed: {reason}")]
    Lookup {
        /// The name that was looked up.
        name: String,
        /// What went wrong.
        reason: String,
    },
}

impl MxError {
    /// The outcome every recipient at the domain gets.
    pub fn outcome(&self) -> Outcome {
        // Tern's own verdict, not a reply from a peer: RFC 3464's private `x-` type, never
        // `smtp;` (which says a server answered so).
        let permanent = |status: &str| {
            let diagnostic = format!("x-tern; {}", capitalized(&self.to_string()));
            Outcome::Permanent(Failure { status: status.into(), remote_mta: None, diagnostic })
        };
        match self {
            MxError::NullMx { .. } => permanent("5.1.10"),
            MxError::NoSuchDomain { .. } | MxError::NoMailHost { .. } => permanent("5.1.2"),
            MxError::MxHostsNotFound { .. } => permanent("5.4.4"),
            MxError::NoAddresses { .. } => {
                Outcome::Temporary(local_failure("4.4.4", self.to_string()))
            }
            MxError::Lookup { .. } => Outcome::Temporary(local_failure("4.4.3", self.to_string())),
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Resolves destination domains to ordered mail hosts.
#[derive(Clone)]
pub struct MxResolver {
    resolver: TokioResolver,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxResolver").finish_non_exhaustive()
    }
}

impl MxResolver {
    /// A resolver asking `servers`, or the system's name servers when `servers` is empty
    /// (see [`tern_dns::settings`]).
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Result<Self, OutboundError> {
        let resolver = tern_dns::resolver(servers, timeout)
            .map_err(|e| OutboundError::Resolver(e.to_string()))?;
        Ok(MxResolver { resolver })
    }

    /// Over a resolver built elsewhere: the server's one shared resolver.
    pub fn from_resolver(resolver: TokioResolver) -> Self {
        MxResolver { resolver }
    }

    /// The hosts to try for `domain`, best first.
    pub async fn resolve(&self, domain: &str) -> Result<Vec<MxHost>, MxError> {
        if let Some(ip) = address_literal(domain) {
            return Ok(vec![MxHost { name: domain.to_owned(), addrs: vec![ip] }]);
        }
        let domain = domain.trim_end_matches('.');
        let exchanges = match self.resolver.mx_lookup(fqdn(domain)).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) if e.is_nx_domain() => {
                return Err(MxError::NoSuchDomain { domain: domain.into() });
            }
            Err(e) if e.is_no_records_found() => Vec::new(),
            Err(e) => return Err(lookup_error(domain, &e)),
        };
        let Some(names) = order_exchanges(domain, exchanges)? else {
            return self.implicit_mx(domain).await;
        };
        self.resolve_hosts(domain, names).await
    }

    /// Resolves a single host name to its addresses (A before AAAA).
    pub async fn host_addrs(&self, name: &str) -> Result<Vec<IpAddr>, NetError> {
        let lookup = self.resolver.lookup_ip(fqdn(name)).await?;
        let mut addrs: Vec<IpAddr> = Vec::new();
        for ip in lookup.iter() {
            if !addrs.contains(&ip) {
                addrs.push(ip);
            }
        }
        Ok(addrs)
    }

    /// RFC 5321 §5.1: no MX records, so the domain itself is the only host.
    async fn implicit_mx(&self, domain: &str) -> Result<Vec<MxHost>, MxError> {
        match self.host_addrs(domain).await {
            Ok(addrs) if !addrs.is_empty() => Ok(vec![MxHost { name: domain.into(), addrs }]),
            Ok(_) => Err(MxError::NoMailHost { domain: domain.into() }),
            Err(e) if e.is_nx_domain() => Err(MxError::NoSuchDomain { domain: domain.into() }),
            Err(e) if e.is_no_records_found() => Err(MxError::NoMailHost { domain: domain.into() }),
            Err(e) => Err(lookup_error(domain, &e)),
        }
    }

    async fn resolve_hosts(
        &self,
        domain: &str,
        names: Vec<String>,
    ) -> Result<Vec<MxHost>, MxError> {
        let mut hosts = Vec::new();
        let mut all_nxdomain = true;
        let mut lookup_failure = None;
        for name in &names {
            match self.host_addrs(name).await {
                Ok(addrs) if !addrs.is_empty() => {
                    hosts.push(MxHost { name: name.clone(), addrs });
                    all_nxdomain = false;
                }
                Ok(_) => all_nxdomain = false,
                Err(e) if e.is_nx_domain() => {}
                Err(e) => {
                    all_nxdomain = false;
                    if !e.is_no_records_found() {
                        lookup_failure = Some(lookup_error(name, &e));
                    }
                }
            }
        }
        if !hosts.is_empty() {
            return Ok(hosts);
        }
        let (domain, hosts) = (domain.to_owned(), names.join(", "));
        Err(match lookup_failure {
            Some(failure) => failure,
            None if all_nxdomain => MxError::MxHostsNotFound { domain, hosts },
            None => MxError::NoAddresses { domain, hosts },
        })
    }
}

/// The MX host names in the order to try them, or `None` when there are none (implicit MX).
/// A lone MX for the root (`.`) is a null MX; among other MX records it is ignored.
fn order_exchanges(
    domain: &str,
    mut exchanges: Vec<(u16, String)>,
) -> Result<Option<Vec<String>>, MxError> {
    let is_root = |name: &str| name.is_empty() || name == ".";
    if let [(_, only)] = exchanges.as_slice()
        && is_root(only)
    {
        return Err(MxError::NullMx { domain: domain.into() });
    }
    exchanges.retain(|(_, name)| !is_root(name));
    if exchanges.is_empty() {
        return Ok(None);
    }
    // Shuffle first, then a stable sort: equal preferences end up in random order.
    exchanges.shuffle(&mut rand::rng());
    exchanges.sort_by_key(|(preference, _)| *preference);
    let mut names: Vec<String> = Vec::new();
    for (_, name) in exchanges {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(Some(names))
}

/// `dest.test` → `dest.test.`: fully qualified, so no search domains are tried.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

fn lookup_error(name: &str, error: &NetError) -> MxError {
    MxError::Lookup { name: name.into(), reason: error.to_string() }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 address literals).
fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.split_at_checked(5) {
        Some((prefix, v6)) if prefix.eq_ignore_ascii_case("IPv6:") => v6.parse().ok(),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchanges(list: &[(u16, &str)]) -> Vec<(u16, String)> {
        list.iter().map(|(p, n)| (*p, n.to_string())).collect()
    }

    #[test]
    fn orders_by_preference_and_spots_null_mx() {
        let ordered =
            order_exchanges("d", exchanges(&[(20, "b.test."), (10, "A.test."), (30, "c.test")]));
        assert_eq!(ordered, Ok(Some(vec!["a.test".into(), "b.test".into(), "c.test".into()])));
        assert_eq!(
            order_exchanges("d", exchanges(&[(0, ".")])),
            Err(MxError::NullMx { domain: "d".into() })
        );
        assert_eq!(
            order_exchanges("d", exchanges(&[(0, "")])),
            Err(MxError::NullMx { domain: "d".into() })
        );
        // A root MX among real ones is a misconfiguration; the real ones are used.
        assert_eq!(
            order_exchanges("d", exchanges(&[(0, "."), (10, "mx.test.")])),
            Ok(Some(vec!["mx.test".into()]))
        );
        assert_eq!(order_exchanges("d", Vec::new()), Ok(None));
        assert_eq!(
            order_exchanges("d", exchanges(&[(10, "mx.test."), (20, "MX.test")])),
            Ok(Some(vec!["mx.test".into()]))
        );
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let list = exchanges(&[(10, "a."), (10, "b."), (10, "c."), (10, "d."), (5, "first.")]);
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let names = order_exchanges("d", list.clone()).expect("ok").expect("hosts");
            assert_eq!(names[0], "first");
            seen_first.insert(names[1].clone());
        }
        assert_eq!(seen_first.len(), 4, "every equal-preference host comes second sometimes");
    }

    #[test]
    fn address_literals() {
        assert_eq!(address_literal("[127.0.0.1]"), Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(address_literal("[IPv6:::1]"), Some("::1".parse().expect("ip")));
        assert_eq!(address_literal("[ipv6:2001:db8::1]"), Some("2001:db8::1".parse().expect("ip")));
        assert_eq!(address_literal("[::1]"), None);
        assert_eq!(address_literal("dest.test"), None);
        assert_eq!(address_literal("[not-an-ip]"), None);
    }

    #[test]
    fn error_outcomes() {
        let d = || "dest.test".to_string();
        let cases: Vec<(MxError, &str, bool, &str)> = vec![
            (
                MxError::NullMx { domain: d() },
                "5.1.10",
                true,
                "x-tern; Domain dest.test does not accept mail (null MX)",
            ),
            (
                MxError::NoSuchDomain { domain: d() },
                "5.1.2",
                true,
                "x-tern; Domain dest.test not found",
            ),
            (
                MxError::NoMailHost { domain: d() },
                "5.1.2",
                true,
                "x-tern; Domain dest.test has no MX, A or AAAA records",
            ),
            (
                MxError::MxHostsNotFound { domain: d(), hosts: "mx.dest.test".into() },
                "5.4.4",
                true,
                "x-tern; No MX host of dest.test exists: mx.dest.test",
            ),
            (
                MxError::NoAddresses { domain: d(), hosts: "mx.dest.test".into() },
                "4.4.4",
                false,
                "no address for any MX host of dest.test: mx.dest.test",
            ),
            (
                MxError::Lookup { name: d(), reason: "request timed out".into() },
                "4.4.3",
                false,
                "DNS lookup of dest.test failed: request timed out",
            ),
        ];
        for (error, status, permanent, diagnostic) in cases {
            let failure =
                Failure { status: status.into(), remote_mta: None, diagnostic: diagnostic.into() };
            let expected =
                if permanent { Outcome::Permanent(failure) } else { Outcome::Temporary(failure) };
            assert_eq!(error.outcome(), expected, "{error}");
        }
    }
}
