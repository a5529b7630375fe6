//! `GET /api/v1/validate?address=…`: whether an address is worth sending to — syntax, the
//! domain's mail hosts, disposable and role addresses, and (when `[validate] callout` is on and
//! the admin asks) the recipient's server — as `tern_delivery::validate` judges it.

use axum::Json;
use axum::extract::{Extension, Query, State as AxumState};

use super::Params;
use crate::error::ApiError;
use crate::{Access, State};

/// Longest address looked at (RFC 5321's path limit, with room for quotes).
const MAX_ADDRESS: usize = 512;

/// `GET /api/v1/validate?address=ADDRESS[&callout=false]`
pub async fn validate(
    AxumState(state): AxumState<State>,
    Extension(access): Extension<Access>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<tern_delivery::validate::Report>, ApiError> {
    let params = Params(params);
    let Some(address) = params.0.get("address").filter(|a| !a.is_empty()) else {
        return Err(ApiError::BadRequest(
            "address is required, e.g. /api/v1/validate?address=user%40example.com".into(),
        ));
    };
    if address.len() > MAX_ADDRESS {
        return Err(ApiError::BadRequest(format!("address longer than {MAX_ADDRESS} bytes")));
    }
    let callout: bool = params.get("callout")?.unwrap_or(true);
    let Some(validator) = state.validator.clone() else {
        return Err(ApiError::Unavailable("address validation is not set up".into()));
    };
    // A callout talks to other servers on the requester's behalf: the admin's to ask for.
    let callout = callout && access == Access::Everything;
    Ok(Json(validator.validate(address, callout).await))
}
