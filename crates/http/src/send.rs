//! `POST /api/v1/send`: Mailpit's JSON message format, built into a real MIME message with
//! mail-builder and handed to the door (`tern-ingest`) exactly as an SMTP message would be.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State as AxumState};
use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as BuiltAddress;
use mail_builder::headers::raw::Raw;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_ingest::{Client, Transaction};
use tern_store::{MessageId, Recipient, Route};

use crate::State;
use crate::error::ApiError;

/// Largest request body accepted, in bytes.
pub const MAX_SEND_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Headers the request may not set: the builder owns them.
const RESERVED_HEADERS: &[&str] =
    &["to", "from", "cc", "bcc", "reply-to", "date", "subject", "content-type", "mime-version"];

/// Mailpit's request. Like its Go decoder, unknown fields are ignored and both the documented
/// (`To`) and the lower-case (`to`) spellings are accepted.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct SendRequest {
    #[serde(rename = "From", alias = "from")]
    from: Person,
    #[serde(rename = "To", alias = "to")]
    to: Vec<Person>,
    #[serde(rename = "Cc", alias = "cc", alias = "CC")]
    cc: Vec<Person>,
    #[serde(rename = "Bcc", alias = "bcc", alias = "BCC")]
    bcc: Vec<String>,
    #[serde(rename = "ReplyTo", alias = "replyTo", alias = "reply_to", alias = "replyto")]
    reply_to: Vec<Person>,
    #[serde(rename = "Subject", alias = "subject")]
    subject: String,
    #[serde(rename = "Text", alias = "text")]
    text: String,
    #[serde(rename = "HTML", alias = "html", alias = "Html")]
    html: String,
    #[serde(rename = "Attachments", alias = "attachments")]
    attachments: Vec<Attachment>,
    #[serde(rename = "Tags", alias = "tags")]
    tags: Vec<String>,
    #[serde(rename = "Headers", alias = "headers")]
    headers: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
struct Person {
    #[serde(rename = "Email", alias = "email")]
    email: String,
    #[serde(rename = "Name", alias = "name")]
    name: String,
}

