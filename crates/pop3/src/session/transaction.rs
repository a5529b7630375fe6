//! TRANSACTION and UPDATE (RFC 1939 sections 5 and 6): STAT, LIST, UIDL, RETR, TOP, DELE,
//! RSET and NOOP over the snapshot; QUIT removes the marked messages through the spool, the
//! same change as the HTTP API's DELETE.

use tern_store::{Mutation, Selection};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::warn;

use super::{Flow, Session, State, Stop, Transaction};
use crate::command::{Command, MessageNumber};
use crate::maildrop::Entry;
use crate::wire;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A command of the TRANSACTION state.
    pub(super) async fn transact(&mut self, command: Command) -> Result<Flow, Stop> {
        let State::Transaction(t) = &mut self.state else {
            return Ok(self.error("not logged in"));
        };
        let answer: Result<String, String> = match command {
            Command::Stat => {
                let (count, octets) = t.maildrop.stat();
                Ok(format!("{count} {octets}"))
            }
            Command::List(None) => return Ok(self.listing(|n, e| format!("{n} {}", e.size))),
            Command::Uidl(None) => return Ok(self.listing(|n, e| format!("{n} {}", e.id))),
            Command::List(Some(n)) => entry(t, n).map(|e| format!("{n} {}", e.size)),
            Command::Uidl(Some(n)) => entry(t, n).map(|e| format!("{n} {}", e.id)),
            Command::Retr(n) => return self.retrieve(n, None).await,
            Command::Top(n, lines) => return self.retrieve(n, Some(lines)).await,
            Command::Dele(n) => t
                .maildrop
                .delete(n)
                .map(|()| format!("message {n} marked for deletion"))
                .map_err(|e| e.to_string()),
            Command::Rset => {
                t.maildrop.reset();
                let (count, octets) = t.maildrop.stat();
                Ok(format!("maildrop has {count} messages ({octets} octets)"))
            }
            Command::Noop => Ok(String::new()),
            other => Err(format!("{} is not valid after login", other.keyword())),
        };
        match answer {
            Ok(text) => {
                self.ok(&text);
                Ok(Flow::Continue)
            }
            Err(text) => Ok(self.error(&text)),
        }
    }

    /// LIST or UIDL without an argument: one line per message not marked as deleted.
    fn listing(&mut self, line: impl Fn(MessageNumber, &Entry) -> String) -> Flow {
        let State::Transaction(t) = &self.state else { return Flow::Continue };
        let (count, octets) = t.maildrop.stat();
        let lines: Vec<String> = t.maildrop.live().map(|(n, e)| line(n, e)).collect();
        self.ok(&format!("{count} messages ({octets} octets)"));
        self.multiline(lines.iter().map(|l| l.as_bytes()));
        Flow::Continue
    }

    /// RETR (`body_lines` none) or TOP: the message read from the store, sent as POP3 sends
    /// it.
    async fn retrieve(
        &mut self,
        number: MessageNumber,
        body_lines: Option<u64>,
    ) -> Result<Flow, Stop> {
        let State::Transaction(t) = &self.state else { return Ok(Flow::Continue) };
        let (id, size) = match entry(t, number) {
            Ok(e) => (e.id, e.size),
            Err(text) => return Ok(self.error(&text)),
        };
        let readers = self.ctx.readers.clone();
        let read = tokio::task::spawn_blocking(move || readers.with(|store| store.message(&id)))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let message = match read {
            Ok(Some(message)) => message,
            Ok(None) => {
                return Ok(self.error(&format!("message {number} was removed from the server")));
            }
            Err(e) => {
                warn!(error = %e, id = %id, "reading a message failed");
                return Ok(self.error("[SYS/TEMP] cannot read the message; try later"));
            }
        };
        let mut out = match body_lines {
            None => format!("+OK {size} octets\r\n").into_bytes(),
            Some(_) => b"+OK top of message follows\r\n".to_vec(),
        };
        wire::write(&message.full_message(), body_lines, &mut out);
        self.conn.queue_bytes(&out);
        if body_lines.is_none() {
            self.retrieved = self.retrieved.saturating_add(1);
            metrics::counter!("tern_pop3_messages_retrieved_total").increment(1);
        }
        Ok(Flow::Continue)
    }

    /// QUIT after login: the UPDATE state removes the marked messages, then the session
    /// ends.
    pub(super) async fn update(&mut self) -> Result<Flow, Stop> {
        let State::Transaction(t) = &self.state else { return Ok(Flow::Close) };
        let marked = t.maildrop.marked();
        if marked.is_empty() {
            self.ok("bye");
            return Ok(Flow::Close);
        }
        let count = marked.len();
        match self.ctx.spool.apply(Mutation::Delete(Selection::Ids(marked))).await {
            Ok(removed) => {
                let removed = u64::try_from(removed.len()).unwrap_or(u64::MAX);
                self.deleted = removed;
                metrics::counter!("tern_pop3_messages_deleted_total").increment(removed);
                self.ok(&format!("bye ({count} messages deleted)"));
            }
            Err(e) => {
                warn!(error = %e, "deleting at QUIT failed");
                self.conn.queue_bytes(b"-ERR [SYS/TEMP] some deleted messages not removed\r\n");
            }
        }
        Ok(Flow::Close)
    }
}

/// The message numbered `n` in the session's maildrop, or the error text.
fn entry(t: &Transaction, n: MessageNumber) -> Result<&Entry, String> {
    t.maildrop.get(n).map_err(|e| e.to_string())
}
