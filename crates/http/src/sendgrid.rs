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
//! at most 72 hours ahead, no control characters in anything that becomes a header.

use std::collections::BTreeMap;

use aho_corasick::{AhoCorasick, MatchKind};
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
use crate::send::{peer_of, plan, valid_address};

/// SendGrid's limit on a request body (30 MB).
pub const MAX_BODY_BYTES: usize = 30 * 1024 * 1024;
/// SendGrid's limit on personalizations, and on recipients across them.
const MAX_PERSONALIZATIONS: usize = 1000;
const MAX_RECIPIENTS: usize = 1000;
/// How far ahead `send_at` may be (72 hours).
const MAX_SEND_AHEAD_SECS: i64 = 72 * 3600;
/// SendGrid's limits on substitutions (per personalization) and on custom args, in bytes.
const MAX_SUBSTITUTION_BYTES: usize = 10_000;
const MAX_CUSTOM_ARGS_BYTES: usize = 10_000;
/// Longest header value taken or written (a header line is at most 998 octets).
const MAX_HEADER_VALUE: usize = 900;
/// Most bytes a request's messages may come to together (personalizations × text, HTML and
/// attachments): they are built one at a time, but no request may ask for more.
const MAX_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Most errors listed in one answer.
const MAX_ERRORS: usize = 100;

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
        if self.0.len() < MAX_ERRORS {
            self.0.push((message.into(), field.into()));
        }
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
    let attachments = match checked(&req, now) {
        Ok(attachments) => attachments,
        Err(errors) => return errors.response(StatusCode::BAD_REQUEST),
    };
    if req.mail_settings.sandbox_mode.enable {
        return StatusCode::OK.into_response();
    }
    // Every personalization's sender and recipients pass the door's checks and routing before
    // any message is stored: a refused recipient refuses the request, never half of it.
    let size = estimated_size(&req, &attachments) as u64;
    let mut plans = Vec::with_capacity(req.personalizations.len());
    for p in &req.personalizations {
        let from = p.from.as_ref().or(req.from.as_ref()).map_or("", |f| f.email.as_str());
        let rcpts = p.to.iter().chain(&p.cc).chain(&p.bcc).map(|e| e.email.clone()).collect();
        match plan(&state, peer, keyed, from, rcpts, size).await {
            Ok(plan) => plans.push(plan),
            Err(e) => return failure(e),
        }
    }
    let mut first = None;
    for (p, (client, tx)) in req.personalizations.iter().zip(plans) {
        let id = MessageId::generate();
        let raw = match build_one(&req, p, &format!("{id}@{}", state.hostname), &attachments) {
            Ok(raw) => raw,
            Err(message) => return one_error(StatusCode::BAD_REQUEST, None, &message),
        };
        match state.door.accept_as(id, &client, tx, raw).await {
            Ok(id) => {
                first.get_or_insert(id);
            }
            // The messages before this one are stored (a store failure, or an end-of-data
            // check); the client hears it and may retry.
            Err(e) => return failure(e.into()),
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

/// SendGrid's answer for a refusal or failure at the door.
fn failure(e: ApiError) -> Response {
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
    one_error(status, None, &text)
}

/// The request path without the server: parse, check, build each message (for fuzzing).
pub(crate) fn build_from_json(body: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<MailSend>(body) {
        let _ = build_all(&req, 1_800_000_000, "fuzz.tern.test");
    }
}

/// Checks the whole request and decodes its attachments once; every problem found, each with
/// its field.
fn checked(req: &MailSend, now_secs: i64) -> Result<Vec<Vec<u8>>, Errors> {
    let mut errors = Errors::default();
    let attachments = check(req, now_secs, &mut errors);
    if !errors.0.is_empty() {
        return Err(errors);
    }
    if estimated_size(req, &attachments) > MAX_TOTAL_BYTES {
        errors.add(
            "personalizations".to_string(),
            format!(
                "The messages of this request would come to more than {} MB: send fewer personalizations per request.",
                MAX_TOTAL_BYTES / (1024 * 1024)
            ),
        );
        return Err(errors);
    }
    Ok(attachments)
}

/// What the request's messages come to together, roughly.
fn estimated_size(req: &MailSend, attachments: &[Vec<u8>]) -> usize {
    let one = req.content.iter().map(|c| c.value.len()).sum::<usize>()
        + attachments.iter().map(|a| a.len() * 4 / 3).sum::<usize>()
        + 4096;
    one.saturating_mul(req.personalizations.len().max(1))
}

/// Checks and builds every message (tests and fuzzing; the handler builds one at a time).
fn build_all(req: &MailSend, now_secs: i64, hostname: &str) -> Result<Vec<Vec<u8>>, Errors> {
    let attachments = checked(req, now_secs)?;
    let mut errors = Errors::default();
    let mut built = Vec::with_capacity(req.personalizations.len());
    for (i, p) in req.personalizations.iter().enumerate() {
        match build_one(req, p, &format!("{i}@{hostname}"), &attachments) {
            Ok(raw) => built.push(raw),
            Err(message) => errors.add(format!("personalizations.{i}"), message),
        }
    }
    if errors.0.is_empty() { Ok(built) } else { Err(errors) }
}

/// Text that may not go into a header: a control character other than tab.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\t')
}

/// The Mailpit send API's address check, plus a dotted domain and no quote, as SendGrid asks.
fn valid_email(address: &str) -> bool {
    let domain = address.rsplit_once('@').map_or("", |(_, domain)| domain);
    valid_address(address)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !address.contains('"')
}

fn check_email(email: &Email, field: &str, errors: &mut Errors) {
    if email.email.is_empty() {
        errors.add(format!("{field}.email"), "The email parameter is required.");
    } else if !valid_email(&email.email) {
        errors.add(format!("{field}.email"), "Does not contain a valid address.".to_string());
    }
    if email.name.as_deref().is_some_and(has_control) {
        errors.add(format!("{field}.name"), "The name may not contain control characters.");
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
            Value::String(text) if has_control(text) => errors.add(
                format!("{field}.{name}"),
                "Header values may not contain control characters.",
            ),
            Value::String(text) if text.len() > MAX_HEADER_VALUE => errors.add(
                format!("{field}.{name}"),
                format!("Header values may not be longer than {MAX_HEADER_VALUE} characters."),
            ),
            Value::String(_) => {}
            _ => errors.add(format!("{field}.{name}"), "Header values must be strings."),
        }
    }
}

