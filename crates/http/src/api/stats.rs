//! `GET /api/v1/stats`: the numbers behind the web UI's dashboard, each from where the server
//! already keeps it and each bounded in cost however large the store grows: messages per
//! minute from the store's time index (the last hour's range of it), totals from the same
//! counts `/api/v1/info` uses, the queue's counts and its top destinations and errors (over a
//! sample of at most [`QUEUE_SAMPLE`] entries), and delivery outcomes per hour from the
//! Prometheus counters (see `crate::activity`).

use axum::Json;
use axum::extract::{Extension, State as AxumState};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::json::rfc3339_ms;
use crate::{Access, State, activity};

/// Minutes of "received per minute" shown.
const MINUTES: i64 = 60;
const MINUTE_MS: i64 = 60_000;
/// Most queue entries read for the top lists.
pub const QUEUE_SAMPLE: u64 = 10_000;
/// Entries in each top list.
const TOP: u64 = 10;

/// `GET /api/v1/stats` (the admin only: the numbers are the whole server's).
pub async fn stats(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
) -> Result<Json<Value>, ApiError> {
    if access != Access::Everything {
        return Err(ApiError::Forbidden("the dashboard needs the admin API key".into()));
    }
    activity::sample(&state);
    let now_ms = tern_queue::scheduler::now_ms();
    let this_minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    let since_ms = this_minute - (MINUTES - 1) * MINUTE_MS;
    // Released and MTA mail waits in the queue; a catcher that cannot release has none.
    let outbound = state.release_refused.is_none();
    let (received, page, size, queue) = state
        .readers
        .run(move |store| {
            let received = store.received_histogram(since_ms, MINUTE_MS)?;
            let page = store.page(None, 0, 0)?;
            let queue = match outbound {
                true => Some((store.queue_counts()?, store.queue_tops(QUEUE_SAMPLE, TOP)?)),
                false => None,
            };
            Ok((received, page, store.size_bytes()?, queue))
        })
        .await?;
    let per_minute: Vec<Value> = (0..MINUTES)
        .map(|i| {
            let start = since_ms + i * MINUTE_MS;
            let count = received.iter().find(|(s, _)| *s == start).map_or(0, |(_, n)| *n);
            json!({ "Start": rfc3339_ms(start), "Count": count })
        })
        .collect();
    let spool = state.spool.stats();
    let mut body = json!({
        "Time": rfc3339_ms(now_ms),
        "Outbound": outbound,
        "Totals": {
            "Messages": page.total,
            "Unread": page.unread,
            "DatabaseSize": size,
            "AcceptedSinceStart": spool.messages,
            "Uptime": state.started.elapsed().as_secs(),
        },
        "ReceivedPerMinute": per_minute,
        "Queue": Value::Null,
        "OutcomesPerHour": Value::Null,
        "TopDestinations": [],
        "TopErrors": [],
        "QueueSampled": 0,
    });
    if let Some((counts, tops)) = queue {
        body["Queue"] =
            json!({ "Queued": counts.queued, "Held": counts.held, "Messages": counts.messages });
        body["TopDestinations"] = tops
            .destinations
            .iter()
            .map(|(domain, n)| json!({ "Domain": domain, "Entries": n }))
            .collect();
        body["TopErrors"] =
            tops.errors.iter().map(|(error, n)| json!({ "Error": error, "Entries": n })).collect();
        body["QueueSampled"] = json!(tops.sampled);
        if state.metrics.is_some() {
            body["OutcomesPerHour"] = state
                .activity
                .hours(now_ms)
                .into_iter()
                .map(|(start, o)| {
                    json!({ "Start": rfc3339_ms(start), "Delivered": o.delivered,
                            "Deferred": o.deferred, "Bounced": o.bounced })
                })
                .collect();
        }
    }
    Ok(Json(body))
}
