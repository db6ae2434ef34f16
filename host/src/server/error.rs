//! The one error type of the HTTP API: every error answer is `{"err": "<message>"}` with the
//! status codes of MetaDefender Core (`metadefender-compat.md` section 4): 400 bad header or
//! key, 403 access denied, 404, 405, 411, 422, 500, 503; plus 409 for admin changes that
//! conflict with the inventory (Cordon's own API).
//!
//! "Not found" for a data id or a hash is not an error: clients expect
//! `200 {"<id>": "Not Found"}` ([`not_found`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// An error answer: a status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `err` message.
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: a bad header, key or body.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403: no valid key, or not allowed.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// 403 with MetaDefender's message for a missing or invalid `apikey`.
    pub fn access_denied() -> ApiError {
        ApiError::forbidden("Access denied: send a valid key in the apikey header")
    }

    /// 404: no such route or resource (admin API).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the change conflicts with the inventory (admin API).
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 503 with MetaDefender's message for a full queue.
    pub fn busy() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server is too busy. Try again later.",
        )
    }

    /// 503: the disk (or a quota) is full, which passes when space is freed.
    pub fn no_space() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is out of disk space; try again later",
        )
    }

    /// An internal error (500): the details go to the log (with the request's span); the
    /// client gets a generic message that leaks no path or internal state.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Internal error: {context}; see the server log"),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if e.is_full() {
            tracing::error!(error = %e, "the database cannot grow: out of disk space");
            return ApiError::no_space();
        }
        ApiError::internal("the database failed", &e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "err": self.message })),
        )
            .into_response()
    }
}

/// `200 {"<id>": "Not Found"}`: what clients expect for an unknown data id or hash.
pub fn not_found(id: &str) -> Response {
    let mut body = serde_json::Map::new();
    body.insert(id.to_owned(), "Not Found".into());
    (StatusCode::OK, Json(serde_json::Value::Object(body))).into_response()
}

/// Fallback for routes that do not exist: 404 `{"err"}`.
pub async fn no_route() -> ApiError {
    ApiError::not_found("No such endpoint")
}

/// Fallback for a known route with the wrong method: 405 `{"err"}`.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed on this endpoint",
    )
}