/// Custom args: strings, at most 10,000 bytes together (SendGrid's limits).
fn check_custom_args(args: &BTreeMap<String, Value>, field: &str, errors: &mut Errors) {
    if args.values().any(|v| !v.is_string()) {
        errors.add(field.to_string(), "Custom args values must be strings.");
    }
    let size: usize = args.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum();
    if size > MAX_CUSTOM_ARGS_BYTES {
        errors.add(field.to_string(), "Custom args may not exceed 10,000 bytes.");
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
/// Returns the attachments decoded (complete only when no error was added).
fn check(req: &MailSend, now_secs: i64, errors: &mut Errors) -> Vec<Vec<u8>> {
    if !check_senders(req, errors) {
        return Vec::new();
    }
    check_content(req, now_secs, errors);
    let attachments = check_attachments(req, errors);
    check_personalizations(req, now_secs, errors);
    attachments
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
        return false;
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
    let template = req.template_id.as_deref().is_some_and(|t| !t.is_empty());
    if let Some(template) = &req.template_id
        && (template.is_empty() || has_control(template) || template.len() > MAX_HEADER_VALUE)
    {
        errors.add("template_id".to_string(), "The template_id must be a template's id.");
    }
    if req.batch_id.as_deref().is_some_and(|b| has_control(b) || b.len() > MAX_HEADER_VALUE) {
        errors.add("batch_id".to_string(), "The batch_id must be a batch's id.");
    }
    check_custom_args(&req.custom_args, "custom_args", errors);
    let subject_everywhere =
        req.subject.is_some() || req.personalizations.iter().all(|p| p.subject.is_some());
    if !subject_everywhere && !template {
        errors.add(
            "subject".to_string(),
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
        );
    }
    for subject in
        req.subject.iter().chain(req.personalizations.iter().filter_map(|p| p.subject.as_ref()))
    {
        if has_control(subject) {
            errors.add("subject".to_string(), "The subject may not contain control characters.");
            break;
        }
        if subject.is_empty() {
            errors.add("subject".to_string(), "The subject must be at least one character.");
            break;
        }
    }
    if req.content.is_empty() && !template {
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
            || has_control(category)
            || category.contains(',')
        {
            errors.add(
                format!("categories.{i}"),
                "A category must be 1 to 255 characters without control characters or commas.",
            );
        }
    }
    if req.categories.len() > 10 {
        errors
            .add("categories".to_string(), "You may not have more than 10 categories per request.");
    }
}

/// Checks the attachments and decodes their content, once.
fn check_attachments(req: &MailSend, errors: &mut Errors) -> Vec<Vec<u8>> {
    let mut decoded = Vec::with_capacity(req.attachments.len());
    for (i, a) in req.attachments.iter().enumerate() {
        let field = format!("attachments.{i}");
        if a.filename.is_empty() {
            errors
                .add(format!("{field}.filename"), "The attachment filename parameter is required.");
        }
        if has_control(&a.filename) || a.kind.as_deref().is_some_and(has_control) {
            errors.add(
                field.clone(),
                "Attachment filenames and types may not contain control characters.",
            );
        }
        match base64::engine::general_purpose::STANDARD.decode(a.content.trim()) {
            Ok(bytes) => decoded.push(bytes),
            Err(_) => errors
                .add(format!("{field}.content"), "The attachment content must be base64 encoded."),
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
        if a.content_id.as_deref().is_some_and(has_control) {
            errors.add(
                format!("{field}.content_id"),
                "The content_id may not contain control characters.",
            );
        }
    }
    decoded
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
        check_custom_args(&p.custom_args, &format!("{field}.custom_args"), errors);
        let size: usize = p
            .substitutions
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(usize::MAX / 2, str::len))
            .fold(0, usize::saturating_add);
        if size > MAX_SUBSTITUTION_BYTES {
            errors.add(
                format!("{field}.substitutions"),
                "Substitutions must be strings, at most 10,000 bytes per personalization.",
            );
        }
        check_send_at(p.send_at, now_secs, &format!("{field}.send_at"), errors);
    }
}

/// `text` with every substitution key replaced by its value in one pass (a value is never
/// searched again for keys, as at SendGrid); an error when the result would pass 30 MB.
fn substituted(text: &str, substitutions: &BTreeMap<String, Value>) -> Result<String, String> {
    let pairs: Vec<(&str, String)> = substitutions
        .iter()
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key.as_str(), value)
        })
        .collect();
    if pairs.is_empty() {
        return Ok(text.to_string());
    }
    let keys = pairs.iter().map(|(key, _)| *key);
    let matcher = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(keys)
        .map_err(|e| format!("substitutions: {e}"))?;
    let mut out = String::with_capacity(text.len());
    let mut fits = true;
    matcher.replace_all_with(text, &mut out, |found, _, out| {
        out.push_str(&pairs[found.pattern().as_usize()].1);
        fits = out.len() <= MAX_BODY_BYTES;
        fits
    });
    if fits { Ok(out) } else { Err("substitutions make the message larger than 30 MB".into()) }
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
    attachments: &[Vec<u8>],
) -> Result<Vec<u8>, String> {
    let from = p.from.as_ref().or(req.from.as_ref()).ok_or("no from")?;
    let subject = substituted(
        p.subject.as_ref().or(req.subject.as_ref()).map_or("", |s| s),
        &p.substitutions,
    )?;
    if has_control(&subject) {
        return Err(
            "The subject may not contain control characters, substitutions included.".into()
        );
    }
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
        let value = substituted(&c.value, &p.substitutions)?;
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
    for (a, bytes) in req.attachments.iter().zip(attachments) {
        let kind = a
            .kind
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into());
        builder = match (a.disposition.as_deref(), &a.content_id) {
            (Some("inline"), Some(cid)) => builder.inline(kind, cid.clone(), bytes.as_slice()),
            _ => builder.attachment(kind, a.filename.clone(), bytes.as_slice()),
        };
    }
    builder.write_to_vec().map_err(|e| e.to_string())
}

