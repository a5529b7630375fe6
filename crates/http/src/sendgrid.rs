//! `POST /v3/mail/send`: SendGrid's v3 mail send, so an application (or SendGrid's own SDKs,
//! pointed at Tern with another host) sends through Tern unchanged.
//!
//! Each personalization becomes one message (its `to`/`cc`/`bcc` are that message's
//! recipients; its `subject`, `headers`, `substitutions` and `custom_args` override the
//! request's), built with mail-builder and handed to the door as the Mailpit send API's
//! messages are (`send::enter`: captured by the catcher, routed and delivered by a mail
//! server). The answer is SendGrid's: `202` with an empty body and `X-Message-Id`, or
//! `400 {"errors": [{"message", "field", "help"}]}` listing every problem found;
//! `mail_settings.sandbox_mode.enable` validates and stores nothing (`200`). Categories become
//! tags, `custom_args` an `X-Custom-Args` header (JSON), `send_at` an `X-Send-At` header (the
//! catcher shows the message at once), `template_id` and `dynamic_template_data` headers
//! and, without content, a text body naming them (templates live at SendGrid). SendGrid's
//! limits hold: at most 1,000 personalizations and 1,000 recipients per request, `send_at`
//! at most 72 hours ahead, no line breaks in anything that becomes a header.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Request;
use axum::extract::State as AxumState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as BuiltAddress;
use mail_builder::headers::raw::Raw;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_store::MessageId;

use crate::State;
use crate::error::ApiError;
use crate::send::{enter, peer_of};

/// SendGrid's limit on a request body (30 MB).
pub const MAX_BODY_BYTES: usize = 30 * 1024 * 1024;
/// SendGrid's limit on personalizations, and on recipients across them.
const MAX_PERSONALIZATIONS: usize = 1000;
const MAX_RECIPIENTS: usize = 1000;
/// How far ahead `send_at` may be (72 hours).
const MAX_SEND_AHEAD_SECS: i64 = 72 * 3600;

