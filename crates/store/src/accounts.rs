//! Accounts, the addresses they own, and aliases: who may log in with SMTP AUTH, and where mail
//! for a local address goes when a client names it at RCPT.
//!
//! This module owns the `accounts`, `addresses` and `aliases` tables (migration 3 in
//! `sqlite.rs`) and the [`AccountStore`] trait over them, so a PostgreSQL backend can follow.
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{self, PasswordHasher, PasswordVerifier};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::StoreError;
use crate::model::Inbox;
use crate::sqlite::SqliteStore;

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

impl AccountStore for SqliteStore {
    fn add_account(
        &mut self,
        login: &str,
        password: &str,
        addresses: &[String],
        cram_md5: bool,
        maildir: Option<&Path>,
    ) -> Result<AccountInfo, StoreError> {
        let login = parse_login(login)?;
        check_password(password)?;
        let maildir_text = maildir.map(maildir_text).transpose()?;
        let mut owned: Vec<String> = parse_address(&login).into_iter().collect();
        for address in addresses {
            let address = parse_address(address)?;
            if !owned.contains(&address) {
                owned.push(address);
            }
        }
        // Hash before taking the write lock: it is the slow part.
        let hash = hash_password(password)?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if password_hash_of(&tx, &login)?.is_some() {
            return Err(AccountError::AccountExists(login).into());
        }
        for address in &owned {
            check_unclaimed(&tx, address)?;
        }
        tx.execute(
            "INSERT INTO accounts (login, password_hash, cram_secret, maildir, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![login, hash, cram_md5.then_some(password), maildir_text, now_ms()],
        )?;
        for address in &owned {
            tx.execute(
                "INSERT INTO addresses (address, login) VALUES (?1, ?2)",
                params![address, login],
            )?;
        }
        let info = account_info(&tx, &login)?.ok_or(AccountError::NoSuchAccount(login))?;
        tx.commit()?;
        Ok(info)
    }

    fn set_password(&mut self, login: &str, password: &str) -> Result<(), StoreError> {
        let login = parse_login(login)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        let changed = self.conn.execute(
            "UPDATE accounts SET password_hash = ?2,
                cram_secret = CASE WHEN cram_secret IS NULL THEN NULL ELSE ?3 END
             WHERE login = ?1",
            params![login, hash, password],
        )?;
        if changed == 0 {
            return Err(AccountError::NoSuchAccount(login).into());
        }
        Ok(())
    }

    fn delete_account(&mut self, login: &str) -> Result<(), StoreError> {
        let login = parse_login(login)?;
        // `addresses` rows go with it: ON DELETE CASCADE (the store enables foreign keys).
        let deleted = self.conn.execute("DELETE FROM accounts WHERE login = ?1", [&login])?;
        if deleted == 0 {
            return Err(AccountError::NoSuchAccount(login).into());
        }
        Ok(())
    }

