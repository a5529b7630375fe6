//! MAIL and RCPT: opening a transaction and collecting its recipients, each with the route the
//! door gives it: captured (the catcher), a local mailbox, or a remote domain (relay). In MTA
//! mode unknown local recipients are refused here, never bounced later.

use tern_policy::Denial;
use tern_protocol::Reply;
use tern_protocol::command::{MailFrom, RcptTo};
use tern_protocol::reply::{Status, canned};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::chaos::Outcome;
use super::{Phase, Session, Stop, Transaction};

/// The reply for a policy denial.
pub(super) fn denial_reply(denial: &Denial) -> Reply {
    tern_ingest::denial_reply(denial)
}

/// RFC 5321 section 4.5.3.1.10: too many recipients is temporary, the rest go through.
fn too_many_recipients() -> Reply {
    Reply::new(452, Status(4, 5, 3), "Error: too many recipients")
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn mail(&mut self, from: MailFrom) -> Result<Reply, Stop> {
        if self.hello.is_none() {
            return Ok(canned::bad_sequence("Error: send HELO/EHLO first"));
        }
        if !matches!(self.phase, Phase::Idle) {
            return Ok(canned::bad_sequence("Error: nested MAIL command"));
        }
        if self.listener.role.requires_auth() && self.auth.is_none() {
            return Ok(if self.tls.is_none() && !self.listener.allow_plaintext_auth {
                Reply::new(530, Status(5, 7, 0), "Must issue a STARTTLS command first")
            } else {
                Reply::new(530, Status(5, 7, 0), "Authentication required")
            });
        }
        if from.size.is_some_and(|size| size > self.ctx.config.max_message_bytes as u64) {
            return Ok(Reply::new(552, Status(5, 3, 4), "Error: message size exceeds fixed limit"));
        }
        if let Outcome::Answer(reply) = self.chaos(|chaos| chaos.at_mail(&from.address)).await? {
            return Ok(reply);
        }
        // Messages per connection are the connection's limit; the sender's checks are the
        // door's chain.
        let limited = self.ctx.mta.as_ref().map(|mta| mta.limits.check_new_message(self.messages));
        let checked = match limited {
            Some(Err(denial)) => Err(denial_reply(&denial)),
            _ => self.ctx.door.check_mail(&self.client(false), &from.address, from.size).await,
        };
        if let Err(reply) = checked {
            info!(from = %from.address, reply = %reply.to_wire().trim_end(), "sender refused");
            return Ok(reply);
        }
        self.phase = Phase::Mail(Transaction { from, rcpts: Vec::new(), overshoot: 0 });
        Ok(Reply::new(250, Status(2, 1, 0), "Ok"))
    }

    /// The `452 4.5.3` for a recipient past `max_recipients`, while the transaction is within
    /// its overshoot allowance (then the reply does not count as an error); `None` otherwise.
    pub(super) fn overshoot(&mut self) -> Option<Reply> {
        let config = &self.ctx.config;
        let Phase::Mail(tx) = &mut self.phase else { return None };
        if tx.rcpts.len() < config.max_recipients || tx.overshoot >= config.max_recipients_overshoot
        {
            return None;
        }
        tx.overshoot = tx.overshoot.saturating_add(1);
        Some(too_many_recipients())
    }

    pub(super) async fn rcpt(&mut self, to: RcptTo) -> Result<Reply, Stop> {
        let Phase::Mail(tx) = &self.phase else {
            return Ok(canned::bad_sequence("Error: need MAIL command"));
        };
        if tx.rcpts.len() >= self.ctx.config.max_recipients {
            return Ok(too_many_recipients());
        }
        if !to.address.is_ascii() && !tx.from.smtputf8 {
            return Ok(Reply::new(
                553,
                Status(5, 6, 7),
                "Error: SMTPUTF8 is required for this address",
            ));
        }
        let from = tx.from.address.clone();
        if let Outcome::Answer(reply) =
            self.chaos(|chaos| chaos.at_rcpt(&from, &to.address)).await?
        {
            return Ok(reply);
        }
        let client = self.client(false);
        let deliveries = match self.ctx.door.route(&client, &from, &to.address).await {
            Ok(deliveries) => deliveries,
            Err(reply) => {
                info!(rcpt = %to.address, reply = %reply.to_wire().trim_end(), "recipient refused");
                return Ok(reply);
            }
        };
        if let Phase::Mail(tx) = &mut self.phase {
            for tern_ingest::Delivery { target, route } in deliveries {
                let rcpt = match target {
                    // An alias target: delivered as the target, the alias kept as ORCPT
                    // (RFC 3461) unless the client gave one.
                    Some(target) => RcptTo {
                        orcpt: to.orcpt.clone().or_else(|| Some(to.address.clone())),
                        address: target,
                        notify: to.notify,
                    },
                    None => to.clone(),
                };
                tx.rcpts.push((rcpt, route));
            }
        }
        Ok(Reply::new(250, Status(2, 1, 5), "Ok"))
    }
}