/// Headers the request may not set (the builder and Tern own them).
const RESERVED: &[&str] = &[
    "to",
    "from",
    "cc",
    "bcc",
    "reply-to",
    "date",
    "subject",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "message-id",
    "received",
    "x-sg-id",
    "x-sg-eid",
    "dkim-signature",
];

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
struct Email {
    email: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Personalization {
    to: Vec<Email>,
    cc: Vec<Email>,
    bcc: Vec<Email>,
    from: Option<Email>,
    subject: Option<String>,
    headers: BTreeMap<String, Value>,
    substitutions: BTreeMap<String, Value>,
    dynamic_template_data: Option<Value>,
    custom_args: BTreeMap<String, Value>,
    send_at: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Content {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Attachment {
    content: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    filename: String,
    disposition: Option<String>,
    content_id: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Enable {
    enable: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct MailSettings {
    sandbox_mode: Enable,
}

/// The request. Unknown fields (asm, ip_pool_name, tracking_settings, …) are accepted and
/// have no effect here.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct MailSend {
    personalizations: Vec<Personalization>,
    from: Option<Email>,
    reply_to: Option<Email>,
    reply_to_list: Vec<Email>,
    subject: Option<String>,
    content: Vec<Content>,
    attachments: Vec<Attachment>,
    template_id: Option<String>,
    headers: BTreeMap<String, Value>,
    categories: Vec<String>,
    custom_args: BTreeMap<String, Value>,
    send_at: Option<i64>,
    batch_id: Option<String>,
    mail_settings: MailSettings,
}

/// SendGrid's error list.
#[derive(Debug, Default)]
struct Errors(Vec<(String, Option<String>)>);

impl Errors {
    fn add(&mut self, field: impl Into<Option<String>>, message: impl Into<String>) {
        self.0.push((message.into(), field.into()));
    }

    fn response(&self, status: StatusCode) -> Response {
        let errors: Vec<Value> = self
            .0
            .iter()
            .map(|(message, field)| json!({"message": message, "field": field, "help": null}))
            .collect();
        (status, axum::Json(json!({ "errors": errors }))).into_response()
    }
}

fn one_error(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    let mut errors = Errors::default();
    errors.add(field.map(str::to_string), message);
    errors.response(status)
}

/// `POST /v3/mail/send`
pub async fn mail_send(AxumState(state): AxumState<State>, request: Request) -> Response {
    // SendGrid refuses a request without a key; a catcher without HTTP authentication takes
    // any key, a server with it has already checked the key (the admin's) in the middleware.
    if !request.headers().contains_key(header::AUTHORIZATION) {
        return one_error(StatusCode::UNAUTHORIZED, None, "authorization required");
    }
    if request.extensions().get::<crate::Access>().is_some_and(|a| *a != crate::Access::Everything)
    {
        return one_error(
            StatusCode::FORBIDDEN,
            None,
            "access forbidden: sending needs the admin API key",
        );
    }
    let peer = peer_of(&request);
    // With HTTP authentication on, reaching here took the admin key.
    let keyed = state.auth.is_some();
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return one_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "the request body is larger than 30 MB",
            );
        }
    };
    let req: MailSend = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => {
            return one_error(
                StatusCode::BAD_REQUEST,
                None,
                &format!("Bad Request: the JSON body is invalid: {e}"),
            );
        }
    };
    let now = tern_queue::scheduler::now_ms() / 1000;
    let messages = match build_all(&req, now, &state.hostname) {
        Ok(messages) => messages,
        Err(errors) => return errors.response(StatusCode::BAD_REQUEST),
    };
    if req.mail_settings.sandbox_mode.enable {
        return StatusCode::OK.into_response();
    }
    let mut first = None;
    for built in messages {
        match enter(&state, peer, keyed, built.id, &built.from, built.rcpts, built.raw).await {
            Ok(id) => {
                first.get_or_insert(id);
            }
            Err(e) => {
                // The messages before this one are stored; the client hears the failure (a
                // check's refusal, or the store) and may retry.
                let status = match &e {
                    ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
                    ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let text = match e {
                    ApiError::Internal(detail) => {
                        tracing::error!(error = %detail, "SendGrid send failed");
                        "internal error".to_string()
                    }
                    other => other.to_string(),
                };
                return one_error(status, None, &text);
            }
        }
    }
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    if let Some(id) = first
        && let Ok(value) = HeaderValue::from_str(&id.to_string())
    {
        response.headers_mut().insert("x-message-id", value);
    }
    response
}

/// The request path without the server: parse, check, build (for fuzzing).
pub(crate) fn build_from_json(body: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<MailSend>(body) {
        let _ = build_all(&req, 1_800_000_000, "fuzz.tern.test");
    }
}

/// A message ready for the door.
struct Built {
    id: MessageId,
    from: String,
    rcpts: Vec<String>,
    raw: Vec<u8>,
}

/// Validates the whole request (every error found, with its field) and builds one message
/// per personalization.
fn build_all(req: &MailSend, now_secs: i64, hostname: &str) -> Result<Vec<Built>, Errors> {
    let mut errors = Errors::default();
    check(req, now_secs, &mut errors);
    if !errors.0.is_empty() {
        return Err(errors);
    }
    let mut built = Vec::with_capacity(req.personalizations.len());
    for (i, p) in req.personalizations.iter().enumerate() {
        let id = MessageId::generate();
        match build_one(req, p, &format!("{id}@{hostname}")) {
            Ok((from, rcpts, raw)) => built.push(Built { id, from, rcpts, raw }),
            Err(message) => errors.add(format!("personalizations.{i}"), message),
        }
    }
    if errors.0.is_empty() { Ok(built) } else { Err(errors) }
}

fn has_line_break(text: &str) -> bool {
    text.contains(['\r', '\n'])
}

fn valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else { return false };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"')
        })
}

fn check_email(email: &Email, field: &str, errors: &mut Errors) {
    if email.email.is_empty() {
        errors.add(format!("{field}.email"), "The email parameter is required.");
    } else if !valid_email(&email.email) {
        errors.add(format!("{field}.email"), "Does not contain a valid address.".to_string());
    }
    if email.name.as_deref().is_some_and(has_line_break) {
        errors.add(format!("{field}.name"), "The name may not contain line breaks.");
    }
}

