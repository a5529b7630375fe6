//! The rustls server configuration Tern serves with, and [`describe`] for what a handshake
//! negotiated.
//!
//! Every TLS listener and STARTTLS upgrade gets its configuration from
//! [`build_server_config`], so the policy lives in one place: the ring crypto provider, TLS 1.2
//! and 1.3 only (1.0 and 1.1 are refused at the handshake), no client certificates, no ALPN.
//! This module does not read files; that is [`crate::config`].

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::SingleCertAndKey;
use rustls::{ProtocolVersion, ServerConfig, ServerConnection, SupportedProtocolVersion};

use crate::config::TlsMaterial;
use crate::error::TlsError;

/// The TLS versions Tern accepts, preferred first. TLS 1.0 and 1.1 are deliberately absent
/// (RFC 8996 deprecates them).
pub const PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// What [`describe`] reports for a connection whose handshake has not finished.
const NOT_NEGOTIATED: &str = "unknown";

/// Builds the server configuration for `material`: ring provider, [`PROTOCOL_VERSIONS`], no
/// client authentication, no ALPN protocols.
pub fn build_server_config(material: &TlsMaterial) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|source| TlsError::ServerConfig { origin: material.origin().clone(), source })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(material.certified_key().clone())));
    Ok(Arc::new(config))
}

/// The negotiated protocol (`"TLSv1.3"`, `"TLSv1.2"`) and cipher suite (IANA-style name as
/// rustls spells it, e.g. `"TLS13_AES_256_GCM_SHA384"`), for logs and the `Received:` header.
/// Both are `"unknown"` before the handshake has completed.
pub fn describe(conn: &ServerConnection) -> (String, String) {
    let protocol = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => NOT_NEGOTIATED.to_owned(),
    };
    let cipher = match conn.negotiated_cipher_suite() {
        Some(suite) => {
            let suite = suite.suite();
            suite.as_str().map_or_else(|| format!("{suite:?}"), str::to_owned)
        }
        None => NOT_NEGOTIATED.to_owned(),
    };
    (protocol, cipher)
}

/// The one crypto provider Tern uses. Named explicitly rather than installed process-wide, so
/// nothing depends on which provider another crate happened to install first.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
