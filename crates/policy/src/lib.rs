//! Tern's policy decisions as pure functions over values: no sockets, no storage, no clock.
//!
//! Every stage of an SMTP session asks this crate what to do and gets back either permission or
//! a [`Denial`], the exact reply the session should send:
//!
//! - [`relay`] decides each `RCPT TO` (local, relay, or deny — never an open relay), checks that
//!   an authenticated user sends as one of their own addresses, and normalizes local parts into
//!   account lookup keys.
//! - [`limits`] holds per-client state shared by all sessions (concurrent connections,
//!   connection rate, AUTH failure throttling) and per-session limits (messages per connection,
//!   the error tarpit).
//! - [`lists`] holds allow/block lists by client IP network and by sender domain.
//! - [`config`] is the typed configuration of all three, with defaults in one place, and its
//!   conversion into the runtime types.
//! - [`address`] splits envelope addresses the way `smtp-proto` delivers them.
//!
//! Time is always an argument (`now: Instant`); nothing here reads a clock, so every decision is
//! deterministic and covered by table tests. The session layer owns I/O, sleeping and logging.
#![deny(missing_docs)]

pub mod address;
pub mod config;
pub mod denial;
pub mod limits;
pub mod lists;
pub mod relay;

pub use config::{ConfigError, LimitsConfig, ListsConfig, RelayConfig};
pub use denial::Denial;
pub use limits::{
    AuthThrottle, AuthThrottleSettings, ClientKey, ConnectionCounter, ConnectionGuard,
    ConnectionRate, Limits, Rate, Tarpit,
};
pub use lists::{AccessLists, DomainPattern};
pub use relay::{Client, RcptVerdict, RelayPolicy, lookup_key, normalize_local_part};