fn check_headers(headers: &BTreeMap<String, Value>, field: &str, errors: &mut Errors) {
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED.contains(&lower.as_str()) {
            errors.add(
                format!("{field}.{name}"),
                format!("The header {name:?} is reserved and may not be set here."),
            );
        } else if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            errors.add(format!("{field}.{name}"), "Invalid header name.");
        }
        match value {
            Value::String(text) if has_line_break(text) => {
                errors.add(format!("{field}.{name}"), "Header values may not contain line breaks.")
            }
            Value::String(_) => {}
            _ => errors.add(format!("{field}.{name}"), "Header values must be strings."),
        }
    }
}

fn check_send_at(send_at: Option<i64>, now_secs: i64, field: &str, errors: &mut Errors) {
    if send_at.is_some_and(|at| at > now_secs + MAX_SEND_AHEAD_SECS) {
        errors.add(
            field.to_string(),
            "The send_at parameter cannot be more than 72 hours in the future.",
        );
    }
    if send_at.is_some_and(|at| at < 0) {
        errors.add(field.to_string(), "The send_at parameter must be a UNIX timestamp.");
    }
}

/// SendGrid's validation, as much as applies here.
fn check(req: &MailSend, now_secs: i64, errors: &mut Errors) {
    if !check_senders(req, errors) {
        return;
    }
    check_content(req, now_secs, errors);
    check_attachments(req, errors);
    check_personalizations(req, now_secs, errors);
}

/// The personalizations' count and size, the sender and reply addresses; false when the
/// request is too large to look at further.
fn check_senders(req: &MailSend, errors: &mut Errors) -> bool {
    if req.personalizations.is_empty() {
        errors.add(
            "personalizations".to_string(),
            "The personalizations field is required and must have at least one personalization.",
        );
    }
    if req.personalizations.len() > MAX_PERSONALIZATIONS {
        errors.add(
            "personalizations".to_string(),
            "The personalizations field may not have more than 1000 personalizations.",
        );
    }
    let total: usize =
        req.personalizations.iter().map(|p| p.to.len() + p.cc.len() + p.bcc.len()).sum();
    if total > MAX_RECIPIENTS {
        errors.add(
            "personalizations".to_string(),
            format!(
                "The total number of recipients ({total}) may not exceed 1000 across all personalizations."
            ),
        );
        return false;
    }
    match &req.from {
        None => errors.add(
            "from".to_string(),
            "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
        ),
        Some(from) => check_email(from, "from", errors),
    }
    if let Some(reply_to) = &req.reply_to {
        check_email(reply_to, "reply_to", errors);
    }
    if req.reply_to.is_some() && !req.reply_to_list.is_empty() {
        errors.add(
            "reply_to_list".to_string(),
            "The reply_to and reply_to_list parameters may not be used together.",
        );
    }
    for (i, r) in req.reply_to_list.iter().enumerate() {
        check_email(r, &format!("reply_to_list.{i}"), errors);
    }
    true
}

