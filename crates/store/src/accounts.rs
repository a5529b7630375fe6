//! Accounts, the addresses they own, and aliases: who may log in with SMTP AUTH, and where mail
//! for a local address goes when a client names it at RCPT.
//!
//! This module owns the [`AccountStore`] trait and the rules every backend applies (password
//! hashing, login and address syntax); the SQLite tables (`accounts`, `addresses`, `aliases`,
//! migration 3) are in `sqlite/accounts.rs`, so a PostgreSQL backend can follow.
//! It knows nothing of SMTP: the session asks [`AccountStore::verify_password`],
//! [`AccountStore::cram_md5_secret`] and [`AccountStore::resolve_local`]; the router expands
//! alias targets (each target is resolved again, so aliases of aliases work and loops are caught
//! there, not here).
//!
//! # Passwords
//! Passwords are hashed with Argon2id (the `argon2` crate's default parameters: 19 MiB, two
//! passes, one lane) into a PHC string with a random salt. The clear password is never stored,
//! logged or returned; [`AccountInfo`] carries no hash either. Verifying costs one Argon2 run
//! (tens of milliseconds of CPU in a release build), so callers on an async runtime should run
//! it on a blocking thread. A login that does not exist is verified against a dummy hash of the
//! same cost, so the time an attempt takes does not reveal which logins exist; the hash
//! comparison itself is constant-time.
//!
//! # CRAM-MD5 and what it costs
//! CRAM-MD5 (RFC 2195) proves knowledge of the password by answering
//! `HMAC-MD5(key = password, challenge)`. The server must compute the same HMAC, so it must
//! hold the password itself (or an equivalent of it): a one-way hash such as Argon2 cannot serve.
//! An account therefore opts in (`tern account add --cram-md5`), and only then is
//! `cram_secret` filled: it holds **the password in clear**, kept in step by
//! [`AccountStore::set_password`]. The cost is precise: anyone who reads the database file (a
//! stolen disk, a backup, a copy of `tern.db`) learns the passwords of every account with
//! CRAM-MD5 enabled, and can log in as them here and anywhere else the password is reused.
//! Accounts without CRAM-MD5 expose only Argon2id hashes, which must be attacked by guessing.
//! PLAIN or LOGIN over TLS (STARTTLS on 587, or implicit TLS on 465) needs no such secret and
//! is what Tern recommends; enable CRAM-MD5 only for a client that cannot do anything else.
//!
//! # Addresses
//! Addresses are kept lowercased and matched case-insensitively. An account owns any number of
//! addresses (its login too, when the login looks like an address); one address belongs to at
//! most one account, and an address that is an account's cannot also be an alias (the alias
//! would never be used). An alias maps one address to one or more targets, local or remote;
//! the alias `@example.org` is the catch-all of `example.org`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{self, PasswordHasher, PasswordVerifier};
use serde::Serialize;

use crate::StoreError;

/// Longest login, in bytes.
pub const MAX_LOGIN_BYTES: usize = 255;
/// Longest local part of an address, in bytes (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART_BYTES: usize = 64;
/// Longest domain of an address, in bytes (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN_BYTES: usize = 255;

/// An account as it may be shown: never its password, hash or CRAM-MD5 secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountInfo {
    /// The name it logs in with (lowercased).
    pub login: String,
    /// The addresses it owns, the login first when it is one of them, then alphabetically.
    pub addresses: Vec<String>,
    /// Whether CRAM-MD5 is enabled (and so a password-equivalent secret is stored).
    pub cram_md5: bool,
    /// Where its mail is also delivered as a Maildir, if anywhere.
    pub maildir: Option<PathBuf>,
}

/// An alias with all its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alias {
    /// The aliased address, or `@domain` for a catch-all.
    pub address: String,
    /// Where its mail goes, alphabetically.
    pub targets: Vec<String>,
}

/// What a local address is, as decided at RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// An account owns the address.
    Account {
        /// The owning account.
        login: String,
        /// Its Maildir, if it has one.
        maildir: Option<PathBuf>,
    },
    /// An alias (or the domain's catch-all) sends it to these addresses, unexpanded.
    Alias(Vec<String>),
    /// Nobody receives mail at this address.
    Unknown,
}

