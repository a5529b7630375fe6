//! SMTP AUTH mechanisms (RFC 4954) as pure functions: decoding PLAIN (RFC 4616) and LOGIN
//! responses, and the CRAM-MD5 challenge and check (RFC 2195). The session does the I/O; the
//! account store does the password checks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};

/// Why a SASL exchange failed before any credential was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The client sent `*`.
    #[error("authentication cancelled")]
    Cancelled,
    /// The response is not valid base64.
    #[error("invalid base64 in the response")]
    BadBase64,
    /// The decoded response does not have the mechanism's shape.
    #[error("malformed {0} response")]
    Malformed(&'static str),
}

/// Decodes one client response line (without CRLF); `*` cancels.
pub fn decode_response(line: &str) -> Result<Vec<u8>, SaslError> {
    let line = line.trim();
    if line == "*" {
        return Err(SaslError::Cancelled);
    }
    if line == "=" {
        return Ok(Vec::new());
    }
    STANDARD.decode(line).map_err(|_| SaslError::BadBase64)
}

/// Base64 of a server challenge, for a `334` line.
pub fn encode_challenge(challenge: &[u8]) -> String {
    STANDARD.encode(challenge)
}

/// Credentials carried by PLAIN or LOGIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The identity to act as; empty means the same as `login`.
    pub authzid: String,
    /// The login.
    pub login: String,
    /// The password.
    pub password: String,
}

/// PLAIN: `authzid NUL authcid NUL passwd` (RFC 4616).
pub fn decode_plain(decoded: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(login), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed("PLAIN"));
    };
    let text =
        |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::Malformed("PLAIN"));
    let creds =
        Credentials { authzid: text(authzid)?, login: text(login)?, password: text(password)? };
    if creds.login.is_empty() {
        return Err(SaslError::Malformed("PLAIN"));
    }
    Ok(creds)
}

/// A LOGIN field (user name or password) as text.
pub fn decode_login_field(decoded: &[u8]) -> Result<String, SaslError> {
    String::from_utf8(decoded.to_vec()).map_err(|_| SaslError::Malformed("LOGIN"))
}

/// The CRAM-MD5 challenge: `<random.unix-seconds@hostname>`.
pub fn cram_challenge(random: u64, unix_seconds: u64, hostname: &str) -> String {
    format!("<{random}.{unix_seconds}@{hostname}>")
}

/// Splits a decoded CRAM-MD5 response `login SP hex-digest`.
pub fn decode_cram(decoded: &[u8]) -> Result<(String, String), SaslError> {
    let text = std::str::from_utf8(decoded).map_err(|_| SaslError::Malformed("CRAM-MD5"))?;
    let (login, digest) = text.rsplit_once(' ').ok_or(SaslError::Malformed("CRAM-MD5"))?;
    if login.is_empty() || digest.len() != 32 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SaslError::Malformed("CRAM-MD5"));
    }
    Ok((login.to_string(), digest.to_ascii_lowercase()))
}

/// Checks a CRAM-MD5 digest: HMAC-MD5 keyed with the shared secret over the challenge,
/// compared in constant time.
pub fn cram_verify(secret: &[u8], challenge: &str, hex_digest: &str) -> bool {
    let Ok(mut mac) = Hmac::<md5::Md5>::new_from_slice(secret) else { return false };
    mac.update(challenge.as_bytes());
    let Some(expected) = decode_hex(hex_digest) else { return false };
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i.saturating_add(2)).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_round_trip_and_errors() {
        let decoded = decode_response("AHRpbQB0YW5zdGFhZnRhbnN0YWFm").expect("base64");
        assert_eq!(
            decode_plain(&decoded),
            Ok(Credentials {
                authzid: String::new(),
                login: "tim".into(),
                password: "tanstaaftanstaaf".into()
            })
        );
        assert_eq!(decode_response("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_response("!!!"), Err(SaslError::BadBase64));
        assert_eq!(decode_plain(b"only-one-part"), Err(SaslError::Malformed("PLAIN")));
        assert_eq!(decode_plain(b"\0\0pw"), Err(SaslError::Malformed("PLAIN")));
        assert_eq!(decode_response("="), Ok(vec![]));
    }

    /// The example exchange of RFC 2195 section 2.
    #[test]
    fn cram_md5_rfc_2195_example() {
        let challenge = "<1896.697170952@postoffice.reston.mci.net>";
        let response =
            decode_response("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw").expect("b64");
        let (login, digest) = decode_cram(&response).expect("shape");
        assert_eq!(login, "tim");
        assert!(cram_verify(b"tanstaaftanstaaf", challenge, &digest));
        assert!(!cram_verify(b"wrong", challenge, &digest));
        assert!(decode_cram(b"tim nothex").is_err());
    }
}
