//! Delivery: getting committed mail to where it goes. Today that is local Maildir copies;
//! outbound SMTP to remote MX hosts joins here later.
//!
//! Delivery never decides whether a message is kept: the message is already durable in the
//! store (and in its account's mailbox) before anything here runs. A Maildir copy is written
//! at least once: after a crash a copy may be written again, never lost.
#![forbid(unsafe_code)]

pub mod local;
pub mod maildir;

pub use local::run_local;
pub use maildir::{Maildir, MaildirError};
