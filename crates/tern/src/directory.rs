//! The account directory the SMTP sessions consult (AUTH, local recipients), backed by the
//! store's accounts through a pool of connections so lookups never wait behind each other.

use std::path::Path;
use std::sync::Arc;

use tern_ingest::{AuthUser, Directory, DirectoryError, LocalTarget};
use tern_store::SqliteStore;
use tern_store::accounts::{AccountInfo, AccountStore, Resolution};
use tern_store::pool::Pool;

/// The store-backed directory.
pub struct StoreDirectory {
    pool: Pool<SqliteStore>,
}

impl StoreDirectory {
    /// A directory over the store in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.to_path_buf();
        StoreDirectory { pool: Pool::new(Arc::new(move || SqliteStore::open_read_only(&dir))) }
    }
}

fn user(info: AccountInfo) -> AuthUser {
    AuthUser { login: info.login, addresses: info.addresses }
}

fn failed(e: tern_store::StoreError) -> DirectoryError {
    DirectoryError(e.to_string())
}

impl tern_http::PasswordCheck for StoreDirectory {
    fn verify(&self, login: &str, password: &str) -> Option<String> {
        self.pool
            .with(|store| store.verify_password(login, password))
            .ok()
            .flatten()
            .map(|a| a.login)
    }
}

impl Directory for StoreDirectory {
    fn verify(&self, login: &str, password: &str) -> Result<Option<AuthUser>, DirectoryError> {
        self.pool
            .with(|store| store.verify_password(login, password))
            .map(|a| a.map(user))
            .map_err(failed)
    }

    fn cram_secret(&self, login: &str) -> Result<Option<(String, AuthUser)>, DirectoryError> {
        self.pool
            .with(|store| {
                let Some(secret) = store.cram_md5_secret(login)? else { return Ok(None) };
                Ok(store.account(login)?.map(|info| (secret, user(info))))
            })
            .map_err(failed)
    }

    fn cram_md5_enabled(&self) -> bool {
        self.pool.with(|store| store.any_cram_md5()).unwrap_or(false)
    }

    fn resolve(&self, address: &str) -> Result<LocalTarget, DirectoryError> {
        let resolution = self.pool.with(|store| store.resolve_local(address)).map_err(failed)?;
        Ok(match resolution {
            Resolution::Account { login, .. } => LocalTarget::Account { login },
            Resolution::Alias(targets) => LocalTarget::Alias(targets),
            Resolution::Unknown => LocalTarget::Unknown,
        })
    }
}
