//! MAIL and RCPT: opening a transaction and collecting its recipients.

use tern_protocol::Reply;
use tern_protocol::command::{MailFrom, RcptTo};
use tern_protocol::reply::{Status, canned};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Phase, Session, Transaction};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn mail(&mut self, from: MailFrom) -> Reply {
        if self.hello.is_none() {
            return canned::bad_sequence("Error: send HELO/EHLO first");
        }
        if !matches!(self.phase, Phase::Idle) {
            return canned::bad_sequence("Error: nested MAIL command");
        }
        if from.size.is_some_and(|size| size > self.ctx.config.max_message_bytes as u64) {
            return Reply::new(552, Status(5, 3, 4), "Error: message size exceeds fixed limit");
        }
        self.phase = Phase::Mail(Transaction { from, rcpts: Vec::new() });
        Reply::new(250, Status(2, 1, 0), "Ok")
    }

    pub(super) fn rcpt(&mut self, to: RcptTo) -> Reply {
        let Phase::Mail(tx) = &mut self.phase else {
            return canned::bad_sequence("Error: need MAIL command");
        };
        if tx.rcpts.len() >= self.ctx.config.max_recipients {
            return Reply::new(452, Status(4, 5, 3), "Error: too many recipients");
        }
        if !to.address.is_ascii() && !tx.from.smtputf8 {
            return Reply::new(
                553,
                Status(5, 6, 7),
                "Error: SMTPUTF8 is required for this address",
            );
        }
        tx.rcpts.push(to);
        Reply::new(250, Status(2, 1, 5), "Ok")
    }
}
