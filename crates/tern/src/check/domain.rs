//! `tern check DOMAIN`: what DNS says about a mail domain and what is wrong with it — MX hosts
//! and their addresses, forward-confirmed reverse DNS, SPF (and whether it lets the MX hosts
//! send), the DKIM keys Tern holds for the domain against their published records, DMARC,
//! MTA-STS (record and policy file) and TLS-RPT — then each MX over SMTP ([`super::probe`]).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tern_auth::records::{DmarcPolicy, Published, ReportUri, ReverseDns};
use tern_auth::{AuthConfig, Session, Verifier};
use tern_delivery::outbound::{DEFAULT_MX_PORT, TlsSetup, mta_sts};

use super::{CheckArgs, Finding, probe};
use crate::config::{Config, DEFAULT_DATA_DIR};

/// Each DNS query's bound.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// The bound on one MX conversation or one policy fetch.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where to look and how, from the flags and the configuration file.
pub(super) struct Settings {
    dns: Vec<SocketAddr>,
    mx_port: u16,
    https_port: u16,
    ca_file: Option<PathBuf>,
    key_dir: PathBuf,
    ehlo_name: String,
    connect: bool,
}

impl Settings {
    pub(super) fn new(args: &CheckArgs, config: Option<&Config>) -> Settings {
        let outbound = config.map(|c| &c.outbound);
        Settings {
            dns: if args.dns.is_empty() {
                outbound.map(|o| o.dns_servers.clone()).unwrap_or_default()
            } else {
                args.dns.clone()
            },
            mx_port: args.port.or(outbound.map(|o| o.mx_port)).unwrap_or(DEFAULT_MX_PORT),
            https_port: args.https_port,
            ca_file: args.ca_file.clone().or_else(|| outbound.and_then(|o| o.tls_ca_file.clone())),
            key_dir: config
                .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR).join("dkim"), Config::dkim_key_dir),
            ehlo_name: config
                .map_or_else(crate::config::system_hostname, |c| c.resolved_hostname()),
            connect: !args.no_connect,
        }
    }
}

/// One MX host: its preference, name and addresses.
struct Exchanger {
    preference: u16,
    name: String,
    addrs: Vec<IpAddr>,
}

/// Every check of `domain`.
pub(super) async fn check(domain: &str, settings: &Settings) -> Vec<Finding> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let verifier = match Verifier::new(
        &AuthConfig::default(),
        &settings.ehlo_name,
        &settings.dns,
        DNS_TIMEOUT,
    ) {
        Ok(verifier) => verifier,
        Err(e) => return vec![Finding::Fail(format!("DNS: {e}"))],
    };
    let mut findings = Vec::new();
    let Some(exchangers) = exchangers(&verifier, &domain, &mut findings).await else {
        // A domain that does not exist has nothing else to check.
        return findings;
    };
    reverse_dns(&verifier, &exchangers, &mut findings).await;
    spf(&verifier, &domain, &exchangers, &mut findings).await;
    dkim(&verifier, &domain, settings, &mut findings).await;
    dmarc(&verifier, &domain, &mut findings).await;
    let tls = TlsSetup::new(settings.ca_file.as_deref());
    match &tls {
        Ok(tls) => mta_sts(&verifier, &domain, &exchangers, tls, settings, &mut findings).await,
        Err(e) => findings.push(Finding::Fail(format!("TLS roots: {e}"))),
    }
    tls_rpt(&verifier, &domain, &mut findings).await;
    if let (true, Ok(tls)) = (settings.connect, &tls) {
        for mx in &exchangers {
            for ip in &mx.addrs {
                let addr = SocketAddr::new(*ip, settings.mx_port);
                let target = probe::Target { host: &mx.name, addr, ehlo_name: &settings.ehlo_name };
                findings.extend(probe::probe(&target, tls, PROBE_TIMEOUT).await);
            }
        }
    }
    findings
}

