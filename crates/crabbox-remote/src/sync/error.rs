//! The one error type of sync planning.

use std::path::PathBuf;

/// Why a manifest or fingerprint could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("could not start git in {root}")]
    GitSpawn {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git {args} failed in {root}: {stderr}")]
    GitFailed {
        root: PathBuf,
        args: String,
        stderr: String,
    },
    #[error("could not read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{count} tracked paths in sync scope are hidden by sparse checkout/skip-worktree (first: {}); \
         exclude them with sync.exclude or .crabboxignore, or run `git sparse-checkout disable`",
        examples.join(", ")
    )]
    SkipWorktree { count: usize, examples: Vec<String> },
}

impl SyncError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
