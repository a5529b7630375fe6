//! Address validation, as sending APIs offer it (`GET /api/v1/validate`, `tern validate`):
//! is this address worth sending to? Each check gives a result and a reason:
//!
//! - **syntax** (RFC 5321 mailbox, RFC 5322 dot-atom or quoted local part, RFC 6531 UTF-8
//!   local parts — which need SMTPUTF8 —, IDNA domains turned into their ASCII form, address
//!   literals, the length limits);
//! - **domain**: the mail hosts DNS names (MX, implicit MX from the domain's own address,
//!   null MX and NXDOMAIN refused), through the same resolver as outbound delivery;
//! - **disposable**: the domain or a parent is a throwaway-mail provider (the list of the
//!   `mailchecker` crate, FGRibreau/mailchecker, MIT);
//! - **role**: the local part names a function, not a person (`postmaster`, `noreply`, …);
//! - **callout** (off unless configured): connect to the best MX, `MAIL FROM:<>`, `RCPT TO`,
//!   `QUIT` — never for our own domains, at most one per domain per interval, answers cached.
//!
//! The verdict: `invalid` when syntax, domain or callout fails for good, `risky` when a
//! check warns or cannot tell, `valid` otherwise.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::outbound::{
    ClientSettings, MxError, MxHost, MxResolver, Target, Timeouts, TlsPolicy, TlsSetup,
};

/// Local parts that name a function rather than a person (compared before any `+tag`).
const ROLE_ACCOUNTS: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "billing",
    "contact",
    "do-not-reply",
    "donotreply",
    "help",
    "hostmaster",
    "info",
    "mailer-daemon",
    "marketing",
    "no-reply",
    "nobody",
    "noc",
    "noreply",
    "office",
    "postmaster",
    "root",
    "sales",
    "security",
    "support",
    "team",
    "webmaster",
];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Fine.
    Pass,
    /// Worth a second look (the verdict becomes `risky`).
    Warn,
    /// The address cannot work.
    Fail,
    /// The check could not decide (a DNS or network failure, a 4xx).
    Unknown,
    /// Not run (an earlier check failed, or it is off).
    Skipped,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Check {
    /// `syntax`, `domain`, `disposable`, `role` or `callout`.
    pub check: &'static str,
    /// How it came out.
    pub result: Outcome,
    /// Why, in words.
    pub detail: String,
}

/// The overall answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed.
    Valid,
    /// Deliverable perhaps, but a check warned or could not tell.
    Risky,
    /// It cannot work.
    Invalid,
}

/// What validation found (the API's JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    /// The address as given.
    pub address: String,
    /// The address with its domain lowercased in ASCII (IDNA), when the syntax allows one.
    pub normalized: Option<String>,
    /// The overall answer.
    pub verdict: Verdict,
    /// Whether sending to it needs SMTPUTF8 (a UTF-8 local part).
    #[serde(rename = "SMTPUTF8")]
    pub smtputf8: bool,
    /// The mail hosts, best first (empty when the domain has none).
    pub mail_hosts: Vec<String>,
    /// Every check, in order.
    pub checks: Vec<Check>,
}

/// The `[validate]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidateConfig {
    /// Ask the recipient's mail server (MAIL FROM:<>, RCPT TO, QUIT).
    pub callout: bool,
    /// At most one callout per domain in this many seconds; others are skipped.
    pub callout_interval_secs: u64,
    /// How long a callout's answer is reused for the same address.
    pub callout_cache_secs: u64,
    /// Time limit for connecting and for each reply of a callout.
    pub callout_timeout_secs: u64,
    /// Call out to mail hosts at loopback, private, link-local and other internal addresses
    /// too (else the callout answers "unknown" for them): only to test against local servers.
    pub callout_private_addresses: bool,
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            callout: false,
            callout_interval_secs: 10,
            callout_cache_secs: 3600,
            callout_timeout_secs: 10,
            callout_private_addresses: false,
        }
    }
}

