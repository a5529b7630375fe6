//! Application endpoints: info, web UI settings, health, inboxes, the OpenAPI document and
//! Prometheus metrics.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tern_store::{Inbox, Mutation, Selection};

use crate::error::ApiError;
use crate::{Access, State};

/// Tern's OpenAPI description: Mailpit's API v1 as Tern serves it, plus Tern's extensions.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /api/v1/info`
pub async fn info(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
) -> Result<Json<Value>, ApiError> {
    // An account sees the counts of its own mailbox.
    let scope = access.scope(None);
    let (page, size) = state
        .readers
        .run(move |store| Ok((store.page(scope.as_ref(), 0, 0)?, store.size_bytes()?)))
        .await?;
    let login = access.account().map(str::to_string);
    let tag_counts = state
        .readers
        .run(move |store| {
            let mut counts = BTreeMap::new();
            for tag in store.page(None, 0, 0)?.tags {
                let mut query = tern_store::SearchQuery::parse(&format!("tag:\"{tag}\""))?;
                if let Some(login) = &login {
                    query = query.for_account(login);
                }
                let matching = store.page(Some(&query), 0, 0)?.matching;
                if matching > 0 {
                    counts.insert(tag, matching);
                }
            }
            Ok(counts)
        })
        .await?;
    let (messages, unread) = match access {
        Access::Everything => (page.total, page.unread),
        Access::Account(_) => (page.matching, page.matching_unread),
    };
    let spool = state.spool.stats();
    Ok(Json(json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "LatestVersion": "disabled",
        "Database": state.database,
        "DatabaseSize": size,
        "Messages": messages,
        "Unread": unread,
        "Tags": tag_counts,
        "RuntimeStats": {
            "Uptime": state.started.elapsed().as_secs(),
            "Memory": resident_bytes(),
            "MessagesDeleted": spool.deleted,
            "SMTPAccepted": spool.messages,
            "SMTPAcceptedSize": spool.bytes,
            "SMTPRejected": 0,
            "SMTPIgnored": 0,
        },
    })))
}

/// Resident memory of this process in bytes (Linux), 0 elsewhere.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `GET /api/v1/webui`; `MessageRelay.Enabled` tells Mailpit's UI whether release works, and
/// Tern's `LinkCheck.Enabled` whether the link check answers.
pub async fn webui(AxumState(state): AxumState<State>) -> Json<Value> {
    Json(json!({
        "Label": "",
        "MessageRelay": {
            "Enabled": state.release_refused.is_none(),
            "SMTPServer": state.release_relay.as_deref().unwrap_or(""),
            "ReturnPath": "", "AllowedRecipients": "",
            "BlockedRecipients": "", "OverrideFrom": "", "PreserveMessageIDs": false,
        },
        "SpamAssassin": false,
        "ChaosEnabled": state.door.chaos().is_some(),
        "DuplicatesIgnored": false,
        "HideDeleteAllButton": false,
        // Tern's: whether the UI may offer the link check (`[http] link_check`).
        "LinkCheck": { "Enabled": state.link_check.is_some() },
    }))
}

/// `GET /api/v1/inboxes` → `{"Inboxes": [{"Address", "Total", "Unread"}]}`
pub async fn inboxes(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
) -> Result<Json<Value>, ApiError> {
    let login = access.account().map(str::to_string);
    let inboxes = state.readers.run(move |store| store.inboxes(login.as_deref())).await?;
    let list: Vec<Value> = inboxes
        .iter()
        .map(|i| json!({ "Address": i.address, "Total": i.total, "Unread": i.unread }))
        .collect();
    Ok(Json(json!({ "Inboxes": list })))
}

/// `DELETE /api/v1/inboxes/{Address}`: deletes every message filed under the inbox.
pub async fn delete_inbox(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(address): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let inbox = Inbox::of(&address).address;
    let selection =
        super::messages::scoped(&state, &access, Selection::Inbox(inbox.clone())).await?;
    let deleted = state.spool.apply(Mutation::Delete(selection)).await?;
    Ok(Json(json!({ "Inbox": inbox, "Deleted": deleted.len() })))
}

/// `GET /api/v1/openapi.json`
pub async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `GET /livez`: the process is up.
pub async fn livez() -> StatusCode {
    StatusCode::OK
}

/// `GET /readyz`: the store answers.
pub async fn readyz(AxumState(state): AxumState<State>) -> StatusCode {
    match state.readers.run(|store| store.latest_id()).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
) -> Response {
    if access != Access::Everything {
        return ApiError::Forbidden("metrics need the admin API key".into()).into_response();
    }
    let Some(handle) = &state.metrics else {
        return ApiError::NotFound("metrics are not enabled".into()).into_response();
    };
    if let Ok(size) = state.readers.run(|store| store.size_bytes()).await {
        metrics::gauge!("tern_store_size_bytes").set(size as f64);
    }
    if let Ok(counts) = state.readers.run(|store| store.queue_counts()).await {
        metrics::gauge!("tern_queue_entries", "state" => "queued").set(counts.queued as f64);
        metrics::gauge!("tern_queue_entries", "state" => "held").set(counts.held as f64);
        metrics::gauge!("tern_queue_messages").set(counts.messages as f64);
    }
    let mut response = handle.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}

/// A known path with the wrong method: a JSON 405.
pub async fn method_not_allowed() -> Response {
    let body = Json(json!({ "Error": "method not allowed for this endpoint" }));
    (StatusCode::METHOD_NOT_ALLOWED, body).into_response()
}

/// Unknown paths: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}