/// The MX hosts with their addresses, best first; the domain's own addresses for an implicit
/// MX; none for a null MX or a domain that cannot receive mail; `None` when the domain does not
/// exist.
async fn exchangers(
    verifier: &Verifier,
    domain: &str,
    out: &mut Vec<Finding>,
) -> Option<Vec<Exchanger>> {
    let resolver = verifier.resolver();
    let mut records: Vec<(u16, String)> = match resolver.mx_lookup(format!("{domain}.")).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                tern_dns::RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
                )),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_nx_domain() => {
            out.push(Finding::Fail(format!("MX: {domain} does not exist (NXDOMAIN)")));
            return None;
        }
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => {
            out.push(Finding::Fail(format!("MX: the lookup for {domain} failed: {e}")));
            return Some(Vec::new());
        }
    };
    records.sort();
    if records.len() == 1 && records[0].1.is_empty() {
        out.push(Finding::Ok(format!("MX: {domain} publishes a null MX: it accepts no mail")));
        return Some(Vec::new());
    }
    if records.is_empty() {
        let addrs = addresses(verifier, domain).await;
        if addrs.is_empty() {
            out.push(Finding::Fail(format!(
                "MX: {domain} has no MX and no address: it cannot receive mail; publish \
                 \"{domain}. MX 10 mail.{domain}.\" and an A record for mail.{domain}"
            )));
            return Some(Vec::new());
        }
        out.push(Finding::Warn(format!(
            "MX: {domain} has no MX record; senders use its address (implicit MX) {}; publish \
             \"{domain}. MX 10 HOST.\" to say which host receives mail",
            list(&addrs)
        )));
        return Some(vec![Exchanger { preference: 0, name: domain.to_string(), addrs }]);
    }
    let mut found = Vec::new();
    for (preference, name) in records {
        let addrs = addresses(verifier, &name).await;
        if addrs.is_empty() {
            out.push(Finding::Fail(format!(
                "MX: {preference} {name} has no A or AAAA record: senders cannot reach it"
            )));
        } else {
            out.push(Finding::Ok(format!("MX: {preference} {name} → {}", list(&addrs))));
            found.push(Exchanger { preference, name, addrs });
        }
    }
    Some(found)
}

async fn addresses(verifier: &Verifier, host: &str) -> Vec<IpAddr> {
    match verifier.resolver().lookup_ip(format!("{host}.")).await {
        Ok(lookup) => lookup.iter().collect(),
        Err(_) => Vec::new(),
    }
}

async fn reverse_dns(verifier: &Verifier, exchangers: &[Exchanger], out: &mut Vec<Finding>) {
    let ips: BTreeSet<IpAddr> = exchangers.iter().flat_map(|mx| mx.addrs.iter().copied()).collect();
    for ip in ips {
        if ip.is_loopback() {
            // The resolver answers "localhost" for these itself (RFC 6761), and no other host
            // can reach them anyway.
            out.push(Finding::Warn(format!(
                "rDNS: {ip} is a loopback address: only this machine can deliver to it"
            )));
            continue;
        }
        out.push(match verifier.reverse_dns(ip).await {
            ReverseDns::Confirmed(name) => {
                Finding::Ok(format!("rDNS: {ip} → {name}, which resolves back (forward-confirmed)"))
            }
            ReverseDns::Unconfirmed(names) => Finding::Warn(format!(
                "rDNS: {ip} → {}, which does not resolve back to {ip}: receivers that check \
                 FCrDNS distrust mail from it; add an A/AAAA record for that name or change the PTR",
                names.join(", ")
            )),
            ReverseDns::Missing => Finding::Warn(format!(
                "rDNS: {ip} has no PTR record: many receivers refuse mail from such addresses; ask \
                 whoever runs the address (your provider) for a PTR naming the host"
            )),
            ReverseDns::Failed(e) => Finding::Warn(format!("rDNS: lookup for {ip} failed: {e}")),
        });
    }
}

async fn spf(verifier: &Verifier, domain: &str, exchangers: &[Exchanger], out: &mut Vec<Finding>) {
    let text = match verifier.spf_record(domain).await {
        Published::Found { text, .. } => text,
        other => {
            let sends = !exchangers.is_empty();
            return out.push(missing_or_broken(
                "SPF",
                domain,
                other,
                &spf_suggestion(domain, sends),
            ));
        }
    };
    out.push(judge_spf_all(domain, &text));
    for mx in exchangers {
        for ip in &mx.addrs {
            let mail_from = format!("postmaster@{domain}");
            let session = Session { ip: *ip, helo: &mx.name, mail_from: &mail_from };
            let check = verifier.check_spf(session).await;
            out.push(if check.result == "pass" {
                Finding::Ok(format!("SPF: mail from {domain} sent by {ip} ({}) passes", mx.name))
            } else {
                Finding::Warn(format!(
                    "SPF: mail from {domain} sent by {ip} ({}) gets {}: if Tern sends from this \
                     host, add \"mx\" or \"ip{}:{ip}\" to the record",
                    mx.name,
                    check.result,
                    if ip.is_ipv4() { 4 } else { 6 }
                ))
            });
        }
    }
}