/// A mailbox split and checked for syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The local part as written (quotes included).
    pub local: String,
    /// The domain in ASCII, lowercased (punycode for IDNs), or an address literal.
    pub domain: String,
    /// The local part has UTF-8: SMTPUTF8 is needed.
    pub smtputf8: bool,
    /// The domain is an address literal (`[192.0.2.1]`).
    pub literal: Option<IpAddr>,
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// Checks `address` as a mailbox (RFC 5321 section 4.1.2, RFC 6531 for UTF-8).
pub fn parse_mailbox(address: &str) -> Result<Mailbox, String> {
    if address.is_empty() {
        return Err("empty address".into());
    }
    if address.chars().any(|c| c.is_control()) {
        return Err("control characters in the address".into());
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err("no @ between a local part and a domain".into());
    };
    if local.is_empty() {
        return Err("empty local part".into());
    }
    if local.len() > 64 {
        return Err(format!("local part of {} octets (at most 64)", local.len()));
    }
    if let Some(quoted) = local.strip_prefix('"') {
        let inner = quoted.strip_suffix('"').ok_or("unbalanced quote in the local part")?;
        let mut escaped = false;
        for c in inner.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return Err("unescaped quote inside the quoted local part".into()),
                _ => {}
            }
        }
        if escaped {
            return Err("quoted local part ends in a backslash".into());
        }
    } else {
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err("dots at the start, the end or doubled in the local part".into());
        }
        if let Some(c) = local.chars().find(|&c| c != '.' && !is_atext(c)) {
            return Err(format!("{c:?} in the local part needs quotes"));
        }
    }
    let smtputf8 = !local.is_ascii();
    let (domain, literal) = parse_domain(domain)?;
    if local.len() + 1 + domain.len() > 254 {
        return Err("address longer than 254 octets".into());
    }
    Ok(Mailbox { local: local.to_string(), domain, smtputf8, literal })
}

/// The domain in ASCII (or the literal and its address).
fn parse_domain(domain: &str) -> Result<(String, Option<IpAddr>), String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return Err("empty domain".into());
    }
    if let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let ip = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
                inner[5..].parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
            }
            _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        };
        let ip = ip.ok_or_else(|| format!("{domain} is not an address literal"))?;
        return Ok((domain.to_ascii_lowercase(), Some(ip)));
    }
    let ascii = idna::domain_to_ascii(domain)
        .map_err(|_| format!("{domain:?} is not a valid domain name (IDNA)"))?;
    if ascii.len() > 253 {
        return Err("domain longer than 253 octets".into());
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{ascii:?} has no dot: not a domain on the Internet"));
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} must be 1 to 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with a hyphen"));
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("label {label:?} has characters a host name cannot have"));
        }
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{ascii:?} ends in a number: an IP address needs brackets"));
    }
    Ok((ascii, None))
}

/// The domain or one of its parents is on the disposable-mail list.
pub fn disposable(domain: &str) -> Option<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let list = LIST.get_or_init(|| mailchecker::blacklist().into_iter().collect());
    let mut rest = domain;
    loop {
        if let Some(found) = list.get(rest) {
            return Some(found);
        }
        rest = rest.split_once('.')?.1;
    }
}

/// The role the local part names, if any.
pub fn role(local: &str) -> Option<&'static str> {
    let base = local.trim_matches('"').split('+').next().unwrap_or_default().to_ascii_lowercase();
    ROLE_ACCOUNTS.iter().copied().find(|role| *role == base)
}

/// A callout's answer, cached per address.
#[derive(Debug, Clone)]
struct Answer {
    result: Outcome,
    detail: String,
    at: Instant,
}

/// Validates addresses; shared by the API's requests.
pub struct Validator {
    resolver: MxResolver,
    tls: Arc<TlsSetup>,
    helo_name: String,
    mx_port: u16,
    local_domains: Vec<String>,
    config: ValidateConfig,
    answers: Mutex<HashMap<String, Answer>>,
    last_callout: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Cached answers kept at most (the oldest are dropped first).
const MAX_CACHED: usize = 10_000;

impl Validator {
    /// A validator asking DNS through `resolver` and calling out (when `config` says so) to
    /// port `mx_port` as `helo_name`; `local_domains` are never called out to.
    pub fn new(
        resolver: MxResolver,
        tls: Arc<TlsSetup>,
        helo_name: impl Into<String>,
        mx_port: u16,
        local_domains: Vec<String>,
        config: ValidateConfig,
    ) -> Self {
        Validator {
            resolver,
            tls,
            helo_name: helo_name.into(),
            mx_port,
            local_domains: local_domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            config,
            answers: Mutex::new(HashMap::new()),
            last_callout: Mutex::new(HashMap::new()),
        }
    }

    /// Whether callouts are on.
    pub fn callouts(&self) -> bool {
        self.config.callout
    }

