//! MAIL and RCPT: opening a transaction and collecting its recipients, each with its route:
//! captured (the catcher), a local mailbox, or a remote domain (relay). In MTA mode the relay
//! policy decides and unknown local recipients are refused here, never bounced later.

use tern_policy::{Client, Denial, RcptVerdict, lookup_key};
use tern_protocol::Reply;
use tern_protocol::command::{MailFrom, RcptTo};
use tern_protocol::reply::{Status, canned};
use tern_store::Route;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::{Phase, Session, Transaction};
use crate::directory::LocalTarget;

/// How many alias hops are followed before a recipient is refused as a loop.
const MAX_ALIAS_DEPTH: usize = 8;

/// The reply for a policy denial.
pub(super) fn denial_reply(denial: &Denial) -> Reply {
    let (a, b, c) = denial.status;
    Reply::new(denial.code, Status(a, b, c), denial.text.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) fn mail(&mut self, from: MailFrom) -> Reply {
        if self.hello.is_none() {
            return canned::bad_sequence("Error: send HELO/EHLO first");
        }
        if !matches!(self.phase, Phase::Idle) {
            return canned::bad_sequence("Error: nested MAIL command");
        }
        if self.listener.role.requires_auth() && self.auth.is_none() {
            return if self.tls.is_none() && !self.listener.allow_plaintext_auth {
                Reply::new(530, Status(5, 7, 0), "Must issue a STARTTLS command first")
            } else {
                Reply::new(530, Status(5, 7, 0), "Authentication required")
            };
        }
        if from.size.is_some_and(|size| size > self.ctx.config.max_message_bytes as u64) {
            return Reply::new(552, Status(5, 3, 4), "Error: message size exceeds fixed limit");
        }
        if let Some(mta) = &self.ctx.mta {
            let login = self.auth.as_ref().map(|u| u.login.as_str());
            let owned: &[String] = self.auth.as_ref().map_or(&[], |u| u.addresses.as_slice());
            let checks = mta
                .limits
                .check_new_message(self.messages)
                .and_then(|()| mta.lists.check_sender(&from.address))
                .and_then(|()| mta.relay.check_sender(&from.address, login, owned));
            if let Err(denial) = checks {
                info!(from = %from.address, reason = %denial, "sender refused");
                return denial_reply(&denial);
            }
        }
        self.phase = Phase::Mail(Transaction { from, rcpts: Vec::new() });
        Reply::new(250, Status(2, 1, 0), "Ok")
    }

    pub(super) async fn rcpt(&mut self, to: RcptTo) -> Reply {
        let Phase::Mail(tx) = &self.phase else {
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
        let route = match self.route(&to.address).await {
            Ok(route) => route,
            Err(reply) => {
                info!(rcpt = %to.address, reply = %reply.to_wire().trim_end(), "recipient refused");
                return reply;
            }
        };
        if let Phase::Mail(tx) = &mut self.phase {
            tx.rcpts.push((to, route));
        }
        Reply::new(250, Status(2, 1, 5), "Ok")
    }

    /// Where a recipient's copy goes, or the reply that refuses it.
    async fn route(&self, address: &str) -> Result<Route, Reply> {
        let Some(mta) = &self.ctx.mta else { return Ok(Route::Capture) };
        let client =
            Client { ip: self.peer.ip(), login: self.auth.as_ref().map(|u| u.login.as_str()) };
        match mta.relay.check_rcpt(address, &client) {
            RcptVerdict::Deny(denial) => Err(denial_reply(&denial)),
            RcptVerdict::Relay { .. } => Ok(Route::Remote),
            RcptVerdict::Local { local_part, domain } => {
                self.local_route(lookup_key(&local_part, &domain)).await
            }
            RcptVerdict::Postmaster => {
                let domain = self.ctx.hostname.clone();
                self.local_route(format!("postmaster@{domain}")).await
            }
        }
    }

    /// Resolves a local address to an account, following aliases to the first mailbox.
    async fn local_route(&self, mut address: String) -> Result<Route, Reply> {
        let unknown =
            || Reply::new(550, Status(5, 1, 1), "Recipient address rejected: User unknown");
        let Some(directory) = self.ctx.directory.clone() else { return Err(unknown()) };
        for _ in 0..MAX_ALIAS_DEPTH {
            let dir = directory.clone();
            let lookup = address.clone();
            let target = match tokio::task::spawn_blocking(move || dir.resolve(&lookup)).await {
                Ok(Ok(target)) => target,
                Ok(Err(e)) => {
                    warn!(error = %e, "recipient lookup failed");
                    return Err(Reply::new(451, Status(4, 3, 0), "Temporary lookup failure"));
                }
                Err(_) => return Err(Reply::new(451, Status(4, 3, 0), "Temporary lookup failure")),
            };
            match target {
                LocalTarget::Account { login } => return Ok(Route::Local { account: login }),
                LocalTarget::Unknown => return Err(unknown()),
                LocalTarget::Alias(targets) => {
                    // One envelope recipient keeps one route: an alias is delivered to its
                    // first local target, or relayed when its target is remote.
                    let Some(first) = targets.into_iter().next() else { return Err(unknown()) };
                    let Some(mta) = &self.ctx.mta else { return Err(unknown()) };
                    let domain = first.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                    if !mta.relay.is_local_domain(domain) {
                        return Ok(Route::Remote);
                    }
                    address = first.to_lowercase();
                }
            }
        }
        Err(Reply::new(550, Status(5, 4, 6), "Alias loop detected"))
    }
}
