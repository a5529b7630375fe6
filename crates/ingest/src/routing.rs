//! Routing: where each recipient's copy goes — captured (the catcher), a local mailbox (an
//! account, an alias's targets, plus-addresses and postmaster), or the outbound queue. It owns
//! alias expansion and the relay decision's outcome for a recipient; it never writes anything.
//!
//! Directory lookups block, so [`Routing::route`] runs the whole expansion on the blocking
//! pool; the notices' router ([`tern_queue::notice::Router`]) runs it in place (the scheduler
//! already calls it off the async threads).

use std::collections::HashSet;
use std::sync::Arc;

use tern_policy::{RcptVerdict, RelayPolicy, lookup_key};
use tern_protocol::Reply;
use tern_protocol::reply::Status;
use tern_store::Route;
use tracing::warn;

use crate::denial_reply;
use crate::directory::{Directory, LocalTarget};

/// How many alias hops are followed before a recipient is refused as a loop.
pub const MAX_ALIAS_DEPTH: usize = 8;

/// One copy of a message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The address the copy is for when it is not the one the client gave (an alias target),
    /// else `None`.
    pub target: Option<String>,
    /// Where the copy goes.
    pub route: Route,
}

/// The routing rules: the relay policy (local domains, who may relay) and the directory.
/// Without a policy (the catcher) every recipient is captured.
#[derive(Clone, Default)]
pub struct Routing {
    policy: Option<Arc<RelayPolicy>>,
    directory: Option<Arc<dyn Directory>>,
    hostname: String,
    /// Signs Tern's own notices (bounces, delay warnings) from its domain.
    signer: Option<Arc<tern_auth::Signer>>,
}

impl Routing {
    /// Notices Tern writes (From: `MAILER-DAEMON@` its host name) are DKIM-signed with
    /// `signer`'s keys for that domain.
    pub fn with_signer(mut self, signer: Arc<tern_auth::Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The catcher's routing: every recipient is captured.
    pub fn capture() -> Self {
        Routing::default()
    }

    /// The mail server's routing: `policy` decides what is local, `directory` resolves local
    /// addresses, `hostname` names the postmaster's domain.
    pub fn mta(
        policy: Arc<RelayPolicy>,
        directory: Option<Arc<dyn Directory>>,
        hostname: impl Into<String>,
    ) -> Self {
        Routing { policy: Some(policy), directory, hostname: hostname.into(), signer: None }
    }

    /// The relay policy, if this is a mail server.
    pub fn policy(&self) -> Option<&Arc<RelayPolicy>> {
        self.policy.as_ref()
    }

    /// Where a recipient's copies go — one, or one per alias target — or the reply that
    /// refuses it (unknown, a loop, a broken lookup). Whether the client may relay at all is
    /// the chain's decision, taken before. Runs on the blocking pool.
    pub async fn route(&self, address: &str) -> Result<Vec<Delivery>, Reply> {
        if self.policy.is_none() {
            return Ok(vec![Delivery { target: None, route: Route::Capture }]);
        }
        let (routing, address) = (self.clone(), address.to_string());
        tokio::task::spawn_blocking(move || routing.route_blocking(&address))
            .await
            .unwrap_or_else(|_| Err(lookup_failed()))
    }

    /// [`Routing::route`] in place (directory lookups block the calling thread).
    pub fn route_blocking(&self, address: &str) -> Result<Vec<Delivery>, Reply> {
        let Some(policy) = &self.policy else {
            return Ok(vec![Delivery { target: None, route: Route::Capture }]);
        };
        match policy.destination(address) {
            RcptVerdict::Deny(denial) => Err(denial_reply(&denial)),
            RcptVerdict::Relay { .. } => Ok(vec![Delivery { target: None, route: Route::Remote }]),
            RcptVerdict::Local { local_part, domain } => {
                // A literal of one of our own IPs names this host, as in Postfix: the local
                // part is looked up at the host name.
                let domain = if domain.starts_with('[') { &self.hostname } else { &domain };
                let routed = self.expand(policy, lookup_key(&local_part, domain), 0, true);
                match routed {
                    // RFC 5321 section 4.5.1: postmaster@ every local domain is accepted; one
                    // without its own account or alias goes where bare `Postmaster` goes.
                    Err(reply)
                        if reply.code / 100 == 5
                            && local_part.eq_ignore_ascii_case("postmaster") =>
                    {
                        Ok(self.postmaster(policy))
                    }
                    routed => routed,
                }
            }
            RcptVerdict::Postmaster => Ok(self.postmaster(policy)),
        }
    }

    /// Where mail for the postmaster goes: the account or alias `postmaster@` the host name,
    /// else the store, where the administrator finds it (RFC 5321 section 4.5.1: postmaster is
    /// always accepted).
    fn postmaster(&self, policy: &RelayPolicy) -> Vec<Delivery> {
        let key = format!("postmaster@{}", self.hostname);
        self.expand(policy, key, 0, true)
            .unwrap_or_else(|_| vec![Delivery { target: None, route: Route::Capture }])
    }

    /// Resolves a local address to mailboxes, following aliases (local targets recursively,
    /// remote targets relayed). `top` marks the address the client gave.
    fn expand(
        &self,
        policy: &RelayPolicy,
        address: String,
        depth: usize,
        top: bool,
    ) -> Result<Vec<Delivery>, Reply> {
        if depth >= MAX_ALIAS_DEPTH {
            return Err(Reply::new(550, Status(5, 4, 6), "Alias loop detected"));
        }
        let Some(directory) = &self.directory else { return Err(unknown()) };
        let target = directory.resolve(&address).map_err(|e| {
            warn!(error = %e, "recipient lookup failed");
            lookup_failed()
        })?;
        match target {
            LocalTarget::Account { login } => {
                let target = if top { None } else { Some(address) };
                Ok(vec![Delivery { target, route: Route::Local { account: login } }])
            }
            LocalTarget::Unknown => Err(unknown()),
            LocalTarget::Alias(targets) => {
                let mut deliveries = Vec::new();
                for target in targets {
                    let domain = target.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                    if policy.is_local_domain(domain) {
                        let next = depth.saturating_add(1);
                        deliveries.extend(self.expand(
                            policy,
                            target.to_lowercase(),
                            next,
                            false,
                        )?);
                    } else {
                        deliveries.push(Delivery { target: Some(target), route: Route::Remote });
                    }
                }
                // The same mailbox reached twice gets one copy.
                let mut seen = HashSet::new();
                deliveries.retain(|d| d.route.account().is_none_or(|a| seen.insert(a.to_string())));
                if deliveries.is_empty() { Err(unknown()) } else { Ok(deliveries) }
            }
        }
    }

    /// Where a notice to `address` goes: its copies as for any recipient (aliases expanded),
    /// except that Tern may always send its own notices out, and a local address without a
    /// mailbox keeps the notice in the store (where the admin API shows it) rather than
    /// losing it.
    fn notice_routes(&self, address: &str) -> Vec<(String, Route)> {
        let Some(policy) = &self.policy else { return vec![(address.to_string(), Route::Capture)] };
        let domain = tern_store::queue::domain_of(address);
        if !policy.is_local_domain(&domain) {
            return vec![(address.to_string(), Route::Remote)];
        }
        let key = match tern_policy::address::parse(address) {
            Ok(parsed) => lookup_key(parsed.local_part, &parsed.domain.to_string()),
            Err(_) => address.to_string(),
        };
        match self.expand(policy, key, 0, true) {
            Ok(deliveries) => deliveries
                .into_iter()
                .map(|d| (d.target.unwrap_or_else(|| address.to_string()), d.route))
                .collect(),
            Err(reply) => {
                if reply.code / 100 == 4 {
                    warn!(to = address, "notice kept: cannot resolve its recipient");
                }
                vec![(address.to_string(), Route::Capture)]
            }
        }
    }
}

impl tern_queue::notice::Router for Routing {
    fn route(&self, address: &str) -> Route {
        let mut routes = self.notice_routes(address);
        match routes.len() {
            1 => routes.remove(0).1,
            _ => Route::Capture,
        }
    }