    /// Runs every check on `address`; `callout` asks for the callout (when configured).
    pub async fn validate(&self, address: &str, callout: bool) -> Report {
        let mut checks = Vec::new();
        let mut report = Report {
            address: address.to_string(),
            normalized: None,
            verdict: Verdict::Invalid,
            smtputf8: false,
            mail_hosts: Vec::new(),
            checks: Vec::new(),
        };
        let mailbox = match parse_mailbox(address.trim()) {
            Ok(mailbox) => mailbox,
            Err(reason) => {
                checks.push(Check { check: "syntax", result: Outcome::Fail, detail: reason });
                for name in ["domain", "disposable", "role", "callout"] {
                    checks.push(skipped(name, "the syntax is wrong"));
                }
                report.checks = checks;
                return report;
            }
        };
        report.normalized = Some(format!("{}@{}", mailbox.local, mailbox.domain));
        report.smtputf8 = mailbox.smtputf8;
        let detail = if mailbox.smtputf8 {
            "a valid mailbox; its UTF-8 local part needs a server with SMTPUTF8".to_string()
        } else {
            "a valid mailbox".to_string()
        };
        checks.push(Check { check: "syntax", result: Outcome::Pass, detail });
        let hosts = self.domain_check(&mailbox, &mut checks).await;
        report.mail_hosts = hosts.iter().map(|h| h.name.clone()).collect();
        checks.push(match disposable(&mailbox.domain) {
            Some(listed) => Check {
                check: "disposable",
                result: Outcome::Warn,
                detail: format!("{listed} is a disposable-mail provider"),
            },
            None => Check {
                check: "disposable",
                result: Outcome::Pass,
                detail: "not a known disposable-mail provider".into(),
            },
        });
        checks.push(match role(&mailbox.local) {
            Some(role) => Check {
                check: "role",
                result: Outcome::Warn,
                detail: format!("{role} is a role account, not a person"),
            },
            None => {
                Check { check: "role", result: Outcome::Pass, detail: "a personal address".into() }
            }
        });
        checks.push(self.callout_check(&mailbox, &hosts, callout).await);
        report.verdict = verdict(&checks);
        report.checks = checks;
        report
    }

    async fn domain_check(&self, mailbox: &Mailbox, checks: &mut Vec<Check>) -> Vec<MxHost> {
        let (result, detail, hosts) = match self.resolver.resolve(&mailbox.domain).await {
            Ok(hosts) => {
                let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
                let detail = if mailbox.literal.is_some() {
                    "an address literal: mail goes to that address".to_string()
                } else if names == [mailbox.domain.as_str()] {
                    format!("no MX: mail goes to {} itself (implicit MX)", mailbox.domain)
                } else {
                    format!("mail hosts: {}", names.join(", "))
                };
                (Outcome::Pass, detail, hosts)
            }
            Err(
                e @ (MxError::NullMx { .. }
                | MxError::NoSuchDomain { .. }
                | MxError::NoMailHost { .. }
                | MxError::MxHostsNotFound { .. }),
            ) => (Outcome::Fail, e.to_string(), Vec::new()),
            Err(e @ MxError::NoAddresses { .. }) => (Outcome::Warn, e.to_string(), Vec::new()),
            Err(e @ MxError::Lookup { .. }) => (Outcome::Unknown, e.to_string(), Vec::new()),
        };
        checks.push(Check { check: "domain", result, detail });
        hosts
    }

    async fn callout_check(&self, mailbox: &Mailbox, hosts: &[MxHost], asked: bool) -> Check {
        if !self.config.callout {
            return skipped("callout", "off (validate.callout)");
        }
        if !asked {
            return skipped("callout", "not asked for");
        }
        if self.local_domains.contains(&mailbox.domain) {
            return skipped("callout", "our own domain: never called out to");
        }
        if mailbox.literal.is_some() {
            return skipped("callout", "an address literal: not called out to");
        }
        let Some(host) = hosts.first() else {
            return skipped("callout", "no mail host to ask");
        };
        let Some(ip) = host.addrs.first().copied() else {
            return skipped("callout", "the mail host has no address");
        };
        if !self.config.callout_private_addresses && tern_dns::is_internal(ip) {
            return Check {
                check: "callout",
                result: Outcome::Unknown,
                detail: format!(
                    "not asked: {} is at {ip}, an internal address \
                     (validate.callout_private_addresses)",
                    host.name
                ),
            };
        }
        // The local part is case-sensitive; the domain is not.
        let key = format!("{}@{}", mailbox.local, mailbox.domain);
        let now = Instant::now();
        let cache_for = Duration::from_secs(self.config.callout_cache_secs);
        if let Some(answer) = lock(&self.answers).get(&key).filter(|a| now - a.at < cache_for) {
            return Check {
                check: "callout",
                result: answer.result,
                detail: format!("{} (cached)", answer.detail),
            };
        }
        {
            let mut last = lock(&self.last_callout);
            let interval = Duration::from_secs(self.config.callout_interval_secs);
            // Spaced per mail server address, whatever domains point at it.
            if last.get(&ip).is_some_and(|at| now - *at < interval) {
                return Check {
                    check: "callout",
                    result: Outcome::Unknown,
                    detail: format!(
                        "not asked: one callout per mail server every {} s",
                        interval.as_secs()
                    ),
                };
            }
            if last.len() >= MAX_CACHED {
                last.retain(|_, at| now - *at < interval);
                if last.len() >= MAX_CACHED {
                    last.clear();
                }
            }
            last.insert(ip, now);
        }
        let (result, detail) = self.call_out(host, ip, mailbox).await;
        if !matches!(result, Outcome::Pass | Outcome::Fail) {
            // A 4xx (greylisting) or a failed connection says nothing lasting.
            return Check { check: "callout", result, detail };
        }
        let mut answers = lock(&self.answers);
        if answers.len() >= MAX_CACHED {
            answers.retain(|_, a| now - a.at < cache_for);
            if answers.len() >= MAX_CACHED {
                answers.clear();
            }
        }
        answers.insert(key, Answer { result, detail: detail.clone(), at: now });
        Check { check: "callout", result, detail }
    }

