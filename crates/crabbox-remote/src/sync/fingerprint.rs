//! The local sync fingerprint: a hash that changes whenever what a sync would send changes,
//! cheap enough to compute on every run so a warm runner can skip an unchanged sync.
//!
//! For a git work tree it costs one `git status` plus a few `lstat` calls: a clean tracked
//! file is fully described by HEAD, so only the paths `git status` reports (modified, staged,
//! renamed, deleted, unmerged, untracked) are looked at, and only their stat data is hashed.
//! The index needs no hashing of its own: every path where it differs from HEAD is a status
//! record, and the record carries the index's mode and object id for it.
//!
//! `git status` runs in its default untracked mode (untracked directories as one `dir/`
//! record), which is what lets git's untracked cache skip reading unchanged directories; on a
//! 100k-file tree that halves the cost. Crabbox turns the cache on for its own `git status`
//! (git then keeps it in the index, so the user's `git status` gets faster too) unless a git
//! config file already says something about `core.untrackedCache` or `feature.manyFiles`.
//! Untracked directories are then expanded with one `git ls-files --others`, except those the
//! exclude rules prune entirely (an un-ignored `node_modules/` is never listed).
//!
//! Why stat data rather than contents: reading every changed file would make the check cost
//! O(bytes changed), and one large untracked artifact would dominate every run. Mode, size,
//! mtime and ctime in nanoseconds change on every write, chmod and rename, and ctime cannot be
//! set back by tools like `touch -d`. The remaining risk is tiny: a rewrite that keeps the
//! size and lands in the same filesystem timestamp tick (a few milliseconds on Linux's coarse
//! clock) as the write we already hashed, with our `lstat` in between. Git closes the same
//! window for its index by re-reading "racily clean" files; we accept it, since the next write
//! to that file is seen again and `--full-resync` never consults the fingerprint.
//!
//! Files git is told not to look at (`update-index --assume-unchanged` / `--skip-worktree`)
//! are invisible to `git status` and therefore to the fingerprint, exactly as to git itself.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::exclude::Verdict;
use super::manifest::ManifestOptions;
use super::{SyncError, git, walk};

/// Bump when the hashed inputs or their encoding change.
const VERSION: &str = "crabbox-fp-v2";
/// Above this many bytes of untracked directory names, list all untracked files and filter,
/// rather than passing the directories as pathspecs.
const PATHSPEC_MAX_BYTES: usize = 64 * 1024;

/// Everything besides the tree that makes two syncs differ.
#[derive(Debug, Clone, Copy)]
pub struct FingerprintOptions<'a> {
    /// The exclude rules and include whitelist (hashed as `origin:pattern` lines).
    pub scope: &'a ManifestOptions,
    /// `sync.delete`.
    pub delete: bool,
    /// `--checksum` rsync mode.
    pub checksum: bool,
    /// Anything else the caller wants to key the fingerprint on (remote workdir, flags).
    pub extra: &'a [String],
}

/// Locally changed paths in sync scope, for the guardrails and delta syncs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirtyDelta {
    /// Modified, staged, renamed (both names), deleted, unmerged and untracked paths.
    pub paths: Vec<String>,
    /// Bytes on disk of those that still exist.
    pub bytes: u64,
}

/// The fingerprint of a sync root and the git facts gathered on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalState {
    /// Lowercase hex SHA-256.
    pub fingerprint: String,
    pub is_git: bool,
    /// HEAD commit; `None` outside git or before the first commit.
    pub head: Option<String>,
    /// Current branch; `None` outside git or on a detached HEAD.
    pub branch: Option<String>,
    /// Empty outside git.
    pub dirty: DirtyDelta,
}

/// Computes the fingerprint of `root` with one `git status` (git work-tree root) or one walk.
pub fn local_state(root: &Path, opts: &FingerprintOptions<'_>) -> Result<LocalState, SyncError> {
    let h = seeded(opts);
    match git::git_dir(root) {
        Some(git_dir) => from_status(root, &git_dir, opts.scope, h),
        None => from_walk(root, opts.scope, h),
    }
}

/// A digest of everything besides the tree that goes into the fingerprint (the watcher's
/// cache keys on it).
pub(crate) fn options_digest(opts: &FingerprintOptions<'_>) -> String {
    seeded(opts).finish()
}

