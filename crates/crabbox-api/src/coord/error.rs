//! The stable error body: `{"error":"<code>","message":"<text>"}` plus optional extra fields.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An error as the coordinator returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Extra fields some errors carry (`lease`, `fields`, `provider`, `missing`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(code: impl Into<String>) -> Self {
        Self {
            error: code.into(),
            message: None,
            extra: Map::new(),
        }
    }

    #[must_use]
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    #[must_use]
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.extra.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{}: {m}", self.error),
            None => f.write_str(&self.error),
        }
    }
}