    /// Connects to `host`, says `MAIL FROM:<>` and `RCPT TO`, and quits.
    async fn call_out(&self, host: &MxHost, ip: IpAddr, mailbox: &Mailbox) -> (Outcome, String) {
        let limit = Duration::from_secs(self.config.callout_timeout_secs.max(1));
        let target = Target { name: host.name.clone(), addr: SocketAddr::new(ip, self.mx_port) };
        let settings = ClientSettings {
            helo_name: &self.helo_name,
            tls_policy: TlsPolicy::Opportunistic,
            tls: &self.tls,
            implicit_tls: false,
            credentials: None,
            timeouts: Timeouts { connect: limit, command: limit, data: limit },
        };
        let mut session = match crate::outbound::connect(&target, &settings).await {
            Ok(session) => session,
            Err(e) => return (Outcome::Unknown, format!("{target}: {e}")),
        };
        let rcpt = format!("{}@{}", mailbox.local, mailbox.domain);
        let answer = session.probe(&rcpt, mailbox.smtputf8).await;
        session.quit().await;
        match answer {
            Ok(None) => (
                Outcome::Unknown,
                format!("{target} does not offer SMTPUTF8, which this address needs"),
            ),
            Ok(Some(reply)) => {
                let text = format!("{target} answered RCPT with {}", reply.to_string().trim_end());
                match reply.class() {
                    2 => (Outcome::Pass, text),
                    5 => (Outcome::Fail, text),
                    _ => (Outcome::Unknown, text),
                }
            }
            Err(e) => (Outcome::Unknown, format!("{target}: {e}")),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn skipped(check: &'static str, why: &str) -> Check {
    Check { check, result: Outcome::Skipped, detail: why.to_string() }
}

fn verdict(checks: &[Check]) -> Verdict {
    if checks.iter().any(|c| c.result == Outcome::Fail) {
        Verdict::Invalid
    } else if checks.iter().any(|c| matches!(c.result, Outcome::Warn | Outcome::Unknown)) {
        Verdict::Risky
    } else {
        Verdict::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_parse_as_rfc_5321_and_6531_say() {
        let ok = |a: &str| parse_mailbox(a).unwrap_or_else(|e| panic!("{a}: {e}"));
        assert_eq!(ok("User.Name+tag@Example.COM").domain, "example.com");
        assert_eq!(ok("\"john smith\"@example.com").local, "\"john smith\"");
        assert_eq!(ok("x@bücher.example").domain, "xn--bcher-kva.example");
        let utf8 = ok("用户@例子.example");
        assert!(utf8.smtputf8);
        assert_eq!(utf8.domain, "xn--fsqu00a.example");
        assert_eq!(ok("a@[192.0.2.1]").literal, Some("192.0.2.1".parse().unwrap()));
        assert!(ok("a@[IPv6:2001:db8::1]").literal.is_some());
        assert!(ok("a@example.com.").domain == "example.com");
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a..b@example.com",
            ".a@example.com",
            "a b@example.com",
            "a@localhost",
            "a@exa mple.com",
            "a@-x.example.com",
            "a@example.123",
            "a@[300.1.1.1]",
            "\"unbalanced@example.com",
            "a@example.com\r\n",
        ] {
            assert!(parse_mailbox(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(parse_mailbox(&long).unwrap_err().contains("at most 64"));
    }

    #[test]
    fn disposable_and_role_addresses_are_spotted() {
        assert_eq!(disposable("mailinator.com"), Some("mailinator.com"));
        assert_eq!(disposable("inbox.mailinator.com"), Some("mailinator.com"));
        assert_eq!(disposable("example.com"), None);
        assert_eq!(role("NoReply+x"), Some("noreply"));
        assert_eq!(role("postmaster"), Some("postmaster"));
        assert_eq!(role("ann"), None);
    }
}