/// The hasher after the version and the options.
fn seeded(opts: &FingerprintOptions<'_>) -> Hasher {
    let mut h = Hasher::default();
    h.str(VERSION);
    let rules = opts.scope.excludes.rules();
    h.num(rules.len() as u64);
    for rule in rules {
        h.str(&rule.to_string());
    }
    let include: Vec<&str> = opts.scope.include.texts().collect();
    h.num(include.len() as u64);
    for p in &include {
        h.str(p);
    }
    h.num(u64::from(opts.delete));
    h.num(u64::from(opts.checksum));
    h.num(opts.extra.len() as u64);
    for e in opts.extra {
        h.str(e);
    }
    h
}

fn from_walk(root: &Path, scope: &ManifestOptions, mut h: Hasher) -> Result<LocalState, SyncError> {
    h.str("walk");
    let walked = walk::walk(root, &scope.excludes, &scope.include)?;
    h.num(walked.files.len() as u64);
    for file in &walked.files {
        h.str(&file.path);
        h.stat(Some(&file.meta));
    }
    Ok(LocalState {
        fingerprint: h.finish(),
        is_git: false,
        head: None,
        branch: None,
        dirty: DirtyDelta::default(),
    })
}

/// One path reported by `git status --porcelain=v2`.
#[derive(Debug, PartialEq, Eq)]
struct StatusEntry<'a> {
    /// Every field before the path (type, XY, modes, object ids, rename score), hashed as-is.
    fields: &'a [u8],
    path: &'a [u8],
    /// The source path of a rename or copy.
    orig: Option<&'a [u8]>,
    tracked: bool,
}

/// Parsed `git status --porcelain=v2 -z --branch` output.
#[derive(Debug, Default, PartialEq, Eq)]
struct Status<'a> {
    head: Option<&'a str>,
    branch: Option<&'a str>,
    /// `branch.upstream` and `branch.ab` headers: a moved upstream changes what is pushed.
    tracking: Vec<&'a [u8]>,
    entries: Vec<StatusEntry<'a>>,
}

fn parse_status(out: &[u8]) -> Status<'_> {
    let mut status = Status::default();
    let mut records = out.split(|b| *b == 0).filter(|r| !r.is_empty());
    while let Some(record) = records.next() {
        if let Some(header) = record.strip_prefix(b"# ") {
            let text = std::str::from_utf8(header).unwrap_or_default();
            if let Some(oid) = text.strip_prefix("branch.oid ") {
                status.head = Some(oid).filter(|o| *o != "(initial)");
            } else if let Some(name) = text.strip_prefix("branch.head ") {
                status.branch = Some(name).filter(|n| *n != "(detached)");
            } else if text.starts_with("branch.upstream ") || text.starts_with("branch.ab ") {
                status.tracking.push(header);
            }
            continue;
        }
        // Fields before the path: `1` has 8, `2` has 9 (plus the origin path as the next
        // record), `u` has 10; `?` and `!` have 1.
        let (fields, tracked) = match record.first() {
            Some(b'1') => (8, true),
            Some(b'2') => (9, true),
            Some(b'u') => (10, true),
            Some(b'?') => (1, false),
            _ => continue,
        };
        let orig = if record[0] == b'2' {
            records.next()
        } else {
            None
        };
        let mut parts = record.splitn(fields + 1, |b| *b == b' ');
        let head: Vec<&[u8]> = parts.by_ref().take(fields).collect();
        let Some(path) = parts.next() else { continue };
        // Submodules (`S...` in the sub field) are not synced, like gitlinks in the manifest.
        if tracked && head.get(2).is_some_and(|sub| sub.starts_with(b"S")) {
            continue;
        }
        status.entries.push(StatusEntry {
            fields: &record[..record.len() - path.len() - 1],
            path,
            orig,
            tracked,
        });
    }
    status
}

