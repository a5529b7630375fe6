//! `POST /api/v1/send`: Mailpit's JSON message format, built into a real MIME message with
//! mail-builder and handed to the spool exactly as an SMTP message would be.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State as AxumState};
use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as BuiltAddress;
use mail_builder::headers::raw::Raw;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_protocol::received::Trace;
use tern_store::{Envelope, MessageId, NewMessage, Recipient, Route, Summary};

use crate::State;
use crate::error::ApiError;

/// Largest request body accepted, in bytes.
pub const MAX_SEND_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Headers the request may not set: the builder owns them.
const RESERVED_HEADERS: &[&str] =
    &["to", "from", "cc", "bcc", "reply-to", "date", "subject", "content-type", "mime-version"];

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct SendRequest {
    from: Person,
    to: Vec<Person>,
    cc: Vec<Person>,
    bcc: Vec<String>,
    reply_to: Vec<Person>,
    subject: String,
    text: String,
    #[serde(rename = "HTML")]
    html: String,
    attachments: Vec<Attachment>,
    tags: Vec<String>,
    headers: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase", default)]
struct Person {
    email: String,
    name: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Attachment {
    content: String,
    filename: String,
    content_type: String,
    #[serde(rename = "ContentID")]
    content_id: String,
}

/// `POST /api/v1/send` → `{"ID": "..."}`
pub async fn send(
    AxumState(state): AxumState<State>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let body = axum::body::to_bytes(request.into_body(), MAX_SEND_BODY_BYTES)
        .await
        .map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
    let req: SendRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
    let (raw, envelope_rcpts) = build(&req)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let id = MessageId::generate();
    let received_header = Trace {
        helo: "api",
        peer,
        hostname: &state.hostname,
        protocol: "HTTP",
        id,
        single_recipient: match envelope_rcpts.as_slice() {
            [only] => Some(only.as_str()),
            _ => None,
        },
        unix_time: now.as_secs() as i64,
    }
    .render();
    let (summary, search_text) = Summary::extract_with_text(&raw);
    let envelope = Envelope {
        mail_from: req.from.email.clone(),
        recipients: envelope_rcpts
            .into_iter()
            .map(|address| Recipient {
                address,
                notify: vec![],
                orcpt: None,
                route: Route::Capture,
            })
            .collect(),
        body: Some("8BITMIME".into()),
        smtputf8: false,
        ret: None,
        envid: None,
        client: peer,
        helo: "api".into(),
        tls: None,
        auth: None,
        received_at_ms: now.as_millis() as i64,
    };
    let message = NewMessage { id, envelope, received_header, raw, summary, search_text };
    let id = state.spool.submit(message).await?;
    Ok(Json(json!({ "ID": id.to_string() })))
}

/// Builds the MIME message and the envelope recipients, or says what is wrong.
fn build(req: &SendRequest) -> Result<(Vec<u8>, Vec<String>), ApiError> {
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
    for a in &req.attachments {
        // `data:…;base64,` prefixes are tolerated, as Mailpit does.
        let encoded = a.content.rsplit(',').next().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| bad(format!("error decoding base64 attachment {:?}: {e}", a.filename)))?;
        let content_type = if a.content_type.is_empty() {
            "application/octet-stream".to_string()
        } else {
            a.content_type.clone()
        };
        builder = if a.content_id.is_empty() {
            builder.attachment(content_type, a.filename.clone(), bytes)
        } else {
            builder.inline(content_type, a.content_id.clone(), bytes)
        };
    }
    let raw = builder.write_to_vec().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((raw, rcpts))
}

/// `local@domain` with no spaces, brackets or control characters.
fn valid_address(address: &str) -> bool {
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
        let (raw, rcpts) = build(&req).expect("builds");
        assert_eq!(rcpts, ["user@example.com", "hidden@example.com"]);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("X-Tags: signup, test"), "{text}");
        assert!(text.contains("X-Campaign: c1"));
        assert!(!text.contains("hidden@example.com"), "Bcc is not a header");
        let summary = Summary::extract(&raw);
        assert_eq!(summary.subject, "Welcome");
        assert_eq!(summary.attachments, 1);
        assert_eq!(summary.tags, ["signup", "test"]);
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
            let err = build(&request(value)).expect_err(want).to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }
}
