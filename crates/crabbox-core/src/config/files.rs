//! Which config files to read (spec/cli-dataplane.md §3.1), as a pure plan; the caller reads
//! them and skips the ones that do not exist.

use std::path::{Path, PathBuf};

/// Repo config file names in the current directory, in the order they are applied.
pub const REPO_CONFIG_NAMES: [&str; 2] = ["crabbox.yaml", ".crabbox.yaml"];

/// The config files to read, by layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFiles {
    /// The user config file; also where `login` and `config set-broker` write.
    pub user: Option<PathBuf>,
    /// Repo config files, applied in order.
    pub repo: Vec<PathBuf>,
}

/// Plans the files to read. `explicit` is `CRABBOX_CONFIG`, which replaces the whole search
/// with that one file (taken as the user's file, since writes go there too).
/// `user_config_dir` is the platform config directory (`~/.config` on Linux), if known.
/// Repo files are looked up in `cwd`, not the git root, as the old tool does.
pub fn config_files(
    explicit: Option<&Path>,
    user_config_dir: Option<&Path>,
    cwd: &Path,
) -> ConfigFiles {
    if let Some(path) = explicit.filter(|path| !path.as_os_str().is_empty()) {
        return ConfigFiles {
            user: Some(cwd.join(path)),
            repo: Vec::new(),
        };
    }
    ConfigFiles {
        user: user_config_dir.map(|dir| dir.join("crabbox").join("config.yaml")),
        repo: REPO_CONFIG_NAMES
            .iter()
            .map(|name| cwd.join(name))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_search_and_override() {
        let cwd = Path::new("/src/app");
        let files = config_files(None, Some(Path::new("/home/u/.config")), cwd);
        assert_eq!(
            files.user,
            Some(PathBuf::from("/home/u/.config/crabbox/config.yaml"))
        );
        assert_eq!(
            files.repo,
            [cwd.join("crabbox.yaml"), cwd.join(".crabbox.yaml")]
        );
        let files = config_files(Some(Path::new("ci/crabbox.yaml")), None, cwd);
        assert_eq!(
            files,
            ConfigFiles {
                user: Some(cwd.join("ci/crabbox.yaml")),
                repo: Vec::new()
            }
        );
        let files = config_files(Some(Path::new("")), None, cwd);
        assert_eq!((files.user, files.repo.len()), (None, 2));
    }
}
