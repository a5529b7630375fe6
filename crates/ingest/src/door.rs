//! The door: the one way a message enters the store. Callers (the SMTP session, the HTTP send
//! API, release, the scheduler's notices) hand it a client, an envelope and the raw bytes; it
//! adds the `Received:` trace header, extracts the summary and search text, builds the notices
//! the message triggers and submits them all to the spool as one commit, so a crash never
//! leaves a message without its notice. It knows nothing of sockets or SQL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tern_protocol::Reply;
use tern_protocol::received::Trace;
use tern_protocol::reply::{Status, canned};
use tern_queue::notice::Original;
use tern_queue::{Spool, SpoolError};
use tern_store::{
    Envelope, MessageId, Mutation, NewEntry, NewMessage, Recipient, Route, Summary, TlsInfo,
};
use tracing::{info, warn};

use crate::chaos::Chaos;
use crate::check::{Chain, Findings, QUARANTINE_TAG, Verdict};
use crate::directory::AuthUser;
use crate::routing::{Delivery, Routing};

/// Who handed a message in.
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's address.
    pub peer: SocketAddr,
    /// What it said in HELO/EHLO (`api` for the HTTP API).
    pub helo: String,
    /// The `with` protocol of the trace header (RFC 3848: `ESMTPSA`, `HTTP`, ...).
    pub protocol: String,
    /// TLS protocol and cipher, when the connection was encrypted.
    pub tls: Option<TlsInfo>,
    /// The authenticated user.
    pub auth: Option<AuthUser>,
    /// The HTTP API's administrator (the API key, or a server without HTTP authentication):
    /// trusted like an authenticated client.
    pub admin: bool,
}

impl Client {
    /// The authenticated login.
    pub fn login(&self) -> Option<&str> {
        self.auth.as_ref().map(|user| user.login.as_str())
    }

    /// Whether `policy` lets this client relay: the API's administrator, an authenticated
    /// user, or an address of `relay.trusted_networks`. Tern answers for such clients: they
    /// get notices, their mail is signed and not checked.
    pub fn trusted_by(&self, policy: &tern_policy::RelayPolicy) -> bool {
        self.admin
            || policy.may_relay(&tern_policy::Client { ip: self.peer.ip(), login: self.login() })
    }
}

/// A message's envelope as the client gave it (routes already decided per recipient).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// The reverse path (`MAIL FROM`); empty for the null sender.
    pub mail_from: String,
    /// The recipients with their routes.
    pub recipients: Vec<Recipient>,
    /// `BODY=` (`7BIT` or `8BITMIME`).
    pub body: Option<String>,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// DSN `RET=` (`FULL` or `HDRS`).
    pub ret: Option<String>,
    /// DSN `ENVID=`.
    pub envid: Option<String>,
}

/// Refuses addresses that could not stand inside `MAIL FROM:<…>` / `RCPT TO:<…>` as they are
/// written out later: the SMTP parser already keeps such bytes out of SMTP's envelopes, but
/// the HTTP paths (send API, release from a parsed `From:`) hand the door strings of their own,
/// and a line break in one would inject commands into the outbound session.
fn fits_smtp<'a>(
    sender: &str,
    recipients: impl Iterator<Item = &'a str>,
) -> Result<(), IngestError> {
    let bad = |address: &str| {
        address.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>'))
    };
    if bad(sender) {
        return Err(IngestError::Refused(Reply::new(
            553,
            Status(5, 1, 7),
            format!("invalid sender address {sender:?}"),
        )));
    }
    if let Some(rcpt) = recipients.into_iter().find(|r| r.is_empty() || bad(r)) {
        return Err(IngestError::Refused(Reply::new(
            553,
            Status(5, 1, 3),
            format!("invalid recipient address {rcpt:?}"),
        )));
    }
    Ok(())
}