/// Subject, content blocks, headers, `send_at` and categories.
fn check_content(req: &MailSend, now_secs: i64, errors: &mut Errors) {
    let subject_everywhere =
        req.subject.is_some() || req.personalizations.iter().all(|p| p.subject.is_some());
    if !subject_everywhere && req.template_id.is_none() {
        errors.add(
            "subject".to_string(),
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
        );
    }
    for subject in
        req.subject.iter().chain(req.personalizations.iter().filter_map(|p| p.subject.as_ref()))
    {
        if has_line_break(subject) {
            errors.add("subject".to_string(), "The subject may not contain line breaks.");
            break;
        }
    }
    if req.content.is_empty() && req.template_id.is_none() {
        errors.add(
            "content".to_string(),
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.",
        );
    }
    for (i, c) in req.content.iter().enumerate() {
        if !matches!(c.kind.to_ascii_lowercase().as_str(), "text/plain" | "text/html") {
            errors.add(
                format!("content.{i}.type"),
                "Tern takes the content types text/plain and text/html.",
            );
        }
        if c.value.is_empty() {
            errors.add(
                format!("content.{i}.value"),
                "The content value must be a string at least one character in length.",
            );
        }
    }
    if let (Some(first), true) = (req.content.first(), req.content.len() > 1)
        && !first.kind.eq_ignore_ascii_case("text/plain")
    {
        errors.add(
            "content.0.type".to_string(),
            "If present, text/plain content must be first, followed by any other content.",
        );
    }
    check_headers(&req.headers, "headers", errors);
    check_send_at(req.send_at, now_secs, "send_at", errors);
    for (i, category) in req.categories.iter().enumerate() {
        if category.is_empty()
            || category.len() > 255
            || has_line_break(category)
            || category.contains(',')
        {
            errors.add(
                format!("categories.{i}"),
                "A category must be 1 to 255 characters without line breaks or commas.",
            );
        }
    }
    if req.categories.len() > 10 {
        errors
            .add("categories".to_string(), "You may not have more than 10 categories per request.");
    }
}

fn check_attachments(req: &MailSend, errors: &mut Errors) {
    for (i, a) in req.attachments.iter().enumerate() {
        let field = format!("attachments.{i}");
        if a.filename.is_empty() {
            errors
                .add(format!("{field}.filename"), "The attachment filename parameter is required.");
        }
        if has_line_break(&a.filename) || a.kind.as_deref().is_some_and(has_line_break) {
            errors
                .add(field.clone(), "Attachment filenames and types may not contain line breaks.");
        }
        if base64::engine::general_purpose::STANDARD.decode(a.content.trim()).is_err() {
            errors
                .add(format!("{field}.content"), "The attachment content must be base64 encoded.");
        }
        match a.disposition.as_deref() {
            None | Some("attachment") => {}
            Some("inline") if a.content_id.as_deref().is_some_and(|id| !id.is_empty()) => {}
            Some("inline") => errors.add(
                format!("{field}.content_id"),
                "The content_id parameter is required when the disposition is inline.",
            ),
            Some(_) => errors.add(
                format!("{field}.disposition"),
                "The disposition must be inline or attachment.",
            ),
        }
        if a.content_id.as_deref().is_some_and(has_line_break) {
            errors
                .add(format!("{field}.content_id"), "The content_id may not contain line breaks.");
        }
    }
}

fn check_personalizations(req: &MailSend, now_secs: i64, errors: &mut Errors) {
    for (i, p) in req.personalizations.iter().enumerate() {
        let field = format!("personalizations.{i}");
        if p.to.is_empty() {
            errors.add(
                format!("{field}.to"),
                "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (kind, list) in [("to", &p.to), ("cc", &p.cc), ("bcc", &p.bcc)] {
            for (j, e) in list.iter().enumerate() {
                check_email(e, &format!("{field}.{kind}.{j}"), errors);
                if !seen.insert(e.email.to_ascii_lowercase()) {
                    errors.add(
                        format!("{field}.{kind}.{j}.email"),
                        "Each email address in the personalization block should be unique between to, cc, and bcc.",
                    );
                }
            }
        }
        if let Some(from) = &p.from {
            check_email(from, &format!("{field}.from"), errors);
        }
        check_headers(&p.headers, &format!("{field}.headers"), errors);
        check_send_at(p.send_at, now_secs, &format!("{field}.send_at"), errors);
    }
}

/// `text` with each substitution key replaced by its value.
fn substituted(text: &str, substitutions: &BTreeMap<String, Value>) -> String {
    let mut out = text.to_string();
    for (key, value) in substitutions.iter().filter(|(k, _)| !k.is_empty()) {
        let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out = out.replace(key.as_str(), &value);
    }
    out
}

fn address(e: &Email) -> BuiltAddress<'static> {
    BuiltAddress::new_address(e.name.clone().filter(|n| !n.is_empty()), e.email.clone())
}

