//! The browser guard: what a web page open in the developer's browser may ask of this server.
//! Any page can send requests to `127.0.0.1:8025`; this layer decides which are answered, before
//! authentication and before any handler. It owns the Host, Origin/Sec-Fetch-Site and
//! body-type checks and the CORS answers for listed origins; it must not decide who may see
//! what (that is `access.rs`).
//!
//! 1. **Host** (DNS rebinding): only a Host that names this server is answered, else `421`.
//!    Always answered: IP literals, `localhost` and `*.localhost`; then the configured
//!    hostname and `http.allowed_hosts`. An IP literal is safe whatever the listen address (a
//!    wildcard listener cannot know its names): a rebinding page can only put its own *name*
//!    in Host, while an IP-literal Host means the browser connected to that very address, so
//!    the page came from this server.
//! 2. **Origin**: writes (every method but GET, HEAD and OPTIONS), websocket handshakes (which
//!    CORS does not protect) and CORS preflights from a page of another origin are refused with
//!    `403`, unless the origin is listed in `http.cors_origins`. `Origin` and `Sec-Fetch-Site`
//!    are both checked: `same-origin` and `none` pass, `same-site` and `cross-site` do not
//!    (other ports of localhost are the same site). Reads are left to the browser's same-origin
//!    policy: without CORS headers, which only listed origins get, a page cannot read answers.
//! 3. **Body type**: a browser's request (one with `Origin` or `Sec-Fetch-Site`) that carries a
//!    body must declare it JSON (`415` otherwise): text/plain, form posts and untyped blobs are
//!    what a page can send without a CORS preflight, and even a same-origin page may be a
//!    captured HTML mail opened from `/view/`, whose form could post to the API.
//!
//! Clients that are not browsers (curl, test suites, `tern queue`, Mailpit's client libraries)
//! send neither header and a loopback Host: they pass unchanged, `curl -d` bodies included.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::HttpBody as _;
use axum::extract::{Request, State as AxumState};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::{ApiError, State};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);
/// `Sec-Fetch-Site` (Fetch Metadata): where the request was made from, as the browser saw it.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Which Host names and page origins this server answers beyond loopback and its own pages.
#[derive(Debug, Clone, Default)]
pub struct BrowserPolicy {
    /// Host names (lower-case, without port and trailing dot) answered besides IP literals,
    /// `localhost` and `*.localhost`.
    hosts: Vec<String>,
    /// Every Host is answered (`"*"` in `http.allowed_hosts`, e.g. behind a proxy that checks).
    any_host: bool,
    /// Origins (`scheme://host[:port]`, lower-case) whose pages may write and read.
    cors_origins: Vec<String>,
}

/// A value of `http.allowed_hosts` or `http.cors_origins` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not a bare host name.
    #[error("{0:?} is not a host name (no scheme, port or path; \"*\" allows every Host)")]
    Host(String),
    /// Not an origin.
    #[error("{0:?} is not an origin: write scheme://host[:port], e.g. \"http://localhost:3000\"")]
    Origin(String),
}

impl BrowserPolicy {
    /// The policy for a server called `hostname`, answering `allowed_hosts` too and letting
    /// pages of `cors_origins` in.
    pub fn new(
        hostname: &str,
        allowed_hosts: &[String],
        cors_origins: &[String],
    ) -> Result<Self, PolicyError> {
        let mut policy = BrowserPolicy::default();
        for host in std::iter::once(hostname).chain(allowed_hosts.iter().map(String::as_str)) {
            match host {
                "*" => policy.any_host = true,
                host => policy.hosts.push(host_name(host)?),
            }
        }
        policy.cors_origins =
            cors_origins.iter().map(|o| origin(o)).collect::<Result<_, PolicyError>>()?;
        Ok(policy)
    }

