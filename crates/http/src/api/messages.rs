//! Lists, searches, bulk read flags and deletes: `/api/v1/messages` and `/api/v1/search`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Query, State as AxumState};
use serde::Deserialize;
use tern_store::{MessageId, Mutation, SearchQuery, Selection};

use super::Params;
use crate::error::ApiError;
use crate::json::MessagesSummary;
use crate::{Access, State};

/// Page size when `limit` is not given (Mailpit's default).
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest page served.
pub const MAX_LIMIT: u64 = 10_000;

/// `GET /api/v1/messages?start=&limit=`
pub async fn list(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<MessagesSummary>, ApiError> {
    page(&state, access.scope(None), &Params(params)).await
}

/// `GET /api/v1/search?query=&start=&limit=`
pub async fn search(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<MessagesSummary>, ApiError> {
    let params = Params(params);
    let text = params.text("query").unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest("query is required".into()));
    }
    let query = SearchQuery::parse(text)?;
    page(&state, access.scope(Some(query)), &params).await
}

async fn page(
    state: &State,
    query: Option<SearchQuery>,
    params: &Params,
) -> Result<Json<MessagesSummary>, ApiError> {
    let start = params.get::<u64>("start")?.unwrap_or(0);
    let limit = params.get::<u64>("limit")?.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let page = state.readers.run(move |store| store.page(query.as_ref(), start, limit)).await?;
    Ok(Json(MessagesSummary::new(&page, start)))
}

/// Body of `PUT /api/v1/messages`. Like Mailpit's Go decoder, unknown fields are ignored and
/// the usual spellings of each key are accepted.
#[derive(Debug, Default, Deserialize)]
struct ReadBody {
    #[serde(rename = "IDs", alias = "ids", alias = "Ids", default)]
    ids: Vec<String>,
    #[serde(rename = "Read", alias = "read", default)]
    read: bool,
    #[serde(rename = "Search", alias = "search", default)]
    search: Option<String>,
}

/// Body of `DELETE /api/v1/messages`.
#[derive(Debug, Default, Deserialize)]
struct DeleteBody {
    #[serde(rename = "IDs", alias = "ids", alias = "Ids", default)]
    ids: Vec<String>,
}

/// Parses an optional JSON body; an empty body is the default value.
pub(crate) fn json_body<T: for<'de> Deserialize<'de> + Default>(
    body: &Bytes,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Known ids among `ids`; ids that are not even well-formed cannot exist and are skipped, as
/// Mailpit skips unknown ids.
pub(crate) fn parse_ids(ids: &[String]) -> Vec<MessageId> {
    ids.iter().filter_map(|id| id.parse().ok()).collect()
}

/// `PUT /api/v1/messages` `{"IDs": [...], "Read": true}`; no IDs and no Search means all.
pub async fn set_read(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> Result<&'static str, ApiError> {
    // An empty body is refused: it would otherwise mean "mark everything unread".
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "a JSON body is required, e.g. {\"IDs\": [...], \"Read\": true}".into(),
        ));
    }
    let body: ReadBody = json_body(&body)?;
    let selection = match (body.ids.is_empty(), body.search) {
        (false, Some(_)) => {
            return Err(ApiError::BadRequest("give either IDs or Search, not both".into()));
        }
        (false, None) => Selection::Ids(parse_ids(&body.ids)),
        (true, Some(search)) => {
            if SearchQuery::parse(&search)?.is_empty() {
                return Err(ApiError::BadRequest(format!("the search {search:?} has no terms")));
            }
            Selection::Search(search)
        }
        (true, None) => Selection::All,
    };
    let selection = scoped(&state, &access, selection).await?;
    state.spool.apply(Mutation::SetRead(selection, body.read)).await?;
    Ok("ok")
}

/// `DELETE /api/v1/messages` `{"IDs": [...]}`; no body or no IDs deletes everything.
pub async fn delete(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> Result<&'static str, ApiError> {
    let body: DeleteBody = json_body(&body)?;
    let selection =
        if body.ids.is_empty() { Selection::All } else { Selection::Ids(parse_ids(&body.ids)) };
    let selection = scoped(&state, &access, selection).await?;
    state.spool.apply(Mutation::Delete(selection)).await?;
    Ok("ok")
}

/// `selection` limited to what `access` may change: an account changes only its mailbox.
pub(crate) async fn scoped(
    state: &State,
    access: &Access,
    selection: Selection,
) -> Result<Selection, ApiError> {
    let Some(login) = access.account() else { return Ok(selection) };
    let mine = SearchQuery::default().for_account(login);
    Ok(match selection {
        Selection::All => Selection::Matching(mine),
        Selection::Search(text) => {
            Selection::Matching(SearchQuery::parse(&text)?.for_account(login))
        }
        Selection::Matching(query) => Selection::Matching(query.for_account(login)),
        Selection::Inbox(inbox) => {
            Selection::Matching(SearchQuery::parse(&format!("inbox:{inbox}"))?.for_account(login))
        }
        Selection::Ids(ids) => {
            let rows =
                state.readers.run(move |store| store.matching_among(Some(&mine), &ids)).await?;
            Selection::Ids(rows.into_iter().map(|row| row.id).collect())
        }
    })
}

/// `DELETE /api/v1/search?query=` deletes every match.
pub async fn delete_search(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<&'static str, ApiError> {
    let text = params.get("query").map(String::as_str).unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::BadRequest("query is required".into()));
    }
    if SearchQuery::parse(text)?.is_empty() {
        // `to:` alone parses to no condition; deleting everything for it would be a trap.
        return Err(ApiError::BadRequest(format!("the query {text:?} has no search terms")));
    }
    let selection = scoped(&state, &access, Selection::Search(text.to_string())).await?;
    state.spool.apply(Mutation::Delete(selection)).await?;
    Ok("ok")
}
