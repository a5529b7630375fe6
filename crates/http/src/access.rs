//! Who is asking, and what they may see. Without authentication (the catcher, or any HTTP
//! listener on loopback) every request sees everything. With it, a request carries either the
//! admin API key (`Authorization: Bearer KEY`: everything) or an account's login and password
//! (HTTP Basic: only that account's mailbox). Verified Basic credentials are remembered for a
//! short while so argon2 does not run on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tern_store::{SearchQuery, StoredMessage};

use crate::State;

/// How long verified Basic credentials are trusted without checking them again.
const CREDENTIAL_CACHE_TTL: Duration = Duration::from_secs(300);
/// Most remembered credentials.
const CREDENTIAL_CACHE_MAX: usize = 10_000;

/// What a request may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every message (no authentication needed, or the admin API key).
    Everything,
    /// Only messages with a copy in this account's mailbox.
    Account(String),
}

impl Access {
    /// `query` limited to what this request may see.
    pub fn scope(&self, query: Option<SearchQuery>) -> Option<SearchQuery> {
        match self {
            Access::Everything => query,
            Access::Account(login) => Some(query.unwrap_or_default().for_account(login)),
        }
    }

    /// Whether this request may see `message`.
    pub fn may_see(&self, message: &StoredMessage) -> bool {
        match self {
            Access::Everything => true,
            Access::Account(login) => {
                message.envelope.recipients.iter().any(|r| r.route.account() == Some(login))
            }
        }
    }

    /// The login, for an account.
    pub fn account(&self) -> Option<&str> {
        match self {
            Access::Everything => None,
            Access::Account(login) => Some(login),
        }
    }
}

/// Checks an account's password (blocking: argon2).
pub trait PasswordCheck: Send + Sync + 'static {
    /// The account's login when the password is right.
    fn verify(&self, login: &str, password: &str) -> Option<String>;
}

/// Authentication settings of the HTTP listener.
pub struct HttpAuth {
    /// The admin API key, if one is configured.
    pub api_key: Option<String>,
    /// Account logins, in MTA mode.
    pub accounts: Option<Arc<dyn PasswordCheck>>,
    cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl HttpAuth {
    /// Authentication with an optional admin key and optional account logins.
    pub fn new(api_key: Option<String>, accounts: Option<Arc<dyn PasswordCheck>>) -> Self {
        HttpAuth { api_key, accounts, cache: Mutex::default() }
    }

    async fn access(&self, authorization: Option<&str>) -> Option<Access> {
        let authorization = authorization?;
        if let Some(key) = authorization.strip_prefix("Bearer ") {
            let expected = self.api_key.as_deref()?;
            // Compare digests so the comparison time does not depend on the key.
            return (Sha256::digest(key.trim()) == Sha256::digest(expected))
                .then_some(Access::Everything);
        }
        let encoded = authorization.strip_prefix("Basic ")?;
        let digest: [u8; 32] = Sha256::digest(encoded.trim()).into();
        if let Some(login) = self.cached(&digest) {
            return Some(Access::Account(login));
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (login, password) = decoded.split_once(':')?;
        let accounts = self.accounts.clone()?;
        let (login, password) = (login.to_string(), password.to_string());
        let verified = tokio::task::spawn_blocking(move || accounts.verify(&login, &password))
            .await
            .ok()??;
        self.remember(digest, &verified);
        Some(Access::Account(verified))
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(digest)
            .filter(|(_, at)| at.elapsed() < CREDENTIAL_CACHE_TTL)
            .map(|(login, _)| login.clone())
    }

    fn remember(&self, digest: [u8; 32], login: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CREDENTIAL_CACHE_MAX {
            cache.retain(|_, (_, at)| at.elapsed() < CREDENTIAL_CACHE_TTL);
            if cache.len() >= CREDENTIAL_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, (login.to_string(), Instant::now()));
    }
}

/// Paths answered without credentials: health checks for orchestrators.
const PUBLIC_PATHS: &[&str] = &["/livez", "/readyz"];

/// Middleware: attaches the request's [`Access`], or answers `401` with a Basic challenge.
pub async fn authenticate(
    AxumState(state): AxumState<State>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(auth) = state.auth.clone() else {
        request.extensions_mut().insert(Access::Everything);
        return next.run(request).await;
    };
    if PUBLIC_PATHS.contains(&request.uri().path()) {
        request.extensions_mut().insert(Access::Everything);
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match auth.access(header.as_deref()).await {
        Some(access) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        None => {
            let body = axum::Json(serde_json::json!({
                "Error": "authentication required: an account's login and password (HTTP Basic) or the admin API key (Bearer)"
            }));
            let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Tern\", charset=\"UTF-8\""),
            );
            response
        }
    }
}