/// A check's header as one field: its own folds (CRLF before a space or tab) stay, any other
/// line break becomes a space, so no check can start a second field or end the header.
fn folded(header: &str) -> String {
    let header = header.trim_end_matches(['\r', '\n']);
    let mut out = String::with_capacity(header.len());
    let mut chars = header.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {
                chars.next();
                if matches!(chars.peek(), Some(' ' | '\t')) {
                    out.push_str("\r\n");
                } else {
                    out.push(' ');
                }
            }
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `raw` without the `Authentication-Results` fields of its header that name `authserv_id`:
/// a client's claim to speak for this server (RFC 8601 §5).
fn without_results_of(raw: Vec<u8>, authserv_id: &str) -> Vec<u8> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |at| at + 2);
    let claims = |field: &[u8]| {
        let text = String::from_utf8_lossy(field);
        let Some((name, value)) = text.split_once(':') else { return false };
        if !name.trim().eq_ignore_ascii_case("authentication-results") {
            return false;
        }
        // authserv-id [version] ";" …, comments and folding allowed around it.
        let id = value.split(';').next().unwrap_or_default();
        id.split_whitespace().next().is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut removed = 0usize;
    let mut start = 0;
    while start < head_end {
        // A field runs to the CRLF not followed by a fold.
        let mut end = start;
        loop {
            match memchr_lf(&raw[end..head_end]) {
                Some(lf) => end += lf + 1,
                None => {
                    end = head_end;
                    break;
                }
            }
            if !matches!(raw.get(end), Some(b' ' | b'\t')) || end >= head_end {
                break;
            }
        }
        if claims(&raw[start..end]) {
            removed += 1;
        } else {
            out.extend_from_slice(&raw[start..end]);
        }
        start = end;
    }
    if removed == 0 {
        return raw;
    }
    warn!(removed, authserv_id, "removed Authentication-Results fields forging our authserv-id");
    out.extend_from_slice(&raw[head_end..]);
    out
}

fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// Why a message or a release did not get in.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A check refused it (a 5xx reply) or put it off (4xx).
    #[error("refused: {}", .0.to_wire().trim_end())]
    Refused(Reply),
    /// The spool did not make it durable; nothing of it was stored.
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

impl IngestError {
    /// The SMTP reply the client gets.
    pub fn reply(&self) -> Reply {
        match self {
            IngestError::Refused(reply) => reply.clone(),
            IngestError::Spool(_) => canned::storage_failed(),
        }
    }
}

/// The door, shared by every caller.
pub struct Door {
    spool: Spool,
    hostname: String,
    routing: Routing,
    chain: Chain,
    delivered_notices: bool,
    chaos: Option<Arc<Chaos>>,
}

impl Door {
    /// A door over `spool` that routes by `routing`; `hostname` names Tern in trace headers
    /// and notices.
    pub fn new(spool: Spool, hostname: impl Into<String>, routing: Routing) -> Self {
        Door {
            spool,
            hostname: hostname.into(),
            routing,
            chain: Chain::default(),
            delivered_notices: false,
            chaos: None,
        }
    }

    /// Runs `chain` on every message (none by default).
    pub fn with_chain(mut self, chain: Chain) -> Self {
        self.chain = chain;
        self
    }

    /// Sends "delivered" notices (`NOTIFY=SUCCESS` to a local mailbox) in the message's own
    /// commit; off by default.
    pub fn with_delivered_notices(mut self, on: bool) -> Self {
        self.delivered_notices = on;
        self
    }

    /// Fails on purpose as `chaos` decides (the SMTP session asks it at each step).
    pub fn with_chaos(mut self, chaos: Arc<Chaos>) -> Self {
        self.chaos = Some(chaos);
        self
    }

    /// The chaos engine, when chaos is enabled.
    pub fn chaos(&self) -> Option<&Arc<Chaos>> {
        self.chaos.as_ref()
    }

    /// The routing rules (also the scheduler's notice router).
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The spool behind the door.
    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    /// Whether Tern answers to `client`: authenticated, from a trusted network, or any
    /// client of the catcher (which never sends mail on). Only its sender gets notices.
    pub fn trusts(&self, client: &Client) -> bool {
        self.routing.policy().is_none_or(|policy| client.trusted_by(policy))
    }

    /// At `MAIL FROM`: room in the store for a message of the declared `size` (`452 4.3.1`
    /// below the free-space reserve), then the chain's stage. `Err` carries the reply that
    /// refuses the sender.
    pub async fn check_mail(
        &self,
        client: &Client,
        mail_from: &str,
        size: Option<u64>,
    ) -> Result<(), Reply> {
        if self.spool.room(size.unwrap_or(0)).is_err() {
            return Err(canned::insufficient_storage());
        }
        match self.chain.at_mail(client, mail_from).await {
            Verdict::Accept(_) => Ok(()),
            Verdict::Reject(reply) | Verdict::Defer(reply) => Err(reply),
        }
    }

