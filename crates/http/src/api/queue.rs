//! The outbound queue over HTTP (Tern's own paths: Mailpit has no queue): list the entries,
//! show one message's entries, and retry, hold, release or delete messages; plus Mailpit's
//! `POST /api/v1/message/{ID}/release`, which sends a stored message to new recipients through
//! the same queue (with its retries, unlike Mailpit's one-shot relay).
//!
//! Everything here is admin-only: an account's login (HTTP Basic) gets `403`. Reads go through
//! the store readers; every change is a [`Mutation`] applied by the spool, whose `QueueChanged`
//! event wakes the scheduler (so a retry or release takes effect at once) and refreshes live
//! views. This module decides nothing about delivery itself.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State as AxumState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tern_store::{
    EntryState, MessageId, Mutation, QueueCommand, QueueEntry, QueueFilter, QueueTarget,
};

use super::Params;
use super::messages::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::error::ApiError;
use crate::json::rfc3339_ms;
use crate::{Access, State};

/// DSN `NOTIFY=` of released copies: the captured message's sender never hears of them.
const RELEASE_NOTIFY: &str = "NEVER";
/// Most recipients one release may name.
pub const MAX_RELEASE_RECIPIENTS: usize = 100;

/// Refuses anything but the admin (the API key, or a server without authentication).
fn admin_only(access: &Access) -> Result<(), ApiError> {
    match access {
        Access::Everything => Ok(()),
        Access::Account(_) => {
            Err(ApiError::Forbidden("queue management needs the admin API key".into()))
        }
    }
}

/// One queue entry as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryJson {
    #[serde(rename = "ID")]
    id: i64,
    #[serde(rename = "MessageID")]
    message_id: String,
    sender: String,
    recipient: String,
    domain: String,
    state: &'static str,
    attempts: u32,
    created: String,
    next_attempt: String,
    last_attempt: Option<String>,
    last_error: Option<String>,
    delay_warned: bool,
}

impl From<&QueueEntry> for EntryJson {
    fn from(entry: &QueueEntry) -> Self {
        EntryJson {
            id: entry.id,
            message_id: entry.message_id.to_string(),
            sender: entry.sender.clone(),
            recipient: entry.recipient.clone(),
            domain: entry.domain.clone(),
            state: entry.state.as_str(),
            attempts: entry.attempts,
            created: rfc3339_ms(entry.created_at_ms),
            next_attempt: rfc3339_ms(entry.next_attempt_ms),
            last_attempt: entry.last_attempt_ms.map(rfc3339_ms),
            last_error: entry.last_error.clone(),
            delay_warned: entry.delay_warned,
        }
    }
}

fn entries_json(entries: &[QueueEntry]) -> Vec<EntryJson> {
    entries.iter().map(EntryJson::from).collect()
}

/// `GET /api/v1/queue?state=queued|held&start=&limit=` → the entries, by message, with the
/// number matching (`Total`) and the counts over the whole queue.
pub async fn list(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&access)?;
    let params = Params(params);
    let wanted = match params.text("state").map(str::trim).unwrap_or_default() {
        "" => None,
        "queued" => Some(EntryState::Queued),
        "held" => Some(EntryState::Held),
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid value for state: {other:?} (use queued or held)"
            )));
        }
    };
    let filter = QueueFilter {
        message: None,
        state: wanted,
        start: params.get::<u64>("start")?.unwrap_or(0),
        limit: params.get::<u64>("limit")?.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    };
    let ((entries, total), counts) = state
        .readers
        .run(move |store| Ok((store.queue_entries(&filter)?, store.queue_counts()?)))
        .await?;
    Ok(Json(json!({
        "Total": total,
        "Queued": counts.queued,
        "Held": counts.held,
        "Messages": counts.messages,
        "Entries": entries_json(&entries),
    })))
}

/// A message id from a path or body; malformed ones are the client's mistake.
fn message_id(text: &str) -> Result<MessageId, ApiError> {
    text.trim().parse().map_err(|_| ApiError::BadRequest(format!("invalid message id {text:?}")))
}

