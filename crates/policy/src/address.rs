//! Envelope addresses exactly as `smtp-proto` delivers them, split into local part and domain.
//!
//! `smtp-proto` strips source routes (`@a,@b:user@example.org` arrives as `user@example.org`)
//! and removes the quotes around a quoted local part (`"user@ext"@local` arrives as
//! `user@ext@local`). So the only safe split is at the **last** `@`: whatever precedes it is an
//! opaque local part, never a route. This module splits and normalizes; it decides nothing about
//! relaying (that is [`crate::relay`]) and does no lookups.
//!
//! Deliberately refused: `<`/`>` inside the address, RFC 5322 comments, UUCP bang paths without
//! an `@`, source routes that somehow arrive unstripped, control characters, and malformed
//! domains. A domain loses **one** trailing dot
//! (`example.org.` is `example.org`) and is lowercased, Unicode included; IDN domains are
//! compared in their UTF-8 form, without punycode.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::denial::Denial;

/// Longest address accepted, in bytes (RFC 5321 section 4.5.3.1.3 allows a 256-octet path;
/// `smtp-proto` applies the same bound to the address without its brackets).
pub const MAX_ADDRESS_BYTES: usize = 256;
/// Longest domain accepted, in bytes, after the trailing dot is removed (RFC 5321 section
/// 4.5.3.1.2).
pub const MAX_DOMAIN_BYTES: usize = 255;

/// Why a string is not an address this server will act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing at all.
    #[error("empty address")]
    Empty,
    /// Longer than [`MAX_ADDRESS_BYTES`].
    #[error("address longer than {MAX_ADDRESS_BYTES} bytes")]
    TooLong,
    /// A control character (C0, DEL or C1) anywhere in the address.
    #[error("control character in address")]
    ControlCharacter,
    /// `<` or `>` inside the address, as in `<<user@example.org>>`.
    #[error("angle bracket inside address")]
    AngleBracket,
    /// `(` or `)`: an RFC 5322 comment, which an SMTP path may not contain.
    #[error("comment in address")]
    Comment,
    /// `@host:user@domain`: an RFC 821 source route that reached us unstripped.
    #[error("source route in address")]
    SourceRoute,
    /// `host!user` with no `@`: a UUCP bang path.
    #[error("bang path instead of local-part@domain")]
    BangPath,
    /// No `@` at all.
    #[error("no @ in address")]
    MissingAt,
    /// Nothing before the last `@`.
    #[error("empty local part")]
    EmptyLocalPart,
    /// Nothing (or only one dot) after the last `@`.
    #[error("empty domain")]
    EmptyDomain,
    /// Domain longer than [`MAX_DOMAIN_BYTES`].
    #[error("domain longer than {MAX_DOMAIN_BYTES} bytes")]
    DomainTooLong,
    /// An empty label or a character not allowed in a host name.
    #[error("invalid domain")]
    InvalidDomain,
    /// Bracketed, but not `[IPv4]` or `[IPv6:address]`.
    #[error("invalid address literal")]
    InvalidLiteral,
}

impl AddressError {
    /// The reply a `RCPT TO` with this defect deserves.
    pub fn denial(self) -> Denial {
        match self {
            AddressError::TooLong | AddressError::DomainTooLong => Denial::ADDRESS_TOO_LONG,
            AddressError::AngleBracket => Denial::ANGLE_BRACKETS,
            AddressError::Comment => Denial::COMMENTS,
            AddressError::BangPath => Denial::BANG_PATH,
            AddressError::SourceRoute => Denial::SOURCE_ROUTE,
            AddressError::Empty
            | AddressError::ControlCharacter
            | AddressError::MissingAt
            | AddressError::EmptyLocalPart
            | AddressError::EmptyDomain
            | AddressError::InvalidDomain
            | AddressError::InvalidLiteral => Denial::BAD_ADDRESS_SYNTAX,
        }
    }
}

/// The part after the last `@`, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A host name: lowercased, without its trailing dot.
    Name(String),
    /// An address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`); IPv4-mapped IPv6 becomes IPv4.
    Literal(IpAddr),
}

impl Domain {
    /// Normalizes and checks a domain: strips one trailing dot, lowercases, and requires
    /// non-empty labels of letters, digits, `-` or non-ASCII characters, or a valid literal.
    pub fn parse(text: &str) -> Result<Domain, AddressError> {
        let text = text.strip_suffix('.').unwrap_or(text);
        if text.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        if text.len() > MAX_DOMAIN_BYTES {
            return Err(AddressError::DomainTooLong);
        }
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(AddressError::InvalidDomain)?;
            return parse_literal(inner).map(|ip| Domain::Literal(ip.to_canonical()));
        }
        if !text.split('.').all(is_valid_label) {
            return Err(AddressError::InvalidDomain);
        }
        Ok(Domain::Name(text.to_lowercase()))
    }
}