    /// At `RCPT TO`: the chain's stage, then where the recipient's copies go; `Err` carries
    /// the reply that refuses it.
    pub async fn route(
        &self,
        client: &Client,
        mail_from: &str,
        rcpt: &str,
    ) -> Result<Vec<Delivery>, Reply> {
        match self.chain.at_rcpt(client, mail_from, rcpt).await {
            Verdict::Accept(_) => self.routing.route(rcpt).await,
            Verdict::Reject(reply) | Verdict::Defer(reply) => Err(reply),
        }
    }

    /// Takes a complete message in: the chain's end-of-data stage, trace header, summary,
    /// notices, one commit. Returns its id once it and its notices are durable.
    pub async fn accept(
        &self,
        client: &Client,
        tx: Transaction,
        raw: Vec<u8>,
    ) -> Result<MessageId, IngestError> {
        self.accept_as(MessageId::generate(), client, tx, raw).await
    }

    /// [`Door::accept`] under an id the caller chose (one it already wrote into the message,
    /// as the send API does in `Message-ID:`).
    pub async fn accept_as(
        &self,
        id: MessageId,
        client: &Client,
        tx: Transaction,
        raw: Vec<u8>,
    ) -> Result<MessageId, IngestError> {
        fits_smtp(&tx.mail_from, tx.recipients.iter().map(|r| r.address.as_str()))?;
        let findings = match self.chain.at_data(client, &tx, &raw).await {
            Verdict::Accept(findings) => findings,
            Verdict::Reject(reply) | Verdict::Defer(reply) => {
                return Err(IngestError::Refused(reply));
            }
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let message = self.message(id, client, tx, raw, now, findings);
        let (from, rcpts, size) = (
            message.envelope.mail_from.clone(),
            message.envelope.recipients.len(),
            message.raw.len(),
        );
        let notice = self.delivered_notice(&message, message.envelope.received_at_ms);
        let mut batch = vec![message];
        batch.extend(notice);
        match self.spool.submit_all(batch).await {
            Ok(()) => {
                info!(queue_id = %id, from = %from, rcpts, size, "queued");
                Ok(id)
            }
            Err(e) => {
                // Each refusal is one transaction's outcome (info, like "queued"); the failure
                // itself is the spool writer's to report, once per run of failed commits.
                info!(queue_id = %id, error = %e, "message refused: spool commit failed");
                Err(e.into())
            }
        }
    }

    /// The message as stored: trace header and the checks' headers above the client's bytes,
    /// the summary with the checks' tags, every copy kept when a check quarantined it.
    fn message(
        &self,
        id: MessageId,
        client: &Client,
        mut tx: Transaction,
        raw: Vec<u8>,
        now: Duration,
        findings: Findings,
    ) -> NewMessage {
        let single = match tx.recipients.as_slice() {
            [only] => Some(only.address.as_str()),
            _ => None,
        };
        let mut received_header = Trace {
            helo: &client.helo,
            peer: client.peer,
            hostname: &self.hostname,
            protocol: &client.protocol,
            tls: client.tls.as_ref().map(|t| (t.protocol.as_str(), t.cipher.as_str())),
            id,
            single_recipient: single,
            unix_time: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        }
        .render();
        for header in &findings.headers {
            received_header.extend(folded(header).bytes());
            received_header.extend_from_slice(b"\r\n");
        }
        let raw = match &findings.remove_results_of {
            Some(authserv_id) => without_results_of(raw, authserv_id),
            None => raw,
        };
        let (mut summary, search_text) = Summary::extract_with_text(&raw);
        summary.tags.extend(findings.tags);
        if let Some(reason) = &findings.quarantine {
            info!(queue_id = %id, reason = %reason, "quarantined");
            for recipient in &mut tx.recipients {
                recipient.route = Route::Capture;
            }
            summary.tags.push(QUARANTINE_TAG.to_string());
        }
        summary.tags.sort();
        summary.tags.dedup();
        let now_ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
        let envelope = self.envelope(client, tx, now_ms);
        NewMessage { id, envelope, received_header, raw, summary, search_text }
    }

    /// Queues a stored message again for `recipients` (the catcher's release): each is sent
    /// out from `sender`, asking for the given DSN `NOTIFY=` values.
    pub async fn release(
        &self,
        message: MessageId,
        sender: &str,
        recipients: Vec<String>,
        notify: &[&str],
        now_ms: i64,
    ) -> Result<(), IngestError> {
        fits_smtp(sender, recipients.iter().map(String::as_str))?;
        let notify: Vec<String> = notify.iter().map(|n| n.to_string()).collect();
        let entries = recipients
            .into_iter()
            .map(|recipient| NewEntry {
                sender: sender.to_string(),
                recipient,
                notify: notify.clone(),
            })
            .collect();
        self.spool.apply(Mutation::Enqueue { message, entries, now_ms }).await?;
        Ok(())
    }

    fn envelope(&self, client: &Client, tx: Transaction, now_ms: i64) -> Envelope {
        Envelope {
            mail_from: tx.mail_from,
            recipients: tx.recipients,
            body: tx.body,
            smtputf8: tx.smtputf8,
            ret: tx.ret,
            envid: tx.envid,
            client: client.peer,
            helo: client.helo.clone(),
            tls: client.tls.clone(),
            auth: client.login().map(str::to_string),
            trusted_client: self.trusts(client),
            received_at_ms: now_ms,
        }
    }

    /// The "delivered" notice for the message's local copies whose recipient asked for one:
    /// local delivery happens in the message's own commit, so the notice joins it.
    fn delivered_notice(&self, message: &NewMessage, now_ms: i64) -> Option<NewMessage> {
        if !self.delivered_notices
            || !tern_queue::notice::wants_local_delivery_notice(&message.envelope)
        {
            return None;
        }
        let original = Original {
            id: message.id,
            envelope: &message.envelope,
            data: &[message.received_header.as_slice(), &message.raw].concat(),
        };
        original.delivered_locally(&self.hostname, &self.routing, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tern_queue::{SpoolConfig, SpoolWriter};

    use super::*;
    use crate::check::Pending;
    use crate::testing::{MemoryDirectory, MemoryStore, policy};

    fn door(store: MemoryStore) -> (Door, SpoolWriter) {
        let (spool, writer) = Spool::start(store, SpoolConfig::default());
        let directory = MemoryDirectory::default().account("bob@tern.test", "bob");
        let routing = Routing::mta(policy(), Some(Arc::new(directory)), "tern.test");
        (Door::new(spool, "tern.test", routing).with_delivered_notices(true), writer)
    }

    /// An authenticated client (so its sender may be told of delivery).
    fn client() -> Client {
        Client {
            peer: "192.0.2.7:4000".parse().expect("literal"),
            helo: "client.example".into(),
            protocol: "ESMTPA".into(),
            tls: None,
            auth: Some(AuthUser { login: "alice".into(), addresses: vec![] }),
            admin: false,
        }
    }

    /// Alice to Bob's mailbox, asking to hear of delivery.
    fn to_bob() -> Transaction {
        Transaction {
            mail_from: "alice@tern.test".into(),
            recipients: vec![Recipient {
                address: "bob@tern.test".into(),
                notify: vec!["SUCCESS".into()],
                orcpt: None,
                route: Route::Local { account: "bob".into() },
            }],
            ..Transaction::default()
        }
    }

    const RAW: &[u8] = b"From: alice@tern.test\r\nSubject: hi\r\n\r\nhello\r\n";

    async fn stop(door: Door, writer: SpoolWriter) {
        drop(door);
        tokio::task::spawn_blocking(move || writer.join()).await.expect("joined");
    }

    #[tokio::test]
    async fn a_message_and_its_delivered_notice_commit_together() {
        let store = MemoryStore::new(|_| false);
        let batches = store.batches.clone();
        let (door, writer) = door(store);
        let id = door.accept(&client(), to_bob(), RAW.to_vec()).await.expect("accepted");
        stop(door, writer).await;
        let batches = batches.lock().expect("lock");
        assert_eq!(batches.len(), 1, "one commit for the message and its notice");
        let [message, notice] = batches[0].as_slice() else { panic!("two messages") };
        assert_eq!(message.id, id);
        let trace = String::from_utf8_lossy(&message.received_header);
        assert!(trace.starts_with("Received: from client.example"), "{trace}");
        assert!(trace.contains("with ESMTPA id"), "{trace}");
        assert_eq!(message.summary.subject, "hi");
        assert!(message.envelope.trusted_client);
        assert_eq!(notice.envelope.mail_from, "");
        let notice_to = &notice.envelope.recipients[0];
        assert_eq!(notice_to.address, "alice@tern.test");
        assert_eq!(notice_to.route, Route::Capture, "no mailbox for alice: kept");
    }

    #[tokio::test]
    async fn when_the_commit_fails_neither_is_stored_and_the_client_hears_451() {
        // The store refuses any batch that carries a notice: the message must not get in
        // without it (it used to be stored alone, answered 250, the notice only logged).
        let store = MemoryStore::new(|batch| batch.iter().any(|m| m.envelope.mail_from.is_empty()));
        let batches = store.batches.clone();
        let (door, writer) = door(store);
        let refused = door.accept(&client(), to_bob(), RAW.to_vec()).await.expect_err("refused");
        stop(door, writer).await;
        assert_eq!(refused.reply().to_wire(), canned::storage_failed().to_wire());
        assert!(refused.reply().to_wire().starts_with("451 4.3.0"));
        assert!(batches.lock().expect("lock").is_empty(), "nothing stored");
    }

    #[tokio::test]
    async fn strangers_are_not_trusted_and_get_no_notices() {
        let store = MemoryStore::new(|_| false);
        let batches = store.batches.clone();
        let (door, writer) = door(store);
        let stranger = Client { auth: None, ..client() };
        door.accept(&stranger, to_bob(), RAW.to_vec()).await.expect("accepted");
        stop(door, writer).await;
        let batches = batches.lock().expect("lock");
        assert_eq!(batches[0].len(), 1, "no notice to a sender anyone could have written");
        assert!(!batches[0][0].envelope.trusted_client);
    }

    /// The HTTP paths hand the door strings the SMTP parser never saw: one with a line break
    /// would be written into `MAIL FROM:<…>` on the way out, injecting commands.
    #[tokio::test]
    async fn addresses_that_would_break_an_smtp_line_are_refused_and_nothing_is_queued() {
        let store = MemoryStore::new(|_| false);
        let (batches, mutations) = (store.batches.clone(), store.mutations.clone());
        let (door, writer) = door(store);
        let injected = "a@b.test>\r\nRCPT TO:<victim@elsewhere.example";
        let tx = Transaction { mail_from: injected.into(), ..to_bob() };
        let refused = door.accept(&client(), tx, RAW.to_vec()).await.expect_err("refused");
        assert!(refused.reply().to_wire().starts_with("553 5.1.7"), "{refused}");
        let id = MessageId::generate();
        for (sender, rcpt, status) in [
            (injected, "carol@remote.test", "553 5.1.7"),
            ("alice@tern.test", "carol@remote.test\r\nDATA", "553 5.1.3"),
            ("alice bob@tern.test", "carol@remote.test", "553 5.1.7"),
        ] {
            let refused = door
                .release(id, sender, vec![rcpt.into()], &["NEVER"], 0)
                .await
                .expect_err("refused");
            assert!(
                refused.reply().to_wire().starts_with(status),
                "{sender:?} {rcpt:?}: {refused}"
            );
        }
        stop(door, writer).await;
        assert!(batches.lock().expect("lock").is_empty());
        assert!(mutations.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn release_queues_the_stored_message_for_each_recipient() {
        let store = MemoryStore::new(|_| false);
        let mutations = store.mutations.clone();
        let (door, writer) = door(store);
        let id = MessageId::generate();
        let to = vec!["a@remote.test".to_string(), "b@remote.test".to_string()];
        door.release(id, "alice@tern.test", to, &["NEVER"], 7).await.expect("released");
        stop(door, writer).await;
        let mutations = mutations.lock().expect("lock");
        let [Mutation::Enqueue { message, entries, now_ms }] = mutations.as_slice() else {
            panic!("one enqueue: {mutations:?}");
        };
        assert_eq!((*message, *now_ms), (id, 7));
        let recipients: Vec<_> = entries.iter().map(|e| e.recipient.as_str()).collect();
        assert_eq!(recipients, ["a@remote.test", "b@remote.test"]);
        assert!(entries.iter().all(|e| e.sender == "alice@tern.test" && e.notify == ["NEVER"]));
    }

    /// A check that answers every message at end of data with `verdict`, after yielding
    /// once (as a check waiting on the network would).
    struct AtData(Verdict);

    impl crate::check::Check for AtData {
        fn name(&self) -> &'static str {
            "test"
        }
        fn at_data<'a>(&'a self, _: &'a Client, _: &'a Transaction, _: &'a [u8]) -> Pending<'a> {
            Box::pin(async move {
                tokio::task::yield_now().await;
                self.0.clone()
            })
        }
    }

    fn with_checks(store: MemoryStore, verdicts: Vec<Verdict>) -> (Door, SpoolWriter) {
        let (door, writer) = door(store);
        let checks = verdicts
            .into_iter()
            .map(|v| Arc::new(AtData(v)) as Arc<dyn crate::check::Check>)
            .collect();
        (door.with_chain(Chain::new(checks)), writer)
    }

    #[tokio::test]
    async fn checks_add_headers_and_tags_and_quarantine_every_copy() {
        let store = MemoryStore::new(|_| false);
        let batches = store.batches.clone();
        let found = |header: &str, tag: &str, quarantine: Option<&str>| {
            Verdict::Accept(Findings {
                headers: vec![header.into()],
                tags: vec![tag.into()],
                quarantine: quarantine.map(str::to_string),
                ..Findings::default()
            })
        };
        let verdicts = vec![
            found("Authentication-Results: tern.test; spf=pass", "spf", None),
            found("X-Spam: yes", "spam", Some("score 12")),
        ];
        let (door, writer) = with_checks(store, verdicts);
        door.accept(&client(), to_bob(), RAW.to_vec()).await.expect("accepted");
        stop(door, writer).await;
        let batches = batches.lock().expect("lock");
        let [message] = batches[0].as_slice() else { panic!("no notice for a quarantined copy") };
        let head = String::from_utf8_lossy(&message.received_header);
        let after = head.split_once("\r\nAuthentication-Results").map(|(_, rest)| rest);
        assert!(head.starts_with("Received: "), "{head}");
        assert!(after.is_some_and(|rest| rest.ends_with("spf=pass\r\nX-Spam: yes\r\n")), "{head}");
        assert_eq!(message.summary.tags, ["quarantine", "spam", "spf"]);
        assert_eq!(message.envelope.recipients[0].route, Route::Capture, "kept, not delivered");
    }

    #[tokio::test]
    async fn results_forging_our_authserv_id_are_removed_and_folds_kept() {
        let store = MemoryStore::new(|_| false);
        let batches = store.batches.clone();
        let findings = Findings {
            headers: vec![
                "Authentication-Results: tern.test;\r\n\tspf=pass\r\nX-Injected: 1\r\n".into(),
            ],
            remove_results_of: Some("tern.test".into()),
            ..Findings::default()
        };
        let (door, writer) = with_checks(store, vec![Verdict::Accept(findings)]);
        let raw = b"Authentication-Results: TERN.test; dkim=pass\r\n\
From: a@b.test\r\n\
Authentication-Results:\r\n tern.test (folded);\r\n dmarc=pass\r\n\
Authentication-Results: mx.other.example; spf=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: tern.test; in the body stays\r\n";
        door.accept(&client(), to_bob(), raw.to_vec()).await.expect("accepted");
        stop(door, writer).await;
        let batches = batches.lock().expect("lock");
        let message = &batches[0][0];
        let head = String::from_utf8_lossy(&message.received_header);
        assert!(
            head.ends_with("Authentication-Results: tern.test;\r\n\tspf=pass X-Injected: 1\r\n"),
            "{head}"
        );
        assert_eq!(
            String::from_utf8_lossy(&message.raw),
            "From: a@b.test\r\nAuthentication-Results: mx.other.example; spf=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: tern.test; in the body stays\r\n"
        );
    }

    #[tokio::test]
    async fn the_first_refusal_wins_and_nothing_is_stored() {
        use tern_protocol::reply::Status;
        let store = MemoryStore::new(|_| false);
        let batches = store.batches.clone();
        let defer = Verdict::refuse(Reply::new(451, Status(4, 7, 1), "try later"));
        let reject = Verdict::refuse(Reply::new(550, Status(5, 7, 1), "spam"));
        let (door, writer) = with_checks(store, vec![Verdict::accept(), defer, reject]);
        let refused = door.accept(&client(), to_bob(), RAW.to_vec()).await.expect_err("refused");
        stop(door, writer).await;
        assert_eq!(refused.reply().to_wire(), "451 4.7.1 try later\r\n");
        assert!(batches.lock().expect("lock").is_empty());
    }
}
