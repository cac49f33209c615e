//! The few git facts sync planning needs: whether a directory is a work-tree root, where its
//! git directory lives, whether the user configured git's untracked cache, and running git with
//! stable output settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::SyncError;

/// Variables that would point git at another repository or index than the one under `root`.
const REDIRECTING_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_NAMESPACE",
];

/// Runs `git -c core.quotepath=off <args>` in `root` and returns its stdout.
pub(crate) fn run(root: &Path, args: &[&str]) -> Result<Vec<u8>, SyncError> {
    let mut cmd = Command::new("git");
    cmd.current_dir(root)
        .args(["-c", "core.quotepath=off"])
        .args(args)
        .stdin(Stdio::null());
    for var in REDIRECTING_ENV {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(|source| SyncError::GitSpawn {
        root: root.to_owned(),
        source,
    })?;
    if !out.status.success() {
        return Err(SyncError::GitFailed {
            root: root.to_owned(),
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

/// Paths that differ between two commits (both names of a rename), for a delta sync after HEAD
/// moved. Names that are not UTF-8 are left out, as the manifest leaves them out.
pub fn changed_between(root: &Path, from: &str, to: &str) -> Result<Vec<String>, SyncError> {
    let out = run(
        root,
        &["diff", "--name-only", "--no-renames", "-z", from, to, "--"],
    )?;
    Ok(out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .filter_map(|p| std::str::from_utf8(p).ok().map(str::to_owned))
        .collect())
}

/// Whether `root` is the top of a git work tree (has a `.git` directory or file).
pub fn is_git_root(root: &Path) -> bool {
    git_dir(root).is_some()
}

/// The git directory of the work tree at `root`: `.git` itself, or the directory a `.git`
/// file (worktrees, submodules) points to.
pub fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    let meta = std::fs::metadata(&dot_git).ok()?;
    if meta.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let target = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    Some(root.join(target))
}

/// Whether any git config file this repository reads says something about
/// `core.untrackedCache` (or `feature.manyFiles`, which sets it), in which case Crabbox leaves
/// the choice to it. A plain text search: files pulled in by `include` are not followed.
pub(crate) fn untracked_cache_configured(git_dir: &Path) -> bool {
    let env = |key: &str| std::env::var_os(key).map(PathBuf::from);
    let mut files = vec![git_dir.join("config"), git_dir.join("config.worktree")];
    if let Ok(common) = std::fs::read_to_string(git_dir.join("commondir")) {
        files.push(git_dir.join(common.trim()).join("config"));
    }
    if let Some(global) = env("GIT_CONFIG_GLOBAL") {
        files.push(global);
    } else {
        let home = env("HOME");
        files.extend(home.as_ref().map(|h| h.join(".gitconfig")));
        let xdg = env("XDG_CONFIG_HOME").or_else(|| home.map(|h| h.join(".config")));
        files.extend(xdg.map(|x| x.join("git").join("config")));
    }
    if std::env::var_os("GIT_CONFIG_NOSYSTEM").is_none() {
        files.push(env("GIT_CONFIG_SYSTEM").unwrap_or_else(|| "/etc/gitconfig".into()));
    }
    let mentions = |text: &[u8]| {
        let text = text.to_ascii_lowercase();
        [&b"untrackedcache"[..], b"manyfiles"]
            .iter()
            .any(|key| text.windows(key.len()).any(|w| w == *key))
    };
    std::env::vars_os().any(|(k, v)| {
        k.to_string_lossy().starts_with("GIT_CONFIG_") && mentions(v.as_encoded_bytes())
    }) || files
        .iter()
        .any(|f| std::fs::read(f).is_ok_and(|text| mentions(&text)))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{GitRepo, write};
    use super::*;

    #[test]
    fn changed_between_lists_both_names_of_a_rename() {
        let repo = GitRepo::new();
        let root = repo.path();
        write(root, "a.txt", "a");
        write(root, "b.txt", "b");
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-qm", "one"]);
        let first = repo.git(&["rev-parse", "HEAD"]);
        repo.git(&["mv", "a.txt", "c.txt"]);
        write(root, "b.txt", "bb");
        repo.git(&["commit", "-qam", "two"]);
        let second = repo.git(&["rev-parse", "HEAD"]);
        assert_eq!(
            changed_between(root, &first, &second).unwrap(),
            ["a.txt", "b.txt", "c.txt"]
        );
        assert!(changed_between(root, &first, "0000000").is_err());
    }
}
