//! Relay policy: for each `RCPT TO`, is the recipient ours, may this client relay, or neither?
//!
//! The rule is the one every open-relay test checks: a recipient is **local** when its domain
//! (after the last `@`) is one of ours; any other recipient is **relayed** only for a client that
//! authenticated or connects from a trusted network; everything else is denied. The local part
//! is opaque: `%`, `!` and `@` inside it never turn into a route, so odd local parts at our
//! domains come back as [`RcptVerdict::Local`] and fail the account lookup (`550 5.1.1`) in the
//! session instead of being forwarded anywhere.
//!
//! This module also checks that an authenticated user sends as one of their own addresses and
//! turns local parts into account lookup keys. It does not look accounts up, and it does not know
//! about listener roles: the session decides whether a role requires AUTH before this runs.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::{self, AddressError, Domain};
use crate::denial::Denial;

/// The character that separates an account's local part from a free-form tag (`alice+lists`
/// is delivered to `alice`), as Postfix's `recipient_delimiter = +`.
pub const SUBADDRESS_SEPARATOR: char = '+';

/// Who is asking: the client address and, once AUTH succeeded, the login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// The peer's IP address (IPv4-mapped IPv6 addresses are treated as IPv4).
    pub ip: IpAddr,
    /// The authenticated login, or `None` before (or without) a successful AUTH.
    pub login: Option<&'a str>,
}

/// What to do with one `RCPT TO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptVerdict {
    /// A recipient at one of our domains (or our own address literal): look the account up
    /// (see [`lookup_key`]) and answer `550 5.1.1` if there is none. Never route it elsewhere.
    Local {
        /// Everything before the last `@`, as received (may contain `@`, `%`, `!`).
        local_part: String,
        /// Our domain, normalized: lowercase, no trailing dot, literals as `[192.0.2.1]`.
        domain: String,
    },
    /// `RCPT TO:<Postmaster>` without a domain, which RFC 5321 section 4.5.1 requires every
    /// server to accept. `smtp-proto` delivers it as an empty address — and delivers `<>` the
    /// same way, so both land here.
    Postmaster,
    /// A remote recipient the client may relay to (authenticated or trusted network).
    Relay {
        /// Everything before the last `@`, as received. `smtp-proto` removed any quotes, so
        /// delivery must re-quote it when it is not a dot-atom.
        local_part: String,
        /// The remote domain, normalized.
        domain: String,
    },
    /// Refuse the recipient with this reply.
    Deny(Denial),
}

/// Which domains are ours and who may relay through us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayPolicy {
    local_domains: HashSet<String>,
    local_ips: HashSet<IpAddr>,
    trusted_networks: Vec<IpNet>,
    require_sender_ownership: bool,
}

impl RelayPolicy {
    /// A policy with no local domains and no trusted networks: only authenticated clients may
    /// send, and only by relaying.
    pub fn new(require_sender_ownership: bool) -> Self {
        RelayPolicy { require_sender_ownership, ..RelayPolicy::default() }
    }

    /// Adds a domain we receive mail for. Case and one trailing dot do not matter; a literal
    /// such as `[192.0.2.1]` is added as a local IP.
    pub fn add_local_domain(&mut self, domain: &str) -> Result<(), AddressError> {
        match Domain::parse(domain)? {
            Domain::Name(name) => {
                self.local_domains.insert(name);
            }
            Domain::Literal(ip) => self.add_local_ip(ip),
        }
        Ok(())
    }

    /// Adds one of our own IP addresses, so that `user@[that address]` is local.
    pub fn add_local_ip(&mut self, ip: IpAddr) {
        self.local_ips.insert(ip.to_canonical());
    }

    /// Adds a network whose clients may relay without authenticating.
    pub fn add_trusted_network(&mut self, network: IpNet) {
        self.trusted_networks.push(network.trunc());
    }

    /// Whether an authenticated user's `MAIL FROM` must be one of their addresses.
    pub fn require_sender_ownership(&self) -> bool {
        self.require_sender_ownership
    }

