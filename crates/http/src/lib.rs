//! HTTP: the Mailpit-compatible REST API (`/api/v1`), Tern's extensions (wait-for, inboxes,
//! server-sent events, links, their check and codes), the websocket Mailpit's UI uses, the embedded web UI
//! and Prometheus metrics.
//!
//! Handlers read through a pool of store readers and change mail only through the spool (the
//! single writer); new mail (the send API, release) comes in by the door (`tern-ingest`)
//! exactly like SMTP's. Nothing here parses
//! a message to list it; a message is parsed only when one is opened.

mod access;
pub mod activity;
pub mod api;
mod error;
mod events;
mod extract;
pub mod fuzzing;
mod guard;
mod htmlcheck;
mod json;
pub mod linkcheck;
mod mime;
mod readers;
mod send;
mod sendgrid;
pub mod server;
mod ui;
mod wait;

use std::sync::Arc;
use std::time::Instant;

pub use access::{Access, HttpAuth, PasswordCheck};
pub use api::{ROUTES, router};
pub use error::ApiError;
pub use events::SocketHub;
pub use guard::{BrowserPolicy, PolicyError};
pub use readers::{OpenReader, Readers};
pub use server::ServerLimits;
use tern_queue::Spool;

/// What every request handler shares.
pub struct AppState {
    /// Store readers.
    pub readers: Readers,
    /// The writer: deletes, read flags, queue commands.
    pub spool: Spool,
    /// The door new mail enters by: the send API and release.
    pub door: Arc<tern_ingest::Door>,
    /// Shown by `/api/v1/info`.
    pub database: String,
    /// Our hostname, for messages made by the send API.
    pub hostname: String,
    /// Renders `/metrics`, when metrics are installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Process start, for uptime.
    pub started: Instant,
    /// Cancelled at shutdown: event streams and waits end so the server can stop.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Required credentials; `None` lets every request see everything.
    pub auth: Option<Arc<HttpAuth>>,
    /// Why `POST /api/v1/message/{ID}/release` is refused here (the answer tells the user what
    /// to configure), or `None` when released messages may go out through the queue.
    pub release_refused: Option<String>,
    /// The smarthost released mail goes through (`[outbound] relay_host`), shown in
    /// `/api/v1/webui` as Mailpit's `SMTPServer`; `None` when it goes to each domain's MX.
    pub release_relay: Option<String>,
    /// What the Mailpit websockets share (`SocketHub::default()`; it starts with the first).
    pub socket_hub: SocketHub,
    /// Which Host names and page origins are answered (see `guard`).
    pub browser: BrowserPolicy,
    /// Makes the requests of the link check; `None` while it is off (`[http] link_check`).
    pub link_check: Option<Arc<linkcheck::LinkChecker>>,
    /// Delivery outcomes per hour for `/api/v1/stats` (`Activity::default()`; the server runs
    /// `activity::run` to sample them).
    pub activity: activity::Activity,
    /// Answers `/api/v1/validate`; `None` where DNS was not set up (tests).
    pub validator: Option<Arc<tern_delivery::validate::Validator>>,
}

/// Shared state handle.
pub type State = Arc<AppState>;
