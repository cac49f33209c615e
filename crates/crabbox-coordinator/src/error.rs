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

    /// The stable body for a refusal the framework made before a handler ran: an extractor
    /// rejection (`text` is axum's plain-text explanation) or a body over its limit.
    pub fn from_framework(status: StatusCode, text: &str) -> Self {
        /// axum's rejection texts, by the part of the request they blame.
        const QUERY: &str = "Failed to deserialize query string";
        const PATH: &str = "Invalid URL";
        let detail = |rest: &str| {
            let rest = rest.trim_start_matches(':').trim();
            let mut chars = rest.chars();
            chars.next().map_or_else(String::new, |first| {
                format!(": {}{}", first.to_lowercase(), chars.as_str())
            })
        };
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::too_large(),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(status, "method_not_allowed"),
            _ if text.starts_with(QUERY) => {
                let hint = if text.contains("duplicate field") {
                    "; give each parameter at most once"
                } else {
                    ""
                };
                Self::new(status, "invalid_query").message(format!(
                    "the query string is invalid{}{hint}",
                    detail(&text[QUERY.len()..])
                ))
            }
            _ if text.starts_with(PATH) => Self::new(status, "invalid_path").message(format!(
                "the URL path is invalid{}",
                detail(&text[PATH.len()..])
            )),
            _ => {
                let code = match status {
                    StatusCode::BAD_REQUEST => "invalid_request".to_owned(),
                    s if s.is_server_error() => "internal_error".to_owned(),
                    s => s
                        .canonical_reason()
                        .unwrap_or("error")
                        .to_ascii_lowercase()
                        .replace([' ', '-'], "_"),
                };
                let failure = Self::new(status, &code);
                if text.is_empty() {
                    failure
                } else {
                    failure.message(text)
                }
            }
        }
    }

    /// `413 request_too_large`; the response also closes the connection (see `IntoResponse`),
    /// since the rest of the oversized body was never read.
    pub fn too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large")
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
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(f: &Failure) -> (u16, &str, Option<&str>) {
        (
            f.status.as_u16(),
            f.body.error.as_str(),
            f.body.message.as_deref(),
        )
    }

    #[test]
    fn framework_rejections_become_named_codes_with_lowercase_messages() {
        let f = Failure::from_framework(
            StatusCode::BAD_REQUEST,
            "Failed to deserialize query string: duplicate field `limit`",
        );
        assert_eq!(
            body(&f),
            (
                400,
                "invalid_query",
                Some(
                    "the query string is invalid: duplicate field `limit`; give each parameter at most once"
                )
            )
        );
        let f = Failure::from_framework(
            StatusCode::BAD_REQUEST,
            "Invalid URL: Invalid UTF-8 in `id`",
        );
        assert_eq!(
            body(&f),
            (
                400,
                "invalid_path",
                Some("the URL path is invalid: invalid UTF-8 in `id`")
            )
        );
        let f = Failure::from_framework(StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded");
        assert_eq!(body(&f), (413, "request_too_large", None));
        let f = Failure::from_framework(StatusCode::UNSUPPORTED_MEDIA_TYPE, "");
        assert_eq!(body(&f), (415, "unsupported_media_type", None));
        let f = Failure::from_framework(StatusCode::INTERNAL_SERVER_ERROR, "boom");
        assert_eq!(body(&f), (500, "internal_error", Some("boom")));
    }
}
