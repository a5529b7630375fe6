//! `GET /api/v1/wait`: hold a request open until a matching message exists.
//!
//! The handler subscribes to the spool's commit events *before* it queries, so a message
//! committed between the query and the wait cannot be missed; it re-queries only when a
//! commit arrives. No polling.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Query, State as AxumState};
use serde_json::{Value, json};
use tern_queue::Event;
use tern_store::{MessageId, SearchQuery};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::api::Params;
use crate::error::ApiError;
use crate::json::MessageSummary;
use crate::{Access, State};

/// Wait when `timeout` is not given.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Longest wait accepted.
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Most matches one wait may ask for.
pub const MAX_COUNT: u64 = 1000;

/// `GET /api/v1/wait?query=&timeout=30s&after=ID&count=N` → `{"messages": [...], "count": N}`
/// with the first `count` matches newer than `after` (oldest first); 408 on timeout.
pub async fn wait(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let params = Params(params);
    let query = match params.text("query").filter(|q| !q.trim().is_empty()) {
        Some(q) => Some(SearchQuery::parse(q)?),
        None => None,
    };
    let query = access.scope(query);
    let timeout = match params.text("timeout") {
        Some(text) => parse_duration(text).filter(|d| *d <= MAX_WAIT).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid timeout {text:?}: use e.g. 500ms, 30s, 2m (at most 10m)"
            ))
        })?,
        None => DEFAULT_WAIT,
    };
    let after = match params.text("after").filter(|a| !a.is_empty()) {
        Some(a) => Some(
            a.parse::<MessageId>()
                .map_err(|_| ApiError::BadRequest(format!("invalid after id {a:?}")))?,
        ),
        None => None,
    };
    let count = params.get::<u64>("count")?.unwrap_or(1);
    if count == 0 || count > MAX_COUNT {
        return Err(ApiError::BadRequest(format!("count must be between 1 and {MAX_COUNT}")));
    }
    let deadline = Instant::now() + timeout;
    // Subscribe first: a commit after this point is announced; one before it is in the query.
    let mut events = state.spool.subscribe();
    let q = query.clone();
    let mut found =
        state.readers.run(move |store| store.matching_after(q.as_ref(), after, count)).await?;
    let mut seen: HashSet<MessageId> = found.iter().map(|row| row.id).collect();
    while (found.len() as u64) < count {
        let next = tokio::select! {
            _ = state.shutdown.cancelled() => {
                return Err(ApiError::Unavailable("the server is shutting down".into()));
            }
            next = tokio::time::timeout_at(deadline, events.recv()) => next,
        };
        let new_ids: Vec<MessageId> = match next {
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "timed out after {timeout:?} with {} of {count} matching messages",
                    found.len()
                )));
            }
            // Only the new messages are checked, so a wake-up costs one small query.
            Ok(Ok(Event::Committed(rows))) => {
                rows.iter().map(|row| row.id).filter(|id| after.is_none_or(|a| *id > a)).collect()
            }
            Ok(Ok(_)) => continue,
            Ok(Err(RecvError::Lagged(_))) => {
                // Missed announcements: look at everything again.
                let q = query.clone();
                found = state
                    .readers
                    .run(move |store| store.matching_after(q.as_ref(), after, count))
                    .await?;
                seen = found.iter().map(|row| row.id).collect();
                continue;
            }
            Ok(Err(RecvError::Closed)) => {
                return Err(ApiError::Internal("the writer stopped".into()));
            }
        };
        if new_ids.is_empty() {
            continue;
        }
        let q = query.clone();
        let matched =
            state.readers.run(move |store| store.matching_among(q.as_ref(), &new_ids)).await?;
        found.extend(matched.into_iter().filter(|row| seen.insert(row.id)));
    }
    found.sort_by_key(|row| row.id);
    found.truncate(count as usize);
    let messages: Vec<MessageSummary> = found.iter().map(MessageSummary::from).collect();
    Ok(Json(json!({ "count": messages.len(), "messages": messages })))
}

/// `250ms`, `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("3 weeks"), None);
    }
}
