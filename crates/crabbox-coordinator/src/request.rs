//! Request body parsing with the coordinator's error bodies (`400 invalid_json` with the
//! parser's message, instead of the old coordinator's 500).

use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::error::{Failure, Result};

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::from_slice(b"{}")
            .map_err(|e| Failure::bad_request("invalid_json", format!("request body: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request("invalid_json", format!("request body: {e}")))
}

/// Heartbeat/release bodies are read only when the content type says JSON; otherwise `{}`.
pub fn optional_json<T: DeserializeOwned + Default>(headers: &HeaderMap, body: &[u8]) -> Result<T> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("application/json"));
    if is_json {
        parse_json(body)
    } else {
        Ok(T::default())
    }
}
