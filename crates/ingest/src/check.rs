//! The check chain: ordered stages every message passes inside the door, whatever brought it
//! (SMTP or the HTTP API). A [`Check`] sees the client (IP, HELO, TLS, AUTH identity), the
//! envelope and, at end of data, the raw message, and answers with a [`Verdict`]: accept
//! (perhaps adding headers, tags or a quarantine), reject, or defer. The chain runs at
//! `MAIL FROM`, at each `RCPT TO` and at end of data; the first refusal wins.
//!
//! Stages return a boxed future so a check that waits on the network (SPF, DKIM, DMARC, a
//! spam scanner) plugs in beside the synchronous ones; a check owns its own timeouts.
//! The checks Tern has today (access lists, sender ownership, the relay decision) live in
//! [`crate::checks`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tern_protocol::Reply;

use crate::door::{Client, Transaction};

/// A stage's answer, as a future (ready at once for checks that do not wait).
pub type Pending<'a> = Pin<Box<dyn Future<Output = Verdict> + Send + 'a>>;

/// What a check may add to a message it lets in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Whole header fields (`Name: value`, no CRLF) put above the message, after `Received:`
    /// (e.g. `Authentication-Results`).
    pub headers: Vec<String>,
    /// Tags the stored message carries.
    pub tags: Vec<String>,
    /// Why the message is quarantined: every copy is kept in the store (tagged
    /// [`QUARANTINE_TAG`]) and none is delivered to a mailbox or sent on.
    pub quarantine: Option<String>,
    /// Remove the client's `Authentication-Results` fields that claim this authserv-id: only
    /// Tern may speak for itself (RFC 8601 §5).
    pub remove_results_of: Option<String>,
}

/// The tag a quarantined message carries.
pub const QUARANTINE_TAG: &str = "quarantine";

impl Findings {
    fn merge(&mut self, more: Findings) {
        self.headers.extend(more.headers);
        self.tags.extend(more.tags);
        self.quarantine = self.quarantine.take().or(more.quarantine);
        self.remove_results_of = self.remove_results_of.take().or(more.remove_results_of);
    }
}

/// A check's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it in, with what the check found.
    Accept(Findings),
    /// Refuse for good: a 5xx reply (on the HTTP API, a 400 carrying it).
    Reject(Reply),
    /// Refuse for now: a 4xx reply (on the HTTP API, a 503 carrying it).
    Defer(Reply),
}

impl Verdict {
    /// Accept with nothing to add.
    pub fn accept() -> Verdict {
        Verdict::Accept(Findings::default())
    }

    /// A refusal with `reply`: rejected when it is a 5xx, deferred otherwise.
    pub fn refuse(reply: Reply) -> Verdict {
        if reply.code >= 500 { Verdict::Reject(reply) } else { Verdict::Defer(reply) }
    }

    /// A ready future of this verdict, for checks that decide at once.
    pub fn ready<'a>(self) -> Pending<'a> {
        Box::pin(std::future::ready(self))
    }
}

/// One stage of the chain. Each method has a default that accepts, so a check implements
/// only the stages it cares about.
pub trait Check: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// At `MAIL FROM`: the client and the reverse path.
    fn at_mail<'a>(&'a self, client: &'a Client, mail_from: &'a str) -> Pending<'a> {
        let _ = (client, mail_from);
        Verdict::accept().ready()
    }

    /// At each `RCPT TO` (before routing): the client, the reverse path and the recipient.
    fn at_rcpt<'a>(&'a self, client: &'a Client, mail_from: &'a str, rcpt: &'a str) -> Pending<'a> {
        let _ = (client, mail_from, rcpt);
        Verdict::accept().ready()
    }

    /// At end of data: the client, the routed envelope and the message as the client sent it.
    fn at_data<'a>(
        &'a self,
        client: &'a Client,
        tx: &'a Transaction,
        raw: &'a [u8],
    ) -> Pending<'a> {
        let _ = (client, tx, raw);
        Verdict::accept().ready()
    }
}

/// The ordered checks.
#[derive(Clone, Default)]
pub struct Chain {
    checks: Vec<Arc<dyn Check>>,
}

/// Which stage the chain runs.
enum Stage<'a> {
    Mail(&'a str),
    Rcpt(&'a str, &'a str),
    Data(&'a Transaction, &'a [u8]),
}

impl Chain {
    /// A chain of `checks`, run in this order.
    pub fn new(checks: Vec<Arc<dyn Check>>) -> Self {
        Chain { checks }
    }

    /// Adds `check` at the end.
    pub fn push(&mut self, check: Arc<dyn Check>) {
        self.checks.push(check);
    }

    /// The checks' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.checks.iter().map(|c| c.name()).collect()
    }

    /// Runs the `MAIL FROM` stage.
    pub async fn at_mail(&self, client: &Client, mail_from: &str) -> Verdict {
        self.run(client, Stage::Mail(mail_from)).await
    }

    /// Runs the `RCPT TO` stage.
    pub async fn at_rcpt(&self, client: &Client, mail_from: &str, rcpt: &str) -> Verdict {
        self.run(client, Stage::Rcpt(mail_from, rcpt)).await
    }

    /// Runs the end-of-data stage.
    pub async fn at_data(&self, client: &Client, tx: &Transaction, raw: &[u8]) -> Verdict {
        self.run(client, Stage::Data(tx, raw)).await
    }

    /// Runs every check in order; the first refusal ends the chain, findings accumulate.
    async fn run(&self, client: &Client, stage: Stage<'_>) -> Verdict {
        let mut findings = Findings::default();
        for check in &self.checks {
            let verdict = match stage {
                Stage::Mail(from) => check.at_mail(client, from).await,
                Stage::Rcpt(from, rcpt) => check.at_rcpt(client, from, rcpt).await,
                Stage::Data(tx, raw) => check.at_data(client, tx, raw).await,
            };
            match verdict {
                Verdict::Accept(more) => findings.merge(more),
                Verdict::Reject(ref reply) | Verdict::Defer(ref reply) => {
                    let reply = reply.to_wire();
                    tracing::info!(check = check.name(), reply = %reply.trim_end(), "refused by a check");
                    return verdict;
                }
            }
        }
        Verdict::Accept(findings)
    }
}
