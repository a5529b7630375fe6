//! The SMTP protocol as pure code over bytes: no sockets, no clocks, no storage.
//!
//! - [`line`] finds command lines in a receive buffer without ever buffering past a limit.
//! - [`command`] turns one command line into a typed request (parsing is delegated to
//!   `smtp-proto`) or into the precise reply a malformed line deserves.
//! - [`data`] decodes a `DATA` body: dot-unstuffing, the `<CRLF>.<CRLF>` terminator, bare CR/LF
//!   detection (the SMTP smuggling defence) and the size limit.
//! - [`reply`] is the server's reply type with RFC 3463 enhanced status codes;
//!   [`client_reply`] parses replies on the client's side (outbound delivery, `tern bench`).
//! - [`received`] renders the `Received:` trace header.
//! - [`sasl`] decodes SMTP AUTH responses and checks CRAM-MD5 digests.
//!
//! The session layer (`tern-smtp`) owns I/O and calls into these pieces; everything here is
//! deterministic and covered by table tests.
// Sums over what a peer sends must not wrap (a wrapped BDAT size once let one client buffer
// without limit): use checked or saturating arithmetic, or say why an operation is bounded.
#![deny(clippy::arithmetic_side_effects)]
#![deny(missing_docs)]

pub mod client_reply;
pub mod command;
pub mod data;
pub mod line;
pub mod received;
pub mod reply;
pub mod sasl;

pub use command::{Command, CommandError, parse_command};
pub use data::{DataDecoder, DataError, DataProgress};
pub use line::{LineScan, scan_line};
pub use reply::Reply;
