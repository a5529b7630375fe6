//! TLS for the outbound client: which roots are trusted (webpki-roots plus an optional PEM file)
//! and a certificate verifier that either insists (`require`) or records a failure and carries
//! on (`opportunistic`). Handshake signatures are always checked; only the certificate's chain
//! and name may be excused. The `ring` provider only.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::OutboundError;

/// Whether a certificate that fails verification ends the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The chain and name must verify.
    Strict,
    /// A failure is recorded (and logged by the caller), the handshake goes on: encryption
    /// without authentication, as opportunistic TLS between MTAs is.
    Lenient,
}

/// The roots and verifier shared by every outbound TLS connection.
pub struct TlsSetup {
    provider: Arc<CryptoProvider>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSetup").finish_non_exhaustive()
    }
}

/// Why a handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The certificate did not verify and verification was strict.
    #[error("certificate verification failed: {0}")]
    Certificate(String),
    /// Anything else: no common protocol, a bad signature, the peer closed the connection.
    #[error("TLS handshake failed: {0}")]
    Failed(String),
}

/// A completed handshake, and why the certificate did not verify when it did not
/// (only under [`Verification::Lenient`]).
pub struct Handshake {
    /// The encrypted stream.
    pub stream: TlsStream<TcpStream>,
    /// The verification failure that was excused.
    pub unverified: Option<String>,
}

impl TlsSetup {
    /// Trusts webpki-roots and, when given, every certificate in the PEM file `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, OutboundError> {
        let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = ca_file {
            let ca_error = |reason: String| OutboundError::CaFile { path: path.to_owned(), reason };
            let certs = CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))?;
            let mut added = 0;
            for cert in certs {
                let cert = cert.map_err(|e| ca_error(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(ca_error("no certificates in the file".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| OutboundError::Tls(e.to_string()))?;
        Ok(TlsSetup { provider, webpki })
    }

    /// Runs a client handshake over `tcp` for `server_name` (a host name, or an address
    /// literal such as `[192.0.2.1]`).
    pub async fn handshake(
        &self,
        tcp: TcpStream,
        server_name: &str,
        verification: Verification,
    ) -> Result<Handshake, HandshakeError> {
        let name = server_name_of(server_name)?;
        // One verifier per connection, so the failure it records is this connection's.
        let verifier = Arc::new(RecordingVerifier {
            inner: self.webpki.clone(),
            verification,
            failure: Mutex::new(None),
        });
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| HandshakeError::Failed(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let result = TlsConnector::from(Arc::new(config)).connect(name, tcp).await;
        let failure = verifier.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (result, failure) {
            (Ok(stream), unverified) => Ok(Handshake { stream, unverified }),
            (Err(_), Some(reason)) if verification == Verification::Strict => {
                Err(HandshakeError::Certificate(reason))
            }
            (Err(e), _) => Err(HandshakeError::Failed(e.to_string())),
        }
    }
}

fn server_name_of(name: &str) -> Result<ServerName<'static>, HandshakeError> {
    let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    let bare = bare.strip_prefix("IPv6:").unwrap_or(bare);
    ServerName::try_from(bare.to_owned())
        .map_err(|e| HandshakeError::Failed(format!("invalid server name {name:?}: {e}")))
}

/// The webpki verifier, recording why a certificate failed and, when lenient, accepting it.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    verification: Verification,
    failure: Mutex<Option<String>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        let Err(error) = result else { return result };
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
        match self.verification {
            Verification::Strict => Err(error),
            Verification::Lenient => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_accept_hosts_and_address_literals() {
        assert!(matches!(server_name_of("mx.dest.test"), Ok(ServerName::DnsName(_))));
        assert!(matches!(server_name_of("[127.0.0.1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name_of("[IPv6:::1]"), Ok(ServerName::IpAddress(_))));
        assert!(server_name_of("not a name").is_err());
    }

    #[test]
    fn a_missing_ca_file_is_a_config_error() {
        let err = TlsSetup::new(Some(Path::new("/nonexistent/ca.pem"))).expect_err("missing file");
        assert!(matches!(err, OutboundError::CaFile { .. }), "{err}");
    }
}
