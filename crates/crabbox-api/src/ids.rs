//! Lease, run and checkpoint identifiers (spec/cli-dataplane.md §2).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A canonical lease id: `cbx_` followed by 12 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(String);

/// A run id: `run_` followed by 12 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

/// Error for a string that is not a canonical identifier.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a canonical {kind} id (expected {kind_prefix}<12 lowercase hex>)")]
pub struct IdError {
    value: String,
    kind: &'static str,
    kind_prefix: &'static str,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system random source is available");
    hex::encode(buf)
}

fn is_canonical(value: &str, prefix: &str, hex_len: usize) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == hex_len
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl LeaseId {
    /// Mints a fresh random lease id.
    pub fn generate() -> Self {
        Self(format!("cbx_{}", random_hex(6)))
    }

    /// Whether `value` has the canonical lease id shape; anything else is treated as a slug.
    pub fn is_canonical(value: &str) -> bool {
        is_canonical(value, "cbx_", 12)
    }

    /// Parses a canonical lease id.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if Self::is_canonical(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError {
                value: value.to_owned(),
                kind: "lease",
                kind_prefix: "cbx_",
            })
        }
    }

    /// Wraps an id a provider chose (for example `static_<host>` for static hosts) without
    /// checking its shape.
    pub fn from_provider(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl RunId {
    /// Mints a fresh random run id.
    pub fn generate() -> Self {
        Self(format!("run_{}", random_hex(6)))
    }

    pub fn parse(value: &str) -> Result<Self, IdError> {
        if is_canonical(value, "run_", 12) {
            Ok(Self(value.to_owned()))
        } else {
            Err(IdError {
                value: value.to_owned(),
                kind: "run",
                kind_prefix: "run_",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_canonical_and_distinct() {
        let a = LeaseId::generate();
        let b = LeaseId::generate();
        assert!(LeaseId::is_canonical(a.as_str()), "{a}");
        assert_ne!(a, b);
        assert!(RunId::parse(RunId::generate().as_str()).is_ok());
    }

    #[test]
    fn canonical_shape_is_strict() {
        assert!(LeaseId::is_canonical("cbx_0123456789ab"));
        assert!(!LeaseId::is_canonical("cbx_0123456789AB"));
        assert!(!LeaseId::is_canonical("cbx_0123456789a"));
        assert!(!LeaseId::is_canonical("amber-crab"));
        let err = LeaseId::parse("blue-krill").unwrap_err().to_string();
        assert!(
            err.contains("\"blue-krill\" is not a canonical lease id"),
            "{err}"
        );
    }
}