    /// True when `domain` (any case, with or without one trailing dot) is one of ours.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        Domain::parse(domain).is_ok_and(|domain| self.is_local(&domain))
    }

    /// True when `ip` is inside a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted_networks.iter().any(|network| network.contains(&ip))
    }

    /// True when this client may send to remote domains.
    pub fn may_relay(&self, client: &Client<'_>) -> bool {
        client.login.is_some() || self.is_trusted(client.ip)
    }

    /// Decides one recipient, given exactly as `smtp-proto` delivered it (no angle brackets).
    pub fn check_rcpt(&self, rcpt: &str, client: &Client<'_>) -> RcptVerdict {
        self.decide(rcpt, self.may_relay(client))
    }

    /// Where a recipient leads for a client that may relay: [`RelayPolicy::check_rcpt`]
    /// without the relay decision (routing asks this once the decision is taken).
    pub fn destination(&self, rcpt: &str) -> RcptVerdict {
        self.decide(rcpt, true)
    }

    fn decide(&self, rcpt: &str, may_relay: bool) -> RcptVerdict {
        if rcpt.is_empty() || rcpt.eq_ignore_ascii_case("postmaster") {
            return RcptVerdict::Postmaster;
        }
        let address = match address::parse(rcpt) {
            Ok(address) => address,
            Err(error) => return RcptVerdict::Deny(error.denial()),
        };
        let local_part = address.local_part.to_owned();
        if self.is_local(&address.domain) {
            return RcptVerdict::Local { local_part, domain: address.domain.to_string() };
        }
        if !may_relay {
            return RcptVerdict::Deny(Denial::RELAYING_DENIED);
        }
        match address.domain {
            Domain::Name(domain) => RcptVerdict::Relay { local_part, domain },
            Domain::Literal(_) => RcptVerdict::Deny(Denial::ADDRESS_LITERAL_RELAY_DENIED),
        }
    }

    /// Checks an authenticated user's `MAIL FROM` against the addresses they own.
    ///
    /// Passes when ownership is not required or nobody authenticated (mail arriving from the
    /// Internet is not ours to vouch for). Otherwise the sender must match an owned address,
    /// ignoring case, a trailing dot on the domain and a `+tag` the owned address does not have
    /// (owning `alice@example.org` covers `alice+news@example.org`). An owned entry `@domain`
    /// covers the whole domain. The null sender `<>` is refused: it is for bounces, which users
    /// do not send through submission.
    pub fn check_sender<S: AsRef<str>>(
        &self,
        mail_from: &str,
        login: Option<&str>,
        owned: &[S],
    ) -> Result<(), Denial> {
        if !self.require_sender_ownership || login.is_none() {
            return Ok(());
        }
        let Ok(sender) = address::parse(mail_from) else {
            return Err(Denial::SENDER_NOT_OWNED);
        };
        let local_part = sender.local_part.to_lowercase();
        let base = normalize_local_part(&local_part);
        let is_owned = owned.iter().any(|entry| {
            let entry = entry.as_ref();
            if let Some(domain) = entry.strip_prefix('@') {
                return Domain::parse(domain).is_ok_and(|domain| domain == sender.domain);
            }
            address::parse(entry).is_ok_and(|owned| {
                let owned_local = owned.local_part.to_lowercase();
                owned.domain == sender.domain && (owned_local == local_part || owned_local == base)
            })
        });
        if is_owned { Ok(()) } else { Err(Denial::SENDER_NOT_OWNED) }
    }

    fn is_local(&self, domain: &Domain) -> bool {
        match domain {
            Domain::Name(name) => self.local_domains.contains(name),
            Domain::Literal(ip) => self.local_ips.contains(ip),
        }
    }
}

/// The account part of a local part: lowercased, with any `+tag` removed (`Alice+News` →
/// `alice`). A local part that starts with the separator keeps it (`+x` stays `+x`), because
/// there is no account name before it.
pub fn normalize_local_part(local_part: &str) -> String {
    let lower = local_part.to_lowercase();
    match lower.split_once(SUBADDRESS_SEPARATOR) {
        Some((base, _tag)) if !base.is_empty() => base.to_owned(),
        _ => lower,
    }
}

/// The key to look a local recipient up by: `normalize_local_part(local_part)@domain`, with the
/// domain lowercased and one trailing dot removed (`Alice+x@Example.org.` → `alice@example.org`).
pub fn lookup_key(local_part: &str, domain: &str) -> String {
    let domain = domain.strip_suffix('.').unwrap_or(domain).to_lowercase();
    format!("{}@{domain}", normalize_local_part(local_part))
}