/// `GET /api/v1/queue/{ID}` → the message (envelope sender, subject, size, when received) and
/// every queue entry it has.
pub async fn show(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    admin_only(&access)?;
    let id = message_id(&id)?;
    let filter = QueueFilter { message: Some(id), ..QueueFilter::default() };
    let ((entries, _), message) = state
        .readers
        .run(move |store| Ok((store.queue_entries(&filter)?, store.message(&id)?)))
        .await?;
    if entries.is_empty() {
        return Err(ApiError::NotFound(format!("message {id} is not in the queue")));
    }
    // The entries hold the message; it is missing only when deleted at this very moment.
    let message =
        message.ok_or_else(|| ApiError::NotFound(format!("message {id} is not in the queue")))?;
    Ok(Json(json!({
        "ID": id.to_string(),
        "From": message.envelope.mail_from,
        "Subject": message.summary.subject,
        "Size": message.received_header.len() + message.raw.len(),
        "Received": rfc3339_ms(message.envelope.received_at_ms),
        "Entries": entries_json(&entries),
    })))
}

/// Body of the queue commands: `{"IDs": [...]}` or `{"All": true}`.
#[derive(Debug, Default, Deserialize)]
struct CommandBody {
    #[serde(rename = "IDs", alias = "ids", alias = "Ids", default)]
    ids: Option<Vec<String>>,
    #[serde(rename = "All", alias = "all", default)]
    all: bool,
}

impl CommandBody {
    /// Exactly one of the two, so that a forgotten list never means "everything".
    fn target(self) -> Result<QueueTarget, ApiError> {
        match (self.ids, self.all) {
            (None, true) => Ok(QueueTarget::All),
            (Some(ids), false) if !ids.is_empty() => {
                let mut ids = ids.iter().map(|id| message_id(id)).collect::<Result<Vec<_>, _>>()?;
                ids.sort();
                ids.dedup();
                Ok(QueueTarget::Messages(ids))
            }
            (Some(_), true) => {
                Err(ApiError::BadRequest("give either IDs or \"All\": true, not both".into()))
            }
            _ => Err(ApiError::BadRequest(
                "a JSON body is required: {\"IDs\": [\"message id\", ...]} or {\"All\": true}"
                    .into(),
            )),
        }
    }
}

/// `POST /api/v1/queue/retry`: queued entries become due now (held ones stay held).
pub async fn retry(
    state: AxumState<State>,
    access: Extension<Access>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    command(state, access, body, QueueCommand::Retry).await
}

/// `POST /api/v1/queue/hold`: no attempts until released.
pub async fn hold(
    state: AxumState<State>,
    access: Extension<Access>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    command(state, access, body, QueueCommand::Hold).await
}

/// `POST /api/v1/queue/release`: held entries are queued again and due now.
pub async fn release(
    state: AxumState<State>,
    access: Extension<Access>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    command(state, access, body, QueueCommand::Release).await
}

/// `DELETE /api/v1/queue`: entries are dropped undelivered (and their message with them when
/// nothing else keeps it).
pub async fn delete(
    state: AxumState<State>,
    access: Extension<Access>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    command(state, access, body, QueueCommand::Delete).await
}

/// Applies `command` to the messages the body names → `{"Messages": n}`, the number of those
/// messages that are in the queue (unknown ids simply match nothing).
async fn command(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    body: Bytes,
    command: QueueCommand,
) -> Result<Json<Value>, ApiError> {
    admin_only(&access)?;
    let body: CommandBody = super::messages::json_body(&body)?;
    let target = body.target()?;
    let counted = target.clone();
    let messages = state
        .readers
        .run(move |store| match counted {
            QueueTarget::All => Ok(store.queue_counts()?.messages),
            QueueTarget::Messages(ids) => {
                let mut queued = 0;
                for id in ids {
                    let filter = QueueFilter { message: Some(id), limit: 1, ..Default::default() };
                    if store.queue_entries(&filter)?.1 > 0 {
                        queued += 1;
                    }
                }
                Ok(queued)
            }
        })
        .await?;
    let now_ms = tern_queue::scheduler::now_ms();
    state.spool.apply(Mutation::QueueCommand { target, command, now_ms }).await?;
    Ok(Json(json!({ "Messages": messages })))
}

/// Body of `POST /api/v1/message/{ID}/release` (Mailpit's `ReleaseMessageParams`).
#[derive(Debug, Default, Deserialize)]
struct ReleaseBody {
    #[serde(rename = "To", alias = "to", default)]
    to: Vec<String>,
}