impl Person {
    /// Accepts `Bob <b@example.com>` in `Email` too, as Mailpit's address parser does.
    fn normalized(&self) -> Person {
        let email = self.email.trim();
        match email.strip_suffix('>').and_then(|e| e.rsplit_once('<')) {
            Some((name, address)) => Person {
                email: address.trim().to_string(),
                name: if self.name.is_empty() {
                    name.trim().trim_matches('"').to_string()
                } else {
                    self.name.clone()
                },
            },
            None => Person { email: email.to_string(), name: self.name.clone() },
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Attachment {
    #[serde(rename = "Content", alias = "content")]
    content: String,
    #[serde(rename = "Filename", alias = "filename", alias = "FileName")]
    filename: String,
    #[serde(rename = "ContentType", alias = "contentType", alias = "content_type")]
    content_type: String,
    #[serde(rename = "ContentID", alias = "contentID", alias = "ContentId", alias = "content_id")]
    content_id: String,
}

/// `POST /api/v1/send` → `{"ID": "..."}`
pub async fn send(
    AxumState(state): AxumState<State>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    // Injecting mail is for the administrator (or an unauthenticated catcher), not an account.
    if request.extensions().get::<crate::Access>().is_some_and(|a| *a != crate::Access::Everything)
    {
        return Err(ApiError::Forbidden("sending through the API needs the admin API key".into()));
    }
    let peer = peer_of(&request);
    let body = axum::body::to_bytes(request.into_body(), MAX_SEND_BODY_BYTES)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    let mut req: SendRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    req.normalize();
    let id = MessageId::generate();
    let (raw, envelope_rcpts) = build(&req, &format!("{id}@{}", state.hostname))?;
    let keyed = state.auth.is_some();
    let id = enter(&state, peer, keyed, id, &req.from.email, envelope_rcpts, raw).await?;
    Ok(Json(json!({ "ID": id.to_string() })))
}

/// The client's address (loopback when the listener did not record it).
pub(crate) fn peer_of(request: &Request) -> SocketAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// Hands a message an HTTP send API built (under the id in its `Message-ID:`) to the door:
/// [`plan`], then the door's acceptance.
pub(crate) async fn enter(
    state: &State,
    peer: SocketAddr,
    keyed: bool,
    id: MessageId,
    mail_from: &str,
    rcpts: Vec<String>,
    raw: Vec<u8>,
) -> Result<MessageId, ApiError> {
    let (client, tx) = plan(state, peer, keyed, mail_from, rcpts, raw.len() as u64).await?;
    Ok(state.door.accept_as(id, &client, tx, raw).await?)
}

/// Who sends and where each recipient's copies go, before the message exists. The catcher
/// captures every recipient. A mail server routes each one as it would an SMTP recipient
/// (local mailbox, alias, remote through the queue) after the sender's checks and the
/// free-space reserve, and trusts the client (relaying, DKIM signing, notices) only when the
/// request carried the admin API key (`keyed`): an API without HTTP authentication is an
/// untrusted client, like an SMTP client from an untrusted address.
pub(crate) async fn plan(
    state: &State,
    peer: SocketAddr,
    keyed: bool,
    mail_from: &str,
    rcpts: Vec<String>,
    size: u64,
) -> Result<(Client, Transaction), ApiError> {
    let mta = state.door.routing().policy().is_some();
    let client = Client {
        peer,
        helo: "api".into(),
        protocol: "HTTP".into(),
        tls: None,
        auth: None,
        admin: !mta || keyed,
    };
    let refused = |reply| ApiError::from(tern_ingest::IngestError::Refused(reply));
    state.door.check_mail(&client, mail_from, Some(size)).await.map_err(refused)?;
    let smtputf8 = !mail_from.is_ascii() || rcpts.iter().any(|r| !r.is_ascii());
    let mut recipients = Vec::with_capacity(rcpts.len());
    for address in rcpts {
        if !mta {
            recipients.push(Recipient {
                address,
                notify: vec![],
                orcpt: None,
                route: Route::Capture,
            });
            continue;
        }
        let deliveries = state.door.route(&client, mail_from, &address).await.map_err(refused)?;
        for tern_ingest::Delivery { target, route } in deliveries {
            // An alias target is delivered as the target, the alias kept as ORCPT (RFC 3461).
            let orcpt = target.is_some().then(|| format!("rfc822;{address}"));
            let address = target.unwrap_or_else(|| address.clone());
            recipients.push(Recipient { address, notify: vec![], orcpt, route });
        }
    }
    let tx = Transaction {
        mail_from: mail_from.to_string(),
        recipients,
        body: Some("8BITMIME".into()),
        smtputf8,
        ..Transaction::default()
    };
    Ok((client, tx))
}

impl SendRequest {
    fn normalize(&mut self) {
        self.from = self.from.normalized();
        for list in [&mut self.to, &mut self.cc, &mut self.reply_to] {
            for person in list.iter_mut() {
                *person = person.normalized();
            }
        }
        for address in &mut self.bcc {
            *address = Person { email: address.clone(), name: String::new() }.normalized().email;
        }
    }
}

/// The request path without the server: parse, normalize, build (for fuzzing).
pub(crate) fn build_from_json(body: &[u8]) {
    if let Ok(mut req) = serde_json::from_slice::<SendRequest>(body) {
        req.normalize();
        let _ = build(&req, "fuzz@tern.test");
    }
}

/// Builds the MIME message (with `message_id`) and the envelope recipients, or says what is
/// wrong.
fn build(req: &SendRequest, message_id: &str) -> Result<(Vec<u8>, Vec<String>), ApiError> {
    let rcpts = recipients(req)?;
    let list = |people: &[Person]| {
        BuiltAddress::new_list(
            people
                .iter()
                .map(|p| {
                    BuiltAddress::new_address(
                        (!p.name.is_empty()).then(|| p.name.clone()),
                        p.email.clone(),
                    )
                })
                .collect(),
        )
    };
    let mut builder = MessageBuilder::new()
        .message_id(message_id.to_string())
        .from(BuiltAddress::new_address(
            (!req.from.name.is_empty()).then(|| req.from.name.clone()),
            req.from.email.clone(),
        ))
        .subject(req.subject.clone())
        .text_body(req.text.clone());
    if !req.to.is_empty() {
        builder = builder.to(list(&req.to));
    }
    if !req.cc.is_empty() {
        builder = builder.cc(list(&req.cc));
    }
    if !req.reply_to.is_empty() {
        builder = builder.reply_to(list(&req.reply_to));
    }
    if !req.html.is_empty() {
        builder = builder.html_body(req.html.clone());
    }
    builder = with_headers(builder, req)?;
    builder = with_attachments(builder, req)?;
    let raw = builder.write_to_vec().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((raw, rcpts))
}

/// Checks the sender, subject and every address; returns the envelope recipients.
fn recipients(req: &SendRequest) -> Result<Vec<String>, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    if req.from.email.trim().is_empty() {
        return Err(bad("error building message: from not set".into()));
    }
    if req.subject.is_empty() {
        return Err(bad("error building message: subject not set".into()));
    }
    let check = |kind: &str, address: &str| {
        if valid_address(address) {
            Ok(())
        } else {
            Err(bad(format!("invalid {kind} address: {address}")))
        }
    };
    check("From", &req.from.email)?;
    for p in &req.to {
        check("To", &p.email)?;
    }
    for p in &req.cc {
        check("Cc", &p.email)?;
    }
    for a in &req.bcc {
        check("Bcc", a)?;
    }
    for p in &req.reply_to {
        check("Reply-To", &p.email)?;
    }
    let rcpts: Vec<String> = req
        .to
        .iter()
        .chain(&req.cc)
        .map(|p| p.email.clone())
        .chain(req.bcc.iter().cloned())
        .collect();
    if rcpts.is_empty() {
        return Err(bad("error building message: no recipients (to, cc, bcc) set".into()));
    }
    Ok(rcpts)
}

/// Adds the request's own headers (and its tags as `X-Tags`), refusing reserved names.
fn with_headers<'a>(
    mut builder: MessageBuilder<'a>,
    req: &SendRequest,
) -> Result<MessageBuilder<'a>, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || (lower == "x-tags" && !req.tags.is_empty())
        {
            return Err(bad(format!("cannot overwrite header: {name:?}")));
        }
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(bad(format!("invalid header name: {name:?}")));
        }
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if value.contains(['\r', '\n']) {
            return Err(bad(format!("header {name:?} must not contain line breaks")));
        }
        builder = builder.header(name.clone(), Raw::new(value));
    }
    if !req.tags.is_empty() {
        builder = builder.header("X-Tags", Raw::new(req.tags.join(", ")));
    }
    Ok(builder)
}

