//! Chaos over HTTP: Mailpit's `GET/PUT /api/v1/chaos` (its three triggers, its JSON, its
//! `400 Chaos is not enabled`) and Tern's rules at `/api/v1/chaos/rules` (list with counters,
//! replace, add, clear). The engine is `tern_ingest::chaos`, shared with the SMTP sessions
//! through the door; changing it takes the admin (any client of a catcher without HTTP
//! authentication).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, State as AxumState};
use serde::Deserialize;
use serde_json::{Value, json};
use tern_ingest::chaos::{Chaos, Rule, Triggers};

use super::messages::json_body;
use crate::error::ApiError;
use crate::{Access, State};

/// The engine, or Mailpit's error when chaos is off.
fn engine(state: &State) -> Result<Arc<Chaos>, ApiError> {
    state.door.chaos().cloned().ok_or_else(|| {
        ApiError::BadRequest(
            "Chaos is not enabled (start with --enable-chaos or set [chaos] enabled = true)".into(),
        )
    })
}

/// The engine for a change, which only the admin may make.
fn for_change(state: &State, access: &Access) -> Result<Arc<Chaos>, ApiError> {
    let chaos = engine(state)?;
    match access {
        Access::Everything => Ok(chaos),
        _ => Err(ApiError::Forbidden("changing chaos needs the admin API key".into())),
    }
}

/// `GET /api/v1/chaos`
pub async fn get_triggers(AxumState(state): AxumState<State>) -> Result<Json<Triggers>, ApiError> {
    Ok(Json(engine(&state)?.triggers()))
}

/// `PUT /api/v1/chaos`: omitted triggers are reset (code default, probability 0), as in
/// Mailpit.
pub async fn set_triggers(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> Result<Json<Triggers>, ApiError> {
    let chaos = for_change(&state, &access)?;
    let triggers: Triggers = json_body(&body)?;
    Ok(Json(chaos.set_triggers(triggers).map_err(ApiError::BadRequest)?))
}

/// `{"Rules": [...]}`, each rule with `matched` and `fired`.
fn rules_json(chaos: &Chaos) -> Json<Value> {
    Json(json!({ "Rules": chaos.rules() }))
}

/// `GET /api/v1/chaos/rules`
pub async fn list_rules(AxumState(state): AxumState<State>) -> Result<Json<Value>, ApiError> {
    Ok(rules_json(&*engine(&state)?))
}

#[derive(Deserialize, Default)]
struct RulesBody {
    #[serde(rename = "Rules", alias = "rules")]
    rules: Option<Vec<Rule>>,
}

/// `PUT /api/v1/chaos/rules` with `{"Rules": [...]}`: replaces every rule (counters restart);
/// an invalid rule changes nothing.
pub async fn set_rules(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let chaos = for_change(&state, &access)?;
    let body: RulesBody = json_body(&body)?;
    let Some(rules) = body.rules else {
        return Err(ApiError::BadRequest(
            "Rules is required, e.g. {\"Rules\": [{\"at\": \"rcpt\", \"reply\": \"451\"}]} \
             ([] removes them)"
                .into(),
        ));
    };
    chaos.set_rules(rules).map_err(ApiError::BadRequest)?;
    Ok(rules_json(&chaos))
}

/// `POST /api/v1/chaos/rules` with one rule: added at the end.
pub async fn add_rule(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let chaos = for_change(&state, &access)?;
    let rule: Rule = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid rule: {e}")))?;
    chaos.add_rule(rule).map_err(ApiError::BadRequest)?;
    Ok(rules_json(&chaos))
}

/// `DELETE /api/v1/chaos/rules`: no rules any more (Mailpit's triggers stay).
pub async fn clear_rules(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
) -> Result<Json<Value>, ApiError> {
    let chaos = for_change(&state, &access)?;
    chaos.set_rules(Vec::new()).map_err(ApiError::BadRequest)?;
    Ok(rules_json(&chaos))
}
