//! Limits and settings of the inbound SMTP server, with their defaults in one place.

use std::net::SocketAddr;

use serde::Deserialize;

/// Default listen address of the catcher.
pub const DEFAULT_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::V4(std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 1025));
/// Default largest message, in bytes (25 MiB, what large providers accept).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 25 * 1024 * 1024;
/// Default most recipients per message (as Postfix's `smtpd_recipient_limit`).
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
/// Default recipients past `max_recipients` a transaction may send before each further one
/// counts as an error (as Postfix's `smtpd_recipient_overshoot_limit`).
pub const DEFAULT_MAX_RECIPIENTS_OVERSHOOT: u32 = 1000;
/// Default longest command line, in bytes including CRLF (RFC 5321 needs 512; extensions more).
pub const DEFAULT_MAX_LINE_BYTES: usize = 4096;
/// Default error replies after which the session is closed with 421.
pub const DEFAULT_MAX_BAD_COMMANDS: u32 = 20;
/// Default NOOP/RSET/VRFY/HELP commands before each further one counts as an error (as
/// Postfix's `smtpd_junk_command_limit`).
pub const DEFAULT_MAX_JUNK_COMMANDS: u32 = 100;
/// Default time a client may stay silent, in seconds (RFC 5321 section 4.5.3.2.7: 5 minutes).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
/// Default longest session, in seconds.
pub const DEFAULT_SESSION_TIMEOUT_SECS: u64 = 3600;
/// Default most concurrent sessions across all listeners.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// What a listener is for (RFC 6409 / RFC 8314 roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The catcher: accepts every message for capture.
    Capture,
    /// Port 25: mail for our domains from anyone; no AUTH.
    Mx,
    /// Port 587: STARTTLS before AUTH, AUTH before MAIL.
    Submission,
    /// Port 465: implicit TLS, AUTH before MAIL.
    Submissions,
}

impl Role {
    /// TLS starts before the greeting.
    pub fn implicit_tls(self) -> bool {
        self == Role::Submissions
    }

    /// The role as the configuration spells it (`capture`, `mx`, …), for logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Capture => "capture",
            Role::Mx => "mx",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }

    /// Clients must authenticate before MAIL.
    pub fn requires_auth(self) -> bool {
        matches!(self, Role::Submission | Role::Submissions)
    }
}

/// One `[[listener]]`: an address and its role.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to accept SMTP on.
    pub address: SocketAddr,
    /// What the listener is for.
    pub role: Role,
    /// Offer AUTH without TLS; only for loopback test listeners.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
}

/// The `[smtp]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Addresses to accept SMTP on.
    pub listen: Vec<SocketAddr>,
    /// Largest message accepted, in bytes; advertised as `SIZE`.
    pub max_message_bytes: usize,
    /// Most recipients per message; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Recipients past `max_recipients` whose `452 4.5.3` replies do not count against
    /// `max_bad_commands`, so a client that pipelines too many keeps its transaction
    /// (RFC 5321 section 4.5.3.1.10).
    pub max_recipients_overshoot: u32,
    /// Longest command line, in bytes including CRLF; longer ones get `500 5.5.2`.
    pub max_line_bytes: usize,
    /// Error replies a session may earn before it is closed with `421`.
    pub max_bad_commands: u32,
    /// NOOP, RSET, VRFY and HELP commands a session may send before each further one counts
    /// as an error (so a client cannot idle forever on junk).
    pub max_junk_commands: u32,
    /// Seconds a client may stay silent before `421 4.4.2`.
    pub idle_timeout_secs: u64,
    /// Seconds a whole session may last before `421 4.4.2`.
    pub session_timeout_secs: u64,
    /// Most concurrent sessions; more are greeted with `421 4.3.2` and closed.
    pub max_connections: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: vec![DEFAULT_LISTEN],
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_recipients_overshoot: DEFAULT_MAX_RECIPIENTS_OVERSHOOT,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_bad_commands: DEFAULT_MAX_BAD_COMMANDS,
            max_junk_commands: DEFAULT_MAX_JUNK_COMMANDS,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            session_timeout_secs: DEFAULT_SESSION_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}
