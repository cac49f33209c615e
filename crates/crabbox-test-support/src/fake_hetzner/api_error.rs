//! Hetzner's errors, `{"error": {"code", "message", "details"}}`, as the reference's "Errors"
//! section has them.

use serde_json::{Value, json};

/// A Hetzner error: what a handler or a fault answers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
            details: json!({}),
        }
    }

    /// `404 not_found`, "`what` not found".
    pub fn not_found(what: &str) -> Self {
        Self::new(404, "not_found", &format!("{what} not found"))
    }

    /// `400 invalid_input` naming the field, with the reason in `details.fields`.
    pub fn invalid_field(field: &str, why: &str) -> Self {
        Self {
            details: json!({"fields": [{"name": field, "messages": [why]}]}),
            ..Self::new(
                400,
                "invalid_input",
                &format!("invalid input in field '{field}'"),
            )
        }
    }

    /// `409 uniqueness_error` naming the field.
    pub fn uniqueness(field: &str, message: &str) -> Self {
        Self {
            details: json!({"fields": [{"name": field}]}),
            ..Self::new(409, "uniqueness_error", message)
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

/// A handler's answer: status and body (`null`: none, as for `204`).
pub(super) type Answer = Result<(u16, Value), ApiError>;
