//! MTA-STS policies (RFC 8461): the policy file's grammar ([`Policy::parse`]), which MX hosts
//! it allows ([`Policy::matches`]), and fetching it from `https://mta-sts.DOMAIN/.well-known/
//! mta-sts.txt` ([`fetch`]) over a certificate that must verify. Deciding when to look the
//! policy up and keeping it between deliveries is the caller's job.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::tls::{TlsSetup, Verification};

/// The largest policy file accepted (RFC 8461 §3.3 suggests 64 KiB).
pub const POLICY_MAX_BYTES: usize = 64 * 1024;

/// The longest `max_age` a policy may state (RFC 8461 §3.2: about one year).
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(31_557_600);

/// The path of the policy file on the `mta-sts.` host.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// What a policy asks of senders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only over TLS with a valid certificate to a matching MX.
    Enforce,
    /// Deliver as usual, report what would have failed.
    Testing,
    /// No policy (a domain withdrawing its previous one).
    None,
}

impl Mode {
    /// The policy file's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// What senders must do.
    pub mode: Mode,
    /// MX host patterns (`mx.example.com`, `*.example.net`), lower case.
    pub mx: Vec<String>,
    /// How long senders may keep the policy.
    pub max_age: Duration,
}

/// Why a policy could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file does not follow RFC 8461 §3.2.
    #[error("invalid policy: {0}")]
    Invalid(String),
    /// The HTTPS request failed (connection, certificate, timeout).
    #[error("fetching the policy: {0}")]
    Fetch(String),
    /// The server answered, but not `200` with `text/plain`.
    #[error("the policy host answered {0}")]
    Answer(String),
}

impl Policy {
    /// Parses a policy file: `key: value` lines (CRLF or LF); `version: STSv1`, `mode`,
    /// `max_age` and (unless the mode is `none`) at least one `mx` are required; unknown keys
    /// are ignored, as the RFC asks.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let invalid = |reason: String| PolicyError::Invalid(reason);
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            let (key, value) =
                line.split_once(':').ok_or_else(|| invalid(format!("line {line:?} has no ':'")))?;
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_string()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(invalid(format!("unknown mode {other:?}"))),
                    });
                }
                "max_age" => {
                    let secs = value
                        .parse::<u64>()
                        .ok()
                        .filter(|secs| *secs <= MAX_AGE_LIMIT.as_secs())
                        .ok_or_else(|| invalid(format!("max_age {value:?} is not 0..=31557600")))?;
                    max_age = Some(Duration::from_secs(secs));
                }
                "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err(invalid("no \"version: STSv1\" line".into()));
        }
        let mode = mode.ok_or_else(|| invalid("no mode line".into()))?;
        let max_age = max_age.ok_or_else(|| invalid("no max_age line".into()))?;
        if mx.is_empty() && mode != Mode::None {
            return Err(invalid("no mx line".into()));
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether the MX host `host` is one the policy allows: an exact name, or `*.` followed by
    /// the rest of the name after its first label (RFC 8461 §4.1).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(suffix) => host.split_once('.').is_some_and(|(_, rest)| rest == suffix),
            None => *pattern == host,
        })
    }
}

/// Fetches and parses the policy of `domain` from `addr` (an address of `mta-sts.DOMAIN`,
/// port 443 outside tests), whose certificate must verify for `mta-sts.DOMAIN` against
/// `tls`'s roots. Redirects are not followed (RFC 8461 §3.3); the whole exchange is bounded by
/// `limit`.
pub async fn fetch(
    domain: &str,
    addr: SocketAddr,
    tls: &TlsSetup,
    limit: Duration,
) -> Result<Policy, PolicyError> {
    let host = format!("mta-sts.{}", domain.trim_end_matches('.'));
    let body = timeout(limit, get(&host, addr, tls))
        .await
        .map_err(|_| PolicyError::Fetch(format!("no answer from {host} within {limit:?}")))??;
    Policy::parse(&body)
}

async fn get(host: &str, addr: SocketAddr, tls: &TlsSetup) -> Result<String, PolicyError> {
    let fetch = |e: &dyn std::fmt::Display| PolicyError::Fetch(format!("{host} ({addr}): {e}"));
    let tcp = TcpStream::connect(addr).await.map_err(|e| fetch(&e))?;
    let handshake = tls.handshake(tcp, host, Verification::Strict).await.map_err(|e| fetch(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, String>(TokioIo::new(handshake.stream))
            .await
            .map_err(|e| fetch(&e))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(POLICY_PATH)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONNECTION, "close")
        .body(String::new())
        .map_err(|e| fetch(&e))?;
    let response = sender.send_request(request).await.map_err(|e| fetch(&e))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if status != hyper::StatusCode::OK {
        driver.abort();
        return Err(PolicyError::Answer(status.to_string()));
    }
    if !content_type.to_ascii_lowercase().starts_with("text/plain") {
        driver.abort();
        return Err(PolicyError::Answer(format!("Content-Type {content_type:?}, not text/plain")));
    }
    let body = Limited::new(response.into_body(), POLICY_MAX_BYTES)
        .collect()
        .await
        .map_err(|e| fetch(&format!("reading the policy: {e}")))?
        .to_bytes();
    driver.abort();
    String::from_utf8(body.to_vec())
        .map_err(|_| PolicyError::Invalid("the policy is not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n";

    #[test]
    fn the_rfc_example_parses() {
        let policy = Policy::parse(EXAMPLE).expect("valid");
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(policy.max_age, Duration::from_secs(86400));
    }

    #[test]
    fn wildcards_match_one_label() {
        let policy = Policy::parse(EXAMPLE).expect("valid");
        assert!(policy.matches("mail.example.com."));
        assert!(policy.matches("MX1.example.net"));
        assert!(!policy.matches("a.b.example.net"));
        assert!(!policy.matches("example.net"));
        assert!(!policy.matches("other.example.com"));
    }

    #[test]
    fn broken_policies_say_what_is_wrong() {
        let cases = [
            ("mode: enforce\nmx: a\nmax_age: 1", "version"),
            ("version: STSv1\nmode: strict\nmx: a\nmax_age: 1", "unknown mode"),
            ("version: STSv1\nmode: enforce\nmax_age: 1", "no mx"),
            ("version: STSv1\nmode: enforce\nmx: a\nmax_age: 99999999999", "max_age"),
            ("version: STSv1\nmode: enforce\nmx: a", "no max_age"),
            ("version STSv1", "no ':'"),
        ];
        for (text, reason) in cases {
            let err = Policy::parse(text).expect_err(text).to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 0").is_ok());
    }
}
