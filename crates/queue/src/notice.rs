//! Notices to senders (RFC 3464 reports) as new messages: built from the original's envelope
//! and bytes, addressed from the null sender to the original sender, and routed like any other
//! message (a local mailbox, or the outbound queue). The scheduler sends failure, delay and
//! "relayed" notices; the door (`tern-ingest`) sends "delivered" notices for local mailboxes
//! in the message's own commit. The [`Router`] is the door's routing.

use std::net::{Ipv4Addr, SocketAddr};

use tern_store::{Envelope, MessageId, NewMessage, Recipient, Route, Summary};
use tracing::info;

use crate::dsn::{self, Report, ReportKind, ReportRecipient};
use crate::retry::wants;

/// Decides where a notice for `address` goes: a local mailbox or remote delivery.
pub trait Router: Send + Sync + 'static {
    /// The route for a notice addressed to `address`.
    fn route(&self, address: &str) -> Route;

    /// The notice's recipients for `address`: one per copy (an alias leads to each of its
    /// targets). By default the address itself, routed by [`Router::route`].
    fn recipients(&self, address: &str) -> Vec<(String, Route)> {
        vec![(address.to_string(), self.route(address))]
    }

    /// Header fields to put above a notice Tern wrote (`raw`): its DKIM signatures, when
    /// Tern's domain has keys. None by default.
    fn sign(&self, raw: &[u8]) -> Vec<u8> {
        let _ = raw;
        Vec::new()
    }
}

/// Whether a sender asked to hear of delivery to one of the envelope's local mailboxes: the
/// cheap check before building a [`Original::delivered_locally`] notice. Only a trusted
/// client's sender is told ([`Envelope::trusted_client`]): anyone may write any address in
/// `MAIL FROM` on an `mx` listener, and the notice would carry the message to it.
pub fn wants_local_delivery_notice(envelope: &Envelope) -> bool {
    envelope.trusted_client
        && !envelope.mail_from.is_empty()
        && envelope.recipients.iter().any(|r| {
            matches!(r.route, Route::Local { .. }) && wants(&r.notify, ReportKind::Delivered)
        })
}

/// The message a notice is about.
pub struct Original<'a> {
    /// Its queue id.
    pub id: MessageId,
    /// Its envelope (ENVID, RET, arrival time).
    pub envelope: &'a Envelope,
    /// Its bytes as stored: trace header, then the client's bytes.
    pub data: &'a [u8],
}

impl Original<'_> {
    /// A notice to `sender` about `recipients`, routed by `router`.
    pub fn notice(
        &self,
        hostname: &str,
        router: &dyn Router,
        sender: &str,
        kind: ReportKind,
        recipients: &[ReportRecipient],
        now_ms: i64,
    ) -> NewMessage {
        let id = self.id.to_string();
        let raw = dsn::build(&Report {
            kind,
            reporting_mta: hostname,
            sender,
            original_envid: self.envelope.envid.as_deref(),
            ret: self.envelope.ret.as_deref(),
            arrival_ms: self.envelope.received_at_ms,
            now_ms,
            message_id: &id,
            recipients,
            original: self.data,
        });
        let (summary, search_text) = Summary::extract_with_text(&raw);
        let eight_bit = raw.iter().any(|b| *b >= 0x80);
        info!(queue_id = %self.id, to = sender, kind = kind.action(), "notice to the sender");
        NewMessage {
            id: MessageId::generate(),
            envelope: Envelope {
                mail_from: String::new(),
                recipients: router
                    .recipients(sender)
                    .into_iter()
                    .map(|(address, route)| Recipient {
                        address,
                        notify: vec![],
                        orcpt: None,
                        route,
                    })
                    .collect(),
                body: eight_bit.then(|| "8BITMIME".to_string()),
                smtputf8: !sender.is_ascii(),
                ret: None,
                envid: None,
                client: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                helo: hostname.to_string(),
                tls: None,
                auth: None,
                trusted_client: true,
                received_at_ms: now_ms,
            },
            received_header: router.sign(&raw),
            raw,
            summary,
            search_text,
        }
    }

    /// The "delivered" notice for the local mailbox copies whose recipient asked for one
    /// (`NOTIFY=SUCCESS`), if any: local delivery happens in the message's own commit.
    pub fn delivered_locally(
        &self,
        hostname: &str,
        router: &dyn Router,
        now_ms: i64,
    ) -> Option<NewMessage> {
        let sender = &self.envelope.mail_from;
        if !wants_local_delivery_notice(self.envelope) {
            return None;
        }
        let recipients: Vec<ReportRecipient> = self
            .envelope
            .recipients
            .iter()
            .filter(|r| matches!(r.route, Route::Local { .. }))
            .filter(|r| wants(&r.notify, ReportKind::Delivered))
            .map(|r| ReportRecipient {
                address: r.address.clone(),
                orcpt: r.orcpt.clone(),
                action: ReportKind::Delivered,
                status: "2.0.0".into(),
                remote_mta: None,
                diagnostic: None,
                last_attempt_ms: Some(now_ms),
                will_retry_until_ms: None,
            })
            .collect();
        if recipients.is_empty() {
            return None;
        }
        Some(self.notice(hostname, router, sender, ReportKind::Delivered, &recipients, now_ms))
    }
}
