//! DATA and BDAT: receiving the message body, then handing it to the door (`tern-ingest`).
//!
//! A body that breaks a rule (too large, bare CR/LF) is still read to its end so the session
//! stays in step with the client, then refused. The client hears `250 queued` only after the
//! door reports the message (and the notices it triggers) durable.

use tern_ingest::Client;
use tern_protocol::command::{Body, Ret};
use tern_protocol::reply::{Status, canned};
use tern_protocol::{DataDecoder, DataError, DataProgress, Reply};
use tern_store::{Recipient, TlsInfo};
use tokio::io::{AsyncRead, AsyncWrite};

use super::chaos::Outcome;
use super::{Chunks, Flow, Phase, Session, Stop, Transaction};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn data(&mut self) -> Result<Flow, Stop> {
        let refusal = match &self.phase {
            _ if self.hello.is_none() => Some(canned::bad_sequence("Error: send HELO/EHLO first")),
            Phase::Idle => Some(canned::bad_sequence("Error: need RCPT command")),
            Phase::Chunking(..) => Some(canned::bad_sequence("Error: DATA not allowed after BDAT")),
            Phase::Mail(tx) if tx.rcpts.is_empty() => {
                Some(Reply::new(554, Status(5, 5, 1), "Error: no valid recipients"))
            }
            Phase::Mail(_) => None,
        };
        if let Some(reply) = refusal {
            return Ok(self.answer(reply));
        }
        let Phase::Mail(tx) = std::mem::take(&mut self.phase) else {
            unreachable!("checked above");
        };
        let cut = self.cuts_mid_data(&tx).await?;
        self.conn.queue(&Reply::new(354, Status(2, 0, 0), "End data with <CR><LF>.<CR><LF>"));
        if cut {
            // Chaos: hang up while the client sends, after the first bytes arrive.
            self.flush().await?;
            if self.conn.buffered().is_empty() {
                self.fill().await?;
            }
            return Err(Stop::Closed);
        }
        let mut decoder = DataDecoder::new(self.ctx.config.max_message_bytes);
        loop {
            match decoder.feed(self.conn.buffered()) {
                DataProgress::Done(n) => {
                    self.conn.consume(n);
                    break;
                }
                DataProgress::NeedMore => {
                    let all = self.conn.buffered().len();
                    self.conn.consume(all);
                    self.fill().await?;
                }
            }
        }
        let reply = match decoder.finish() {
            Ok(body) => self.commit(tx, body).await?,
            Err(DataError::TooLarge) => rejected("too_large", canned::too_big()),
            Err(DataError::BareNewline) => rejected(
                "bare_newline",
                Reply::new(
                    550,
                    Status(5, 6, 0),
                    "Error: bare CR or LF received; lines must end with CRLF",
                ),
            ),
        };
        Ok(self.after_message(reply))
    }

    pub(super) async fn bdat(&mut self, size: u64, last: bool) -> Result<Flow, Stop> {
        let max = self.ctx.config.max_message_bytes;
        let (tx, mut chunks) = match std::mem::take(&mut self.phase) {
            Phase::Chunking(tx, chunks) => (tx, chunks),
            Phase::Mail(tx) if !tx.rcpts.is_empty() => {
                if self.cuts_mid_data(&tx).await? {
                    // Chaos: hang up in the middle of the first chunk.
                    return Err(Stop::Closed);
                }
                (tx, Chunks::default())
            }
            other => {
                // RFC 3030: a refused chunk is still consumed.
                let reply = match &other {
                    _ if self.hello.is_none() => {
                        canned::bad_sequence("Error: send HELO/EHLO first")
                    }
                    Phase::Mail(_) => {
                        Reply::new(554, Status(5, 5, 1), "Error: no valid recipients")
                    }
                    _ => canned::bad_sequence("Error: need RCPT command"),
                };
                self.phase = other;
                self.read_chunk(size, None).await?;
                return Ok(self.answer(reply));
            }
        };
        if !chunks.admits(size, max) {
            // The transaction fails; later pipelined chunks meet Phase::Idle and are discarded.
            self.read_chunk(size, None).await?;
            self.conn.queue(&rejected("too_large", canned::too_big()));
            return Ok(Flow::Continue);
        }
        self.read_chunk(size, Some(&mut chunks.body)).await?;
        let reply = if last {
            self.commit(tx, chunks.body).await?
        } else {
            let reply = Reply::new(250, Status(2, 0, 0), format!("Ok: {size} octets received"));
            self.phase = Phase::Chunking(tx, chunks);
            reply
        };
        Ok(self.after_message(reply))
    }

    /// Reads exactly `size` bytes of chunk data into `sink`, or discards them.
    async fn read_chunk(&mut self, size: u64, mut sink: Option<&mut Vec<u8>>) -> Result<(), Stop> {
        let mut remaining = size;
        loop {
            let available = self.conn.buffered();
            let take = remaining.min(available.len() as u64) as usize;
            if let Some(body) = sink.as_deref_mut() {
                body.extend_from_slice(&available[..take]);
            }
            self.conn.consume(take);
            remaining = remaining.saturating_sub(take as u64);
            if remaining == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// Queues the reply to a message; a `421` (a chaos rule's, say) ends the session.
    fn after_message(&mut self, reply: Reply) -> Flow {
        // Replies to a message never count as errors, chaos's included.
        self.uncounted = false;
        self.conn.queue(&reply);
        if reply.code == 421 { Flow::Close } else { Flow::Continue }
    }

    /// Whether chaos cuts the connection while this transaction's body arrives.
    async fn cuts_mid_data(&mut self, tx: &Transaction) -> Result<bool, Stop> {
        let Some(chaos) = self.ctx.door.chaos() else { return Ok(false) };
        let rcpts: Vec<&str> = tx.rcpts.iter().map(|(r, _)| r.address.as_str()).collect();
        let Some(decision) = chaos.at_data_start(&tx.from.address, &rcpts) else {
            return Ok(false);
        };
        self.chaos_delay(decision.delay).await?;
        tracing::info!(source = %decision.source, "chaos: disconnecting mid-data");
        Ok(true)
    }

    /// Hands a complete message to the door and returns the reply the client gets; chaos
    /// may answer instead, drop the message or hang up.
    async fn commit(&mut self, tx: Transaction, raw: Vec<u8>) -> Result<Reply, Stop> {
        if self.hello.is_none() {
            return Ok(canned::bad_sequence("Error: send HELO/EHLO first"));
        }
        if self.ctx.door.chaos().is_some() {
            let rcpts: Vec<&str> = tx.rcpts.iter().map(|(r, _)| r.address.as_str()).collect();
            let from = tx.from.address.as_str();
            match self.chaos(|chaos| chaos.at_data(from, &rcpts, &raw)).await? {
                Outcome::Proceed => {}
                Outcome::Answer(reply) => return Ok(reply),
                Outcome::Drop => {
                    // Chaos: the client is told its message is stored; nothing is.
                    let id = tern_store::MessageId::generate();
                    tracing::info!(queue_id = %id, from = %from, "chaos: message dropped");
                    return Ok(Reply::new(250, Status(2, 0, 0), format!("Ok: queued as {id}")));
                }
            }
        }
        let client = self.client(tx.from.smtputf8);
        Ok(match self.ctx.door.accept(&client, transaction(tx), raw).await {
            Ok(id) => {
                self.messages = self.messages.saturating_add(1);
                Reply::new(250, Status(2, 0, 0), format!("Ok: queued as {id}"))
            }
            Err(e) => e.reply(),
        })
    }

    /// The client as the door sees it; `smtputf8` picks the trace header's protocol name.
    pub(super) fn client(&self, smtputf8: bool) -> Client {
        let (helo, extended) =
            self.hello.as_ref().map_or((String::new(), false), |h| (h.name.clone(), h.extended));
        // RFC 3848 / RFC 6531 names: S for TLS, A for authenticated.
        let protocol = match (extended, smtputf8) {
            (false, _) => "SMTP".to_string(),
            (true, utf8) => format!(
                "{}{}{}",
                if utf8 { "UTF8SMTP" } else { "ESMTP" },
                if self.tls.is_some() { "S" } else { "" },
                if self.auth.is_some() { "A" } else { "" }
            ),
        };
        Client {
            peer: self.peer,
            helo,
            protocol,
            tls: self.tls.as_ref().map(|(protocol, cipher)| TlsInfo {
                protocol: protocol.clone(),
                cipher: cipher.clone(),
            }),
            auth: self.auth.clone(),
            admin: false,
        }
    }
}

/// Counts a refused message by reason and passes its reply through.
fn rejected(reason: &'static str, reply: Reply) -> Reply {
    metrics::counter!("tern_messages_rejected_total", "reason" => reason).increment(1);
    reply
}

/// The transaction as the door takes it: DSN parameters in their stored spelling.
fn transaction(tx: Transaction) -> tern_ingest::Transaction {
    let recipients = tx
        .rcpts
        .into_iter()
        .map(|(r, route)| {
            let n = r.notify;
            let notify = [
                (n.never, "NEVER"),
                (n.success, "SUCCESS"),
                (n.failure, "FAILURE"),
                (n.delay, "DELAY"),
            ]
            .into_iter()
            .filter(|(set, _)| *set)
            .map(|(_, name)| name.to_string())
            .collect();
            // The parser accepts only the `rfc822` address type; keep it with the address.
            let orcpt = r.orcpt.map(|address| format!("rfc822;{address}"));
            Recipient { address: r.address, notify, orcpt, route }
        })
        .collect();
    tern_ingest::Transaction {
        mail_from: tx.from.address,
        recipients,
        body: match tx.from.body {
            Body::Unspecified => None,
            Body::SevenBit => Some("7BIT".into()),
            Body::EightBitMime => Some("8BITMIME".into()),
        },
        smtputf8: tx.from.smtputf8,
        ret: tx.from.ret.map(|r| match r {
            Ret::Full => "FULL".into(),
            Ret::Hdrs => "HDRS".into(),
        }),
        envid: tx.from.envid,
    }
}