/// The record to publish: the MX hosts may send; a domain without mail hosts sends nothing.
fn spf_suggestion(domain: &str, has_mx: bool) -> String {
    let record = if has_mx { "v=spf1 mx -all" } else { "v=spf1 -all" };
    format!("publish \"{domain}. TXT \\\"{record}\\\"\"")
}

/// The verdict on the record's final `all`: what happens to mail from hosts it does not list.
fn judge_spf_all(domain: &str, text: &str) -> Finding {
    let all = text
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .find(|term| matches!(term.as_str(), "all" | "+all" | "-all" | "~all" | "?all"));
    let has_redirect = text.to_ascii_lowercase().contains("redirect=");
    match all.as_deref() {
        Some("-all") | Some("~all") => Finding::Ok(format!("SPF: {domain}: \"{text}\"")),
        Some("all") | Some("+all") => Finding::Fail(format!(
            "SPF: {domain}: \"{text}\" lets every host on the Internet send as {domain}; end it \
             with -all (or ~all)"
        )),
        Some(_) => Finding::Warn(format!(
            "SPF: {domain}: \"{text}\" ends with ?all, which says nothing about other hosts; \
             end it with -all or ~all"
        )),
        None if has_redirect => Finding::Ok(format!("SPF: {domain}: \"{text}\"")),
        None => Finding::Warn(format!(
            "SPF: {domain}: \"{text}\" has no \"all\": unlisted hosts get neutral; end it with \
             -all or ~all"
        )),
    }
}

/// The finding for a record that is not there, doubled, broken or not looked up.
fn missing_or_broken<T>(what: &str, name: &str, published: Published<T>, fix: &str) -> Finding {
    match published {
        Published::Found { text, .. } => Finding::Ok(format!("{what}: {name}: \"{text}\"")),
        Published::Missing => Finding::Warn(format!("{what}: {name} has no record; {fix}")),
        Published::Several(texts) => Finding::Fail(format!(
            "{what}: {name} has {} records ({}); receivers treat that as an error: keep one",
            texts.len(),
            texts.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
        )),
        Published::Invalid { text, reason } => Finding::Fail(format!(
            "{what}: {name}: \"{text}\" is not valid ({reason}); receivers ignore it"
        )),
        Published::Failed(e) => Finding::Fail(format!("{what}: the lookup for {name} failed: {e}")),
    }
}

async fn dkim(verifier: &Verifier, domain: &str, settings: &Settings, out: &mut Vec<Finding>) {
    let keys = match tern_auth::keys::load_dir(&settings.key_dir) {
        Ok(keys) => keys.into_iter().filter(|key| key.domain == domain).collect::<Vec<_>>(),
        Err(e) => return out.push(Finding::Fail(format!("DKIM: {e}"))),
    };
    if keys.is_empty() {
        return out.push(Finding::Warn(format!(
            "DKIM: Tern has no key for {domain} in {} (mail is not signed); run \"tern dkim \
             generate {domain}\" and publish the records it prints",
            settings.key_dir.display()
        )));
    }
    for key in &keys {
        let name = key.dns_name();
        out.push(match crate::dkim::published(verifier.resolver(), key).await {
            Ok(Ok(())) => {
                Finding::Ok(format!("DKIM: {name} publishes the key of {}", key.path.display()))
            }
            Ok(Err(reason)) => Finding::Fail(format!(
                "DKIM: {name}: {reason}; publish the record \"tern dkim list\" prints for it"
            )),
            Err(e) => Finding::Fail(format!("DKIM: {e:#}")),
        });
    }
}

async fn dmarc(verifier: &Verifier, domain: &str, out: &mut Vec<Finding>) {
    // RFC 9989's tree walk without a public suffix list: the domain, then each parent that
    // still has two labels.
    let mut name = domain;
    loop {
        let published = verifier.dmarc_record(name).await;
        if let Published::Found { text, record } = &published {
            let inherited =
                if name == domain { String::new() } else { format!(" (inherited from {name})") };
            out.push(match record.p {
                DmarcPolicy::Quarantine | DmarcPolicy::Reject => {
                    Finding::Ok(format!("DMARC: _dmarc.{name}: \"{text}\"{inherited}"))
                }
                _ => Finding::Warn(format!(
                    "DMARC: _dmarc.{name}: \"{text}\"{inherited} only monitors (p=none); once \
                     the reports show your mail aligned, move to p=quarantine or p=reject"
                )),
            });
            return;
        }
        let parent = name.split_once('.').map(|(_, parent)| parent).filter(|p| p.contains('.'));
        match (published, parent) {
            (Published::Missing, Some(parent)) => name = parent,
            (published, _) => {
                let fix = format!(
                    "publish \"_dmarc.{domain}. TXT \\\"v=DMARC1; p=none; rua=mailto:dmarc@{domain}\\\"\""
                );
                // Nothing up the tree: name the domain asked about, not its last parent.
                let at = if matches!(published, Published::Missing) { domain } else { name };
                return out.push(missing_or_broken(
                    "DMARC",
                    &format!("_dmarc.{at}"),
                    published,
                    &fix,
                ));
            }
        }
    }
}