/// Adds the attachments (inline when they have a content id).
fn with_attachments<'a>(
    mut builder: MessageBuilder<'a>,
    req: &SendRequest,
) -> Result<MessageBuilder<'a>, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    for a in &req.attachments {
        // `data:…;base64,` prefixes are tolerated, as Mailpit does.
        let encoded = a.content.rsplit(',').next().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("error decoding base64 attachment {:?}: {e}", a.filename)))?;
        let content_type = if a.content_type.is_empty() {
            sniff(&bytes).to_string()
        } else {
            a.content_type.clone()
        };
        builder = if a.content_id.is_empty() {
            builder.attachment(content_type, a.filename.clone(), bytes)
        } else {
            builder.inline(content_type, a.content_id.clone(), bytes)
        };
    }
    Ok(builder)
}

/// The media type of content given without one, from its first bytes.
fn sniff(bytes: &[u8]) -> &'static str {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
    ];
    if let Some((_, media)) = MAGIC.iter().find(|(magic, _)| bytes.starts_with(magic)) {
        return media;
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return "image/webp";
    }
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `local@domain` with no spaces, brackets or control characters.
pub(crate) fn valid_address(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else { return false };
    !local.is_empty()
        && !domain.is_empty()
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::Summary;

    fn request(json: Value) -> SendRequest {
        serde_json::from_value(json).expect("valid request")
    }

    #[test]
    fn builds_a_message_with_every_part() {
        let req = request(json!({
            "From": {"Email": "app@example.org", "Name": "App"},
            "To": [{"Email": "user@example.com", "Name": "User"}],
            "Bcc": ["hidden@example.com"],
            "Subject": "Welcome",
            "Text": "Hello",
            "HTML": "<p>Hello</p>",
            "Tags": ["signup", "test"],
            "Headers": {"X-Campaign": "c1"},
            "Attachments": [{"Content": "aGVsbG8=", "Filename": "a.txt", "ContentType": "text/plain"}]
        }));
        let (raw, rcpts) = build(&req, "id@tern.test").expect("builds");
        assert_eq!(rcpts, ["user@example.com", "hidden@example.com"]);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("X-Tags: signup, test"), "{text}");
        assert!(text.contains("X-Campaign: c1"));
        assert!(!text.contains("hidden@example.com"), "Bcc is not a header");
        let summary = Summary::extract(&raw);
        assert_eq!(summary.subject, "Welcome");
        assert_eq!(summary.attachments, 1);
        assert_eq!(summary.tags, ["signup", "test"]);
        assert_eq!(summary.message_id.as_deref(), Some("id@tern.test"));
    }

    #[test]
    fn lower_case_keys_display_names_and_sniffed_types() {
        let mut req = request(json!({
            "from": {"email": "App <app@example.org>"},
            "to": [{"email": "user@example.com"}],
            "subject": "s",
            "attachments": [{"content": "iVBORw0KGgoAAAAN", "filename": "x.png"}]
        }));
        req.normalize();
        assert_eq!((req.from.email.as_str(), req.from.name.as_str()), ("app@example.org", "App"));
        let (raw, _) = build(&req, "id@tern.test").expect("builds");
        assert!(String::from_utf8_lossy(&raw).contains("image/png"));
    }

    #[test]
    fn refuses_what_mailpit_refuses() {
        let base = json!({"From": {"Email": "a@b.example"}, "To": [{"Email": "c@d.example"}], "Subject": "s"});
        let cases = [
            (json!({"From": {"Email": ""}}), "from not set"),
            (json!({"Subject": ""}), "subject not set"),
            (json!({"To": []}), "no recipients"),
            (json!({"To": [{"Email": "not an address"}]}), "invalid To address"),
            (json!({"Headers": {"Subject": "x"}}), "cannot overwrite header"),
            (json!({"Headers": {"X-Evil": "a\r\nBcc: x@y"}}), "line breaks"),
            (
                json!({"Attachments": [{"Content": "!!!", "Filename": "f"}]}),
                "error decoding base64",
            ),
        ];
        for (patch, want) in cases {
            let mut value = base.clone();
            for (k, v) in patch.as_object().expect("object") {
                value[k] = v.clone();
            }
            let err = build(&request(value), "id@tern.test").expect_err(want).to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }
}
