//! Accounts, addresses and aliases in SQLite: the [`AccountStore`] implementation over the
//! `accounts`, `addresses` and `aliases` tables (migration 3). What the rules are (passwords,
//! address syntax) is in the neutral [`crate::accounts`] module; this one only stores them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::SqliteStore;
use crate::StoreError;
use crate::accounts::{
    AccountError, AccountInfo, AccountStore, Alias, Resolution, check_password, hash_password,
    invalid, maildir_text, now_ms, parse_address, parse_alias_address, parse_login, parse_target,
    password_matches, spend_a_verification,
};
use crate::inbox::Inbox;

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
            spend_a_verification(password)?;
            return Ok(None);
        };
        match password_matches(password, &stored) {
            Ok(true) => account_info(&self.conn, &login),
            Ok(false) => Ok(None),
            Err(reason) => Err(StoreError::Corrupt { id: login, reason }),
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
