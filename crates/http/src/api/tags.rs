//! Mailpit's tag endpoints: `GET|PUT /api/v1/tags`, `PUT|DELETE /api/v1/tags/{Tag}`.
//!
//! Tags come from `X-Tags` headers and plus-addressing at ingest; these change them later.
//! Setting tags is scoped like other changes (an account tags only its own mail); renaming and
//! deleting a tag reach every message, so they need the API key where accounts exist.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State as AxumState};
use serde::Deserialize;
use tern_store::{Mutation, Selection};

use super::messages::{json_body, parse_ids, scoped};
use crate::error::ApiError;
use crate::{Access, State};

/// Longest tag accepted, in characters.
pub const MAX_TAG_CHARS: usize = 100;

/// `GET /api/v1/tags`: every tag in use, sorted (an account sees those of its own mail).
pub async fn list(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
) -> Result<Json<Vec<String>>, ApiError> {
    let scope = access.scope(None);
    Ok(Json(state.readers.run(move |store| store.tags_of(scope.as_ref())).await?))
}

#[derive(Deserialize, Default)]
struct SetBody {
    #[serde(rename = "IDs", alias = "ids", alias = "Ids", default)]
    ids: Vec<String>,
    #[serde(rename = "Tags", alias = "tags")]
    tags: Option<Vec<String>>,
}

/// `PUT /api/v1/tags` `{"IDs": [...], "Tags": [...]}` replaces those messages' tags; an empty
/// `Tags` removes them all. Unknown ids are skipped, as Mailpit skips them.
pub async fn set(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> Result<&'static str, ApiError> {
    let body: SetBody = json_body(&body)?;
    let Some(tags) = body.tags else {
        return Err(ApiError::BadRequest(
            "Tags is required, e.g. {\"IDs\": [...], \"Tags\": [\"signup\"]} ([] removes them)"
                .into(),
        ));
    };
    if body.ids.is_empty() {
        return Err(ApiError::BadRequest("IDs is required: the messages to tag".into()));
    }
    // Repeats are harmless: the store keeps each (message, tag) once.
    let clean = tags.iter().map(|tag| clean_tag(tag)).collect::<Result<Vec<_>, _>>()?;
    let selection = scoped(&state, &access, Selection::Ids(parse_ids(&body.ids))).await?;
    state.spool.apply(Mutation::SetTags(selection, clean)).await?;
    Ok("ok")
}

#[derive(Deserialize, Default)]
struct RenameBody {
    #[serde(rename = "Name", alias = "name", default)]
    name: String,
}

/// `PUT /api/v1/tags/{Tag}` `{"Name": "new"}` renames a tag on every message.
pub async fn rename(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(tag): Path<String>,
    body: Bytes,
) -> Result<&'static str, ApiError> {
    every_message(&access)?;
    let body: RenameBody = json_body(&body)?;
    let to = clean_tag(&body.name)?;
    state.spool.apply(Mutation::RenameTag { from: tag, to }).await?;
    Ok("ok")
}

/// `DELETE /api/v1/tags/{Tag}` removes a tag from every message (the messages stay).
pub async fn delete(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(tag): Path<String>,
) -> Result<&'static str, ApiError> {
    every_message(&access)?;
    state.spool.apply(Mutation::DeleteTag(tag)).await?;
    Ok("ok")
}

/// Renaming or deleting a tag changes every mailbox's mail: not for one account.
fn every_message(access: &Access) -> Result<(), ApiError> {
    match access.account() {
        Some(login) => Err(ApiError::Forbidden(format!(
            "{login} may tag only its own messages (PUT /api/v1/tags); renaming or deleting a \
             tag everywhere needs the API key"
        ))),
        None => Ok(()),
    }
}

/// A tag as stored: trimmed; refused when empty, too long, or holding a comma (the `X-Tags`
/// separator) or a control character.
fn clean_tag(raw: &str) -> Result<String, ApiError> {
    let tag = raw.trim();
    if tag.is_empty() {
        return Err(ApiError::BadRequest("a tag cannot be empty".into()));
    }
    if tag.chars().count() > MAX_TAG_CHARS {
        return Err(ApiError::BadRequest(format!(
            "the tag {tag:?} is longer than {MAX_TAG_CHARS} characters"
        )));
    }
    if tag.contains(',') || tag.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "the tag {tag:?} holds a comma or a control character"
        )));
    }
    Ok(tag.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_trimmed_and_checked() {
        assert_eq!(clean_tag("  signup ").ok().as_deref(), Some("signup"));
        assert_eq!(clean_tag("Tag 2").ok().as_deref(), Some("Tag 2"));
        for bad in ["", "   ", "a,b", "a\nb", &"x".repeat(MAX_TAG_CHARS + 1)] {
            assert!(clean_tag(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