    fn recipients(&self, address: &str) -> Vec<(String, Route)> {
        self.notice_routes(address)
    }

    fn sign(&self, raw: &[u8]) -> Vec<u8> {
        let signatures = self.signer.as_ref().map(|signer| signer.sign(raw)).unwrap_or_default();
        signatures.concat().into_bytes()
    }
}

fn unknown() -> Reply {
    Reply::new(550, Status(5, 1, 1), "Recipient address rejected: User unknown")
}

fn lookup_failed() -> Reply {
    Reply::new(451, Status(4, 3, 0), "Temporary lookup failure")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryDirectory, policy};
    use tern_queue::notice::Router as _;

    fn routing(directory: MemoryDirectory) -> Routing {
        Routing::mta(policy(), Some(Arc::new(directory)), "tern.test")
    }

    fn local(account: &str) -> Route {
        Route::Local { account: account.into() }
    }

    fn copies(result: Result<Vec<Delivery>, Reply>) -> Vec<(Option<String>, Route)> {
        result.expect("routed").into_iter().map(|d| (d.target, d.route)).collect()
    }

    fn refusal(result: Result<Vec<Delivery>, Reply>) -> String {
        result.expect_err("refused").to_wire().trim_end().to_string()
    }

    #[test]
    fn recipients_route_to_mailboxes_aliases_and_remote_domains() {
        let directory = MemoryDirectory::default()
            .account("alice@tern.test", "alice")
            .account("bob@other.test", "bob")
            .alias("team@tern.test", &["alice@tern.test", "Bob@other.test", "carol@remote.test"])
            .alias("twice@tern.test", &["alice@tern.test", "team@tern.test"])
            .account("*@other.test", "catchall");
        let r = routing(directory);
        let route = |address: &str| r.route_blocking(address);
        assert_eq!(copies(route("alice@tern.test")), [(None, local("alice"))]);
        // Plus-addresses and case reach the base mailbox; the copy keeps the given address.
        assert_eq!(copies(route("Alice+news@TERN.test")), [(None, local("alice"))]);
        assert_eq!(
            copies(route("team@tern.test")),
            [
                (Some("alice@tern.test".into()), local("alice")),
                (Some("bob@other.test".into()), local("bob")),
                (Some("carol@remote.test".into()), Route::Remote),
            ]
        );
        // Alice is reached twice through the aliases but gets one copy.
        assert_eq!(copies(route("twice@tern.test")).len(), 3);
        assert_eq!(copies(route("nobody@other.test")), [(None, local("catchall"))]);
        assert_eq!(copies(route("x@remote.test")), [(None, Route::Remote)]);
        // Postmaster without a mailbox is kept for the administrator.
        assert_eq!(copies(route("postmaster")), [(None, Route::Capture)]);
    }

