//! Loads configuration for a command: finds the files (the user file; the git root's and then
//! the current directory's `crabbox.yaml` / `.crabbox.yaml`; or only `CRABBOX_CONFIG`), reads
//! them and the `CRABBOX_*` environment, and resolves them with the flags through
//! `crabbox_core::config`, which owns the keys, precedence, origins and validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crabbox_api::ExitStatus;
use crabbox_core::config::{self, Config, ConfigInputs, FlagValue, Resolved, config_files};

use crate::error::CliError;

/// Resolved configuration and the files it came from.
#[derive(Debug)]
pub struct Settings {
    resolved: Resolved,
    /// Config files that were read, lowest precedence first.
    pub files: Vec<PathBuf>,
}

fn read(path: &Path) -> Result<Option<(PathBuf, String)>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some((path.to_owned(), text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CliError::msg(
            ExitStatus::Usage,
            format!("could not read config {}: {e}", path.display()),
        )),
    }
}

impl Settings {
    /// Loads configuration for a command run in `cwd` (inside `git_root`, if any).
    pub fn load(
        cwd: &Path,
        git_root: Option<&Path>,
        flags: Vec<FlagValue>,
    ) -> Result<Self, CliError> {
        // Crabbox's own variables, and the few of other tools a key falls back to (AWS_REGION).
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CRABBOX_") || config::env_names().any(|n| n == k))
            .collect();
        let explicit = env.get("CRABBOX_CONFIG").map(PathBuf::from);
        let planned = config_files(explicit.as_deref(), Some(&crate::paths::config_home()), cwd);
        let mut repo_paths = Vec::new();
        if let (None, Some(root)) = (&explicit, git_root.filter(|root| *root != cwd)) {
            repo_paths.extend(config::REPO_CONFIG_NAMES.iter().map(|name| root.join(name)));
        }
        repo_paths.extend(planned.repo);
        let user = match &planned.user {
            Some(path) => read(path)?,
            None => None,
        };
        let mut repo = Vec::new();
        for path in &repo_paths {
            repo.extend(read(path)?);
        }
        let files = user
            .iter()
            .chain(repo.iter())
            .map(|(p, _)| p.clone())
            .collect();
        let inputs = ConfigInputs {
            user,
            repo,
            env,
            flags,
        };
        let resolved = config::resolve(&inputs).map_err(|e| CliError::new(ExitStatus::Usage, e))?;
        Ok(Self { resolved, files })
    }

    pub fn config(&self) -> &Config {
        self.resolved.config()
    }

    /// Where a key's value came from (`default`, `repo:/path`, `env:NAME`, `flag:--x`).
    pub fn origin(&self, key: &str) -> String {
        self.resolved
            .origin(key)
            .map_or_else(|| "default".to_owned(), ToString::to_string)
    }

    pub fn warnings(&self) -> &[String] {
        self.resolved.warnings()
    }

    /// `config show` lines.
    pub fn show_text(&self) -> String {
        config::render_show(&self.resolved)
    }

    /// `config show --json`.
    pub fn show_json(&self) -> serde_json::Value {
        let mut value = config::show_json(&self.resolved);
        if let Some(map) = value.as_object_mut() {
            map.insert("files".into(), serde_json::json!(self.files));
        }
        value
    }
}
