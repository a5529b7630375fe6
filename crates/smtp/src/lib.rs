//! Inbound SMTP: listeners, connections and the session state machine.
//!
//! - [`server`] binds listeners, accepts connections under a connection limit and runs one
//!   session task per connection until shutdown.
//! - [`connection`] frames bytes: command lines under a length limit, DATA bodies, BDAT chunks,
//!   and buffered replies flushed whenever the session would wait for the client (PIPELINING).
//! - [`session`] is the RFC 5321 state machine, one file per verb family.
//!
//! Sessions never write storage themselves: recipients are routed and finished messages taken
//! in by the door (`tern-ingest`), which answers only after they are durable.
// Sums over what a peer sends must not wrap (a wrapped BDAT size once let one client buffer
// without limit): use checked or saturating arithmetic, or say why an operation is bounded.
#![deny(clippy::arithmetic_side_effects)]

pub mod config;
pub mod connection;
pub mod mta;
pub mod server;
pub mod session;
pub mod tls;

pub use config::{ListenerConfig, Role, SmtpConfig};
pub use mta::Mta;
pub use server::{Context, SmtpError, bind, serve};
pub use session::Session;
pub use tern_ingest::directory::{AuthUser, Directory, DirectoryError, LocalTarget};
pub use tls::TlsProvider;