/// Why an account or alias operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The login names no account.
    #[error("no such account: {0}")]
    NoSuchAccount(String),
    /// An account with this login exists already.
    #[error("account {0} already exists")]
    AccountExists(String),
    /// Another account owns the address.
    #[error("address {address} is already owned by {login}")]
    AddressOwned {
        /// The address asked for.
        address: String,
        /// The account that owns it.
        login: String,
    },
    /// The address is an alias, so it cannot also belong to an account.
    #[error("address {0} is an alias; delete the alias first")]
    AddressIsAlias(String),
    /// The text is not an address Tern can own or route.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The text given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The text cannot be a login.
    #[error("invalid login {login:?}: {reason}")]
    InvalidLogin {
        /// The text given.
        login: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The password cannot be used (the password itself is never part of the message).
    #[error("invalid password: {0}")]
    InvalidPassword(&'static str),
    /// The Maildir path cannot be stored.
    #[error("invalid maildir {path}: {reason}")]
    InvalidMaildir {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No alias (or no such target of it) exists.
    #[error("no such alias: {address}{}", .target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default())]
    NoSuchAlias {
        /// The aliased address.
        address: String,
        /// The target asked for, if one was.
        target: Option<String>,
    },
    /// Argon2 failed to hash (an RNG failure, not a bad password).
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Accounts and aliases in a backend. Writes take `&mut self` like [`crate::Store`]; the
/// lookups the SMTP session makes take `&self`.
pub trait AccountStore: Send + 'static {
    /// Creates an account that owns `addresses` (and its login, when that is an address).
    /// With `cram_md5`, also stores the password-equivalent CRAM-MD5 secret (see the module
    /// doc for what that costs).
    fn add_account(
        &mut self,
        login: &str,
        password: &str,
        addresses: &[String],
        cram_md5: bool,
        maildir: Option<&Path>,
    ) -> Result<AccountInfo, StoreError>;

    /// Replaces an account's password, and its CRAM-MD5 secret when that is enabled.
    fn set_password(&mut self, login: &str, password: &str) -> Result<(), StoreError>;

    /// Deletes an account and the addresses it owns. Aliases pointing at them stay.
    fn delete_account(&mut self, login: &str) -> Result<(), StoreError>;

    /// Every account, by login.
    fn list_accounts(&self) -> Result<Vec<AccountInfo>, StoreError>;

    /// One account, or `None`.
    fn account(&self, login: &str) -> Result<Option<AccountInfo>, StoreError>;

    /// The account when `password` is right; `None` when it is wrong or the login unknown,
    /// which take the same time. Costs one Argon2 run: call it off the async runtime.
    fn verify_password(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Option<AccountInfo>, StoreError>;

    /// The CRAM-MD5 key (the password) of an account that enabled CRAM-MD5; `None` for an
    /// unknown login or an account without it.
    fn cram_md5_secret(&self, login: &str) -> Result<Option<String>, StoreError>;

    /// Whether any account enabled CRAM-MD5 (otherwise the mechanism is not offered).
    fn any_cram_md5(&self) -> Result<bool, StoreError>;

    /// Adds targets to the alias `address` (created if new; `@domain` is a catch-all) and
    /// returns the alias with all its targets.
    fn add_alias(&mut self, address: &str, targets: &[String]) -> Result<Alias, StoreError>;

    /// Deletes one target of an alias, or the whole alias; returns how many targets went.
    fn delete_alias(&mut self, address: &str, target: Option<&str>) -> Result<usize, StoreError>;

    /// Every alias, by address.
    fn list_aliases(&self) -> Result<Vec<Alias>, StoreError>;

    /// What `address` is, trying in order: the exact address (an account's, then an alias),
    /// the address with its `+tag` folded away (`bob+x@d` → `bob@d`; account, then alias),
    /// then the catch-all `@domain`. Case-insensitive; text that is not an address is
    /// [`Resolution::Unknown`].
    fn resolve_local(&self, address: &str) -> Result<Resolution, StoreError>;
}

// ---------------------------------------------------------------------------------------
// Passwords

pub(crate) fn hash_password(password: &str) -> Result<String, AccountError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// A hash with the default parameters that no password is checked against for real: verifying
/// an unknown login against it costs what verifying a real account costs.
pub(crate) fn dummy_hash() -> Result<&'static str, AccountError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = Argon2::default()
        .hash_password_with_salt(b"tern: no such login", b"tern-timing-dummy")
        .map_err(|e| AccountError::Hash(e.to_string()))?
        .to_string();
    Ok(DUMMY.get_or_init(|| hash))
}

/// Whether `password` is the one `stored` (a PHC string) was made from; `Err` with the reason
/// when `stored` is not a usable hash.
pub(crate) fn password_matches(password: &str, stored: &str) -> Result<bool, String> {
    match Argon2::default().verify_password(password.as_bytes(), stored) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(format!("password hash: {e}")),
    }
}

/// Verifies `password` against the dummy hash: what a real check costs, for unknown logins.
pub(crate) fn spend_a_verification(password: &str) -> Result<(), AccountError> {
    let _ = Argon2::default().verify_password(password.as_bytes(), dummy_hash()?);
    Ok(())
}

pub(crate) fn check_password(password: &str) -> Result<(), AccountError> {
    if password.is_empty() {
        return Err(AccountError::InvalidPassword("it is empty"));
    }
    if password.contains('\0') {
        return Err(AccountError::InvalidPassword(
            "it contains a NUL, which SASL PLAIN cannot carry",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Parsing logins, addresses and paths

/// A login: lowercased, 1 to [`MAX_LOGIN_BYTES`] bytes, no whitespace or control characters.
pub(crate) fn parse_login(text: &str) -> Result<String, AccountError> {
    let refuse = |reason| AccountError::InvalidLogin { login: text.to_string(), reason };
    if text.is_empty() {
        return Err(refuse("it is empty"));
    }
    if text.len() > MAX_LOGIN_BYTES {
        return Err(refuse("longer than 255 bytes"));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(refuse("it contains whitespace or a control character"));
    }
    Ok(text.to_lowercase())
}

/// An address an account can own: `local@domain`, lowercased.
pub(crate) fn parse_address(text: &str) -> Result<String, AccountError> {
    let (local, domain) = split_address(text)?;
    if local.is_empty() {
        return Err(invalid(text, "the local part is empty"));
    }
    Ok(format!("{local}@{domain}").to_lowercase())
}

/// An alias's own address: a full address, or `@domain` for the domain's catch-all.
pub(crate) fn parse_alias_address(text: &str) -> Result<String, AccountError> {
    let (local, domain) = split_address(text)?;
    Ok(format!("{local}@{domain}").to_lowercase())
}

/// An alias target: a full address, local or remote. Its domain is lowercased; its local part
/// is kept as given, since a remote server may treat case as significant.
pub(crate) fn parse_target(text: &str) -> Result<String, AccountError> {
    let (local, domain) = split_address(text)?;
    if local.is_empty() {
        return Err(invalid(text, "a target needs a local part"));
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

/// Splits and checks `local@domain` (the local part may be empty; callers decide). Local parts
/// are dot-atoms (quoted strings are refused); domains are host names, which rules out domain
/// literals, source routes and trailing dots.
fn split_address(text: &str) -> Result<(&str, &str), AccountError> {
    let refuse = |reason| invalid(text, reason);
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(refuse("it has no @"));
    };
    if local.contains('@') {
        return Err(refuse("it has more than one @"));
    }
    if local.len() > MAX_LOCAL_PART_BYTES {
        return Err(refuse("the local part is longer than 64 bytes"));
    }
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c);
    let local_char_ok =
        |c: char| atext(c) || (!c.is_ascii() && !c.is_whitespace() && !c.is_control());
    if !local.is_empty()
        && local.split('.').any(|atom| atom.is_empty() || !atom.chars().all(local_char_ok))
    {
        return Err(refuse("the local part is not a dot-atom"));
    }
    if domain.is_empty() {
        return Err(refuse("the domain is empty"));
    }
    if domain.len() > MAX_DOMAIN_BYTES {
        return Err(refuse("the domain is longer than 255 bytes"));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c == '-' || c.is_alphanumeric())
    };
    if !domain.split('.').all(label_ok) {
        return Err(refuse("the domain is not a host name"));
    }
    Ok((local, domain))
}

pub(crate) fn invalid(address: &str, reason: &'static str) -> AccountError {
    AccountError::InvalidAddress { address: address.to_string(), reason }
}

pub(crate) fn maildir_text(path: &Path) -> Result<String, AccountError> {
    let refuse = |reason| AccountError::InvalidMaildir { path: path.display().to_string(), reason };
    if !path.is_absolute() {
        return Err(refuse("it must be an absolute path"));
    }
    path.to_str().map(str::to_string).ok_or_else(|| refuse("it is not valid UTF-8"))
}

pub(crate) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