fn from_status(
    root: &Path,
    git_dir: &Path,
    scope: &ManifestOptions,
    mut h: Hasher,
) -> Result<LocalState, SyncError> {
    let mut args = Vec::with_capacity(8);
    if !git::untracked_cache_configured(git_dir) {
        args.extend(["-c", "core.untrackedCache=true"]);
    }
    args.extend([
        "status",
        "--porcelain=v2",
        "-z",
        "--branch",
        "--untracked-files=normal",
    ]);
    let out = git::run(root, &args)?;
    let status = parse_status(&out);
    h.str("git");
    h.str(status.head.unwrap_or_default());
    h.str(status.branch.unwrap_or_default());
    h.num(status.tracking.len() as u64);
    for line in &status.tracking {
        h.bytes(line);
    }
    let mut dirty = DirtyDelta::default();
    let mut add = |h: &mut Hasher, kind: &[u8], path: &str| {
        let meta = std::fs::symlink_metadata(root.join(path)).ok();
        h.bytes(kind);
        h.str(path);
        h.stat(meta.as_ref());
        dirty.bytes += meta.as_ref().map_or(0, Metadata::len);
        dirty.paths.push(path.to_owned());
    };
    let mut untracked_dirs = Vec::new();
    for entry in &status.entries {
        let names = std::iter::once((entry.path, entry.fields))
            .chain(entry.orig.map(|o| (o, &b"orig"[..])));
        for (raw, kind) in names {
            let Ok(path) = std::str::from_utf8(raw) else {
                continue;
            };
            if let Some(dir) = path.strip_suffix('/') {
                if !entry.tracked && may_hold_synced_files(scope, dir) {
                    untracked_dirs.push(dir);
                }
                continue;
            }
            if in_scope(scope, path, entry.tracked) {
                add(&mut h, kind, path);
            }
        }
    }
    h.str("untracked dirs");
    for path in untracked_files(root, &untracked_dirs)? {
        if in_scope(scope, &path, false) {
            add(&mut h, b"?", &path);
        }
    }
    Ok(LocalState {
        fingerprint: h.finish(),
        is_git: true,
        head: status.head.map(str::to_owned),
        branch: status.branch.map(str::to_owned),
        dirty,
    })
}

/// Whether an untracked directory can contain anything the rules would sync.
fn may_hold_synced_files(scope: &ManifestOptions, dir: &str) -> bool {
    let comps: Vec<&str> = dir.split('/').collect();
    !scope.excludes.prunes_dir(&comps) && scope.include.may_contain(&comps)
}

/// The untracked, not ignored files below `dirs` (sorted, as git lists them). Nested
/// repositories (listed as `dir/`) and names that are not UTF-8 are left out, as in the
/// manifest.
fn untracked_files(root: &Path, dirs: &[&str]) -> Result<Vec<String>, SyncError> {
    if dirs.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![
        "--literal-pathspecs",
        "ls-files",
        "-z",
        "--others",
        "--exclude-standard",
    ];
    let prefixes: Vec<String> = dirs.iter().map(|d| format!("{d}/")).collect();
    let by_pathspec = prefixes.iter().map(String::len).sum::<usize>() <= PATHSPEC_MAX_BYTES;
    if by_pathspec {
        args.push("--");
        args.extend(prefixes.iter().map(String::as_str));
    }
    let out = git::run(root, &args)?;
    Ok(out
        .split(|b| *b == 0)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .filter(|p| !p.is_empty() && !p.ends_with('/'))
        .filter(|p| by_pathspec || prefixes.iter().any(|d| p.starts_with(d.as_str())))
        .map(str::to_owned)
        .collect())
}

fn in_scope(scope: &ManifestOptions, path: &str, tracked: bool) -> bool {
    let comps: Vec<&str> = path.split('/').collect();
    !matches!(
        scope.excludes.verdict_of(&comps, false, tracked),
        Verdict::Excluded(_)
    ) && scope.include.matches_comps(&comps, false)
}

/// SHA-256 over length-prefixed fields, so no two field sequences hash alike.
#[derive(Debug, Default)]
struct Hasher(Sha256);

impl Hasher {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn num(&mut self, n: u64) {
        self.0.update(n.to_le_bytes());
    }

