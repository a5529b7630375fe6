//! What Tern asks of the account directory: password checks and CRAM-MD5 secrets (for the SMTP
//! session's AUTH) and the resolution of local recipients (for routing). The store implements
//! it; calls are blocking and callers run them off the async threads.

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    /// The login.
    pub login: String,
    /// Addresses the user may send as.
    pub addresses: Vec<String>,
}

/// Where a local address leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalTarget {
    /// An account's mailbox.
    Account {
        /// The account's login.
        login: String,
    },
    /// An alias with these targets (addresses, local or remote).
    Alias(Vec<String>),
    /// Nobody: the recipient is refused with `550 5.1.1`.
    Unknown,
}

/// A directory lookup failed (not "no such user": a broken store).
#[derive(Debug, thiserror::Error)]
#[error("directory lookup failed: {0}")]
pub struct DirectoryError(pub String);

/// The account directory.
pub trait Directory: Send + Sync + 'static {
    /// Checks a login and password.
    fn verify(&self, login: &str, password: &str) -> Result<Option<AuthUser>, DirectoryError>;
    /// The CRAM-MD5 shared secret of an account that enabled it, with the account.
    fn cram_secret(&self, login: &str) -> Result<Option<(String, AuthUser)>, DirectoryError>;
    /// Whether any account can use CRAM-MD5 (the mechanism is offered only then: clients such
    /// as curl pick it when offered and do not fall back).
    fn cram_md5_enabled(&self) -> bool;
    /// Resolves an address of one of our domains.
    fn resolve(&self, address: &str) -> Result<LocalTarget, DirectoryError>;
}