/// JSON with a space after each comma between members, so a long value folds.
fn spaced_json(value: &Value) -> String {
    // A `"` inside a JSON string is escaped, so `,"` only occurs between members.
    value.to_string().replace(",\"", ", \"")
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
            Raw::new(spaced_json(&Value::from(serde_json::Map::from_iter(custom_args)))),
        );
    }
    if let Some(at) = p.send_at.or(req.send_at) {
        builder = builder.header("X-Send-At", Raw::new(at.to_string()));
    }
    if let Some(template) = &req.template_id {
        builder = builder.header("X-Template-Id", Raw::new(template.clone()));
        // Long data stays out of the header (a header line is at most 998 octets); without
        // content the body shows it whole.
        if let Some(data) = &p.dynamic_template_data {
            let data = spaced_json(data);
            let data = if data.len() <= MAX_HEADER_VALUE {
                data
            } else {
                format!("({} bytes, not shown here)", data.len())
            };
            builder = builder.header("X-Template-Data", Raw::new(data));
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
        let first = String::from_utf8_lossy(&built[0]).into_owned();
        assert!(first.contains("Subject: For Ann"), "{first}");
        assert!(first.contains("Dear Ann"));
        assert!(first.contains("X-Custom-Args: {\"user\":\"1\"}"), "{first}");
        assert!(!first.contains("hidden@example.com"), "Bcc is not a header");
        let summary = Summary::extract(&built[0]);
        assert_eq!(summary.tags, ["welcome", "test"]);
        let second = String::from_utf8_lossy(&built[1]).into_owned();
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
    fn substitutions_run_once_and_cannot_inject_headers() {
        let mut value = base();
        value["subject"] = json!("-s-");
        value["content"] = json!([{"type": "text/plain", "value": "k0"}]);
        // Each value names the next key: one pass replaces k0 once and stops.
        value["personalizations"][0]["substitutions"] =
            json!({"k0": "k1k1", "k1": "k2k2", "-s-": "Hi"});
        let built = build_all(&request(value.clone()), 1_800_000_000, "tern.test").expect("builds");
        let raw = String::from_utf8_lossy(&built[0]).into_owned();
        assert!(raw.contains("k1k1") && !raw.contains("k2k2"), "{raw}");
        value["personalizations"][0]["substitutions"] =
            json!({"-s-": "x\r\nBcc: victim@example.com"});
        let err = build_all(&request(value), 1_800_000_000, "tern.test").expect_err("refused");
        assert!(err.0[0].0.contains("control characters"), "{:?}", err.0);
    }

    #[test]
    fn control_characters_long_headers_and_huge_requests_are_refused() {
        let mut value = base();
        value["template_id"] = json!("d-1\r\nBcc: x@example.com");
        value["batch_id"] = json!("b\u{0}");
        value["headers"] = json!({"X-Long": "a".repeat(1000)});
        value["custom_args"] = json!({"n": 1});
        value["subject"] = json!("");
        let fields: Vec<String> = errors(value).into_iter().filter_map(|(_, f)| f).collect();
        for want in ["template_id", "batch_id", "headers.X-Long", "custom_args", "subject"] {
            assert!(fields.iter().any(|f| f == want), "{want} missing from {fields:?}");
        }
        let mut value = base();
        let many: Vec<Value> = (0..5000).map(|_| json!({})).collect();
        value["personalizations"] = json!(many);
        assert_eq!(errors(value).len(), 1, "one error for too many personalizations");
        let mut value = base();
        let big = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 1024 * 1024]);
        value["attachments"] = json!([{"content": big, "filename": "big.bin"}]);
        let people: Vec<Value> =
            (0..300).map(|i| json!({"to": [{"email": format!("u{i}@example.com")}]})).collect();
        value["personalizations"] = json!(people);
        assert!(errors(value)[0].0.contains("more than 256 MB"));
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
        let raw = String::from_utf8_lossy(&built[0]).into_owned();
        assert!(raw.contains("X-Template-Id: d-123") && raw.contains("\"first\":\"Ann\""), "{raw}");
        assert!(errors(json!({})).iter().any(|(_, f)| f.as_deref() == Some("personalizations")));
    }
}