    /// Mode, size, mtime and ctime to the nanosecond; a distinct marker for a missing path.
    fn stat(&mut self, meta: Option<&Metadata>) {
        let Some(m) = meta else {
            self.0.update([0]);
            return;
        };
        self.0.update([1]);
        self.0.update(m.mode().to_le_bytes());
        self.0.update(m.size().to_le_bytes());
        for t in [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()] {
            self.0.update(t.to_le_bytes());
        }
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::exclude::{ExcludeRules, IncludeRules};
    use super::super::testing::{GitRepo, write};
    use super::*;

    fn scope(exclude: &[&str]) -> ManifestOptions {
        let exclude: Vec<String> = exclude.iter().map(|s| (*s).to_owned()).collect();
        ManifestOptions {
            excludes: ExcludeRules::new(&exclude, ""),
            include: IncludeRules::default(),
        }
    }

    fn fp(root: &Path, scope: &ManifestOptions) -> LocalState {
        local_state(
            root,
            &FingerprintOptions {
                scope,
                delete: true,
                checksum: false,
                extra: &[],
            },
        )
        .unwrap()
    }

    fn committed_repo() -> GitRepo {
        let repo = GitRepo::new();
        write(repo.path(), ".gitignore", "*.tmp\n");
        write(repo.path(), "src/main.rs", "fn main() {}\n");
        write(repo.path(), "README.md", "hello\n");
        write(repo.path(), "dist/app.js", "tracked\n");
        repo.git(&["add", "-A", "-f"]);
        repo.git(&["commit", "-qm", "init"]);
        repo
    }

    #[test]
    fn git_fingerprint_tracks_every_kind_of_change() {
        let repo = committed_repo();
        let root = repo.path();
        let scope = scope(&[]);
        let first = fp(root, &scope);
        assert!(first.is_git);
        assert_eq!(first.branch.as_deref(), Some("main"));
        assert_eq!(
            first.head.as_deref(),
            Some(repo.git(&["rev-parse", "HEAD"]).as_str())
        );
        assert!(first.dirty.paths.is_empty());
        assert_eq!(fp(root, &scope), first, "stable without changes");

        let mut seen = vec![first.fingerprint];
        let mut step = |what: &str, change: &dyn Fn()| {
            change();
            let state = fp(root, &scope);
            assert!(
                !seen.contains(&state.fingerprint),
                "{what} did not change the fingerprint"
            );
            assert_eq!(
                fp(root, &scope).fingerprint,
                state.fingerprint,
                "{what}: unstable"
            );
            seen.push(state.fingerprint.clone());
            state
        };
        let s = step("modify", &|| write(root, "README.md", "hello world\n"));
        assert_eq!(s.dirty.paths, ["README.md"]);
        assert_eq!(s.dirty.bytes, 12);
        step("modify again", &|| {
            write(root, "README.md", "hello again!\n");
        });
        step("add", &|| write(root, "new.txt", "new"));
        step("stage", &|| {
            repo.git(&["add", "new.txt"]);
        });
        step("delete", &|| {
            std::fs::remove_file(root.join("src/main.rs")).unwrap();
        });
        step("chmod", &|| {
            let path = root.join("dist/app.js");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        });
        let s = step("rename", &|| {
            repo.git(&["mv", "README.md", "README.txt"]);
        });
        assert!(s.dirty.paths.contains(&"README.txt".to_owned()));
        assert!(s.dirty.paths.contains(&"README.md".to_owned()));
        step("commit", &|| {
            repo.git(&["add", "-A"]);
            repo.git(&["commit", "-qm", "second"]);
        });
        step("switch branch", &|| {
            repo.git(&["checkout", "-q", "-b", "topic"]);
        });
    }

    #[test]
    fn git_fingerprint_ignores_excluded_and_ignored_paths_but_not_rule_changes() {
        let repo = committed_repo();
        let root = repo.path();
        let base = scope(&[]);
        write(root, "node_modules/pkg/index.js", "v1");
        write(root, "dist/local.js", "untracked build output");
        let before = fp(root, &base);
        write(root, "node_modules/pkg/index.js", "version 2");
        write(root, "dist/local.js", "rebuilt build output");
        write(root, "scratch.tmp", "gitignored");
        write(root, ".crabbox/logs/run.log", "protected");
        let after = fp(root, &base);
        assert_eq!(before.fingerprint, after.fingerprint);
        assert!(after.dirty.paths.is_empty());

        let with_rule = fp(root, &scope(&["*.md"]));
        assert_ne!(with_rule.fingerprint, after.fingerprint);
        let negated = fp(root, &scope(&["!*.md"]));
        assert_ne!(negated.fingerprint, with_rule.fingerprint);
        let flags = local_state(
            root,
            &FingerprintOptions {
                scope: &base,
                delete: false,
                checksum: false,
                extra: &[],
            },
        )
        .unwrap();
        assert_ne!(flags.fingerprint, after.fingerprint);
        let extra = ["workdir=/x".to_owned()];
        let keyed = local_state(
            root,
            &FingerprintOptions {
                scope: &base,
                delete: true,
                checksum: false,
                extra: &extra,
            },
        )
        .unwrap();
        assert_ne!(keyed.fingerprint, after.fingerprint);
    }

    #[test]
    fn walk_fingerprint_for_plain_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let scope = scope(&[]);
        write(root, "a.txt", "a");
        write(root, "target/out.bin", "x");
        let first = fp(root, &scope);
        assert!(!first.is_git && first.head.is_none());
        assert_eq!(fp(root, &scope).fingerprint, first.fingerprint);
        write(root, "target/out.bin", "rebuilt");
        assert_eq!(fp(root, &scope).fingerprint, first.fingerprint);
        write(root, "a.txt", "changed");
        let changed = fp(root, &scope);
        assert_ne!(changed.fingerprint, first.fingerprint);
        std::fs::remove_file(root.join("a.txt")).unwrap();
        assert_ne!(fp(root, &scope).fingerprint, changed.fingerprint);
    }

