//! The `[tls]` configuration section and what it resolves to: [`TlsMaterial`], a certificate
//! chain with its private key, checked to belong together.
//!
//! Resolution is two-stage, like the rest of Tern's configuration: [`TlsConfig`] is what the
//! operator wrote; [`TlsConfig::pem_files`] decides whether that means "these files" or
//! "generate one"; [`TlsConfig::load`] reads or generates the certificate. This module reads
//! files and generates keys; it does not build rustls configurations (see
//! [`crate::server_config`]) or watch for changes (see [`crate::reload`]).

use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, SanType};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::Deserialize;

use crate::error::TlsError;
use crate::server_config::crypto_provider;

/// The `[tls]` section: where the server's certificate and private key live.
///
/// Set both paths to serve a real certificate, or neither to have Tern generate a self-signed
/// one at start-up (fine for development and tests, useless for the Internet: no client trusts
/// it). Relative paths are taken relative to the working directory of the process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file holding the certificate chain: the server's own certificate first, then any
    /// intermediate certificates (for example Let's Encrypt's `fullchain.pem`). Requires
    /// `key_path`.
    pub cert_path: Option<PathBuf>,
    /// PEM file holding the unencrypted private key of the first certificate in `cert_path`:
    /// PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). May be the
    /// same file as `cert_path`. Requires `cert_path`.
    pub key_path: Option<PathBuf>,
}

/// A certificate file and key file configured together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemFiles {
    /// The PEM certificate chain (`tls.cert_path`).
    pub cert_path: PathBuf,
    /// The PEM private key (`tls.key_path`).
    pub key_path: PathBuf,
}

/// Where a server certificate came from, for log lines and error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateOrigin {
    /// Read from the configured PEM files.
    Files(PemFiles),
    /// Generated at start-up because no certificate was configured.
    SelfSigned {
        /// The hostname the certificate names (besides `localhost` and the loopback addresses).
        hostname: String,
    },
}

impl fmt::Display for CertificateOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Files(files) => write!(
                f,
                "certificate {} with key {}",
                files.cert_path.display(),
                files.key_path.display()
            ),
            Self::SelfSigned { hostname } => write!(f, "self-signed certificate for {hostname}"),
        }
    }
}

/// A certificate chain and the private key that matches its first certificate, ready for
/// [`build_server_config`](crate::server_config::build_server_config).
#[derive(Clone, Debug)]
pub struct TlsMaterial {
    certified_key: Arc<CertifiedKey>,
    origin: CertificateOrigin,
}

impl TlsConfig {
    /// Decides what the two paths mean: `Some` files to read, `None` to generate a self-signed
    /// certificate, or an error naming the missing half of the pair.
    pub fn pem_files(&self) -> Result<Option<PemFiles>, TlsError> {
        match (&self.cert_path, &self.key_path) {
            (Some(cert_path), Some(key_path)) => {
                Ok(Some(PemFiles { cert_path: cert_path.clone(), key_path: key_path.clone() }))
            }
            (None, None) => Ok(None),
            (Some(cert_path), None) => {
                Err(TlsError::MissingKeyPath { cert_path: cert_path.clone() })
            }
            (None, Some(key_path)) => Err(TlsError::MissingCertPath { key_path: key_path.clone() }),
        }
    }

    /// Reads the configured certificate and key, or — when neither path is set — generates a
    /// self-signed certificate for `hostname`, `localhost`, 127.0.0.1 and ::1 and logs a warning
    /// that clients will not trust it.
    pub fn load(&self, hostname: &str) -> Result<TlsMaterial, TlsError> {
        match self.pem_files()? {
            Some(files) => TlsMaterial::from_pem_files(&files),
            None => {
                let material = TlsMaterial::self_signed(hostname)?;
                tracing::warn!(
                    hostname,
                    "TLS: NO CERTIFICATE CONFIGURED — serving a freshly generated SELF-SIGNED \
                     certificate for {hostname}, localhost, 127.0.0.1 and ::1. Clients will NOT \
                     trust it: mail servers and mail clients that verify certificates will refuse \
                     it or fall back to plaintext. Set tls.cert_path and tls.key_path to PEM files \
                     (for example Let's Encrypt's fullchain.pem and privkey.pem) to serve a real \
                     certificate."
                );
                Ok(material)
            }
        }
    }
}