impl fmt::Display for Domain {
    /// The canonical text: the name itself, `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Domain::Name(name) => f.write_str(name),
            Domain::Literal(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            Domain::Literal(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

/// An address split at its last `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address<'a> {
    /// Everything before the last `@`, exactly as received (it may itself contain `@`, `%` or
    /// `!`; it is opaque and must never be interpreted as a route).
    pub local_part: &'a str,
    /// The normalized domain.
    pub domain: Domain,
}

/// Splits an address as delivered by `smtp-proto` (no angle brackets, quotes already removed).
pub fn parse(address: &str) -> Result<Address<'_>, AddressError> {
    if address.is_empty() {
        return Err(AddressError::Empty);
    }
    if address.len() > MAX_ADDRESS_BYTES {
        return Err(AddressError::TooLong);
    }
    if address.chars().any(char::is_control) {
        return Err(AddressError::ControlCharacter);
    }
    if address.contains(['<', '>']) {
        return Err(AddressError::AngleBracket);
    }
    if address.contains(['(', ')']) {
        return Err(AddressError::Comment);
    }
    if address.starts_with('@') && address.contains(':') {
        return Err(AddressError::SourceRoute);
    }
    let Some((local_part, domain)) = address.rsplit_once('@') else {
        return Err(if address.contains('!') {
            AddressError::BangPath
        } else {
            AddressError::MissingAt
        });
    };
    if local_part.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    Ok(Address { local_part, domain: Domain::parse(domain)? })
}

fn parse_literal(inner: &str) -> Result<IpAddr, AddressError> {
    let ip = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<Ipv6Addr>().map(IpAddr::V6)
        }
        _ => inner.parse::<Ipv4Addr>().map(IpAddr::V4),
    };
    ip.map_err(|_| AddressError::InvalidLiteral)
}

fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Domain {
        Domain::Name(s.to_owned())
    }

    #[test]
    fn splits_at_the_last_at() {
        let cases: &[(&str, &str, Domain)] = &[
            ("user@example.org", "user", name("example.org")),
            ("User@Example.ORG", "User", name("example.org")),
            ("user@ext.example@local", "user@ext.example", name("local")),
            ("user%ext.example@local", "user%ext.example", name("local")),
            ("ext.example!user@local", "ext.example!user", name("local")),
            ("user@example.org.", "user", name("example.org")),
            ("user@BÜCHER.example", "user", name("bücher.example")),
            ("a b@local", "a b", name("local")),
            ("user@[192.0.2.1]", "user", Domain::Literal("192.0.2.1".parse().unwrap())),
            ("user@[IPv6:2001:DB8::1]", "user", Domain::Literal("2001:db8::1".parse().unwrap())),
            ("user@[ipv6:::ffff:192.0.2.1]", "user", Domain::Literal("192.0.2.1".parse().unwrap())),
        ];
        for (input, local_part, domain) in cases {
            let parsed = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.local_part, *local_part, "{input}");
            assert_eq!(&parsed.domain, domain, "{input}");
        }
    }

    #[test]
    fn refuses_malformed_forms() {
        let long_local = format!("{}@example.org", "a".repeat(MAX_ADDRESS_BYTES));
        let cases: &[(&str, AddressError)] = &[
            ("", AddressError::Empty),
            (&long_local, AddressError::TooLong),
            ("user@exa\rmple.org", AddressError::ControlCharacter),
            ("user\u{0}@example.org", AddressError::ControlCharacter),
            ("user\u{85}@example.org", AddressError::ControlCharacter),
            ("<user@example.org>", AddressError::AngleBracket),
            ("<<user@example.org>>", AddressError::AngleBracket),
            ("user(comment)@example.org", AddressError::Comment),
            ("user@example.org(comment)", AddressError::Comment),
            ("ext.example!user", AddressError::BangPath),
            ("user", AddressError::MissingAt),
            ("@example.org", AddressError::EmptyLocalPart),
            ("@local:user@ext.example", AddressError::SourceRoute),
            ("@a,@b:user@ext.example", AddressError::SourceRoute),
            ("user@", AddressError::EmptyDomain),
            ("user@.", AddressError::EmptyDomain),
            ("user@example.org..", AddressError::InvalidDomain),
            ("user@.example.org", AddressError::InvalidDomain),
            ("user@exa mple.org", AddressError::InvalidDomain),
            ("user@exa_mple.org", AddressError::InvalidDomain),
            ("user@exa%mple.org", AddressError::InvalidDomain),
            ("user@host:25", AddressError::InvalidDomain),
            ("user@[192.0.2.1", AddressError::InvalidDomain),
            ("user@[192.0.2.256]", AddressError::InvalidLiteral),
            ("user@[2001:db8::1]", AddressError::InvalidLiteral),
            ("user@[IPv6:192.0.2.1]", AddressError::InvalidLiteral),
            ("user@[]", AddressError::InvalidLiteral),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Err(*expected), "{input}");
        }
    }

    #[test]
    fn domains_have_a_length_bound() {
        let longest = format!("{}.org", "b".repeat(MAX_DOMAIN_BYTES - 4));
        assert!(Domain::parse(&longest).is_ok());
        assert!(Domain::parse(&format!("{longest}.")).is_ok());
        assert_eq!(Domain::parse(&format!("b{longest}")), Err(AddressError::DomainTooLong));
    }

    #[test]
    fn literals_display_canonically() {
        assert_eq!(Domain::parse("[192.0.2.1]").unwrap().to_string(), "[192.0.2.1]");
        assert_eq!(
            Domain::parse("[IPv6:2001:0db8:0::1]").unwrap().to_string(),
            "[IPv6:2001:db8::1]"
        );
        assert_eq!(Domain::parse("Example.ORG.").unwrap().to_string(), "example.org");
    }
}