    fn list_accounts(&self) -> Result<Vec<AccountInfo>, StoreError> {
        let mut addresses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT login, address FROM addresses ORDER BY login, address = login DESC, address",
        )?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
            let (login, address) = row?;
            addresses.entry(login).or_default().push(address);
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT login, cram_secret IS NOT NULL, maildir FROM accounts ORDER BY login",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get::<_, Option<String>>(2)?))
        })?;
        let mut accounts = Vec::new();
        for row in rows {
            let (login, cram_md5, maildir) = row?;
            let addresses = addresses.remove(&login).unwrap_or_default();
            accounts.push(AccountInfo {
                login,
                addresses,
                cram_md5,
                maildir: maildir.map(PathBuf::from),
            });
        }
        Ok(accounts)
    }

    fn account(&self, login: &str) -> Result<Option<AccountInfo>, StoreError> {
        let Ok(login) = parse_login(login) else { return Ok(None) };
        account_info(&self.conn, &login)
    }

    fn verify_password(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Option<AccountInfo>, StoreError> {
        let login = parse_login(login).ok();
        let stored = match &login {
            Some(login) => password_hash_of(&self.conn, login)?,
            None => None,
        };
        let (Some(login), Some(stored)) = (login, stored) else {
            // Spend what a real check costs, so timing does not tell which logins exist.
            let _ = Argon2::default().verify_password(password.as_bytes(), dummy_hash()?);
            return Ok(None);
        };
        match Argon2::default().verify_password(password.as_bytes(), stored.as_str()) {
            Ok(()) => account_info(&self.conn, &login),
            Err(password_hash::Error::PasswordInvalid) => Ok(None),
            Err(e) => Err(StoreError::Corrupt { id: login, reason: format!("password hash: {e}") }),
        }
    }

    fn cram_md5_secret(&self, login: &str) -> Result<Option<String>, StoreError> {
        let Ok(login) = parse_login(login) else { return Ok(None) };
        let secret: Option<Option<String>> = self
            .conn
            .query_row("SELECT cram_secret FROM accounts WHERE login = ?1", [&login], |r| r.get(0))
            .optional()?;
        Ok(secret.flatten())
    }

    fn any_cram_md5(&self) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE cram_secret IS NOT NULL)",
            [],
            |r| r.get(0),
        )?)
    }

    fn add_alias(&mut self, address: &str, targets: &[String]) -> Result<Alias, StoreError> {
        let address = parse_alias_address(address)?;
        if targets.is_empty() {
            return Err(invalid(&address, "an alias needs at least one target").into());
        }
        let targets = targets.iter().map(|t| parse_target(t)).collect::<Result<Vec<_>, _>>()?;
        if targets.iter().any(|t| t.eq_ignore_ascii_case(&address)) {
            return Err(invalid(&address, "an alias cannot have itself as a target").into());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(login) = owner_of(&tx, &address)? {
            return Err(AccountError::AddressOwned { address, login }.into());
        }
        for target in &targets {
            tx.execute(
                "INSERT OR IGNORE INTO aliases (address, target) VALUES (?1, ?2)",
                params![address, target],
            )?;
        }
        let targets = alias_targets(&tx, &address)?;
        tx.commit()?;
        Ok(Alias { address, targets })
    }

    fn delete_alias(&mut self, address: &str, target: Option<&str>) -> Result<usize, StoreError> {
        let address = parse_alias_address(address)?;
        let deleted = match target {
            Some(target) => {
                let target = parse_target(target)?;
                let deleted = self.conn.execute(
                    "DELETE FROM aliases WHERE address = ?1 AND target = ?2",
                    params![address, target],
                )?;
                if deleted == 0 {
                    return Err(AccountError::NoSuchAlias { address, target: Some(target) }.into());
                }
                deleted
            }
            None => self.conn.execute("DELETE FROM aliases WHERE address = ?1", [&address])?,
        };
        if deleted == 0 {
            return Err(AccountError::NoSuchAlias { address, target: None }.into());
        }
        Ok(deleted)
    }

    fn list_aliases(&self) -> Result<Vec<Alias>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT address, target FROM aliases ORDER BY address, target")?;
        let mut aliases: Vec<Alias> = Vec::new();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (address, target) = row?;
            match aliases.last_mut() {
                Some(alias) if alias.address == address => alias.targets.push(target),
                _ => aliases.push(Alias { address, targets: vec![target] }),
            }
        }
        Ok(aliases)
    }

    fn resolve_local(&self, address: &str) -> Result<Resolution, StoreError> {
        let Ok(exact) = parse_address(address) else { return Ok(Resolution::Unknown) };
        let folded = Inbox::of(&exact).address;
        let mut candidates = vec![exact.as_str()];
        if folded != exact {
            candidates.push(&folded);
        }
        for candidate in candidates {
            if let Some(resolution) = self.account_or_alias(candidate)? {
                return Ok(resolution);
            }
        }
        let Some((_, domain)) = exact.rsplit_once('@') else { return Ok(Resolution::Unknown) };
        let catch_all = alias_targets(&self.conn, &format!("@{domain}"))?;
        if catch_all.is_empty() {
            return Ok(Resolution::Unknown);
        }
        Ok(Resolution::Alias(catch_all))
    }
}

