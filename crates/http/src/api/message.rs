//! One message: its JSON, headers, raw source, parts, rendered views, links and codes.
//! `{ID}` may be `latest` (optionally with `?query=`: the newest match).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tern_store::{MessageId, Mutation, SearchQuery, Selection, StoredMessage};

use crate::State;
use crate::error::ApiError;
use crate::extract;
use crate::json::{Address, addresses, rfc3339_ms};
use crate::mime::{Parsed, PartInfo};

/// Content types a browser would execute; served as downloads, never rendered (XSS guard).
const ACTIVE_TYPES: &[&str] = &[
    "text/html",
    "text/xml",
    "application/xhtml+xml",
    "image/svg+xml",
    "application/xml",
    "text/xsl",
];

/// Resolves `{ID}` (an id or `latest`) and loads the message.
async fn load(
    state: &State,
    id: &str,
    params: &HashMap<String, String>,
) -> Result<StoredMessage, ApiError> {
    let wanted = if id == "latest" {
        let query = match params.get("query").filter(|q| !q.trim().is_empty()) {
            Some(q) => Some(SearchQuery::parse(q)?),
            None => None,
        };
        let page = state.readers.run(move |store| store.page(query.as_ref(), 0, 1)).await?;
        page.rows
            .first()
            .map(|row| row.id)
            .ok_or_else(|| ApiError::NotFound("Message not found".into()))?
    } else {
        id.parse::<MessageId>().map_err(|_| ApiError::NotFound("Message not found".into()))?
    };
    state
        .readers
        .run(move |store| store.message(&wanted))
        .await?
        .ok_or_else(|| ApiError::NotFound("Message not found".into()))
}

/// Opening a message marks it read, as in Mailpit.
async fn mark_read(state: &State, message: &StoredMessage) -> Result<(), ApiError> {
    if !message.read {
        state.spool.apply(Mutation::SetRead(Selection::Ids(vec![message.id]), true)).await?;
    }
    Ok(())
}

fn parse(full: &[u8]) -> Result<Parsed<'_>, ApiError> {
    Parsed::new(full).ok_or_else(|| ApiError::BadRequest("the message cannot be parsed".into()))
}

/// `Message`, Mailpit's detail JSON, plus Tern's `Envelope`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MessageJson {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "MessageID")]
    message_id: String,
    from: Address,
    to: Vec<Address>,
    cc: Vec<Address>,
    bcc: Vec<Address>,
    reply_to: Vec<Address>,
    return_path: String,
    subject: String,
    list_unsubscribe: Value,
    date: String,
    tags: Vec<String>,
    username: String,
    text: String,
    #[serde(rename = "HTML")]
    html: String,
    size: u64,
    inline: Vec<PartInfo>,
    attachments: Vec<PartInfo>,
    envelope: Value,
}

/// `GET /api/v1/message/{ID}`
pub async fn detail(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &id, &params).await?;
    mark_read(&state, &message).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let s = &message.summary;
    let e = &message.envelope;
    let body = MessageJson {
        id: message.id.to_string(),
        message_id: s.message_id.clone().unwrap_or_default(),
        from: s
            .from
            .as_ref()
            .map(Address::from)
            .unwrap_or(Address { name: String::new(), address: String::new() }),
        to: addresses(&s.to),
        cc: addresses(&s.cc),
        bcc: addresses(&s.bcc),
        reply_to: addresses(&s.reply_to),
        return_path: e.mail_from.clone(),
        subject: s.subject.clone(),
        list_unsubscribe: list_unsubscribe(&parsed),
        date: rfc3339_ms(s.date.map(|secs| secs * 1000).unwrap_or(e.received_at_ms)),
        tags: s.tags.clone(),
        username: e.auth.clone().unwrap_or_default(),
        text: parsed.text(),
        html: parsed.html().unwrap_or_default(),
        size: message.raw.len() as u64,
        inline: parsed.inline(),
        attachments: parsed.attachments(),
        envelope: json!({
            "MailFrom": e.mail_from,
            "Recipients": e.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
            "ClientAddress": e.client.to_string(),
            "Helo": e.helo,
            "TLS": e.tls.as_ref().map(|t| json!({"Protocol": t.protocol, "Cipher": t.cipher})),
            "Auth": e.auth,
            "ReceivedAt": rfc3339_ms(e.received_at_ms),
        }),
    };
    // `Envelope` is Tern's own field; Mailpit clients ignore fields they do not know.
    Ok(Json(serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?))
}

