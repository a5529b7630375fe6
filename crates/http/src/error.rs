//! The API's one error type: each variant maps to a status and a JSON body `{"Error": "..."}`
//! (the shape Mailpit's send endpoint uses); internal failures are logged, not shown.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tern_queue::SpoolError;
use tern_store::{SearchError, StoreError};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad parameter, bad search).
    #[error("{0}")]
    BadRequest(String),
    /// The credentials do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// No such message, part or inbox.
    #[error("{0}")]
    NotFound(String),
    /// The Host does not name this server (DNS rebinding protection).
    #[error("{0}")]
    Misdirected(String),
    /// The request body is not declared JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A wait ended without enough matches.
    #[error("{0}")]
    Timeout(String),
    /// The server is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The store or the writer failed; details go to the log only.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Search(e) => ApiError::BadRequest(e.to_string()),
            StoreError::NoSuchMessage(_) => ApiError::NotFound("Message not found".into()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<SpoolError> for ApiError {
    fn from(e: SpoolError) -> Self {
        match e {
            SpoolError::Store(inner) => match inner.as_ref() {
                StoreError::Search(search) => ApiError::BadRequest(search.to_string()),
                // Deleted between the request's read and its change.
                StoreError::NoSuchMessage(_) => ApiError::NotFound("Message not found".into()),
                other => ApiError::Internal(other.to_string()),
            },
            SpoolError::Closed => ApiError::Internal("the writer has stopped".into()),
        }
    }
}

impl From<tern_ingest::IngestError> for ApiError {
    fn from(e: tern_ingest::IngestError) -> Self {
        match e {
            // A check's refusal, with its SMTP reply as the message.
            tern_ingest::IngestError::Refused(reply) => {
                let text = reply.to_wire().trim_end().to_string();
                if reply.code >= 500 {
                    ApiError::BadRequest(text)
                } else {
                    ApiError::Unavailable(text)
                }
            }
            tern_ingest::IngestError::Spool(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "Error": self.to_string() }))).into_response()
    }
}
