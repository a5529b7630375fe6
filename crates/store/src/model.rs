//! What the store keeps about a message: its envelope, its bytes and its summary.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::id::MessageId;
use crate::summary::Summary;

/// Where a recipient's copy goes. Capture is the catcher; later issues add mailboxes and relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Kept for inspection (the mail catcher); never delivered anywhere.
    Capture,
}

impl Route {
    /// The name stored in the database.
    pub fn as_str(&self) -> &'static str {
        match self {
            Route::Capture => "capture",
        }
    }
}

/// One envelope recipient with its DSN parameters (RFC 3461).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The forward path as given at RCPT TO.
    pub address: String,
    /// `NOTIFY=` values as given, e.g. `["SUCCESS", "FAILURE"]`; empty when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// `ORCPT=` address, xtext-decoded, with its `rfc822;` type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
    /// Where this copy goes.
    pub route: Route,
}

/// TLS facts of the session that carried the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`.
    pub protocol: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// Everything the SMTP transaction said about a message besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path; empty for the null sender.
    pub mail_from: String,
    /// Accepted recipients in RCPT order.
    pub recipients: Vec<Recipient>,
    /// `BODY=` as given (`7BIT`, `8BITMIME`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `SMTPUTF8` was requested.
    #[serde(default)]
    pub smtputf8: bool,
    /// DSN `RET=` (`FULL` or `HDRS`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<String>,
    /// DSN `ENVID=`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// The client's address and port.
    pub client: SocketAddr,
    /// The HELO/EHLO name the client gave.
    pub helo: String,
    /// TLS facts when the session was encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// The authenticated identity, when the client authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// When the message was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// A message on its way into the store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Its id (the queue id the client is told).
    pub id: MessageId,
    /// The transaction's envelope.
    pub envelope: Envelope,
    /// The `Received:` trace header Tern prepends, CRLF-terminated.
    pub received_header: Vec<u8>,
    /// The message exactly as the client sent it (after dot-unstuffing).
    pub raw: Vec<u8>,
    /// Parsed header facts for listing and search.
    pub summary: Summary,
}

/// A message read back from the store.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// The transaction's envelope.
    pub envelope: Envelope,
    /// The `Received:` header Tern prepended.
    pub received_header: Vec<u8>,
    /// The bytes the client sent.
    pub raw: Vec<u8>,
    /// Parsed header facts.
    pub summary: Summary,
}

impl StoredMessage {
    /// The message as Tern delivers it: trace header, then the client's bytes.
    pub fn full_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.received_header.len() + self.raw.len());
        out.extend_from_slice(&self.received_header);
        out.extend_from_slice(&self.raw);
        out
    }
}
