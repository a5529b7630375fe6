//! One message: its JSON, headers, raw source, parts, rendered views, links (and their check)
//! and codes.
//! `{ID}` may be `latest` (optionally with `?query=`: the newest match).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Path, Query, State as AxumState};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tern_store::{MessageId, Mutation, SearchQuery, Selection, StoredMessage};

use crate::error::ApiError;
use crate::extract;
use crate::guard::ForeignPage;
use crate::json::{Address, addresses, rfc3339_ms};
use crate::mime::{Parsed, PartInfo};
use crate::{Access, State};

mod disposition;
mod link_check;

pub use link_check::link_check;

/// Resolves `{ID}` (an id or `latest`) and loads the message.
pub(super) async fn load(
    state: &State,
    access: &Access,
    id: &str,
    params: &HashMap<String, String>,
) -> Result<StoredMessage, ApiError> {
    let wanted = if id == "latest" {
        let query = match params.get("query").filter(|q| !q.trim().is_empty()) {
            Some(q) => Some(SearchQuery::parse(q)?),
            None => None,
        };
        let query = access.scope(query);
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
        // Another account's message does not exist as far as this request can tell.
        .filter(|message| access.may_see(message))
        .ok_or_else(|| ApiError::NotFound("Message not found".into()))
}

/// Opening a message marks it read, as in Mailpit — unless a page of another site opened it
/// (an `<img>` pointing at the API must change nothing).
async fn mark_read(
    state: &State,
    message: &StoredMessage,
    foreign: Option<Extension<ForeignPage>>,
) -> Result<(), ApiError> {
    if !message.read && foreign.is_none() {
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
    Extension(access): Extension<Access>,
    foreign: Option<Extension<ForeignPage>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    mark_read(&state, &message, foreign).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let s = &message.summary;
    let e = &message.envelope;
    let body = MessageJson {
        id: message.id.to_string(),
        message_id: s.message_id.clone().unwrap_or_default(),
        from: Address::or_empty(s.from.as_ref()),
        to: addresses(&s.to),
        cc: addresses(&s.cc),
        bcc: addresses(&s.bcc),
        reply_to: addresses(&s.reply_to),
        return_path: e.mail_from.clone(),
        subject: s.subject.clone(),
        list_unsubscribe: list_unsubscribe(&parsed),
        // The Date header with its own offset, as Mailpit shows it; else the time received.
        date: parsed
            .message
            .date()
            .map(|d| d.to_rfc3339())
            .unwrap_or_else(|| rfc3339_ms(e.received_at_ms)),
        tags: s.tags.clone(),
        username: e.auth.clone().unwrap_or_default(),
        text: parsed.text(),
        html: parsed.html().unwrap_or_default(),
        size: full.len() as u64,
        inline: parsed.inline(),
        attachments: parsed.attachments(),
        envelope: envelope_json(e),
    };
    // `Envelope` is Tern's own field; Mailpit clients ignore fields they do not know.
    Ok(Json(serde_json::to_value(body).map_err(|e| ApiError::Internal(e.to_string()))?))
}

/// Everything the store keeps of the SMTP session and transaction (not the dialogue itself,
/// which is not kept): the client, HELO, TLS, AUTH, the MAIL FROM and RCPT TO parameters.
fn envelope_json(e: &tern_store::Envelope) -> Value {
    let details: Vec<Value> = e
        .recipients
        .iter()
        .map(|r| {
            json!({
                "Address": r.address,
                "Notify": r.notify,
                "ORCPT": r.orcpt,
                "Route": r.route.as_str(),
            })
        })
        .collect();
    json!({
        "MailFrom": e.mail_from,
        "Recipients": e.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(),
        "RecipientDetails": details,
        "Body": e.body,
        "SMTPUTF8": e.smtputf8,
        "Ret": e.ret,
        "EnvID": e.envid,
        "ClientAddress": e.client.to_string(),
        "Helo": e.helo,
        "TLS": e.tls.as_ref().map(|t| json!({"Protocol": t.protocol, "Cipher": t.cipher})),
        "Auth": e.auth,
        "TrustedClient": e.trusted_client,
        "ReceivedAt": rfc3339_ms(e.received_at_ms),
    })
}

fn list_unsubscribe(parsed: &Parsed<'_>) -> Value {
    let header = parsed.header_raw("List-Unsubscribe").map(str::trim).unwrap_or_default();
    let post = parsed.header_raw("List-Unsubscribe-Post").map(str::trim).unwrap_or_default();
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
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    let full = message.full_message();
    let headers = parse(&full)?.headers();
    Ok(Json(json!(headers)))
}

/// `GET /api/v1/message/{ID}/authentication`: the results in the `Authentication-Results`
/// field Tern put above the message (only Tern writes there: a client's copy claiming Tern's
/// name was removed when the message came in).
pub async fn authentication(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    let (authserv_id, results) = tern_auth::parse_results(&message.received_header);
    Ok(Json(json!({ "AuthservID": authserv_id, "Results": results })))
}

/// `GET /api/v1/message/{ID}/raw` (`?dl=1` to download as `ID.eml`)
pub async fn raw(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    let mut headers = disposition::sandboxed();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    if params.get("dl").is_some_and(|v| v == "1") {
        let name = format!("{}.eml", message.id);
        headers.insert(
            header::CONTENT_DISPOSITION,
            disposition::content_disposition("attachment", &name),
        );
    }
    Ok((headers, message.full_message()).into_response())
}

/// `GET /api/v1/message/{ID}/part/{PartID}`: the decoded part.
pub async fn part(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path((id, part_id)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let (info, part) =
        parsed.part(&part_id).ok_or_else(|| ApiError::NotFound("Part not found".into()))?;
    let headers = disposition::part_headers(&info.content_type, &info.file_name);
    Ok((headers, crate::mime::contents(part).into_owned()).into_response())
}

/// `GET /view/{ID}.html` and `/view/{ID}.txt`: the bodies alone, for tests and the UI's frame.
/// HTML is served with a Content-Security-Policy that blocks remote content unless
/// `?remote=1`; `cid:` references point at the message's parts.
pub async fn view(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    foreign: Option<Extension<ForeignPage>>,
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
    let message = load(&state, &access, id, &params).await?;
    mark_read(&state, &message, foreign).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    if !html {
        let mut headers = disposition::sandboxed();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return Ok((headers, parsed.text()).into_response());
    }
    let body = parsed
        .html()
        .ok_or_else(|| ApiError::NotFound("This message does not contain a HTML part".into()))?;
    let body =
        with_base_target(&rewrite_cids(&body, &message.id.to_string(), &parsed.content_ids()));
    let remote = params.get("remote").is_some_and(|v| v == "1");
    let mut headers = disposition::sandboxed();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp(remote)));
    Ok((headers, body).into_response())
}

/// The policy for rendered mail: no scripts ever; remote images, styles and fonts only when
/// the reader asked for them. `sandbox allow-popups` gives the page the flags of the UI's frame
/// even when it is opened on its own: an opaque origin, no scripts, links may open new windows
/// (which stay sandboxed).
fn csp(remote: bool) -> &'static str {
    if remote {
        "sandbox allow-popups; default-src 'none'; img-src * data: blob:; style-src * 'unsafe-inline'; font-src * data:; media-src *; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    } else {
        "sandbox allow-popups; default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; font-src 'self' data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    }
}

/// Points `cid:` references (attribute values, quoted or not, any case) at
/// `/api/v1/message/{ID}/part/{PartID}`; unknown Content-IDs are left alone.
fn rewrite_cids(html: &str, id: &str, cids: &[(String, String)]) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut copied = 0;
    let mut search_from = 0;
    while let Some(found) = lower[search_from..].find("cid:") {
        let start = search_from + found;
        search_from = start + 4;
        let before = lower[..start].trim_end_matches(['"', '\'']).trim_end();
        if !before.ends_with('=') && !before.ends_with("url(") {
            continue;
        }
        let value_end = html[start + 4..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')'))
            .map_or(html.len(), |e| start + 4 + e);
        let cid = &html[start + 4..value_end];
        if let Some((_, part_id)) = cids.iter().find(|(known, _)| known.eq_ignore_ascii_case(cid)) {
            out.push_str(&html[copied..start]);
            out.push_str(&format!("/api/v1/message/{id}/part/{part_id}"));
            copied = value_end;
        }
    }
    out.push_str(&html[copied..]);
    out
}

