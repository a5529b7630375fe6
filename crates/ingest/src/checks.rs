//! The checks Tern has today, as stages of the chain: the sender access lists, sender
//! ownership for authenticated users, and the relay decision. [`standard`] orders them as the
//! SMTP session used to run them (lists, then ownership at `MAIL FROM`; relay at `RCPT TO`).

use std::sync::Arc;

use tern_policy::{AccessLists, Denial, RcptVerdict, RelayPolicy};

use crate::check::{Chain, Check, Pending, Verdict};
use crate::denial_reply;
use crate::door::Client;

/// The mail server's chain over its relay policy and access lists.
pub fn standard(relay: Arc<RelayPolicy>, lists: Arc<AccessLists>) -> Chain {
    Chain::new(vec![
        Arc::new(SenderLists(lists)),
        Arc::new(SenderOwnership(relay.clone())),
        Arc::new(RelayDecision(relay)),
    ])
}

fn verdict(checked: Result<(), Denial>) -> Verdict {
    match checked {
        Ok(()) => Verdict::accept(),
        Err(denial) => Verdict::refuse(denial_reply(&denial)),
    }
}

/// Senders from a blocked domain (and not allowed) are refused at `MAIL FROM`.
pub struct SenderLists(pub Arc<AccessLists>);

impl Check for SenderLists {
    fn name(&self) -> &'static str {
        "sender-lists"
    }

    fn at_mail<'a>(&'a self, _: &'a Client, mail_from: &'a str) -> Pending<'a> {
        verdict(self.0.check_sender(mail_from)).ready()
    }
}

/// An authenticated user may send only as one of their addresses (when the policy says so).
pub struct SenderOwnership(pub Arc<RelayPolicy>);

impl Check for SenderOwnership {
    fn name(&self) -> &'static str {
        "sender-ownership"
    }

    fn at_mail<'a>(&'a self, client: &'a Client, mail_from: &'a str) -> Pending<'a> {
        let login = client.auth.as_ref().map(|user| user.login.as_str());
        let owned = client.auth.as_ref().map_or(&[][..], |user| user.addresses.as_slice());
        verdict(self.0.check_sender(mail_from, login, owned)).ready()
    }
}

/// Only an authenticated client, one from a trusted network or the HTTP API's administrator may
/// send to other domains.
pub struct RelayDecision(pub Arc<RelayPolicy>);

impl Check for RelayDecision {
    fn name(&self) -> &'static str {
        "relay"
    }

    fn at_rcpt<'a>(&'a self, client: &'a Client, _: &'a str, rcpt: &'a str) -> Pending<'a> {
        let login = client.auth.as_ref().map(|user| user.login.as_str());
        let policy_client = tern_policy::Client { ip: client.peer.ip(), login };
        // The HTTP API's administrator may relay like an authenticated user.
        let decided = if client.admin {
            self.0.destination(rcpt)
        } else {
            self.0.check_rcpt(rcpt, &policy_client)
        };
        match decided {
            RcptVerdict::Deny(denial) => verdict(Err(denial)),
            _ => Verdict::accept(),
        }
        .ready()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::AuthUser;

    fn client(ip: &str, auth: Option<(&str, &[&str])>) -> Client {
        Client {
            peer: std::net::SocketAddr::new(ip.parse().expect("literal"), 4000),
            helo: "client.example".into(),
            protocol: "ESMTP".into(),
            tls: None,
            auth: auth.map(|(login, addresses)| AuthUser {
                login: login.into(),
                addresses: addresses.iter().map(|a| a.to_string()).collect(),
            }),
            admin: false,
        }
    }

    fn refused(verdict: Verdict) -> String {
        match verdict {
            Verdict::Reject(reply) | Verdict::Defer(reply) => {
                reply.to_wire().trim_end().to_string()
            }
            Verdict::Accept(_) => "accepted".into(),
        }
    }

    fn chain(require_ownership: bool) -> Chain {
        let mut relay = RelayPolicy::new(require_ownership);
        relay.add_local_domain("tern.test").expect("valid");
        let lists = tern_policy::ListsConfig {
            block_sender_domains: vec![".spam.test".into()],
            ..Default::default()
        };
        standard(Arc::new(relay), Arc::new(lists.try_into().expect("valid lists")))
    }

    #[tokio::test]
    async fn the_standard_chain_judges_senders_at_mail_from() {
        let chain = chain(true);
        assert_eq!(chain.names(), ["sender-lists", "sender-ownership", "relay"]);
        let stranger = client("192.0.2.1", None);
        let alice = client("192.0.2.1", Some(("alice", &["alice@tern.test"])));
        let at_mail = |c: &Client, from: &'static str| {
            let (chain, c) = (chain.clone(), c.clone());
            async move { refused(chain.at_mail(&c, from).await) }
        };
        assert_eq!(
            at_mail(&stranger, "x@spam.test").await,
            "554 5.7.1 Sender address rejected: access denied"
        );
        assert_eq!(
            at_mail(&stranger, "x@mail.spam.test").await,
            "554 5.7.1 Sender address rejected: access denied"
        );
        assert_eq!(at_mail(&stranger, "bob@tern.test").await, "accepted");
        assert_eq!(at_mail(&alice, "Alice+x@tern.test").await, "accepted");
        assert_eq!(
            at_mail(&alice, "bob@tern.test").await,
            "553 5.7.1 Sender address not owned by user"
        );
        // The lists come first: a blocked domain is refused even to its owner.
        let spammer = client("192.0.2.1", Some(("s", &["s@spam.test"])));
        assert!(at_mail(&spammer, "s@spam.test").await.starts_with("554"));
    }

    #[tokio::test]
    async fn only_trusted_clients_may_relay() {
        let chain = chain(false);
        let at_rcpt = |c: Client, rcpt: &'static str| {
            let chain = chain.clone();
            async move { refused(chain.at_rcpt(&c, "a@b.test", rcpt).await) }
        };
        let stranger = client("192.0.2.1", None);
        assert_eq!(at_rcpt(stranger.clone(), "x@remote.test").await, "550 5.7.1 Relaying denied");
        assert_eq!(at_rcpt(stranger.clone(), "alice@tern.test").await, "accepted");
        assert_eq!(at_rcpt(stranger, "postmaster").await, "accepted");
        let alice = client("192.0.2.1", Some(("alice", &[])));
        assert_eq!(at_rcpt(alice, "x@remote.test").await, "accepted");
        // The HTTP API's administrator relays; an address literal stays refused.
        let admin = Client { admin: true, ..client("127.0.0.1", None) };
        assert_eq!(at_rcpt(admin.clone(), "x@remote.test").await, "accepted");
        assert_ne!(at_rcpt(admin, "x@[192.0.2.9]").await, "accepted");
    }
}
