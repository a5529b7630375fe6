//! DKIM keys on disk: `tern dkim generate` writes one PEM file per key,
//! `KEY_DIR/DOMAIN.SELECTOR.key` (mode 0600), and the server loads every such file at start.
//! RSA keys are PKCS#1 PEM (`RSA PRIVATE KEY`, the form OpenDKIM reads too); Ed25519 keys are
//! PKCS#8 v2 PEM (`PRIVATE KEY`, with the public key inside, as mail-auth makes them), which
//! OpenSSL 3.0 does not read: another signer needs the 32-byte seed re-encoded. [`KeyFile::dns_record`] is the TXT record to publish at
//! `SELECTOR._domainkey.DOMAIN`: for RSA the SubjectPublicKeyInfo (RFC 6376 §3.6.1), for
//! Ed25519 the raw 32-byte key (RFC 8463 §4).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_auth::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::dkim::generate::DkimKeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject as _;

/// Default RSA key size (RFC 8301: at least 1024, 2048 recommended).
pub const DEFAULT_RSA_BITS: usize = 2048;

/// A key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `rsa-sha256`.
    Rsa,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519,
}

impl Algorithm {
    /// `k=` of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::Rsa => "rsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }
}

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not a key Tern can sign with.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The name is not `DOMAIN.SELECTOR.key` or the domain or selector are not DNS labels.
    #[error("{0:?} is not a valid domain or selector")]
    BadName(String),
    /// A key for this selector exists already.
    #[error("{0} exists already: choose another selector (or remove the file to replace it)")]
    Exists(PathBuf),
    /// The crypto library failed.
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// A signing key shared by every signature it makes (the crypto types are not `Clone`, a
/// signer takes its key by value).
#[derive(Clone)]
pub struct SharedKey(Arc<DkimKey>);

impl mail_auth::crypto::SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl mail_auth::headers::Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::crypto::Algorithm {
        self.0.algorithm()
    }
}

/// One key file: where it is, what it signs for, the key itself.
pub struct KeyFile {
    /// The file.
    pub path: PathBuf,
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The public key as the DNS record carries it (`p=`).
    pub public_key: Vec<u8>,
    /// The private key.
    pub key: SharedKey,
}

impl KeyFile {
    /// The TXT record to publish at [`KeyFile::dns_name`].
    pub fn dns_record(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm.key_type(), STANDARD.encode(&self.public_key))
    }

    /// `SELECTOR._domainkey.DOMAIN`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }
}