/// Links in mail open outside the frame that shows it.
fn with_base_target(html: &str) -> String {
    const BASE: &str = "<base target=\"_blank\">";
    let lower = html.to_ascii_lowercase();
    match lower.find("<head").and_then(|h| lower[h..].find('>').map(|e| h + e + 1)) {
        Some(at) => format!("{}{BASE}{}", &html[..at], &html[at..]),
        None => format!("{BASE}{html}"),
    }
}

/// `GET /api/v1/message/{ID}/links`: every URL in the text and HTML bodies.
pub async fn links(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let links = extract::links(&parsed.text(), parsed.html().as_deref().unwrap_or_default());
    Ok(Json(json!({ "ID": message.id.to_string(), "Links": links })))
}

/// `GET /api/v1/message/{ID}/codes`: likely one-time codes in the subject, the text body and
/// the HTML's text (a code may be only in the HTML, behind a text part that points to it).
pub async fn codes(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    let full = message.full_message();
    let parsed = parse(&full)?;
    let html = parsed.html().map(|html| tern_store::summary::html_to_text(&html));
    let text =
        format!("{}\n{}\n{}", message.summary.subject, parsed.text(), html.unwrap_or_default());
    let codes: Vec<Value> = extract::codes(&text)
        .into_iter()
        .map(|c| json!({ "Code": c.code, "Context": c.context }))
        .collect();
    Ok(Json(json!({ "ID": message.id.to_string(), "Codes": codes })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_references_are_rewritten_in_any_form() {
        let cids = vec![("logo@x".to_string(), "2".to_string())];
        let html = r#"<img src="cid:logo@x"><img src='CID:logo@x'><img src=cid:logo@x><div style="background:url(cid:logo@x)"><img src="cid:other"> text cid:logo@x"#;
        let out = rewrite_cids(html, "ID", &cids);
        assert_eq!(out.matches("/api/v1/message/ID/part/2").count(), 4, "{out}");
        assert!(out.contains("cid:other") && out.ends_with("text cid:logo@x"), "{out}");
    }

    #[test]
    fn links_open_outside_the_frame() {
        assert_eq!(with_base_target("<p>x</p>"), "<base target=\"_blank\"><p>x</p>");
        assert_eq!(
            with_base_target("<html><HEAD lang=en><title>t</title>"),
            "<html><HEAD lang=en><base target=\"_blank\"><title>t</title>"
        );
    }
}
