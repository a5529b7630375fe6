//! Allow and block lists: client IP networks checked at connect, sender domains at `MAIL FROM`.
//!
//! An allow entry always wins over a block entry, so an operator can block a whole network or
//! domain and carve out exceptions. Being allowed here only skips *this* module's block list; it
//! does not bypass relay rules, limits or authentication (and sender domains are trivially
//! forged, so allowing one is a convenience, not a trust decision).
//!
//! Sender domain entries: `example.org` matches exactly that domain; `.example.org` matches
//! `example.org` **and** every subdomain (`mail.example.org`, `a.b.example.org`), but never
//! `badexample.org`. Matching ignores case and one trailing dot.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::{self, AddressError, Domain};
use crate::denial::Denial;

/// One sender-domain list entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainPattern {
    domain: String,
    include_subdomains: bool,
}

impl DomainPattern {
    /// Parses `example.org` (exact) or `.example.org` (the domain and its subdomains).
    pub fn parse(text: &str) -> Result<DomainPattern, AddressError> {
        let (text, include_subdomains) = match text.strip_prefix('.') {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let domain = match Domain::parse(text)? {
            Domain::Name(name) => name,
            literal @ Domain::Literal(_) if !include_subdomains => literal.to_string(),
            Domain::Literal(_) => return Err(AddressError::InvalidDomain),
        };
        Ok(DomainPattern { domain, include_subdomains })
    }

    /// True when `domain` (already normalized, as [`Domain`]'s `Display` gives it) matches.
    pub fn matches(&self, domain: &str) -> bool {
        if domain == self.domain {
            return true;
        }
        self.include_subdomains
            && domain.len() > self.domain.len()
            && domain.ends_with(self.domain.as_str())
            && domain.as_bytes()[domain.len() - self.domain.len() - 1] == b'.'
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.include_subdomains {
            f.write_str(".")?;
        }
        f.write_str(&self.domain)
    }
}

/// The allow and block lists. Lookups are linear scans: fine for the hundreds of entries an
/// operator writes by hand; a large feed belongs in a DNSBL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLists {
    /// Client networks never refused by [`AccessLists::check_connect`].
    pub allow_ips: Vec<IpNet>,
    /// Client networks refused at connect.
    pub block_ips: Vec<IpNet>,
    /// Sender domains refused at `MAIL FROM`.
    pub block_sender_domains: Vec<DomainPattern>,
    /// Sender domains never refused by [`AccessLists::check_sender`].
    pub allow_sender_domains: Vec<DomainPattern>,
}

impl AccessLists {
    /// At connect: refuses a blocked client with `554 5.7.1 Access denied`, which the session
    /// sends instead of its banner (RFC 5321 section 3.1) before closing.
    pub fn check_connect(&self, ip: IpAddr) -> Result<(), Denial> {
        let ip = ip.to_canonical();
        let listed = |networks: &[IpNet]| networks.iter().any(|network| network.contains(&ip));
        if !listed(&self.allow_ips) && listed(&self.block_ips) {
            return Err(Denial::ACCESS_DENIED);
        }
        Ok(())
    }

    /// At `MAIL FROM`: refuses a sender whose domain is blocked with
    /// `554 5.7.1 Sender address rejected: access denied`. The null sender and addresses
    /// without a usable domain pass: they have no domain to judge, and syntax is checked
    /// elsewhere.
    pub fn check_sender(&self, mail_from: &str) -> Result<(), Denial> {
        let Ok(sender) = address::parse(mail_from) else {
            return Ok(());
        };
        let domain = sender.domain.to_string();
        let listed = |patterns: &[DomainPattern]| patterns.iter().any(|p| p.matches(&domain));
        if !listed(&self.allow_sender_domains) && listed(&self.block_sender_domains) {
            return Err(Denial::SENDER_ACCESS_DENIED);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exactly_or_with_subdomains() {
        let cases: &[(&str, &str, bool)] = &[
            ("example.org", "example.org", true),
            ("example.org", "mail.example.org", false),
            ("Example.ORG.", "example.org", true),
            (".example.org", "example.org", true),
            (".example.org", "mail.example.org", true),
            (".example.org", "a.b.example.org", true),
            (".example.org", "badexample.org", false),
            (".example.org", "example.org.evil", false),
            ("bücher.example", "bücher.example", true),
            ("[192.0.2.1]", "[192.0.2.1]", true),
        ];
        for (pattern, domain, expected) in cases {
            let parsed = DomainPattern::parse(pattern).unwrap();
            assert_eq!(parsed.matches(domain), *expected, "{pattern} vs {domain}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", ".", "..example.org", "exa mple.org", ".[192.0.2.1]", "a@b"] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns_display_as_written() {
        assert_eq!(DomainPattern::parse(".Example.org").unwrap().to_string(), ".example.org");
    }
}
