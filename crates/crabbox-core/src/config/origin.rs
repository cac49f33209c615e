//! Where a resolved configuration value came from, so `config show` can say it and the trust
//! rules can tell a repository's settings from the user's own.

use std::fmt;
use std::path::PathBuf;

/// The layer that set a value, from lowest to highest precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Nothing set it; the compiled default applies.
    Default,
    /// The user config file at this path.
    User(PathBuf),
    /// A repository config file at this path (`crabbox.yaml`, `.crabbox.yaml`).
    Repo(PathBuf),
    /// The environment variable with this name.
    Env(String),
    /// The command-line flag with this name, as the user typed it (`--ttl`).
    Flag(String),
}

impl Origin {
    /// The place named in error messages: a file path, `env CRABBOX_TTL` or `flag --ttl`.
    pub(crate) fn location(&self) -> String {
        match self {
            Self::Default => "defaults".to_owned(),
            Self::User(path) | Self::Repo(path) => path.display().to_string(),
            Self::Env(name) => format!("env {name}"),
            Self::Flag(name) => format!("flag {name}"),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::User(path) => write!(f, "user:{}", path.display()),
            Self::Repo(path) => write!(f, "repo:{}", path.display()),
            Self::Env(name) => write!(f, "env:{name}"),
            Self::Flag(name) => write!(f, "flag:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_location() {
        assert_eq!(Origin::Default.to_string(), "default");
        assert_eq!(
            Origin::User("/h/config.yaml".into()).to_string(),
            "user:/h/config.yaml"
        );
        assert_eq!(
            Origin::Repo("/r/crabbox.yaml".into()).to_string(),
            "repo:/r/crabbox.yaml"
        );
        assert_eq!(
            Origin::Env("CRABBOX_TTL".into()).to_string(),
            "env:CRABBOX_TTL"
        );
        assert_eq!(Origin::Flag("--ttl".into()).to_string(), "flag:--ttl");
        assert_eq!(
            Origin::Repo("/r/crabbox.yaml".into()).location(),
            "/r/crabbox.yaml"
        );
        assert_eq!(
            Origin::Env("CRABBOX_TTL".into()).location(),
            "env CRABBOX_TTL"
        );
        assert_eq!(Origin::Flag("--ttl".into()).location(), "flag --ttl");
    }
}