    /// Whether `host` (from a Host header, without port) names this server.
    fn answers(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&host);
        self.any_host
            || bare.parse::<IpAddr>().is_ok()
            || host == "localhost"
            || host.ends_with(".localhost")
            || self.hosts.contains(&host)
    }

    /// Whether pages of `origin` may write and read.
    fn lists(&self, origin: &str) -> bool {
        self.cors_origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    /// The CORS answers for the listed origins, or `None` when there are none.
    pub(crate) fn cors(&self) -> Option<CorsLayer> {
        let origins: Vec<HeaderValue> =
            self.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        if origins.is_empty() {
            return None;
        }
        Some(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                ])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
                .allow_credentials(true)
                .max_age(PREFLIGHT_MAX_AGE),
        )
    }
}

/// A configured host name, lower-cased.
fn host_name(text: &str) -> Result<String, PolicyError> {
    let host = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.parse::<Authority>().is_ok_and(|a| a.as_str() == a.host())
        && !host.contains(['/', '@']);
    valid.then_some(host).ok_or_else(|| PolicyError::Host(text.to_string()))
}

/// A configured origin, lower-cased, as browsers send it (no trailing slash, no path).
fn origin(text: &str) -> Result<String, PolicyError> {
    let lower = text.trim().to_ascii_lowercase();
    let valid = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .is_some_and(|rest| rest.parse::<Authority>().is_ok_and(|a| !a.as_str().contains('@')));
    valid.then_some(lower).ok_or_else(|| PolicyError::Origin(text.to_string()))
}

/// Marks a request a page of another site made (a read: writes from there are refused). Such
/// a request may read what the browser lets it, but changes nothing as a side effect: opening a
/// message through it does not mark the message read.
#[derive(Debug, Clone, Copy)]
pub struct ForeignPage;

/// Middleware: answers only requests for this server's names, and refuses writes and
/// websockets from pages of other origins (checks 1 and 2 of the module doc). Every answer
/// carries `X-Content-Type-Options: nosniff`: no browser guesses a type Tern did not declare.
pub async fn check(
    AxumState(state): AxumState<State>,
    mut request: Request,
    next: Next,
) -> Response {
    let host = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| request.headers().get(header::HOST).map(|v| text(v).to_string()));
    if let Err(refusal) = named(&state.browser, host.as_deref())
        .and_then(|()| same_origin(&state.browser, &request, host.as_deref()))
    {
        tracing::info!(
            method = %request.method(),
            path = request.uri().path(),
            host = host.as_deref().unwrap_or_default(),
            origin = request.headers().get(header::ORIGIN).map(text).unwrap_or_default(),
            reason = %refusal,
            "HTTP request refused"
        );
        return no_sniffing(refusal.into_response());
    }
    if from_foreign_page(&state.browser, &request, host.as_deref()) {
        request.extensions_mut().insert(ForeignPage);
    }
    no_sniffing(next.run(request).await)
}

fn no_sniffing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Whether a page of another site (not a listed origin) made the request, by `Origin` or
/// `Sec-Fetch-Site`.
fn from_foreign_page(policy: &BrowserPolicy, request: &Request, host: Option<&str>) -> bool {
    let headers = request.headers();
    let origin = headers.get(header::ORIGIN).map(text);
    if origin.is_some_and(|o| policy.lists(o)) {
        return false;
    }
    let site = headers.get(SEC_FETCH_SITE).map(text);
    matches!(site, Some("cross-site" | "same-site")) || origin.is_some_and(|o| !is_own(o, host))
}

/// Check 1: the Host names this server (a request without one is not from a browser).
fn named(policy: &BrowserPolicy, host: Option<&str>) -> Result<(), ApiError> {
    let Some(value) = host else { return Ok(()) };
    let answered = value.parse::<Authority>().is_ok_and(|a| policy.answers(a.host()));
    if answered {
        return Ok(());
    }
    Err(ApiError::Misdirected(format!(
        "this server does not answer to Host {value:?}: use 127.0.0.1, localhost or its \
         hostname, or add the name to http.allowed_hosts"
    )))
}