    #[test]
    fn refusals_carry_the_smtp_reply() {
        let directory = MemoryDirectory::default()
            .alias("loop@tern.test", &["loop@tern.test"])
            .alias("empty@tern.test", &[]);
        let r = routing(directory);
        let route = |address: &str| r.route_blocking(address);
        assert_eq!(
            refusal(route("nobody@tern.test")),
            "550 5.1.1 Recipient address rejected: User unknown"
        );
        assert_eq!(refusal(route("loop@tern.test")), "550 5.4.6 Alias loop detected");
        assert!(refusal(route("empty@tern.test")).starts_with("550 5.1.1"));
        // Whether the client may relay is the chain's decision; an address literal that is
        // not ours is never relayed.
        assert_eq!(copies(route("x@remote.test")), [(None, Route::Remote)]);
        assert!(refusal(route("x@[192.0.2.1]")).starts_with("550"));
        let broken = routing(MemoryDirectory { broken: true, ..Default::default() });
        let failed = broken.route_blocking("alice@tern.test");
        assert_eq!(refusal(failed), "451 4.3.0 Temporary lookup failure");
    }

    #[tokio::test]
    async fn the_catcher_captures_everything() {
        let capture = Routing::capture();
        let routed = capture.route("anyone@anywhere.test").await;
        assert_eq!(copies(routed), [(None, Route::Capture)]);
        assert_eq!(capture.recipients("x@y.test"), [("x@y.test".to_string(), Route::Capture)]);
    }

    #[test]
    fn notices_follow_aliases_and_are_never_lost() {
        let directory = MemoryDirectory::default()
            .account("alice@tern.test", "alice")
            .alias("ops@tern.test", &["alice@tern.test", "pager@remote.test"]);
        let r = routing(directory);
        assert_eq!(
            r.recipients("Alice+x@tern.test"),
            [("Alice+x@tern.test".into(), local("alice"))]
        );
        assert_eq!(
            r.recipients("ops@tern.test"),
            [
                ("alice@tern.test".into(), local("alice")),
                ("pager@remote.test".into(), Route::Remote)
            ]
        );
        // Anyone may be sent Tern's own notices; unknown local addresses keep them.
        assert_eq!(r.recipients("x@remote.test"), [("x@remote.test".into(), Route::Remote)]);
        assert_eq!(r.recipients("ghost@tern.test"), [("ghost@tern.test".into(), Route::Capture)]);
    }

    #[test]
    fn a_bounce_to_an_alias_reaches_each_target() {
        use tern_queue::dsn::{ReportKind, ReportRecipient};
        use tern_queue::notice::Original;
        let directory = MemoryDirectory::default()
            .account("alice@tern.test", "alice")
            .alias("ops@tern.test", &["alice@tern.test", "pager@remote.test"]);
        let r = routing(directory);
        let envelope = tern_store::Envelope {
            mail_from: "ops@tern.test".into(),
            recipients: vec![],
            body: None,
            smtputf8: false,
            ret: None,
            envid: None,
            client: "127.0.0.1:1".parse().expect("literal"),
            helo: "x".into(),
            tls: None,
            auth: None,
            trusted_client: true,
            received_at_ms: 0,
        };
        let original =
            Original { id: tern_store::MessageId::generate(), envelope: &envelope, data: b"x" };
        let failed = ReportRecipient {
            address: "gone@remote.test".into(),
            orcpt: None,
            action: ReportKind::Failed,
            status: "5.1.1".into(),
            remote_mta: None,
            diagnostic: None,
            last_attempt_ms: Some(0),
            will_retry_until_ms: None,
        };
        let bounce =
            original.notice("tern.test", &r, "ops@tern.test", ReportKind::Failed, &[failed], 0);
        let to: Vec<_> = bounce
            .envelope
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), r.route.clone()))
            .collect();
        assert_eq!(to, [("alice@tern.test", local("alice")), ("pager@remote.test", Route::Remote)]);
    }
}
