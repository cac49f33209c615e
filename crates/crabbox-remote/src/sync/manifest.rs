//! The sync manifest: exactly which files rsync sends (`--files-from`), which tracked paths
//! were deleted locally, and which tracked files survived an ambiguous built-in exclude.

use std::fs::Metadata;
use std::io::ErrorKind;
use std::path::Path;

use super::exclude::{ExcludeRules, IncludeRules, Verdict};
use super::{SyncError, git, walk};

/// The rules that decide which paths are in sync scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestOptions {
    pub excludes: ExcludeRules,
    pub include: IncludeRules,
}

impl ManifestOptions {
    /// Reads `<root>/.crabboxignore` and combines it with `sync.exclude` and `sync.include`.
    pub fn load(root: &Path, exclude: &[String], include: &[String]) -> Result<Self, SyncError> {
        Ok(Self {
            excludes: ExcludeRules::load(root, exclude)?,
            include: IncludeRules::new(include),
        })
    }
}

/// One file (or symlink, which rsync copies as a link) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// POSIX path relative to the sync root.
    pub path: String,
    /// Bytes on disk (for a symlink, the length of its target).
    pub size: u64,
    pub is_symlink: bool,
}

/// A tracked file kept in the manifest although an ambiguous built-in (`dist`, `target`, …)
/// matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedTracked {
    pub path: String,
    /// The built-in pattern that would otherwise have dropped it.
    pub pattern: String,
}

/// What a sync sends, plus what it should delete and what the user should hear about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Sorted by path.
    pub files: Vec<ManifestEntry>,
    /// Tracked paths deleted locally (in scope), sorted.
    pub deleted: Vec<String>,
    pub total_bytes: u64,
    pub protected_tracked: Vec<ProtectedTracked>,
    /// Paths that cannot be synced (not UTF-8, or escaping the root), shown lossily.
    pub skipped: Vec<String>,
    pub is_git: bool,
}

impl Manifest {
    /// The NUL-separated file list for `rsync --files-from=- --from0`.
    pub fn files_from_bytes(&self) -> Vec<u8> {
        nul_join(self.files.iter().map(|f| f.path.as_str()))
    }

    /// The NUL-separated deleted list, in the same format.
    pub fn deleted_from_bytes(&self) -> Vec<u8> {
        nul_join(self.deleted.iter().map(String::as_str))
    }
}

fn nul_join<'a>(paths: impl Iterator<Item = &'a str> + Clone) -> Vec<u8> {
    let mut out = Vec::with_capacity(paths.clone().map(|p| p.len() + 1).sum());
    for path in paths {
        out.extend_from_slice(path.as_bytes());
        out.push(0);
    }
    out
}

/// Builds the manifest of `root`: from git's index and untracked files when `root` is a git
/// work-tree root, else from a directory walk.
pub fn build_manifest(root: &Path, opts: &ManifestOptions) -> Result<Manifest, SyncError> {
    if git::is_git_root(root) {
        from_git(root, opts)
    } else {
        from_walk(root, opts)
    }
}

fn from_walk(root: &Path, opts: &ManifestOptions) -> Result<Manifest, SyncError> {
    let walked = walk::walk(root, &opts.excludes, &opts.include)?;
    let files: Vec<ManifestEntry> = walked
        .files
        .into_iter()
        .map(|f| ManifestEntry {
            size: f.meta.len(),
            is_symlink: f.meta.file_type().is_symlink(),
            path: f.path,
        })
        .collect();
    Ok(Manifest {
        total_bytes: files.iter().map(|f| f.size).sum(),
        files,
        skipped: walked.skipped,
        ..Manifest::default()
    })
}

/// What `git ls-files -t -s` says about one tracked path (all its records merged).
#[derive(Debug, Default, Clone, Copy)]
struct TrackedInfo {
    gitlink: bool,
    skip_worktree: bool,
}

/// Parses `git ls-files -z -t -s --cached --others` output into paths with their tracked
/// info (`None` for untracked paths). Records of one path (unmerged stages) are adjacent.
fn parse_ls_files(out: &[u8]) -> Vec<(&[u8], Option<TrackedInfo>)> {
    let mut entries: Vec<(&[u8], Option<TrackedInfo>)> = Vec::new();
    for record in out.split(|b| *b == 0).filter(|r| r.len() > 2) {
        let (tag, rest) = (record[0], &record[2..]);
        if tag == b'?' {
            entries.push((rest, None));
            continue;
        }
        // "<mode> <oid> <stage>\t<path>"
        let Some(tab) = rest.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let (meta, path) = (&rest[..tab], &rest[tab + 1..]);
        let info = match entries.last_mut() {
            Some((last, Some(info))) if *last == path => info,
            _ => {
                entries.push((path, Some(TrackedInfo::default())));
                entries
                    .last_mut()
                    .and_then(|(_, info)| info.as_mut())
                    .expect("just pushed")
            }
        };
        info.gitlink |= meta.starts_with(b"160000 ");
        info.skip_worktree |= tag == b'S';
    }
    entries
}

