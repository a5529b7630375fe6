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
        let deliveries = match self.route(&to.address).await {
            Ok(deliveries) => deliveries,
            Err(reply) => {
                info!(rcpt = %to.address, reply = %reply.to_wire().trim_end(), "recipient refused");
                return reply;
            }
        };
        if let Phase::Mail(tx) = &mut self.phase {
            for (address, route) in deliveries {
                let rcpt = match address {
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
        Reply::new(250, Status(2, 1, 5), "Ok")
    }

    /// The client as the relay policy sees it.
    fn policy_client(&self) -> Client<'_> {
        Client { ip: self.peer.ip(), login: self.auth.as_ref().map(|u| u.login.as_str()) }
    }

    /// Whether the client is one Tern answers to: authenticated, from a trusted network, or
    /// any client of the catcher (which never sends mail on). Only its sender gets notices.
    pub(super) fn trusted_client(&self) -> bool {
        self.ctx.mta.as_ref().is_none_or(|mta| mta.relay.may_relay(&self.policy_client()))
    }

    /// Where a recipient's copies go — one, or one per alias target (with the target's
    /// address) — or the reply that refuses it.
    async fn route(&self, address: &str) -> Result<Vec<(Option<String>, Route)>, Reply> {
        let Some(mta) = &self.ctx.mta else { return Ok(vec![(None, Route::Capture)]) };
        match mta.relay.check_rcpt(address, &self.policy_client()) {
            RcptVerdict::Deny(denial) => Err(denial_reply(&denial)),
            RcptVerdict::Relay { .. } => Ok(vec![(None, Route::Remote)]),
            RcptVerdict::Local { local_part, domain } => {
                self.expand(lookup_key(&local_part, &domain), 0, true).await
            }
            RcptVerdict::Postmaster => {
                // RFC 5321 section 4.5.1: postmaster is always accepted; without a postmaster
                // account or alias the message is kept in the store for the administrator.
                let key = format!("postmaster@{}", self.ctx.hostname);
                Ok(self.expand(key, 0, true).await.unwrap_or_else(|_| vec![(None, Route::Capture)]))
            }
        }
    }

    /// Resolves a local address to mailboxes, following aliases (local targets recursively,
    /// remote targets relayed). `top` marks the address the client gave.
    async fn expand(
        &self,
        address: String,
        depth: usize,
        top: bool,
    ) -> Result<Vec<(Option<String>, Route)>, Reply> {
        let unknown =
            || Reply::new(550, Status(5, 1, 1), "Recipient address rejected: User unknown");
        if depth >= MAX_ALIAS_DEPTH {
            return Err(Reply::new(550, Status(5, 4, 6), "Alias loop detected"));
        }
        let Some(directory) = self.ctx.directory.clone() else { return Err(unknown()) };
        let Some(mta) = &self.ctx.mta else { return Err(unknown()) };
        let lookup = address.clone();
        let target = match tokio::task::spawn_blocking(move || directory.resolve(&lookup)).await {
            Ok(Ok(target)) => target,
            Ok(Err(e)) => {
                warn!(error = %e, "recipient lookup failed");
                return Err(Reply::new(451, Status(4, 3, 0), "Temporary lookup failure"));
            }
            Err(_) => return Err(Reply::new(451, Status(4, 3, 0), "Temporary lookup failure")),
        };
        match target {
            LocalTarget::Account { login } => {
                let address = if top { None } else { Some(address) };
                Ok(vec![(address, Route::Local { account: login })])
            }
            LocalTarget::Unknown => Err(unknown()),
            LocalTarget::Alias(targets) => {
                let mut deliveries = Vec::new();
                for target in targets {
                    let domain = target.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                    if mta.relay.is_local_domain(domain) {
                        let expanded = Box::pin(self.expand(
                            target.to_lowercase(),
                            depth.saturating_add(1),
                            false,
                        ))
                        .await?;
                        deliveries.extend(expanded);
                    } else {
                        deliveries.push((Some(target), Route::Remote));
                    }
                }
                // The same mailbox reached twice gets one copy.
                let mut seen = std::collections::HashSet::new();
                deliveries.retain(|(_, route)| match route.account() {
                    Some(account) => seen.insert(account.to_string()),
                    None => true,
                });
                if deliveries.is_empty() { Err(unknown()) } else { Ok(deliveries) }
            }
        }
    }
}
