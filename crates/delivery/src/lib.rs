//! Delivery: getting committed mail to where it goes: local Maildir copies, and outbound SMTP
//! to remote MX hosts or a smarthost ([`outbound`]); and [`validate`], which asks DNS (and,
//! when configured, the recipient's server) whether an address is worth sending to.
//!
//! Delivery never decides whether a message is kept: the message is already durable in the
//! store (and in its account's mailbox) before anything here runs. A Maildir copy is written
//! at least once: after a crash a copy may be written again, never lost.

pub mod local;
pub mod maildir;
pub mod outbound;
pub mod validate;

pub use local::run_local;
pub use maildir::{Maildir, MaildirError};
pub use outbound::{OutboundConfig, OutboundError, RelayHost, SmtpTransport, TlsPolicy};
