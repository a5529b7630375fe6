//! `GET /api/v1/message/{ID}/link-check`: Mailpit's link check over the message's links, when
//! the server is configured to make such requests (`[http] link_check`); the requests
//! themselves are `linkcheck`'s.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Path, Query, State as AxumState};
use serde_json::{Value, json};

use super::{load, parse};
use crate::error::ApiError;
use crate::{Access, State, extract};

/// What a request gets while the check is off: the key that turns it on.
pub const LINK_CHECK_OFF: &str = "the link check is off: set [http] link_check = true in the \
     configuration (the server then requests each link of a message itself)";

/// `GET /api/v1/message/{ID}/link-check` (`?follow=true` follows redirects):
/// `{"Errors": n, "Links": [{"URL", "StatusCode", "Status"}]}`, as Mailpit answers.
pub async fn link_check(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let Some(checker) = state.link_check.clone() else {
        return Err(ApiError::Forbidden(LINK_CHECK_OFF.into()));
    };
    let follow = match params.get("follow").map(String::as_str) {
        None | Some("" | "false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "invalid value for follow: {other:?} (true or false)"
            )));
        }
    };
    let message = load(&state, &access, &id, &params).await?;
    let full = message.full_message();
    let urls = {
        let parsed = parse(&full)?;
        extract::links(&parsed.text(), parsed.html().as_deref().unwrap_or_default())
    };
    let links = checker.check_all(urls, follow).await;
    let errors = links.iter().filter(|link| link.is_error()).count();
    Ok(Json(json!({ "Errors": errors, "Links": links })))
}
