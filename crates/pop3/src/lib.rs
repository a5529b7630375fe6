//! POP3 (RFC 1939) for Tern's stored mail, with CAPA and response codes (RFC 2449), STLS
//! (RFC 2595), AUTH PLAIN (RFC 5034), UIDL and TOP.
//!
//! - [`command`] parses command lines and [`wire`] writes messages (CRLF line ends, dot
//!   stuffing, TOP's truncation): pure code over bytes, no I/O.
//! - [`maildrop`] is a session's snapshot of a mailbox taken at login: message numbers,
//!   exact sizes, unique ids and the deletion marks that only QUIT applies.
//! - [`session`] is the state machine (AUTHORIZATION, TRANSACTION, UPDATE) over the SMTP
//!   crate's connection framing; [`server`] accepts connections and holds the maildrop locks.
//! - [`config`] is the `[pop3]` section with its defaults.
//!
//! Sessions never write the store themselves: deletions at QUIT go through the spool, the
//! same change the HTTP API's DELETE applies. A mail server's account sees the messages
//! delivered to it; the catcher's one configured login sees every captured message.
// Numbers come from the peer (message numbers, TOP's line count): no arithmetic may wrap.
#![deny(clippy::arithmetic_side_effects)]

pub mod command;
pub mod config;
pub mod maildrop;
pub mod server;
pub mod session;
pub mod wire;

pub use config::Pop3Config;
pub use server::{Context, Logins, serve};
