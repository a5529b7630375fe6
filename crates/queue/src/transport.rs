//! The seam between the scheduler and whatever carries mail out: the scheduler decides *what*
//! is due and *when* to retry; a [`Transport`] (the SMTP client in `tern-delivery`) decides
//! *how* to reach a destination and reports one [`Outcome`] per recipient. Nothing here speaks
//! SMTP or reads a clock.
//!
//! A job may carry a [`Feed`]: before closing a connection that still works, the transport
//! hands over the outcomes so far and asks it for more messages for the same destination, so
//! mail that fell due while the connection was open rides on it instead of opening another.

use std::future::Future;
use std::sync::Arc;

use tern_store::MessageId;
use tokio::sync::{mpsc, oneshot};

/// Work for one destination: messages that can share one connection, in order.
#[derive(Debug, Clone)]
pub struct Job {
    /// The recipients' domain (lowercased), or the smarthost key when all mail goes through
    /// one relay (see [`Transport::destination`]).
    pub domain: String,
    /// The messages to send over one connection, each with its recipients at `domain`.
    pub messages: Vec<JobMessage>,
    /// Where to ask for more messages before closing the connection; `None` when the job is
    /// all there is.
    pub feed: Option<Feed>,
}

/// A request on a [`Feed`]: the outcomes so far, and where to answer with more messages.
pub type FeedRequest = (JobResult, oneshot::Sender<Vec<JobMessage>>);

/// A running job's way back to the scheduler, for more messages to send over its connection.
#[derive(Debug, Clone)]
pub struct Feed {
    requests: mpsc::Sender<FeedRequest>,
}

impl Feed {
    /// A feed and the receiving end its requests arrive at.
    pub fn channel() -> (Feed, mpsc::Receiver<FeedRequest>) {
        let (requests, receiver) = mpsc::channel(1);
        (Feed { requests }, receiver)
    }

    /// Hands over the outcomes in `done` (they are recorded at once, so `done` is left empty)
    /// and asks for more messages for the job's destination; none means close the connection.
    /// Should the scheduler be gone, `done` is left as it was and nothing more comes.
    pub async fn more(&self, done: &mut JobResult) -> Vec<JobMessage> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::error::SendError((given, _))) =
            self.requests.send((std::mem::take(done), reply)).await
        {
            *done = given;
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }
}

/// One message of a [`Job`].
#[derive(Debug, Clone)]
pub struct JobMessage {
    /// The message's queue id.
    pub id: MessageId,
    /// The reverse path for `MAIL FROM` (empty for the null sender `<>`).
    pub sender: String,
    /// The message as Tern sends it: its `Received:` trace header, then the client's bytes.
    pub data: Arc<Vec<u8>>,
    /// The message needs `SMTPUTF8` (the client asked for it on `MAIL FROM`).
    pub smtputf8: bool,
    /// The body is 8-bit (`BODY=8BITMIME` was given).
    pub eight_bit: bool,
    /// DSN `ENVID=` to pass on when the next hop supports DSN.
    pub envid: Option<String>,
    /// DSN `RET=` (`FULL` or `HDRS`) to pass on when the next hop supports DSN.
    pub ret: Option<String>,
    /// The recipients of this message at the job's destination.
    pub recipients: Vec<JobRecipient>,
}

/// One recipient of a [`JobMessage`]; `entry` identifies its queue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecipient {
    /// The queue entry this recipient is.
    pub entry: i64,
    /// The forward path for `RCPT TO`.
    pub address: String,
    /// DSN `NOTIFY=` values as the sender gave them (empty when absent).
    pub notify: Vec<String>,
    /// DSN `ORCPT=` (with its `rfc822;` type) as the sender gave it.
    pub orcpt: Option<String>,
}

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The next hop accepted the message for this recipient (2xx after the data).
    Delivered {
        /// The host that accepted it, e.g. `mx1.example.com`.
        remote_mta: String,
        /// The next hop's reply, e.g. `250 2.0.0 Ok: queued as 4Z…`.
        reply: String,
        /// The next hop advertised DSN, so it takes over success notifications.
        peer_dsn: bool,
    },
    /// Try again later (4xx, timeouts, connection failures, DNS temporary errors).
    Temporary(Failure),
    /// Give up on this recipient and bounce it (5xx, null MX, no such domain, size, ...).
    Permanent(Failure),
}

/// Why a recipient was not delivered, as a DSN reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Enhanced status code for the DSN's `Status:` field, e.g. `5.1.1` or `4.4.1`.
    pub status: String,
    /// The host that answered, when one did (`Remote-MTA:`).
    pub remote_mta: Option<String>,
    /// `Diagnostic-Code:` text: the remote reply (`smtp; 550 5.1.1 No such user`) or, when no
    /// server answered, what went wrong (e.g. `connection refused by 127.0.0.2:25`).
    pub diagnostic: String,
}

/// The result of a [`Job`]: one outcome per recipient entry, for every recipient of the job.
pub type JobResult = Vec<(i64, Outcome)>;

/// Carries jobs to their destination. Implemented by `tern-delivery`'s SMTP client.
pub trait Transport: Send + Sync + 'static {
    /// The key mail for `domain` is grouped under: the domain itself for MX delivery, or one
    /// key for everything when all mail goes through a smarthost. Jobs are built per key, and
    /// the per-destination concurrency limit applies per key.
    fn destination(&self, domain: &str) -> String;

    /// Delivers `job` and reports every recipient's outcome. Must return an outcome for each
    /// recipient; a recipient left out is treated as a temporary failure.
    fn deliver(&self, job: Job) -> impl Future<Output = JobResult> + Send;
}