impl TlsMaterial {
    /// Reads a PEM certificate chain and private key and checks that the key belongs to the
    /// first certificate.
    pub fn from_pem_files(files: &PemFiles) -> Result<Self, TlsError> {
        let chain = read_certificate_chain(&files.cert_path)?;
        let key = read_private_key(&files.key_path)?;
        let certified_key = certify(chain, key, files)?;
        Ok(Self {
            certified_key: Arc::new(certified_key),
            origin: CertificateOrigin::Files(files.clone()),
        })
    }

    /// Generates a new key pair and a self-signed certificate for `hostname` (a DNS name or an
    /// IP address), `localhost`, 127.0.0.1 and ::1.
    pub fn self_signed(hostname: &str) -> Result<Self, TlsError> {
        let generation_failed =
            |source| TlsError::SelfSigned { hostname: hostname.to_owned(), source };
        let key_pair = KeyPair::generate().map_err(generation_failed)?;
        let certificate =
            self_signed_params(hostname)?.self_signed(&key_pair).map_err(generation_failed)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
        let origin = CertificateOrigin::SelfSigned { hostname: hostname.to_owned() };
        let signing_key = crypto_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|source| TlsError::ServerConfig { origin: origin.clone(), source })?;
        let certified_key = CertifiedKey::new(vec![certificate.der().clone()], signing_key);
        Ok(Self { certified_key: Arc::new(certified_key), origin })
    }

    /// The certificate chain, the server's own certificate first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.certified_key.cert
    }

    /// The certificate chain with its signing key, as rustls wants it.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// Where the certificate came from.
    pub fn origin(&self) -> &CertificateOrigin {
        &self.origin
    }
}

fn read_certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path)
        .map_err(|source| TlsError::ReadCertificate { path: path.to_owned(), source })?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::CertificatePem { path: path.to_owned(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem =
        fs::read(path).map_err(|source| TlsError::ReadKey { path: path.to_owned(), source })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_owned() },
        source => TlsError::KeyPem { path: path.to_owned(), source },
    })
}

/// Pairs the chain with the key, refusing a key that is not the first certificate's.
fn certify(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    files: &PemFiles,
) -> Result<CertifiedKey, TlsError> {
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnusableKey { path: files.key_path.clone(), source })?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    match certified_key.keys_match() {
        // `Unknown`: the key type cannot report its public half, so there is nothing to compare.
        // rustls' own `with_single_cert` accepts that case too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified_key)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert_path: files.cert_path.clone(),
            key_path: files.key_path.clone(),
        }),
        Err(source) => Err(TlsError::UnusableCertificate { path: files.cert_path.clone(), source }),
    }
}

fn self_signed_params(hostname: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, hostname);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut names = vec![
        san(hostname)?,
        san("localhost")?,
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    dedup_keep_order(&mut names);
    params.subject_alt_names = names;
    Ok(params)
}

fn san(name: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    // rcgen only checks that the name is ASCII; a certificate naming "mail host" would load and
    // then fail every client's verification, so refuse it here with a clear message.
    if DnsName::try_from(name).is_err() {
        return Err(TlsError::InvalidHostname { hostname: name.to_owned() });
    }
    let dns_name = name
        .try_into()
        .map_err(|source| TlsError::SelfSigned { hostname: name.to_owned(), source })?;
    Ok(SanType::DnsName(dns_name))
}

fn dedup_keep_order(names: &mut Vec<SanType>) {
    let mut seen = Vec::with_capacity(names.len());
    names.retain(|name| {
        if seen.contains(name) {
            return false;
        }
        seen.push(name.clone());
        true
    });
}
