//! Live events: server-sent events at `/api/v1/events` (Tern) and the websocket at
//! `/api/events` (Mailpit's framing: one `{"Type", "Data"}` JSON object per text frame). The
//! websockets share one [`hub::SocketHub`], which computes each change's frames once per scope.

mod hub;

pub use hub::SocketHub;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State as AxumState};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tern_queue::Event;
use tokio_stream::wrappers::BroadcastStream;

use crate::json::MessageSummary;
use crate::{Access, Readers, State};

/// How often an idle connection gets a keep-alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One change as (type, data) pairs in Mailpit's vocabulary: `new`, `update`, `delete`.
fn translate(event: &Event) -> Vec<(&'static str, Value)> {
    match event {
        Event::Committed(rows) => rows
            .iter()
            .map(|row| {
                ("new", serde_json::to_value(MessageSummary::from(row)).unwrap_or(Value::Null))
            })
            .collect(),
        Event::Deleted(ids) => {
            ids.iter().map(|id| ("delete", json!({ "ID": id.to_string() }))).collect()
        }
        Event::ReadChanged(ids, read) => {
            ids.iter().map(|id| ("update", json!({ "ID": id.to_string(), "Read": read }))).collect()
        }
        Event::Truncated => vec![("truncate", Value::Null)],
        // Not part of Mailpit's vocabulary; the queue page listens to the SSE form.
        Event::QueueChanged => vec![],
        // Mailpit's clients reload tags with the list; the SSE form says so.
        Event::TagsChanged(_) => vec![],
    }
}

/// The SSE form groups a change into one event: `new` carries a summary per message, `update`
/// and `delete` carry the ids (`{"IDs": [...], "Read": true}`).
fn translate_sse(event: &Event) -> Vec<SseEvent> {
    let event = match event {
        Event::Committed(rows) => {
            return rows
                .iter()
                .filter_map(|row| {
                    SseEvent::default().event("new").json_data(MessageSummary::from(row)).ok()
                })
                .collect();
        }
        Event::Deleted(ids) => SseEvent::default()
            .event("delete")
            .json_data(json!({ "IDs": ids.iter().map(ToString::to_string).collect::<Vec<_>>() })),
        Event::ReadChanged(ids, read) => SseEvent::default().event("update").json_data(
            json!({ "IDs": ids.iter().map(ToString::to_string).collect::<Vec<_>>(), "Read": read }),
        ),
        Event::Truncated => Ok(SseEvent::default().event("truncate").data("{}")),
        Event::QueueChanged => Ok(SseEvent::default().event("queue").data("{}")),
        Event::TagsChanged(ids) => SseEvent::default()
            .event("tags")
            .json_data(json!({ "IDs": ids.iter().map(ToString::to_string).collect::<Vec<_>>() })),
    };
    event.into_iter().collect()
}

/// `GET /api/v1/events`: a `text/event-stream` of `new`, `update` and `delete` events. A client
/// that falls too far behind gets a `resync` event and should reload its list.
pub async fn sse(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let filter_state = state.clone();
    let stream = BroadcastStream::new(state.spool.subscribe())
        .then(move |item| {
            let (state, access) = (filter_state.clone(), access.clone());
            async move {
                match item {
                    Ok(event) => visible(&state.readers, access.account(), event)
                        .await
                        .map(|e| translate_sse(&e))
                        .unwrap_or_default(),
                    Err(_lagged) => vec![SseEvent::default().event("resync").data("{}")],
                }
            }
        })
        .flat_map(|events| futures_util::stream::iter(events.into_iter().map(Ok)))
        .take_until(state.shutdown.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// `GET /api/events`: Mailpit's websocket.
pub async fn websocket(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => {
            upgrade.on_upgrade(move |socket| serve_socket(state, access, socket)).into_response()
        }
        Err(rejection) => crate::ApiError::BadRequest(format!(
            "this endpoint is a websocket; connect with an Upgrade request ({rejection})"
        ))
        .into_response(),
    }
}

async fn serve_socket(state: State, access: Access, mut socket: WebSocket) {
    let login = access.account().map(str::to_string);
    let mut member =
        state.socket_hub.join(&state.readers, &state.spool, &state.shutdown, login.clone());
    if let Ok(stats) = stats(&state.readers, login.as_deref()).await
        && socket.send(Message::Text(stats.into())).await.is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(KEEP_ALIVE);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            incoming = socket.recv() => match incoming {
                // The server ignores what clients send; it only notices them leaving.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            next = member.next() => {
                let hub::Next::Frames(frames) = next else { return };
                for frame in frames.iter() {
                    if socket.send(Message::Text(frame.as_str().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Mailpit's `stats` frame over everything, or over `login`'s mailbox.
async fn stats(readers: &Readers, login: Option<&str>) -> Result<String, crate::ApiError> {
    let scope = login.map(|login| tern_store::SearchQuery::default().for_account(login));
    let page = readers.run(move |store| store.page(scope.as_ref(), 0, 0)).await?;
    let (total, unread) = match login {
        None => (page.total, page.unread),
        Some(_) => (page.matching, page.matching_unread),
    };
    let data = json!({ "Total": total, "Unread": unread, "Version": env!("CARGO_PKG_VERSION") });
    Ok(hub::frame("stats", data))
}

/// The part of `event` `login` may see (everything without one): an account hears of new
/// messages in its own mailbox only (ids of changed or deleted messages reveal nothing and pass
/// through).
async fn visible(readers: &Readers, login: Option<&str>, event: Event) -> Option<Event> {
    let (Some(login), Event::Committed(rows)) = (login, &event) else {
        return Some(event);
    };
    let mine = tern_store::SearchQuery::default().for_account(login);
    let ids: Vec<_> = rows.iter().map(|row| row.id).collect();
    let visible = readers.run(move |store| store.matching_among(Some(&mine), &ids)).await.ok()?;
    let keep: std::collections::HashSet<_> = visible.iter().map(|row| row.id).collect();
    let rows: Vec<_> = rows.iter().filter(|row| keep.contains(&row.id)).cloned().collect();
    (!rows.is_empty()).then(|| Event::Committed(std::sync::Arc::new(rows)))
}
