//! The few git facts sync planning needs: whether a directory is a work-tree root, where its
//! git directory lives, the index checksum, and running git with stable output settings.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

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

/// Identifies the current index without parsing it: its trailing checksum, or,
/// when `index.skipHash` left that trailer zeroed, a SHA-256 of the whole file. A missing
/// index (nothing ever staged) yields an empty identity.
pub(crate) fn index_identity(git_dir: &Path) -> Result<Vec<u8>, SyncError> {
    let path = git_dir.join("index");
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SyncError::io(path, e)),
    };
    let len = file.metadata().map_err(|e| SyncError::io(&path, e))?.len();
    // The trailer is a SHA-1 (20 bytes) or SHA-256 (32 bytes) of everything before it; its
    // last 20 bytes identify the index contents either way.
    let tail_len = len.min(20);
    let mut tail = vec![0; tail_len as usize];
    file.seek(SeekFrom::Start(len - tail_len))
        .and_then(|_| file.read_exact(&mut tail))
        .map_err(|e| SyncError::io(&path, e))?;
    if tail.len() == 20 && tail.iter().any(|b| *b != 0) {
        return Ok(tail);
    }
    let mut whole = Vec::with_capacity(len as usize);
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut whole))
        .map_err(|e| SyncError::io(&path, e))?;
    Ok(Sha256::digest(&whole).to_vec())
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
