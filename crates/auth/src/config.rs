//! The `[auth]` (verifying) and `[dkim]` (signing) sections of `tern.toml`, with every default
//! in one place. Serde reads them with `deny_unknown_fields`, so a typo fails loudly with the
//! key and line; [`AuthConfig::validate`] names the key of a value that parses but cannot be
//! used.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Default most `DKIM-Signature` fields verified per message: more cost DNS lookups and RSA
/// operations a sender could multiply at will; later ones are noted, not checked.
pub const DEFAULT_MAX_DKIM_SIGNATURES: usize = 5;

/// What a result does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Refuse it at end of data (`550 5.7.1`).
    Reject,
    /// Store it, tagged `junk` (a mailbox's spam folder; a Mailpit tag in the API).
    Junk,
    /// Let it in; the result is only recorded in `Authentication-Results`.
    Accept,
}

/// What a DNS failure during the checks does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTempError {
    /// Answer `451 4.7.x`: the sender's MTA retries later, when DNS may answer.
    Defer,
    /// Let it in with `temperror` recorded.
    Accept,
}

/// The `[auth]` section: checking the mail Tern receives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Check SPF, DKIM, DMARC and ARC. Unset: on for the mail server's `mx` listeners, off in
    /// the catcher (where it needs DNS, or the keys below).
    pub verify: Option<bool>,
    /// A DMARC failure whose domain asks `p=reject`.
    pub dmarc_reject: Action,
    /// A DMARC failure whose domain asks `p=quarantine`.
    pub dmarc_quarantine: Action,
    /// An SPF `fail` of the MAIL FROM identity (DMARC already judges aligned SPF; acting on SPF
    /// alone also refuses mail forwarded without SRS).
    pub spf_fail: Action,
    /// A DNS failure that leaves SPF or DMARC undecided.
    pub temperror: OnTempError,
    /// Most `DKIM-Signature` fields verified per message.
    pub max_dkim_signatures: usize,
    /// Also add a `Received-SPF` field (RFC 7208 §9.1).
    pub received_spf: bool,
    /// TXT records answered before DNS is asked, by name: DKIM public keys for a selector
    /// (`"sel._domainkey.example.com" = "v=DKIM1; k=ed25519; p=…"`), SPF or DMARC records,
    /// so tests and air-gapped catchers verify without DNS. An empty value answers "no
    /// record" (`"_dmarc.com" = ""`).
    pub records: BTreeMap<String, String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            verify: None,
            dmarc_reject: Action::Reject,
            dmarc_quarantine: Action::Junk,
            spf_fail: Action::Accept,
            temperror: OnTempError::Defer,
            max_dkim_signatures: DEFAULT_MAX_DKIM_SIGNATURES,
            received_spf: false,
            records: BTreeMap::new(),
        }
    }
}

/// A configuration value that cannot be used, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value out of its range.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key (`auth.records."x._domainkey.example.com"`).
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl AuthConfig {
    /// Whether to verify, given the mode's default.
    pub fn verify_or(&self, default: bool) -> bool {
        self.verify.unwrap_or(default)
    }

    /// Checks what serde cannot: each record parses as the kind of record its name says.
    pub fn validate(&self) -> Result<(), ConfigError> {
        crate::cache::StaticRecords::parse(&self.records).map(|_| ())
    }
}

/// The `[dkim]` section: signing the mail Tern sends for its users.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// Where `tern dkim generate` keeps keys (`DATA_DIR/dkim` when unset); every
    /// `DOMAIN.SELECTOR.key` file in it signs for its domain.
    pub key_dir: Option<PathBuf>,
    /// Sign mail from authenticated users and trusted networks (on by default when keys
    /// exist).
    pub sign: Option<bool>,
    /// Seal mail Tern forwards (aliases to remote addresses) with ARC, using the keys of the
    /// alias's domain (on by default when keys exist).
    pub arc_seal: Option<bool>,
}
