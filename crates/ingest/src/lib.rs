//! The door in: the only way a message enters Tern's store.
//!
//! - [`door`] takes a complete message from any caller (SMTP session, HTTP send API, release,
//!   the scheduler's notices), adds the `Received:` header and the summary, and commits it
//!   with the notices it triggers in one spool commit.
//! - [`routing`] decides where each recipient's copies go (capture, local mailbox, alias
//!   targets, postmaster, remote) and routes notices by the same rules.
//! - [`check`] is the ordered chain of checks a message passes at `MAIL FROM`, `RCPT TO` and
//!   end of data; [`checks`] holds the checks Tern ships (lists, sender ownership, relay).
//! - [`authentication`] holds the chain's SPF/DKIM/DMARC/ARC stage and the DKIM signing stage.
//! - [`chaos`] decides the failures a test suite asks for (Mailpit's triggers, rules, the
//!   `X-Tern-Chaos` header); the SMTP session carries them out.
//! - [`directory`] is what routing (and the SMTP session's AUTH) asks of the accounts.
//!
//! It must not know about sockets or SQL: listeners hand it bytes and facts about the client,
//! and the spool (`tern-queue`) owns the writing.

pub mod authentication;
pub mod chaos;
pub mod check;
pub mod checks;
pub mod directory;
pub mod door;
pub mod routing;
#[cfg(test)]
mod testing;

pub use check::{Chain, Check, Findings, Pending, Verdict};
pub use directory::{AuthUser, Directory, DirectoryError, LocalTarget};
pub use door::{Client, Door, IngestError, Transaction};
pub use routing::{Delivery, Routing};

/// The SMTP reply for a policy denial.
pub fn denial_reply(denial: &tern_policy::Denial) -> tern_protocol::Reply {
    let (a, b, c) = denial.status;
    tern_protocol::Reply::new(
        denial.code,
        tern_protocol::reply::Status(a, b, c),
        denial.text.to_string(),
    )
}