    #[test]
    fn files_inside_untracked_directories_count() {
        let repo = committed_repo();
        let root = repo.path();
        let scope = scope(&[]);
        write(root, "new dir/sub/a.txt", "a");
        write(root, "new dir/b.txt", "b");
        write(root, "new dir/skip.tmp", "gitignored");
        write(
            root,
            "node_modules/pkg/index.js",
            "not gitignored, but excluded",
        );
        let first = fp(root, &scope);
        assert_eq!(first.dirty.paths, ["new dir/b.txt", "new dir/sub/a.txt"]);
        assert_eq!(first.dirty.bytes, 2);
        write(root, "new dir/sub/a.txt", "changed");
        let changed = fp(root, &scope);
        assert_ne!(changed.fingerprint, first.fingerprint);
        write(root, "new dir/sub/deeper/c.txt", "c");
        let added = fp(root, &scope);
        assert_ne!(added.fingerprint, changed.fingerprint);
        assert_eq!(added.dirty.paths.len(), 3);
        write(root, "node_modules/pkg/index.js", "rebuilt");
        assert_eq!(fp(root, &scope).fingerprint, added.fingerprint);
    }

    #[test]
    fn index_rewrites_that_change_nothing_synced_keep_the_fingerprint() {
        let repo = committed_repo();
        let root = repo.path();
        let scope = scope(&[]);
        let first = fp(root, &scope);
        // A gitignored file in a tracked directory changes the directory, which makes git
        // refresh the untracked cache in the index; nothing synced changed.
        write(root, "src/build.tmp", "ignored");
        repo.git(&["update-index", "--really-refresh"]);
        assert_eq!(fp(root, &scope).fingerprint, first.fingerprint);
        // Staging new content of an already modified file does change it.
        write(root, "README.md", "one\n");
        let modified = fp(root, &scope);
        repo.git(&["add", "README.md"]);
        let staged = fp(root, &scope);
        assert_ne!(staged.fingerprint, modified.fingerprint);
        write(root, "README.md", "two\n");
        let modified_again = fp(root, &scope);
        repo.git(&["add", "README.md"]);
        assert_ne!(fp(root, &scope).fingerprint, modified_again.fingerprint);
    }

    #[test]
    fn status_parsing_handles_every_record_type() {
        let out = b"# branch.oid 0123\0# branch.head (detached)\0# branch.upstream origin/main\0\
# branch.ab +1 -0\0\
1 .M N... 100644 100644 100644 aa bb a file.txt\0\
2 R. N... 100644 100644 100644 aa bb R100 new name\0old name\0\
1 .M SC.. 160000 160000 160000 aa bb vendor/sub\0\
u UU N... 100644 100644 100644 100644 aa bb cc conflict.rs\0\
? dir/untracked one\0? new dir/\0";
        let status = parse_status(out);
        assert_eq!(status.head, Some("0123"));
        assert_eq!(status.branch, None);
        assert_eq!(
            status.tracking,
            [&b"branch.upstream origin/main"[..], b"branch.ab +1 -0"]
        );
        let expected = [
            StatusEntry {
                fields: b"1 .M N... 100644 100644 100644 aa bb",
                path: b"a file.txt",
                orig: None,
                tracked: true,
            },
            StatusEntry {
                fields: b"2 R. N... 100644 100644 100644 aa bb R100",
                path: b"new name",
                orig: Some(b"old name"),
                tracked: true,
            },
            StatusEntry {
                fields: b"u UU N... 100644 100644 100644 100644 aa bb cc",
                path: b"conflict.rs",
                orig: None,
                tracked: true,
            },
            StatusEntry {
                fields: b"?",
                path: b"dir/untracked one",
                orig: None,
                tracked: false,
            },
            StatusEntry {
                fields: b"?",
                path: b"new dir/",
                orig: None,
                tracked: false,
            },
        ];
        assert_eq!(status.entries, expected);
    }
}