fn is_label_list(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Generates a key for `domain` under `selector`, writes it to `dir` (made if missing, files
/// mode 0600) and returns it loaded.
pub fn generate(
    dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    rsa_bits: usize,
) -> Result<KeyFile, KeyError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !is_label_list(&domain) || !domain.contains('.') {
        return Err(KeyError::BadName(domain));
    }
    if !is_label_list(selector) {
        return Err(KeyError::BadName(selector.to_string()));
    }
    let path = dir.join(format!("{domain}.{selector}.key"));
    if path.exists() {
        return Err(KeyError::Exists(path));
    }
    let pem = match algorithm {
        Algorithm::Rsa => {
            let pair = DkimKeyPair::generate_rsa(rsa_bits)
                .map_err(|e| KeyError::Generate(e.to_string()))?;
            pem("RSA PRIVATE KEY", pair.private_key())
        }
        Algorithm::Ed25519 => {
            let pkcs8 =
                Ed25519Key::generate_pkcs8().map_err(|e| KeyError::Generate(e.to_string()))?;
            pem("PRIVATE KEY", &pkcs8)
        }
    };
    let io = |source| KeyError::Io { path: path.clone(), source };
    fs::create_dir_all(dir).map_err(|source| KeyError::Io { path: dir.to_path_buf(), source })?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(io)?;
    file.write_all(pem.as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
    load(&path)
}

/// PEM armour: base64 in 64-column lines.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Reads a key file named `DOMAIN.SELECTOR.key`.
pub fn load(path: &Path) -> Result<KeyFile, KeyError> {
    let invalid = |reason: String| KeyError::Invalid { path: path.to_path_buf(), reason };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let stem = name.strip_suffix(".key").ok_or_else(|| KeyError::BadName(name.to_string()))?;
    // The selector is the last label: domains have dots, selectors here do not.
    let (domain, selector) =
        stem.rsplit_once('.').ok_or_else(|| KeyError::BadName(name.to_string()))?;
    let pem = fs::read(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| invalid(format!("not a PEM private key: {e}")))?;
    let (algorithm, key, public_key) = match &der {
        PrivateKeyDer::Pkcs8(pkcs8) => match Ed25519Key::from_pkcs8_der(pkcs8.secret_pkcs8_der()) {
            Ok(key) => {
                let public = key.public_key();
                (Algorithm::Ed25519, DkimKey::Ed25519(key), public)
            }
            Err(_) => rsa_key(der.clone_key()).map_err(invalid)?,
        },
        _ => rsa_key(der.clone_key()).map_err(invalid)?,
    };
    Ok(KeyFile {
        path: path.to_path_buf(),
        domain: domain.to_ascii_lowercase(),
        selector: selector.to_string(),
        algorithm,
        public_key,
        key: SharedKey(Arc::new(key)),
    })
}

fn rsa_key(der: PrivateKeyDer<'_>) -> Result<(Algorithm, DkimKey, Vec<u8>), String> {
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use rsa::pkcs8::EncodePublicKey as _;
    let key = RsaKey::<Sha256>::from_key_der(der)
        .map_err(|e| format!("not an RSA or Ed25519 key: {e}"))?;
    // mail-auth gives the PKCS#1 public key; DNS wants the SubjectPublicKeyInfo.
    let spki = rsa::RsaPublicKey::from_pkcs1_der(&key.public_key())
        .map_err(|e| e.to_string())?
        .to_public_key_der()
        .map_err(|e| e.to_string())?;
    Ok((Algorithm::Rsa, DkimKey::Rsa(key), spki.as_bytes().to_vec()))
}

/// Every `*.key` file in `dir`, sorted by name; a missing directory holds none.
pub fn load_dir(dir: &Path) -> Result<Vec<KeyFile>, KeyError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KeyError::Io { path: dir.to_path_buf(), source }),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "key"))
        .collect();
    paths.sort();
    paths.iter().map(|path| load(path)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_keys_load_back_with_their_dns_records() {
        let dir = temp_dir("gen");
        let ed = generate(&dir, "Example.COM", "ed1", Algorithm::Ed25519, 0).expect("ed25519");
        assert_eq!((ed.domain.as_str(), ed.selector.as_str()), ("example.com", "ed1"));
        assert_eq!(ed.public_key.len(), 32);
        assert!(ed.dns_record().starts_with("v=DKIM1; k=ed25519; p="));
        let rsa = generate(&dir, "example.com", "rsa1", Algorithm::Rsa, 1024).expect("rsa");
        assert!(rsa.dns_record().starts_with("v=DKIM1; k=rsa; p=MIG"), "{}", rsa.dns_record());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&rsa.path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let all = load_dir(&dir).expect("loaded");
        let names: Vec<_> = all.iter().map(KeyFile::dns_name).collect();
        assert_eq!(names, ["ed1._domainkey.example.com", "rsa1._domainkey.example.com"]);
        // The record each key publishes is one the verifier accepts.
        for key in &all {
            let record = std::collections::BTreeMap::from([(key.dns_name(), key.dns_record())]);
            crate::cache::StaticRecords::parse(&record).expect("a valid DKIM record");
        }
        assert!(matches!(
            generate(&dir, "example.com", "ed1", Algorithm::Ed25519, 0),
            Err(KeyError::Exists(_))
        ));
        assert!(matches!(
            generate(&dir, "example.com", "bad selector", Algorithm::Ed25519, 0),
            Err(KeyError::BadName(_))
        ));
        fs::remove_dir_all(&dir).expect("cleaned");
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_with_its_path() {
        let dir = temp_dir("bad");
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("example.com.s1.key");
        fs::write(&path, "not a key").expect("written");
        let Err(e) = load(&path) else { panic!("loaded") };
        assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
        fs::remove_dir_all(&dir).expect("cleaned");
    }
}