fn list_unsubscribe(parsed: &Parsed<'_>) -> Value {
    let header = parsed.message.header_raw("List-Unsubscribe").map(str::trim).unwrap_or_default();
    let post =
        parsed.message.header_raw("List-Unsubscribe-Post").map(str::trim).unwrap_or_default();
    let links: Vec<&str> = header
        .split(',')
        .filter_map(|entry| {
            entry.trim().strip_prefix('<')?.split_once('>').map(|(link, _)| link.trim())
        })
        .collect();
    let errors =
        if !header.is_empty() && links.is_empty() { "links must be wrapped in <>" } else { "" };
    json!({ "Header": header, "Links": links, "Errors": errors, "HeaderPost": post })
}

/// `GET /api/v1/message/{ID}/headers`
pub async fn headers(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &id, &params).await?;
    let full = message.full_message();
    let headers = parse(&full)?.headers();
    Ok(Json(json!(headers)))
}

/// `GET /api/v1/message/{ID}/raw` (`?dl=1` to download as `ID.eml`)
pub async fn raw(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let message = load(&state, &id, &params).await?;
    let mut response = message.full_message().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if params.get("dl").is_some_and(|v| v == "1") {
        let value = format!("attachment; filename=\"{}.eml\"", message.id);
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// `GET /api/v1/message/{ID}/part/{PartID}`: the decoded part.
pub async fn part(
    AxumState(state): AxumState<State>,
    Path((id, part_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let message = load(&state, &id, &params).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let (info, part) =
        parsed.part(&part_id).ok_or_else(|| ApiError::NotFound("Part not found".into()))?;
    let active = ACTIVE_TYPES.contains(&info.content_type.as_str());
    let content_type =
        if active { "application/octet-stream".to_string() } else { info.content_type.clone() };
    let name: String = info
        .file_name
        .chars()
        .map(|c| if c.is_control() || c == '"' || c == '\\' { '_' } else { c })
        .collect();
    let disposition =
        format!("{}; filename=\"{name}\"", if active { "attachment" } else { "inline" });
    let mut response = part.contents().to_vec().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// `GET /view/{ID}.html` and `/view/{ID}.txt`: the bodies alone, for tests and the UI's frame.
/// HTML is served with a Content-Security-Policy that blocks remote content unless
/// `?remote=1`; `cid:` references point at the message's parts.
pub async fn view(
    AxumState(state): AxumState<State>,
    Path(file): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (id, html) = if let Some(id) = file.strip_suffix(".html") {
        (id, true)
    } else if let Some(id) = file.strip_suffix(".txt") {
        (id, false)
    } else {
        return Err(ApiError::NotFound("no such view; use {ID}.html or {ID}.txt".into()));
    };
    let message = load(&state, id, &params).await?;
    mark_read(&state, &message).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    if !html {
        let mut response = parsed.text().into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return Ok(response);
    }
    let body = parsed
        .html()
        .ok_or_else(|| ApiError::NotFound("This message does not contain a HTML part".into()))?;
    let body = rewrite_cids(&body, &message.id.to_string(), &parsed.content_ids());
    let remote = params.get("remote").is_some_and(|v| v == "1");
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp(remote)));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// The policy for rendered mail: no scripts ever; remote images, styles and fonts only when
/// the reader asked for them.
pub fn csp(remote: bool) -> &'static str {
    if remote {
        "default-src 'none'; img-src * data: blob:; style-src * 'unsafe-inline'; font-src * data:; media-src *; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    } else {
        "default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; font-src 'self' data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    }
}

/// Points `cid:` references at `/api/v1/message/{ID}/part/{PartID}`.
fn rewrite_cids(html: &str, id: &str, cids: &[(String, String)]) -> String {
    let mut out = html.to_string();
    for (cid, part_id) in cids {
        let target = format!("/api/v1/message/{id}/part/{part_id}");
        for quote in ['"', '\''] {
            out = out
                .replace(&format!("{quote}cid:{cid}{quote}"), &format!("{quote}{target}{quote}"));
        }
    }
    out
}

/// `GET /api/v1/message/{ID}/links`: every URL in the text and HTML bodies.
pub async fn links(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &id, &params).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let links = extract::links(&parsed.text(), parsed.html().as_deref().unwrap_or_default());
    Ok(Json(json!({ "ID": message.id.to_string(), "Links": links })))
}

/// `GET /api/v1/message/{ID}/codes`: likely one-time codes.
pub async fn codes(
    AxumState(state): AxumState<State>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &id, &params).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let text = format!("{}\n{}", message.summary.subject, parsed.text());
    let codes: Vec<Value> = extract::codes(&text)
        .into_iter()
        .map(|c| json!({ "Code": c.code, "Context": c.context }))
        .collect();
    Ok(Json(json!({ "ID": message.id.to_string(), "Codes": codes })))
}
