//! Handler failures and their stable JSON bodies: `{"error":"<code>","message":"…"}`.
//! Validation errors are 400 (the old coordinator answered 500 for most of them); invisible
//! resources are 404, visible but not manageable ones 403.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crabbox_api::coord::ApiError;
use crabbox_store::StoreError;

/// A failed request: status plus body.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub body: ApiError,
}

impl Failure {
    pub fn new(status: StatusCode, code: &str) -> Self {
        Self {
            status,
            body: ApiError::new(code),
        }
    }

    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.body = self.body.message(message);
        self
    }

    #[must_use]
    pub fn with(mut self, key: &str, value: impl serde::Serialize) -> Self {
        self.body = self.body.with(key, value);
        self
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code).message(message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found")
    }

    pub fn forbidden(message: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden").message(message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code).message(message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error").message(message)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        match e {
            StoreError::Backend(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "dependency_unavailable")
                    .message("the coordinator database is unavailable; retry shortly")
            }
            other => Self::internal(other.to_string()),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;
