//! [`Denial`]: the SMTP reply a policy check wants the session to send instead of going on.
//!
//! Every denial this crate can produce is a named constant here, so the wording and codes live in
//! one place and tests can compare against them. This module knows nothing about how replies are
//! written on the wire; the session converts a `Denial` into its own reply type.

use std::borrow::Cow;
use std::fmt;

/// A refusal: reply code, RFC 3463 enhanced status code and human-readable text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Denial {
    /// The three-digit SMTP reply code (RFC 5321 section 4.2.3), e.g. `550`.
    pub code: u16,
    /// The enhanced status code (class, subject, detail), e.g. `(5, 7, 1)`.
    pub status: (u8, u8, u8),
    /// Text after the codes. Never contains CR or LF.
    pub text: Cow<'static, str>,
}

impl Denial {
    /// A recipient outside our domains, asked for by a client that may not relay.
    pub const RELAYING_DENIED: Denial = Denial::fixed(550, (5, 7, 1), "Relaying denied");
    /// A relay to an address literal that is not one of our own addresses.
    pub const ADDRESS_LITERAL_RELAY_DENIED: Denial =
        Denial::fixed(550, (5, 7, 1), "Relaying to address literals is not allowed");
    /// An address that is not `local-part@domain` (empty parts, control characters, bad domain).
    pub const BAD_ADDRESS_SYNTAX: Denial =
        Denial::fixed(501, (5, 1, 3), "Bad recipient address syntax");
    /// An address longer than [`crate::address::MAX_ADDRESS_BYTES`] or a domain longer than
    /// [`crate::address::MAX_DOMAIN_BYTES`].
    pub const ADDRESS_TOO_LONG: Denial = Denial::fixed(501, (5, 1, 3), "Address too long");
    /// A UUCP bang path such as `host!user`.
    pub const BANG_PATH: Denial = Denial::fixed(553, (5, 1, 3), "Bang paths are not supported");
    /// An RFC 821 source route such as `@relay:user@example.org` (`smtp-proto` normally strips
    /// these; this catches callers that do not).
    pub const SOURCE_ROUTE: Denial =
        Denial::fixed(553, (5, 1, 3), "Source routes are not supported");
    /// `<` or `>` inside the address, as in `<<user@example.org>>`.
    pub const ANGLE_BRACKETS: Denial =
        Denial::fixed(553, (5, 1, 3), "Angle brackets are not allowed inside an address");
    /// RFC 5322 comments such as `user(comment)@example.org`, which RFC 5321 does not allow.
    pub const COMMENTS: Denial =
        Denial::fixed(553, (5, 1, 3), "Comments are not allowed in addresses");
    /// An authenticated user's `MAIL FROM` is not one of their addresses.
    pub const SENDER_NOT_OWNED: Denial =
        Denial::fixed(553, (5, 7, 1), "Sender address not owned by user");

    /// Too many concurrent connections from one client.
    pub const TOO_MANY_CONNECTIONS: Denial =
        Denial::fixed(421, (4, 7, 0), "Too many connections from your address");
    /// Too many new connections from one client in the rate window.
    pub const CONNECTION_RATE_EXCEEDED: Denial =
        Denial::fixed(421, (4, 7, 0), "Connection rate limit exceeded, try again later");
    /// The session has sent as many messages as one connection may carry.
    pub const TOO_MANY_MESSAGES: Denial =
        Denial::fixed(421, (4, 7, 0), "Too many messages in this session, please reconnect");
    /// The transaction has as many recipients as one message may have (RFC 5321 section
    /// 4.5.3.1.10: the client sends the rest in another transaction).
    pub const TOO_MANY_RECIPIENTS: Denial = Denial::fixed(452, (4, 5, 3), "Too many recipients");
    /// The client is locked out after too many failed AUTH attempts.
    pub const AUTH_LOCKED_OUT: Denial =
        Denial::fixed(421, (4, 7, 0), "Too many failed authentication attempts, try again later");

    /// The client address is on the block list (sent as the connection banner).
    pub const ACCESS_DENIED: Denial = Denial::fixed(554, (5, 7, 1), "Access denied");
    /// The sender's domain is on the block list.
    pub const SENDER_ACCESS_DENIED: Denial =
        Denial::fixed(554, (5, 7, 1), "Sender address rejected: access denied");

    /// A denial with fixed text.
    pub const fn fixed(code: u16, status: (u8, u8, u8), text: &'static str) -> Denial {
        Denial { code, status, text: Cow::Borrowed(text) }
    }

    /// True for 4xx denials: the client should try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// True when the session must close the connection after sending this reply (`421`,
    /// RFC 5321 section 3.8).
    pub fn closes_connection(&self) -> bool {
        self.code == 421
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (class, subject, detail) = self.status;
        write!(f, "{} {class}.{subject}.{detail} {}", self.code, self.text)
    }
}

impl std::error::Error for Denial {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_a_reply_line() {
        assert_eq!(Denial::RELAYING_DENIED.to_string(), "550 5.7.1 Relaying denied");
        assert_eq!(
            Denial::TOO_MANY_CONNECTIONS.to_string(),
            "421 4.7.0 Too many connections from your address"
        );
    }

    #[test]
    fn classifies_codes() {
        assert!(Denial::TOO_MANY_RECIPIENTS.is_transient());
        assert!(!Denial::TOO_MANY_RECIPIENTS.closes_connection());
        assert!(Denial::AUTH_LOCKED_OUT.closes_connection());
        assert!(!Denial::ACCESS_DENIED.is_transient());
    }

    #[test]
    fn every_code_agrees_with_its_status_class() {
        let all = [
            Denial::RELAYING_DENIED,
            Denial::ADDRESS_LITERAL_RELAY_DENIED,
            Denial::BAD_ADDRESS_SYNTAX,
            Denial::ADDRESS_TOO_LONG,
            Denial::BANG_PATH,
            Denial::SOURCE_ROUTE,
            Denial::ANGLE_BRACKETS,
            Denial::COMMENTS,
            Denial::SENDER_NOT_OWNED,
            Denial::TOO_MANY_CONNECTIONS,
            Denial::CONNECTION_RATE_EXCEEDED,
            Denial::TOO_MANY_MESSAGES,
            Denial::TOO_MANY_RECIPIENTS,
            Denial::AUTH_LOCKED_OUT,
            Denial::ACCESS_DENIED,
            Denial::SENDER_ACCESS_DENIED,
        ];
        for denial in all {
            assert_eq!(u16::from(denial.status.0), denial.code / 100, "{denial}");
            assert!(!denial.text.contains(['\r', '\n']), "{denial}");
        }
    }
}