async fn mta_sts(
    verifier: &Verifier,
    domain: &str,
    exchangers: &[Exchanger],
    tls: &TlsSetup,
    settings: &Settings,
    out: &mut Vec<Finding>,
) {
    let name = format!("_mta-sts.{domain}");
    let text = match verifier.mta_sts_record(domain).await {
        Published::Found { text, .. } => text,
        Published::Missing => {
            return out.push(Finding::Warn(format!(
                "MTA-STS: {name} has no record (optional): senders cannot insist on verified TLS \
                 to your MX; see RFC 8461 to publish a policy"
            )));
        }
        other => return out.push(missing_or_broken("MTA-STS", &name, other, "")),
    };
    out.push(Finding::Ok(format!("MTA-STS: {name}: \"{text}\"")));
    let host = format!("mta-sts.{domain}");
    let Some(ip) = addresses(verifier, &host).await.into_iter().next() else {
        return out.push(Finding::Fail(format!(
            "MTA-STS: {host} has no address, so the policy cannot be fetched: senders ignore it"
        )));
    };
    let addr = SocketAddr::new(ip, settings.https_port);
    let policy = match mta_sts::fetch(domain, addr, tls, PROBE_TIMEOUT).await {
        Ok(policy) => policy,
        Err(e) => {
            return out.push(Finding::Fail(format!(
                "MTA-STS: https://{host}{}: {e}; senders treat the domain as without policy",
                mta_sts::POLICY_PATH
            )));
        }
    };
    out.push(Finding::Ok(format!(
        "MTA-STS: policy mode {}, max_age {} s, mx {}",
        policy.mode.as_str(),
        policy.max_age.as_secs(),
        policy.mx.join(", ")
    )));
    if policy.mode == mta_sts::Mode::None {
        return;
    }
    for mx in exchangers.iter().filter(|mx| !policy.matches(&mx.name)) {
        out.push(Finding::Fail(format!(
            "MTA-STS: MX {} {} matches no mx line of the policy: senders that enforce it will not \
             deliver there; add \"mx: {}\"",
            mx.preference, mx.name, mx.name
        )));
    }
}

async fn tls_rpt(verifier: &Verifier, domain: &str, out: &mut Vec<Finding>) {
    let name = format!("_smtp._tls.{domain}");
    match verifier.tls_rpt_record(domain).await {
        Published::Found { record, .. } => {
            let targets: Vec<&str> = record
                .rua
                .iter()
                .map(|uri| match uri {
                    ReportUri::Mail(address) => address.as_str(),
                    ReportUri::Http(url) => url.as_str(),
                })
                .collect();
            out.push(Finding::Ok(format!("TLS-RPT: reports go to {}", targets.join(", "))));
        }
        Published::Missing => out.push(Finding::Warn(format!(
            "TLS-RPT: {name} has no record (optional): you will not hear of TLS failures; publish \
             \"{name}. TXT \\\"v=TLSRPTv1; rua=mailto:tls-reports@{domain}\\\"\""
        ))),
        other => out.push(missing_or_broken("TLS-RPT", &name, other, "")),
    }
}

fn list(addrs: &[IpAddr]) -> String {
    addrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_all_verdicts() {
        let verdict = |text| match judge_spf_all("d.test", text) {
            Finding::Ok(_) => "ok",
            Finding::Warn(_) => "warn",
            Finding::Fail(_) => "fail",
        };
        assert_eq!(verdict("v=spf1 mx -all"), "ok");
        assert_eq!(verdict("v=spf1 mx ~all"), "ok");
        assert_eq!(verdict("v=spf1 +all"), "fail");
        assert_eq!(verdict("v=spf1 mx all"), "fail");
        assert_eq!(verdict("v=spf1 mx ?all"), "warn");
        assert_eq!(verdict("v=spf1 mx"), "warn");
        assert_eq!(verdict("v=spf1 redirect=_spf.d.test"), "ok");
    }
}