fn list(people: &[Email]) -> BuiltAddress<'static> {
    BuiltAddress::new_list(people.iter().map(address).collect())
}

/// One personalization's message: `(envelope sender, recipients, raw bytes)`.
fn build_one(
    req: &MailSend,
    p: &Personalization,
    message_id: &str,
) -> Result<(String, Vec<String>, Vec<u8>), String> {
    let from = p.from.as_ref().or(req.from.as_ref()).ok_or("no from")?;
    let subject = substituted(
        p.subject.as_ref().or(req.subject.as_ref()).map_or("", |s| s),
        &p.substitutions,
    );
    let mut builder = MessageBuilder::new()
        .message_id(message_id.to_string())
        .from(address(from))
        .to(list(&p.to))
        .subject(subject);
    if !p.cc.is_empty() {
        builder = builder.cc(list(&p.cc));
    }
    if let Some(reply_to) = &req.reply_to {
        builder = builder.reply_to(address(reply_to));
    } else if !req.reply_to_list.is_empty() {
        builder = builder.reply_to(list(&req.reply_to_list));
    }
    for c in &req.content {
        let value = substituted(&c.value, &p.substitutions);
        builder = if c.kind.eq_ignore_ascii_case("text/html") {
            builder.html_body(value)
        } else {
            builder.text_body(value)
        };
    }
    if req.content.is_empty() {
        // A template lives at SendGrid; the catcher shows what would have filled it.
        let data = p.dynamic_template_data.as_ref().map_or("{}".to_string(), Value::to_string);
        builder = builder.text_body(format!(
            "SendGrid template {} with dynamic_template_data:\n{data}\n",
            req.template_id.as_deref().unwrap_or_default()
        ));
    }
    builder = with_metadata(builder, req, p);
    for a in &req.attachments {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.content.trim())
            .map_err(|e| format!("attachment {:?}: {e}", a.filename))?;
        let kind = a
            .kind
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into());
        builder = match (a.disposition.as_deref(), &a.content_id) {
            (Some("inline"), Some(cid)) => builder.inline(kind, cid.clone(), bytes),
            _ => builder.attachment(kind, a.filename.clone(), bytes),
        };
    }
    let raw = builder.write_to_vec().map_err(|e| e.to_string())?;
    let rcpts = p.to.iter().chain(&p.cc).chain(&p.bcc).map(|e| e.email.clone()).collect();
    Ok((from.email.clone(), rcpts, raw))
}