/// Check 2: a write, websocket or preflight comes from this server's own pages, from no page
/// at all, or from a listed origin.
fn same_origin(
    policy: &BrowserPolicy,
    request: &Request,
    host: Option<&str>,
) -> Result<(), ApiError> {
    let headers = request.headers();
    let safe = matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if safe && !is_websocket(headers) && !is_preflight(request) {
        return Ok(());
    }
    if !from_foreign_page(policy, request, host) {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).map(text);
    let site = headers.get(SEC_FETCH_SITE).map(text);
    let from = match (origin, site) {
        (Some(origin), _) => format!("a page of {origin}"),
        (None, site) => format!("a {} page", site.unwrap_or_default()),
    };
    Err(ApiError::Forbidden(format!(
        "cross-origin request refused: {from} may not {} here; list its origin in \
         http.cors_origins to allow it",
        if is_websocket(headers) { "open the event websocket" } else { "change anything" }
    )))
}

/// Whether `origin` is the server's own, as the browser addressed it (`Host`). The scheme is
/// not compared: behind a TLS proxy the page is `https://` while this server speaks HTTP.
fn is_own(origin: &str, host: Option<&str>) -> bool {
    let authority = origin.split_once("://").map(|(_, authority)| authority);
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers.get(header::UPGRADE).is_some_and(|v| text(v).eq_ignore_ascii_case("websocket"))
}

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// A header's text; a value that is not text reads as an opaque origin would.
fn text(value: &HeaderValue) -> &str {
    value.to_str().unwrap_or("null")
}

/// Middleware: a browser's request that carries a body must declare it JSON (check 3).
pub async fn require_json_body(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let from_browser = headers.contains_key(header::ORIGIN) || headers.contains_key(SEC_FETCH_SITE);
    if !from_browser || request.body().is_end_stream() {
        return next.run(request).await;
    }
    let declared = request.headers().get(header::CONTENT_TYPE).map(text).unwrap_or_default();
    let essence = declared.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || essence.strip_prefix("application/").is_some_and(|s| s.ends_with("+json"));
    if json {
        return next.run(request).await;
    }
    let shown = if declared.is_empty() { "none".to_string() } else { format!("{declared:?}") };
    ApiError::UnsupportedMediaType(format!(
        "the request body must be JSON: send Content-Type: application/json (got {shown})"
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], origins: &[&str]) -> BrowserPolicy {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        BrowserPolicy::new("Tern.Test", &strings(hosts), &strings(origins)).expect("valid policy")
    }

    #[test]
    fn hosts_that_name_this_server() {
        let p = policy(&["mail.example."], &[]);
        for host in ["127.0.0.1", "127.8.9.10", "[::1]", "localhost", "LOCALHOST.", "ui.localhost"]
        {
            assert!(p.answers(host), "{host}");
        }
        for host in ["tern.test", "mail.example", "192.0.2.7", "[2001:db8::1]"] {
            assert!(p.answers(host), "{host}");
        }
        for host in ["evil.test", "127.0.0.1.evil.test", "localhost.evil.test", "tern.test.evil"] {
            assert!(!p.answers(host), "{host}");
        }
        assert!(policy(&["*"], &[]).answers("evil.test"));
    }

    #[test]
    fn bad_names_and_origins_are_refused() {
        let strings = |s: &str| vec![s.to_string()];
        for host in ["http://x.test", "x.test:80", "x.test/a", "", "a b"] {
            assert!(BrowserPolicy::new("t", &strings(host), &[]).is_err(), "{host:?}");
        }
        for origin in ["*", "localhost:3000", "ftp://x.test", "http://", "http://u@x.test"] {
            assert!(BrowserPolicy::new("t", &[], &strings(origin)).is_err(), "{origin:?}");
        }
        let p = policy(&[], &["HTTP://LocalHost:3000"]);
        assert!(p.lists("http://localhost:3000") && !p.lists("http://localhost:3001"));
    }

    #[test]
    fn own_origin_is_compared_with_the_host() {
        assert!(is_own("http://127.0.0.1:8025", Some("127.0.0.1:8025")));
        assert!(is_own("https://Tern.Example", Some("tern.example")));
        assert!(!is_own("http://127.0.0.1:8026", Some("127.0.0.1:8025")));
        assert!(!is_own("null", Some("127.0.0.1:8025")));
        assert!(!is_own("http://127.0.0.1:8025", None));
    }
}