/// `POST /api/v1/message/{ID}/release` `{"To": ["a@example.com"]}` → `ok`: queues the stored
/// message for each address, from its envelope sender (or its `From:` address when that is
/// empty), asking for no delivery reports so the original sender is never written to.
pub async fn release_message(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<&'static str, ApiError> {
    admin_only(&access)?;
    if let Some(reason) = &state.release_refused {
        return Err(ApiError::BadRequest(reason.clone()));
    }
    let body: ReleaseBody = super::messages::json_body(&body)?;
    let recipients = release_recipients(&body.to)?;
    let message = super::message::load(&state, &access, &id, &params).await?;
    let sender = match message.envelope.mail_from.as_str() {
        "" => message.summary.from.as_ref().map(|from| from.address.clone()).unwrap_or_default(),
        sender => sender.to_string(),
    };
    let now_ms = tern_queue::scheduler::now_ms();
    state.door.release(message.id, &sender, recipients, &[RELEASE_NOTIFY], now_ms).await?;
    Ok("ok")
}

/// The release's recipients, checked: at least one, each a plain `local@domain` an SMTP
/// `RCPT TO` can carry (no brackets, spaces or line breaks), without duplicates.
fn release_recipients(to: &[String]) -> Result<Vec<String>, ApiError> {
    if to.is_empty() {
        return Err(ApiError::BadRequest(
            "no recipients: give {\"To\": [\"address@example.com\", ...]}".into(),
        ));
    }
    if to.len() > MAX_RELEASE_RECIPIENTS {
        return Err(ApiError::BadRequest(format!(
            "too many recipients: at most {MAX_RELEASE_RECIPIENTS}"
        )));
    }
    let mut recipients: Vec<String> = Vec::with_capacity(to.len());
    for address in to {
        let trimmed = address.trim();
        let checked = tern_policy::address::parse(trimmed).map_err(|e| e.to_string());
        let checked = checked.and_then(|_| match trimmed.contains(char::is_whitespace) {
            true => Err("space in address".to_string()),
            false => Ok(trimmed),
        });
        match checked {
            Ok(valid) => {
                if !recipients.iter().any(|known| known.eq_ignore_ascii_case(valid)) {
                    recipients.push(valid.to_string());
                }
            }
            Err(why) => {
                return Err(ApiError::BadRequest(format!("invalid address {address:?}: {why}")));
            }
        }
    }
    Ok(recipients)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn release_recipients_are_plain_addresses() {
        assert_eq!(
            release_recipients(&strings(&[" a@x.test ", "A@x.test", "b@[192.0.2.1]"]))
                .expect("valid"),
            ["a@x.test", "b@[192.0.2.1]"]
        );
        for bad in
            ["", "nobody", "a@", "@x.test", "<a@x.test>", "a@x.test\r\nRCPT TO:<b@y>", "a b@x"]
        {
            let error = release_recipients(&strings(&[bad])).expect_err(bad);
            assert!(matches!(error, ApiError::BadRequest(_)), "{bad:?}: {error:?}");
        }
        assert!(release_recipients(&[]).is_err());
        let many: Vec<String> =
            (0..=MAX_RELEASE_RECIPIENTS).map(|i| format!("u{i}@x.test")).collect();
        assert!(release_recipients(&many).is_err());
    }

    #[test]
    fn commands_name_their_messages_or_all_but_never_both_or_neither() {
        let body = |text: &str| -> Result<QueueTarget, ApiError> {
            super::super::messages::json_body::<CommandBody>(&Bytes::from(text.to_string()))?
                .target()
        };
        assert_eq!(body(r#"{"All": true}"#).expect("all"), QueueTarget::All);
        let id = MessageId::generate();
        assert_eq!(
            body(&format!(r#"{{"IDs": ["{id}", "{id}"]}}"#)).expect("ids"),
            QueueTarget::Messages(vec![id])
        );
        for bad in [
            "",
            "{}",
            r#"{"IDs": []}"#,
            r#"{"All": false}"#,
            r#"{"IDs": ["x"]}"#,
            "[",
            r#"{"IDs": ["01J"], "All": true}"#,
        ] {
            assert!(body(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