/// The request's and the personalization's headers (the personalization's win), and the
/// headers that show what SendGrid keeps beside a message: categories as `X-Tags`, custom
/// args, `send_at`, the template and the batch.
fn with_metadata<'a>(
    mut builder: MessageBuilder<'a>,
    req: &MailSend,
    p: &Personalization,
) -> MessageBuilder<'a> {
    // Personalization headers override the request's.
    let mut headers = req.headers.clone();
    headers.extend(p.headers.clone());
    for (name, value) in headers {
        let value = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        builder = builder.header(name, Raw::new(value));
    }
    if !req.categories.is_empty() {
        builder = builder.header("X-Tags", Raw::new(req.categories.join(", ")));
    }
    let mut custom_args = req.custom_args.clone();
    custom_args.extend(p.custom_args.clone());
    if !custom_args.is_empty() {
        builder = builder.header(
            "X-Custom-Args",
            Raw::new(Value::from(serde_json::Map::from_iter(custom_args)).to_string()),
        );
    }
    if let Some(at) = p.send_at.or(req.send_at) {
        builder = builder.header("X-Send-At", Raw::new(at.to_string()));
    }
    if let Some(template) = &req.template_id {
        builder = builder.header("X-Template-Id", Raw::new(template.clone()));
        if let Some(data) = &p.dynamic_template_data {
            builder = builder.header("X-Template-Data", Raw::new(data.to_string()));
        }
    }
    if let Some(batch) = &req.batch_id {
        builder = builder.header("X-Batch-Id", Raw::new(batch.clone()));
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::Summary;

    fn request(value: Value) -> MailSend {
        serde_json::from_value(value).expect("a request")
    }

    fn base() -> Value {
        json!({
            "personalizations": [{"to": [{"email": "user@example.com", "name": "User"}]}],
            "from": {"email": "app@example.org", "name": "App"},
            "subject": "Hello",
            "content": [{"type": "text/plain", "value": "Hi"}]
        })
    }

    fn errors(value: Value) -> Vec<(String, Option<String>)> {
        build_all(&request(value), 1_800_000_000, "tern.test")
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    }

    #[test]
    fn one_message_per_personalization_with_overrides() {
        let mut value = base();
        value["personalizations"] = json!([
            {"to": [{"email": "a@example.com"}], "cc": [{"email": "c@example.com"}],
             "bcc": [{"email": "hidden@example.com"}], "subject": "For -name-",
             "substitutions": {"-name-": "Ann"}, "custom_args": {"user": "1"}},
            {"to": [{"email": "b@example.com"}], "headers": {"X-Case": "two"}}
        ]);
        value["content"] = json!([{"type": "text/plain", "value": "Dear -name-"}, {"type": "text/html", "value": "<p>Dear -name-</p>"}]);
        value["categories"] = json!(["welcome", "test"]);
        value["headers"] = json!({"X-Case": "one"});
        let built = build_all(&request(value), 1_800_000_000, "tern.test").expect("builds");
        assert_eq!(built.len(), 2);
        assert_eq!(built[0].rcpts, ["a@example.com", "c@example.com", "hidden@example.com"]);
        let first = String::from_utf8_lossy(&built[0].raw).into_owned();
        assert!(first.contains("Subject: For Ann"), "{first}");
        assert!(first.contains("Dear Ann"));
        assert!(first.contains("X-Custom-Args: {\"user\":\"1\"}"), "{first}");
        assert!(!first.contains("hidden@example.com"), "Bcc is not a header");
        let summary = Summary::extract(&built[0].raw);
        assert_eq!(summary.tags, ["welcome", "test"]);
        let second = String::from_utf8_lossy(&built[1].raw).into_owned();
        assert!(second.contains("Subject: Hello") && second.contains("X-Case: two"), "{second}");
        assert!(!second.contains("X-Case: one"));
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let mut value = base();
        value["from"] = json!({"email": "not-an-address"});
        value["subject"] = json!("two\r\nBcc: evil@example.com");
        value["personalizations"] = json!([{"to": [{"email": "x@example.com", "name": "X\nY"}],
                                            "cc": [{"email": "X@example.com"}]}]);
        value["attachments"] =
            json!([{"content": "!!", "filename": "f.bin", "disposition": "inline"}]);
        value["send_at"] = json!(1_800_000_000 + 73 * 3600);
        let fields: Vec<String> = errors(value).into_iter().filter_map(|(_, f)| f).collect();
        for want in [
            "from.email",
            "subject",
            "personalizations.0.to.0.name",
            "personalizations.0.cc.0.email",
            "attachments.0.content",
            "attachments.0.content_id",
            "send_at",
        ] {
            assert!(fields.iter().any(|f| f == want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn limits_and_templates() {
        let mut value = base();
        let many: Vec<Value> =
            (0..1001).map(|i| json!({"email": format!("u{i}@example.com")})).collect();
        value["personalizations"] = json!([{"to": many}]);
        let found = errors(value);
        assert!(found[0].0.contains("may not exceed 1000"), "{found:?}");
        let mut value = base();
        value.as_object_mut().unwrap().remove("content");
        value.as_object_mut().unwrap().remove("subject");
        value["template_id"] = json!("d-123");
        value["personalizations"][0]["dynamic_template_data"] = json!({"first": "Ann"});
        let built =
            build_all(&request(value), 1_800_000_000, "tern.test").expect("a template send");
        let raw = String::from_utf8_lossy(&built[0].raw).into_owned();
        assert!(raw.contains("X-Template-Id: d-123") && raw.contains("\"first\":\"Ann\""), "{raw}");
        assert!(errors(json!({})).iter().any(|(_, f)| f.as_deref() == Some("personalizations")));
    }
}
