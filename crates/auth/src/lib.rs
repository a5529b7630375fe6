//! Message authentication for Tern, on mail-auth: judging the mail it receives (SPF, DKIM,
//! DMARC, ARC — [`verify`]), what those results mean for a message ([`results`]), and proving
//! the mail it sends (DKIM signing and ARC sealing — [`sign`], with the keys of [`keys`]).
//!
//! The check chain in `tern-ingest` runs the [`Verifier`] at end of data and acts on its
//! [`Decision`]; the door asks the [`Signer`] to sign what trusted clients send. Nothing here
//! knows about sockets, SMTP replies or the store.

pub mod cache;
pub mod config;
pub mod keys;
pub mod records;
pub mod results;
pub mod sign;
pub mod verify;

pub use config::{Action, AuthConfig, DkimConfig, OnTempError};
pub use results::{Decision, MethodResult, Results, parse_results};
pub use sign::Signer;
pub use verify::{Session, Verifier, VerifierError};