impl SqliteStore {
    /// The account owning `address`, else the alias `address`, else `None`.
    fn account_or_alias(&self, address: &str) -> Result<Option<Resolution>, StoreError> {
        let account: Option<(String, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT a.login, a.maildir FROM addresses d JOIN accounts a ON a.login = d.login
                 WHERE d.address = ?1",
            )?
            .query_row([address], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if let Some((login, maildir)) = account {
            return Ok(Some(Resolution::Account { login, maildir: maildir.map(PathBuf::from) }));
        }
        let targets = alias_targets(&self.conn, address)?;
        Ok((!targets.is_empty()).then_some(Resolution::Alias(targets)))
    }
}

// ---------------------------------------------------------------------------------------
// Queries shared by the methods above (a `Transaction` derefs to its `Connection`).

fn password_hash_of(conn: &Connection, login: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT password_hash FROM accounts WHERE login = ?1")?
        .query_row([login], |r| r.get(0))
        .optional()?)
}

fn owner_of(conn: &Connection, address: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT login FROM addresses WHERE address = ?1")?
        .query_row([address], |r| r.get(0))
        .optional()?)
}

fn alias_targets(conn: &Connection, address: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT target FROM aliases WHERE address = ?1 ORDER BY target")?;
    let targets = stmt.query_map([address], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(targets)
}

/// Refuses an address another account owns or that is an alias.
fn check_unclaimed(conn: &Connection, address: &str) -> Result<(), StoreError> {
    if let Some(login) = owner_of(conn, address)? {
        return Err(AccountError::AddressOwned { address: address.to_string(), login }.into());
    }
    if !alias_targets(conn, address)?.is_empty() {
        return Err(AccountError::AddressIsAlias(address.to_string()).into());
    }
    Ok(())
}

fn account_info(conn: &Connection, login: &str) -> Result<Option<AccountInfo>, StoreError> {
    let row: Option<(bool, Option<String>)> = conn
        .prepare_cached("SELECT cram_secret IS NOT NULL, maildir FROM accounts WHERE login = ?1")?
        .query_row([login], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((cram_md5, maildir)) = row else { return Ok(None) };
    let mut stmt = conn.prepare_cached(
        "SELECT address FROM addresses WHERE login = ?1 ORDER BY address = login DESC, address",
    )?;
    let addresses = stmt.query_map([login], |r| r.get(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(Some(AccountInfo {
        login: login.to_string(),
        addresses,
        cram_md5,
        maildir: maildir.map(PathBuf::from),
    }))
}

// ---------------------------------------------------------------------------------------
// Passwords

fn hash_password(password: &str) -> Result<String, AccountError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// A hash with the default parameters that no password is checked against for real: verifying
/// an unknown login against it costs what verifying a real account costs.
fn dummy_hash() -> Result<&'static str, AccountError> {
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

fn check_password(password: &str) -> Result<(), AccountError> {
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
fn parse_login(text: &str) -> Result<String, AccountError> {
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
fn parse_address(text: &str) -> Result<String, AccountError> {
    let (local, domain) = split_address(text)?;
    if local.is_empty() {
        return Err(invalid(text, "the local part is empty"));
    }
    Ok(format!("{local}@{domain}").to_lowercase())
}

/// An alias's own address: a full address, or `@domain` for the domain's catch-all.
fn parse_alias_address(text: &str) -> Result<String, AccountError> {
    let (local, domain) = split_address(text)?;
    Ok(format!("{local}@{domain}").to_lowercase())
}

/// An alias target: a full address, local or remote. Its domain is lowercased; its local part
/// is kept as given, since a remote server may treat case as significant.
fn parse_target(text: &str) -> Result<String, AccountError> {
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

fn invalid(address: &str, reason: &'static str) -> AccountError {
    AccountError::InvalidAddress { address: address.to_string(), reason }
}

fn maildir_text(path: &Path) -> Result<String, AccountError> {
    let refuse = |reason| AccountError::InvalidMaildir { path: path.display().to_string(), reason };
    if !path.is_absolute() {
        return Err(refuse("it must be an absolute path"));
    }
    path.to_str().map(str::to_string).ok_or_else(|| refuse("it is not valid UTF-8"))
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageId;

    fn store() -> SqliteStore {
        let dir =
            std::env::temp_dir().join(format!("tern-accounts-test-{}", MessageId::generate()));
        SqliteStore::open(&dir).expect("open")
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn account_error(result: Result<impl std::fmt::Debug, StoreError>) -> AccountError {
        match result {
            Err(StoreError::Account(e)) => e,
            other => panic!("expected an account error, got {other:?}"),
        }
    }

    #[test]
    fn the_hash_is_argon2id_and_never_the_password() {
        let mut store = store();
        store.add_account("alice@example.org", "hunter2", &[], false, None).expect("add");
        let (hash, cram): (String, Option<String>) = store
            .conn
            .query_row("SELECT password_hash, cram_secret FROM accounts", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("row");
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains("hunter2"));
        assert_eq!(cram, None, "no CRAM-MD5 secret unless asked for");
        // Two accounts with one password get different hashes (random salts).
        store.add_account("bob", "hunter2", &[], false, None).expect("add");
        let hashes: Vec<String> = store
            .conn
            .prepare("SELECT password_hash FROM accounts")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_ne!(hashes[0], hashes[1]);
    }

    #[test]
    fn verify_accepts_the_right_password_only() {
        let mut store = store();
        let added = store
            .add_account(
                "Alice@Example.org",
                "correct horse",
                &strings(&["a@example.org"]),
                false,
                None,
            )
            .expect("add");
        assert_eq!(added.login, "alice@example.org");
        assert_eq!(added.addresses, strings(&["alice@example.org", "a@example.org"]));
        let ok = store.verify_password("alice@example.org", "correct horse").expect("verify");
        assert_eq!(ok, Some(added.clone()));
        assert_eq!(
            store.verify_password("ALICE@example.org", "correct horse").expect("v"),
            Some(added)
        );
        assert_eq!(store.verify_password("alice@example.org", "Correct horse").expect("v"), None);
        assert_eq!(store.verify_password("alice@example.org", "").expect("v"), None);
    }

    #[test]
    fn an_unknown_login_is_refused_after_a_comparable_check() {
        let mut store = store();
        store.add_account("alice", "pw", &[], false, None).expect("add");
        assert_eq!(store.verify_password("mallory", "pw").expect("verify"), None);
        assert_eq!(store.verify_password("not a login", "pw").expect("verify"), None);
        assert_eq!(store.cram_md5_secret("mallory").expect("secret"), None);
        // Both paths run one Argon2 verification. The fastest of a few runs each, compared
        // loosely, keeps a busy machine from failing the test.
        let time = |login: &str| {
            (0..3)
                .map(|_| {
                    let start = std::time::Instant::now();
                    store.verify_password(login, "wrong").expect("verify");
                    start.elapsed()
                })
                .min()
                .expect("three runs")
        };
        let (known, unknown) = (time("alice"), time("mallory"));
        assert!(unknown * 3 > known && known * 3 > unknown, "known {known:?}, unknown {unknown:?}");
    }

    #[test]
    fn passwd_changes_the_password_and_keeps_the_cram_secret_in_step() {
        let mut store = store();
        store.add_account("carol", "old", &[], true, None).expect("add");
        store.add_account("dave", "old", &[], false, None).expect("add");
        assert_eq!(store.cram_md5_secret("carol").expect("secret").as_deref(), Some("old"));
        store.set_password("carol", "new").expect("passwd");
        store.set_password("dave", "new").expect("passwd");
        assert_eq!(store.cram_md5_secret("carol").expect("secret").as_deref(), Some("new"));
        assert_eq!(store.cram_md5_secret("dave").expect("secret"), None);
        assert!(store.verify_password("carol", "old").expect("verify").is_none());
        assert!(store.verify_password("carol", "new").expect("verify").is_some());
        let err = account_error(store.set_password("erin", "x"));
        assert_eq!(err.to_string(), "no such account: erin");
    }

    #[test]
    fn refusals_name_the_thing() {
        let mut store = store();
        store.add_account("alice@example.org", "pw", &[], false, None).expect("add");
        let err = account_error(store.add_account("ALICE@example.org", "pw", &[], false, None));
        assert_eq!(err.to_string(), "account alice@example.org already exists");
        let err = account_error(store.add_account(
            "bob",
            "pw",
            &strings(&["Alice@Example.org"]),
            false,
            None,
        ));
        assert_eq!(
            err.to_string(),
            "address alice@example.org is already owned by alice@example.org"
        );
        assert!(store.account("bob").expect("account").is_none(), "nothing half-written");
        let err = account_error(store.add_account("bob", "pw", &strings(&["bob@"]), false, None));
        assert_eq!(err.to_string(), "invalid address \"bob@\": the domain is empty");
        for bad in
            ["bob", "a@b@c", "\"a b\"@c", "a@example.org.", "a@[192.0.2.1]", "a..b@c", "a b@c"]
        {
            let err = account_error(store.add_account("bob", "pw", &strings(&[bad]), false, None));
            assert!(matches!(err, AccountError::InvalidAddress { .. }), "{bad}: {err}");
        }
        let err = account_error(store.add_account("b o b", "pw", &[], false, None));
        assert!(err.to_string().starts_with("invalid login \"b o b\""), "{err}");
        let err = account_error(store.add_account("bob", "", &[], false, None));
        assert_eq!(err.to_string(), "invalid password: it is empty");
        let err = account_error(store.add_account("bob", "pw", &[], false, Some(Path::new("rel"))));
        assert_eq!(err.to_string(), "invalid maildir rel: it must be an absolute path");
        let err = account_error(store.delete_account("bob"));
        assert_eq!(err.to_string(), "no such account: bob");
        store.add_alias("list@example.org", &strings(&["x@remote.example"])).expect("alias");
        let err = account_error(store.add_account(
            "bob",
            "pw",
            &strings(&["list@example.org"]),
            false,
            None,
        ));
        assert_eq!(err.to_string(), "address list@example.org is an alias; delete the alias first");
        let err = account_error(store.add_alias("alice@example.org", &strings(&["x@y.example"])));
        assert!(matches!(err, AccountError::AddressOwned { .. }), "{err}");
        let err = account_error(store.delete_alias("list@example.org", Some("y@remote.example")));
        assert_eq!(err.to_string(), "no such alias: list@example.org -> y@remote.example");
    }

    #[test]
    fn resolution_order_plus_addressing_and_catch_all() {
        let mut store = store();
        let maildir = std::env::temp_dir().join("tern-maildir-bob");
        store
            .add_account(
                "bob@example.org",
                "pw",
                &strings(&["robert@example.org"]),
                false,
                Some(&maildir),
            )
            .expect("add");
        store.add_alias("sales@example.org", &strings(&["bob@example.org"])).expect("alias");
        store
            .add_alias("bob+lists@example.org", &strings(&["archive@remote.example"]))
            .expect("alias");
        store.add_alias("@example.org", &strings(&["postmaster@example.org"])).expect("catch-all");
        let bob = Resolution::Account { login: "bob@example.org".into(), maildir: Some(maildir) };
        let resolve = |address: &str| store.resolve_local(address).expect("resolve");
        assert_eq!(resolve("bob@example.org"), bob);
        assert_eq!(resolve("Robert@EXAMPLE.org"), bob, "case-insensitive, any owned address");
        assert_eq!(resolve("bob+news@example.org"), bob, "plus-addressing folded");
        assert_eq!(
            resolve("BOB+Lists@example.org"),
            Resolution::Alias(strings(&["archive@remote.example"])),
            "the exact alias beats the folded account"
        );
        assert_eq!(
            resolve("sales+x@example.org"),
            Resolution::Alias(strings(&["bob@example.org"]))
        );
        assert_eq!(
            resolve("nobody@example.org"),
            Resolution::Alias(strings(&["postmaster@example.org"]))
        );
        assert_eq!(resolve("nobody@other.example"), Resolution::Unknown);
        assert_eq!(resolve("not an address"), Resolution::Unknown);
        assert_eq!(resolve("bob@example.org."), Resolution::Unknown);
    }

    #[test]
    fn an_alias_may_have_many_targets() {
        let mut store = store();
        let alias = store
            .add_alias("Team@Example.org", &strings(&["Carol@Remote.Example", "alice@example.org"]))
            .expect("alias");
        assert_eq!(alias.address, "team@example.org");
        assert_eq!(alias.targets, strings(&["Carol@remote.example", "alice@example.org"]));
        let alias = store
            .add_alias("team@example.org", &strings(&["dave@example.org", "alice@example.org"]))
            .expect("more");
        assert_eq!(alias.targets.len(), 3, "targets add up, duplicates ignored");
        store.add_alias("@example.net", &strings(&["alice@example.org"])).expect("catch-all");
        let aliases = store.list_aliases().expect("list");
        assert_eq!(
            aliases.iter().map(|a| a.address.as_str()).collect::<Vec<_>>(),
            ["@example.net", "team@example.org"]
        );
        assert_eq!(
            store.delete_alias("team@example.org", Some("Carol@REMOTE.example")).expect("delete"),
            1
        );
        assert_eq!(
            store.resolve_local("team@example.org").expect("resolve"),
            Resolution::Alias(strings(&["alice@example.org", "dave@example.org"]))
        );
        assert_eq!(store.delete_alias("team@example.org", None).expect("delete"), 2);
        assert_eq!(store.resolve_local("team@example.org").expect("resolve"), Resolution::Unknown);
        let err =
            account_error(store.add_alias("loop@example.org", &strings(&["Loop@example.org"])));
        assert!(err.to_string().contains("itself"), "{err}");
        let err = account_error(store.add_alias("x@example.org", &[]));
        assert!(err.to_string().contains("at least one target"), "{err}");
        let err = account_error(store.add_alias("x@example.org", &strings(&["@example.org"])));
        assert!(matches!(err, AccountError::InvalidAddress { .. }), "{err}");
    }

    #[test]
    fn deleting_an_account_frees_its_addresses() {
        let mut store = store();
        store
            .add_account("erin@example.org", "pw", &strings(&["e@example.org"]), true, None)
            .expect("add");
        assert_eq!(store.list_accounts().expect("list").len(), 1);
        store.delete_account("Erin@example.org").expect("delete");
        let left: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM addresses", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 0, "addresses cascade with the account");
        assert_eq!(store.resolve_local("e@example.org").expect("resolve"), Resolution::Unknown);
        assert_eq!(store.cram_md5_secret("erin@example.org").expect("secret"), None);
        assert!(store.list_accounts().expect("list").is_empty());
        // The addresses are free for a new owner.
        store
            .add_account("frank", "pw", &strings(&["e@example.org"]), false, None)
            .expect("re-add");
    }

    #[test]
    fn list_shows_accounts_without_secrets() {
        let mut store = store();
        store
            .add_account("zed", "pw", &strings(&["z@example.org", "a@example.org"]), true, None)
            .expect("add");
        store
            .add_account("amy@example.org", "pw", &[], false, Some(Path::new("/var/mail/amy")))
            .expect("add");
        let list = store.list_accounts().expect("list");
        assert_eq!(
            list,
            vec![
                AccountInfo {
                    login: "amy@example.org".into(),
                    addresses: strings(&["amy@example.org"]),
                    cram_md5: false,
                    maildir: Some("/var/mail/amy".into()),
                },
                AccountInfo {
                    login: "zed".into(),
                    addresses: strings(&["a@example.org", "z@example.org"]),
                    cram_md5: true,
                    maildir: None,
                },
            ]
        );
    }
}
