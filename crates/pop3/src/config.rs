//! The `[pop3]` section: listeners (both off by default), limits and the catcher's login,
//! with their defaults in one place.

use std::net::SocketAddr;

use serde::Deserialize;

/// Default time a client may stay silent, in seconds (RFC 1939 section 3: an autologout
/// timer must be at least 10 minutes).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 600;
/// The shortest idle timeout RFC 1939 allows, in seconds.
pub const MIN_IDLE_TIMEOUT_SECS: u64 = 600;
/// Default longest command line, in bytes including CRLF (RFC 2449 allows 255; an AUTH
/// initial response may be longer, RFC 5034 section 4).
pub const DEFAULT_MAX_LINE_BYTES: usize = 2048;
/// The shortest line limit allowed, in bytes (RFC 2449 section 4).
pub const MIN_LINE_BYTES: usize = 255;
/// Default most messages a maildrop shows: the newest ones.
pub const DEFAULT_MAX_MESSAGES: usize = 10_000;
/// Default `-ERR` answers after which the session is closed.
pub const DEFAULT_MAX_BAD_COMMANDS: u32 = 20;
/// Default most concurrent POP3 sessions.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// The `[pop3]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Addresses to serve POP3 on in plaintext with STLS (conventionally port 110).
    pub listen: Vec<SocketAddr>,
    /// Addresses to serve POP3 on with TLS from the first byte (conventionally port 995).
    pub listen_tls: Vec<SocketAddr>,
    /// Accept USER/PASS and AUTH before STLS; only for loopback test listeners (every
    /// `listen` address must be a loopback address).
    pub allow_plaintext_auth: bool,
    /// The catcher's login: it sees every captured message. Unused by the mail server,
    /// whose accounts log in.
    pub catcher_login: Option<String>,
    /// The catcher login's password.
    pub catcher_password: Option<String>,
    /// Seconds a client may stay silent before it is logged out (nothing is deleted); at
    /// least 600 (RFC 1939).
    pub idle_timeout_secs: u64,
    /// Longest command line, in bytes including CRLF; at least 255.
    pub max_line_bytes: usize,
    /// Most messages a maildrop shows, the newest ones.
    pub max_messages: usize,
    /// `-ERR` answers a session may earn before it is closed.
    pub max_bad_commands: u32,
    /// Most concurrent POP3 sessions; more are answered `-ERR [SYS/TEMP]` and closed.
    pub max_connections: usize,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: Vec::new(),
            listen_tls: Vec::new(),
            allow_plaintext_auth: false,
            catcher_login: None,
            catcher_password: None,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_messages: DEFAULT_MAX_MESSAGES,
            max_bad_commands: DEFAULT_MAX_BAD_COMMANDS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl Pop3Config {
    /// Whether any POP3 listener is configured.
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty() || !self.listen_tls.is_empty()
    }

    /// Checks values the types alone cannot: the key at fault and what is wrong. `catcher`
    /// says whether Tern runs as the catcher (which needs its login configured).
    pub fn validate(&self, catcher: bool) -> Result<(), (&'static str, String)> {
        let checks: [(bool, &'static str, &str); 6] = [
            (
                self.idle_timeout_secs < MIN_IDLE_TIMEOUT_SECS,
                "pop3.idle_timeout_secs",
                "must be at least 600 (RFC 1939's autologout timer)",
            ),
            (self.max_line_bytes < MIN_LINE_BYTES, "pop3.max_line_bytes", "must be at least 255"),
            (self.max_messages == 0, "pop3.max_messages", "must be greater than 0"),
            (self.max_bad_commands == 0, "pop3.max_bad_commands", "must be greater than 0"),
            (self.max_connections == 0, "pop3.max_connections", "must be greater than 0"),
            (
                self.allow_plaintext_auth && self.listen.iter().any(|a| !a.ip().is_loopback()),
                "pop3.allow_plaintext_auth",
                "is only allowed when every pop3.listen address is a loopback address",
            ),
        ];
        if let Some((_, key, message)) = checks.iter().find(|(bad, _, _)| *bad) {
            return Err((key, (*message).to_string()));
        }
        if catcher && self.enabled() {
            let login = self.catcher_login.as_deref().unwrap_or_default();
            if login.is_empty() || login.contains(char::is_whitespace) {
                return Err((
                    "pop3.catcher_login",
                    "the catcher's POP3 needs a login without spaces".into(),
                ));
            }
            if self.catcher_password.as_deref().unwrap_or_default().is_empty() {
                return Err((
                    "pop3.catcher_password",
                    "the catcher's POP3 needs a password".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_keys() {
        let loopback = "127.0.0.1:110".parse().expect("addr");
        let public = "0.0.0.0:110".parse().expect("addr");
        let base = Pop3Config { listen: vec![loopback], ..Pop3Config::default() };
        let catcher = Pop3Config {
            catcher_login: Some("dev".into()),
            catcher_password: Some("pw".into()),
            ..base.clone()
        };
        let cases: Vec<(Pop3Config, bool, Option<&str>)> = vec![
            (Pop3Config::default(), true, None),
            (base.clone(), false, None),
            (base.clone(), true, Some("pop3.catcher_login")),
            (catcher.clone(), true, None),
            (
                Pop3Config { catcher_password: None, ..catcher.clone() },
                true,
                Some("pop3.catcher_password"),
            ),
            (
                Pop3Config { idle_timeout_secs: 599, ..base.clone() },
                false,
                Some("pop3.idle_timeout_secs"),
            ),
            (
                Pop3Config { max_line_bytes: 254, ..base.clone() },
                false,
                Some("pop3.max_line_bytes"),
            ),
            (Pop3Config { allow_plaintext_auth: true, ..base.clone() }, false, None),
            (
                Pop3Config { allow_plaintext_auth: true, listen: vec![public], ..base },
                false,
                Some("pop3.allow_plaintext_auth"),
            ),
        ];
        for (i, (config, is_catcher, want)) in cases.into_iter().enumerate() {
            assert_eq!(config.validate(is_catcher).err().map(|(key, _)| key), want, "case {i}");
        }
    }
}
