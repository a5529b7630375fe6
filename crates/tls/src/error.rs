//! [`TlsError`]: every way loading a certificate or building the TLS configuration can fail.
//!
//! Each variant names the file (or the configuration key) involved and what was wrong with it,
//! so that the message alone is enough for an operator to fix the problem.

use std::io;
use std::path::PathBuf;

use rustls_pki_types::pem;

use crate::config::CertificateOrigin;

/// Why the TLS certificate, key or server configuration could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.cert_path` is set without `tls.key_path`.
    #[error(
        "tls.cert_path is set ({}) but tls.key_path is missing: set both to use your own \
         certificate, or neither to generate a self-signed one",
        cert_path.display()
    )]
    MissingKeyPath {
        /// The certificate path that was configured.
        cert_path: PathBuf,
    },

    /// `tls.key_path` is set without `tls.cert_path`.
    #[error(
        "tls.key_path is set ({}) but tls.cert_path is missing: set both to use your own \
         certificate, or neither to generate a self-signed one",
        key_path.display()
    )]
    MissingCertPath {
        /// The key path that was configured.
        key_path: PathBuf,
    },

    /// The certificate file could not be read.
    #[error("cannot read TLS certificate file {}: {source}", path.display())]
    ReadCertificate {
        /// The file from `tls.cert_path`.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// The private key file could not be read.
    #[error("cannot read TLS key file {}: {source}", path.display())]
    ReadKey {
        /// The file from `tls.key_path`.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// The certificate file is not well-formed PEM.
    #[error("TLS certificate file {} is not valid PEM: {source}", path.display())]
    CertificatePem {
        /// The file from `tls.cert_path`.
        path: PathBuf,
        /// What the PEM parser found wrong.
        source: pem::Error,
    },

    /// The certificate file is PEM but holds no `CERTIFICATE` section.
    #[error(
        "TLS certificate file {} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" \
         sections, the server's certificate first)",
        path.display()
    )]
    NoCertificate {
        /// The file from `tls.cert_path`.
        path: PathBuf,
    },

    /// The first certificate in the file is not a certificate rustls can parse.
    #[error("TLS certificate file {} holds an unusable certificate: {source}", path.display())]
    UnusableCertificate {
        /// The file from `tls.cert_path`.
        path: PathBuf,
        /// Why rustls rejected it.
        source: rustls::Error,
    },

    /// The key file is not well-formed PEM.
    #[error("TLS key file {} is not valid PEM: {source}", path.display())]
    KeyPem {
        /// The file from `tls.key_path`.
        path: PathBuf,
        /// What the PEM parser found wrong.
        source: pem::Error,
    },

    /// The key file is PEM but holds no private key section rustls understands.
    #[error(
        "TLS key file {} holds no private key (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" \
         or \"EC PRIVATE KEY\" section; encrypted keys are not supported)",
        path.display()
    )]
    NoKey {
        /// The file from `tls.key_path`.
        path: PathBuf,
    },

    /// The key parsed as PEM but the crypto provider cannot use it (unsupported algorithm or
    /// malformed key).
    #[error("TLS key file {} holds an unusable private key: {source}", path.display())]
    UnusableKey {
        /// The file from `tls.key_path`.
        path: PathBuf,
        /// Why the crypto provider rejected it.
        source: rustls::Error,
    },

    /// The private key is not the one the certificate was issued for.
    #[error(
        "the private key in {} does not match the certificate in {} (check that tls.cert_path \
         and tls.key_path belong together)",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        /// The file from `tls.cert_path`.
        cert_path: PathBuf,
        /// The file from `tls.key_path`.
        key_path: PathBuf,
    },

    /// The hostname for a self-signed certificate is neither a DNS name nor an IP address.
    #[error(
        "cannot generate a self-signed TLS certificate for {hostname:?}: it is neither a DNS name \
         nor an IP address (check the server's hostname setting)"
    )]
    InvalidHostname {
        /// The hostname as given.
        hostname: String,
    },

    /// rcgen could not generate the self-signed certificate.
    #[error("cannot generate a self-signed TLS certificate for {hostname:?}: {source}")]
    SelfSigned {
        /// The hostname the certificate was for.
        hostname: String,
        /// Why rcgen failed.
        source: rcgen::Error,
    },

    /// rustls refused to build a server configuration.
    #[error("cannot build the TLS server configuration for {origin}: {source}")]
    ServerConfig {
        /// Where the certificate came from.
        origin: CertificateOrigin,
        /// Why rustls refused.
        source: rustls::Error,
    },
}
