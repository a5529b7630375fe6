//! `GET /api/v1/message/{ID}/html-check`: the HTML compatibility check of one message
//! (see `crate::htmlcheck`), in Mailpit's `HTMLCheckResponse` shape.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Path, Query, State as AxumState};

use super::message::load;
use crate::error::ApiError;
use crate::mime::Parsed;
use crate::{Access, State, htmlcheck};

/// `GET /api/v1/message/{ID}/html-check`: 404 for an unknown message and, as Mailpit, 400
/// "message does not contain HTML" for one without an HTML body.
pub async fn html_check(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<htmlcheck::Report>, ApiError> {
    let message = load(&state, &access, &id, &params).await?;
    // Parsing and checking a large body is CPU work: keep it off the async workers.
    let report = tokio::task::spawn_blocking(move || {
        let full = message.full_message();
        let parsed = Parsed::new(&full)
            .ok_or_else(|| ApiError::BadRequest("the message cannot be parsed".into()))?;
        let html = parsed
            .html()
            .filter(|html| !html.trim().is_empty())
            .ok_or_else(|| ApiError::BadRequest("message does not contain HTML".into()))?;
        htmlcheck::check(&html).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(report))
}