/// Whether a path from git can be handed to rsync safely (relative, no `..`, no empty parts).
fn is_safe(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// A path from git that is in scope, before we know whether it exists.
#[derive(Debug)]
struct Candidate<'a> {
    path: &'a str,
    tracked: bool,
    skip_worktree: bool,
    /// The ambiguous built-in this tracked file survived, if any.
    kept_by: Option<&'a str>,
}

/// Below this many paths a single thread is as fast as spreading the `lstat` calls.
const PARALLEL_STAT_MIN: usize = 4096;

/// `lstat`s every candidate, in order. Large trees are split across threads: the calls are
/// independent and dominate manifest time on a 100k-file repository.
fn lstat_all(root: &Path, candidates: &[Candidate<'_>]) -> Vec<std::io::Result<Metadata>> {
    let stat = |c: &Candidate<'_>| std::fs::symlink_metadata(root.join(c.path));
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(8);
    if threads < 2 || candidates.len() < PARALLEL_STAT_MIN {
        return candidates.iter().map(stat).collect();
    }
    let chunk = candidates.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = candidates
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(stat).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("lstat threads do not panic"))
            .collect()
    })
}

fn from_git(root: &Path, opts: &ManifestOptions) -> Result<Manifest, SyncError> {
    let out = git::run(
        root,
        &[
            "ls-files",
            "-z",
            "-t",
            "--stage",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    let mut manifest = Manifest {
        is_git: true,
        ..Manifest::default()
    };
    let mut candidates = Vec::new();
    for (raw, tracked) in parse_ls_files(&out) {
        // Untracked directories (nested repositories) end in `/`.
        if raw.ends_with(b"/") {
            continue;
        }
        let Some(path) = std::str::from_utf8(raw).ok().filter(|p| is_safe(p)) else {
            manifest
                .skipped
                .push(String::from_utf8_lossy(raw).into_owned());
            continue;
        };
        let info = tracked.unwrap_or_default();
        if info.gitlink {
            continue;
        }
        let comps: Vec<&str> = path.split('/').collect();
        let kept_by = match opts.excludes.verdict_of(&comps, false, tracked.is_some()) {
            Verdict::Excluded(_) => continue,
            Verdict::KeptTracked(rule) => Some(rule.text()),
            Verdict::Included => None,
        };
        if opts.include.matches_comps(&comps, false) {
            candidates.push(Candidate {
                path,
                tracked: tracked.is_some(),
                skip_worktree: info.skip_worktree,
                kept_by,
            });
        }
    }
    let stats = lstat_all(root, &candidates);
    let mut hidden = Vec::new();
    for (c, stat) in candidates.iter().zip(stats) {
        let meta = match stat {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                // What `git ls-files --deleted` reports, without a second pass over the tree:
                // a missing tracked path is deleted, unless git hides it on purpose.
                if c.skip_worktree {
                    hidden.push(c.path.to_owned());
                } else if c.tracked {
                    manifest.deleted.push(c.path.to_owned());
                }
                continue;
            }
            Err(e) => return Err(SyncError::io(root.join(c.path), e)),
        };
        if meta.is_dir() {
            continue;
        }
        if let Some(pattern) = c.kept_by {
            manifest.protected_tracked.push(ProtectedTracked {
                path: c.path.to_owned(),
                pattern: pattern.to_owned(),
            });
        }
        manifest.total_bytes += meta.len();
        manifest.files.push(ManifestEntry {
            path: c.path.to_owned(),
            size: meta.len(),
            is_symlink: meta.file_type().is_symlink(),
        });
    }
    if !hidden.is_empty() {
        hidden.sort_unstable();
        return Err(SyncError::SkipWorktree {
            count: hidden.len(),
            examples: hidden.into_iter().take(5).collect(),
        });
    }
    manifest.files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    manifest.files.dedup_by(|a, b| a.path == b.path);
    manifest.deleted.sort_unstable();
    manifest.deleted.dedup();
    manifest
        .protected_tracked
        .sort_unstable_by(|a, b| a.path.cmp(&b.path));
    manifest.skipped.sort_unstable();
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{GitRepo, write};
    use super::*;

    fn paths(m: &Manifest) -> Vec<&str> {
        m.files.iter().map(|f| f.path.as_str()).collect()
    }

    fn opts(exclude: &[&str], include: &[&str]) -> ManifestOptions {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        ManifestOptions {
            excludes: ExcludeRules::new(&own(exclude), ""),
            include: IncludeRules::new(&own(include)),
        }
    }

    #[test]
    fn git_manifest_covers_tracked_untracked_ignored_deleted_and_odd_names() {
        let repo = GitRepo::new();
        let root = repo.path();
        write(root, ".gitignore", "*.tmp\n");
        write(root, "src/main.rs", "fn main() {}\n");
        write(root, "gone.txt", "bye");
        write(root, "dist/app.js", "tracked build output");
        write(root, "node_modules/pkg/index.js", "tracked but excluded");
        write(root, "a b/ünï côde.txt", "unicode");
        write(root, "sub/inner.txt", "x");
        std::os::unix::fs::symlink("src/main.rs", root.join("link.rs")).unwrap();
        repo.git(&["add", "-A", "-f"]);
        repo.git(&["commit", "-qm", "init"]);
        // A gitlink (submodule-like entry) pointing at this repo's own commit.
        let head = repo.git(&["rev-parse", "HEAD"]);
        repo.git(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{head},vendor/lib"),
        ]);
        std::fs::remove_file(root.join("gone.txt")).unwrap();
        write(root, "new file.txt", "untracked!");
        write(root, "cache.tmp", "ignored");
        write(root, "dist/local.js", "untracked build output");

        let m = build_manifest(root, &opts(&[], &[])).unwrap();
        assert!(m.is_git);
        assert_eq!(
            paths(&m),
            [
                ".gitignore",
                "a b/ünï côde.txt",
                "dist/app.js",
                "link.rs",
                "new file.txt",
                "src/main.rs",
                "sub/inner.txt",
            ]
        );
        assert_eq!(m.deleted, ["gone.txt"]);
        assert_eq!(
            m.protected_tracked,
            [ProtectedTracked {
                path: "dist/app.js".into(),
                pattern: "dist".into()
            }]
        );
        let link = m.files.iter().find(|f| f.path == "link.rs").unwrap();
        assert!(link.is_symlink);
        assert_eq!(link.size, "src/main.rs".len() as u64);
        assert_eq!(m.total_bytes, m.files.iter().map(|f| f.size).sum::<u64>());
        assert_eq!(
            m.files_from_bytes(),
            b".gitignore\0a b/\xc3\xbcn\xc3\xaf c\xc3\xb4de.txt\0dist/app.js\0link.rs\0new file.txt\0src/main.rs\0sub/inner.txt\0"
        );
        assert_eq!(m.deleted_from_bytes(), b"gone.txt\0");

        // User rules drop tracked files too, and deleted paths out of scope are not reported.
        let m = build_manifest(root, &opts(&["dist", "gone.txt"], &["*.txt", "dist"])).unwrap();
        assert_eq!(
            paths(&m),
            ["a b/ünï côde.txt", "new file.txt", "sub/inner.txt"]
        );
        assert!(m.deleted.is_empty());
        assert!(m.protected_tracked.is_empty());
    }

    #[test]
    fn skip_worktree_hiding_a_tracked_path_fails() {
        let repo = GitRepo::new();
        let root = repo.path();
        write(root, "a.txt", "a");
        write(root, "sparse/b.txt", "b");
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-qm", "init"]);
        repo.git(&["update-index", "--skip-worktree", "sparse/b.txt"]);
        std::fs::remove_file(root.join("sparse/b.txt")).unwrap();
        let err = build_manifest(root, &opts(&[], &[])).unwrap_err();
        assert!(
            matches!(&err, SyncError::SkipWorktree { count: 1, examples } if examples == &["sparse/b.txt"]),
            "{err}"
        );
        // Excluding the hidden path makes the manifest buildable again.
        let m = build_manifest(root, &opts(&["sparse"], &[])).unwrap();
        assert_eq!(paths(&m), ["a.txt"]);
    }

    #[test]
    fn non_git_manifest_walks_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "README.md", "hi");
        write(root, "target/debug/app", "binary");
        write(root, "dist/app.js", "x");
        write(root, "lib/x.py", "print()");
        let m = build_manifest(root, &opts(&[], &[])).unwrap();
        assert!(!m.is_git);
        assert_eq!(paths(&m), ["README.md", "lib/x.py"]);
        assert_eq!(m.total_bytes, 2 + 7);
        assert!(m.deleted.is_empty());
    }

    #[test]
    fn ls_files_records_merge_per_path() {
        let out = b"? new\0H 100644 abc 0\ta\0S 100644 abc 0\tb\0H 160000 abc 0\tsub\0M 100644 abc 1\tc\0M 100644 abc 2\tc\0";
        let parsed = parse_ls_files(out);
        let summary: Vec<(&[u8], bool, bool, bool)> = parsed
            .iter()
            .map(|(p, t)| {
                let i = t.unwrap_or_default();
                (*p, t.is_some(), i.skip_worktree, i.gitlink)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (&b"new"[..], false, false, false),
                (b"a", true, false, false),
                (b"b", true, true, false),
                (b"sub", true, false, true),
                (b"c", true, false, false),
            ]
        );
        assert!(!is_safe("../x") && !is_safe("/etc/passwd") && !is_safe("a//b"));
    }
}
