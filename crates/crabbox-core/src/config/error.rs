//! Errors from reading configuration. Each names the file, env var or flag, the key, what was
//! wrong and the form that would have worked.

use std::path::PathBuf;

use super::origin::Origin;
use crate::duration::DurationError;
use crate::machine::UnknownWord;

/// A configuration layer that cannot be used. Bad values are errors; unknown keys are only
/// warnings (see [`super::Resolved::warnings`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid yaml in {}{}", path.display(), at_line(*line))]
    Yaml {
        path: PathBuf,
        line: Option<usize>,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{} must be a mapping of config keys at the top level, found {found}", path.display())]
    NotAMapping { path: PathBuf, found: &'static str },
    #[error("invalid value for {key:?} in {}: {problem}", origin.location())]
    InvalidValue {
        /// The key as it was written, alias or not (`lease.ttl`).
        key: String,
        origin: Origin,
        problem: ValueError,
    },
    #[error("{key:?} is a secret and cannot be set by flag {flag} (use {env} or the user config)")]
    SecretFlag {
        flag: String,
        key: &'static str,
        env: &'static str,
    },
    #[error("flag {flag} sets unknown config key {key:?}")]
    UnknownFlagKey { flag: String, key: String },
    #[error(
        "{first:?} (from {}) and {second:?} (from {}) are both set; ssh takes only one, so remove one of them",
        first_origin.location(),
        second_origin.location()
    )]
    Conflict {
        first: &'static str,
        first_origin: Origin,
        second: &'static str,
        second_origin: Origin,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" at line {line}"))
        .unwrap_or_default()
}

/// What is wrong with one value, independent of where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("{0:?} must be longer than zero (use a duration like 90m)")]
    NotPositive(String),
    #[error("{0:?} is not a boolean (use true, false, yes, no, 1 or 0)")]
    NotBool(String),
    #[error("{0:?} is not a whole number (use digits like 50000)")]
    NotCount(String),
    #[error("{0:?} is not a size (use bytes like 5368709120 or a unit like 5GiB or 500MB)")]
    NotSize(String),
    #[error("{0:?} is not a port (use a number from 1 to 65535)")]
    NotPort(String),
    #[error(transparent)]
    Word(#[from] UnknownWord),
    #[error(
        "{0:?} is not a CIDR block (use an address with a prefix length, like 203.0.113.7/32 or 2001:db8::/48)"
    )]
    NotCidr(String),
    #[error("{value:?} is not a whole number from {range}")]
    NotInRange { value: String, range: &'static str },
    #[error("{value:?} is not one of {allowed}")]
    NotOneOf {
        value: String,
        allowed: &'static str,
    },
    #[error(
        "it must be a JSON array of the program and its arguments, like [\"op\", \"read\", \"op://vault/crabbox/token\"]"
    )]
    NotArgv,
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        found: &'static str,
    },
}
