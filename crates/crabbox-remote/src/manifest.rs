//! The local side of sync planning: which files to send (git-aware manifest with excludes,
//! or a directory walk for non-git trees) and the fingerprint that lets a warm run skip the
//! sync when nothing changed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

/// Built-in excludes (spec/cli-dataplane.md §4.8 step 2).
pub const BUILTIN_EXCLUDES: &[&str] = &[
    ".git",
    "._*",
    "node_modules",
    ".ignored",
    ".turbo",
    ".next",
    ".vite",
    ".parcel-cache",
    ".rollup.cache",
    "dist",
    "dist-runtime",
    "coverage",
    "playwright-report",
    "test-results",
    ".cache",
    ".tmp",
    ".local",
    ".swiftpm",
    ".build",
    "apps/*/.build",
    ".pnpm-store",
    ".npm",
    ".yarn/cache",
    ".venv",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".gradle",
    "target",
];
/// Built-ins that never drop a git-tracked file (they are common names for real sources too).
const AMBIGUOUS: &[&str] = &[
    "dist",
    "dist-runtime",
    "coverage",
    "playwright-report",
    "test-results",
    ".build",
    "apps/*/.build",
    "target",
];
/// Crabbox's own runtime paths: always excluded, cannot be re-included.
pub const PROTECTED: &[&str] = &[
    ".crabbox/env",
    ".crabbox/scripts",
    ".crabbox/logs",
    ".crabbox/captures",
    ".crabbox/runs",
];

/// Error building a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("could not run git in {dir}: {detail}")]
    Git { dir: String, detail: String },
    #[error("could not read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    origin: &'static str,
    pattern: String,
    negate: bool,
}

/// Ordered exclude rules; the last matching rule wins.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    rules: Vec<Rule>,
}

/// Glob match of one pattern against one string (`*`, `?`; `*` does not cross `/`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' && text[t] != b'/' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            if text[mark] == b'/' {
                return false;
            }
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

fn rule_matches(pattern: &str, path: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    if pattern.contains('/') {
        // Prefix (directory) or full-path glob.
        let parts: Vec<&str> = path.split('/').collect();
        (1..=parts.len()).any(|n| glob(pattern.as_bytes(), parts[..n].join("/").as_bytes()))
    } else {
        path.split('/')
            .any(|c| glob(pattern.as_bytes(), c.as_bytes()))
    }
}

impl Excludes {
    /// Built-ins, then config patterns, then `.crabboxignore` lines, then protected paths.
    pub fn new(config: &[String], crabboxignore: Option<&str>) -> Self {
        let mut rules = Vec::new();
        let mut push = |origin: &'static str, raw: &str| {
            let raw = raw.trim();
            if raw.is_empty() || raw.starts_with('#') {
                return;
            }
            let (negate, pattern) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw.strip_prefix('\\').unwrap_or(raw)),
            };
            rules.push(Rule {
                origin,
                pattern: pattern.trim_start_matches("./").to_owned(),
                negate,
            });
        };
        for p in BUILTIN_EXCLUDES {
            push("builtin", p);
        }
        for p in config {
            push("config", p);
        }
        for line in crabboxignore.unwrap_or_default().lines() {
            push("crabboxignore", line);
        }
        Self { rules }
    }

    fn protected(path: &str) -> bool {
        let lower = path.to_ascii_lowercase();
        PROTECTED
            .iter()
            .any(|p| lower == *p || lower.starts_with(&format!("{p}/")))
    }

    /// Whether `path` is excluded; `tracked` files survive the ambiguous built-ins.
    pub fn excluded(&self, path: &str, tracked: bool) -> bool {
        if Self::protected(path) {
            return true;
        }
        let mut verdict = false;
        for rule in &self.rules {
            if rule_matches(&rule.pattern, path) {
                if rule.origin == "builtin" && tracked && AMBIGUOUS.contains(&rule.pattern.as_str())
                {
                    continue;
                }
                verdict = !rule.negate;
            }
        }
        verdict
    }

    /// `origin:pattern` lines, hashed into the fingerprint.
    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                format!(
                    "{}:{}{}",
                    r.origin,
                    if r.negate { "!" } else { "" },
                    r.pattern
                )
            })
            .collect()
    }
}

/// The files a sync sends.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub files: Vec<String>,
    pub deleted: Vec<String>,
    pub bytes: u64,
    pub is_git: bool,
}

impl Manifest {
    /// NUL-separated list for `rsync --files-from=- --from0`.
    pub fn files_nul(&self) -> Vec<u8> {
        nul_join(&self.files)
    }

    pub fn deleted_nul(&self) -> Vec<u8> {
        nul_join(&self.deleted)
    }
}

fn nul_join(items: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.iter().map(|s| s.len() + 1).sum());
    for item in items {
        out.extend_from_slice(item.as_bytes());
        out.push(0);
    }
    out
}

fn git(root: &Path, args: &[&str]) -> Result<Vec<u8>, ManifestError> {
    let out = Command::new("git")
        .current_dir(root)
        .args(["-c", "core.quotepath=off"])
        .args(args)
        .output()
        .map_err(|e| ManifestError::Git {
            dir: root.display().to_string(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ManifestError::Git {
            dir: root.display().to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out.stdout)
}

fn split_nul(data: &[u8]) -> impl Iterator<Item = String> + '_ {
    data.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

fn safe_path(path: &str) -> bool {
    !path.starts_with('/') && !path.split('/').any(|c| c == ".." || c.is_empty())
}

/// Paths that differ between two commits (for a delta sync after HEAD moved); `None` when
/// either commit is unknown here.
pub fn changed_between(root: &Path, from: &str, to: &str) -> Option<Vec<String>> {
    let out = git(
        root,
        &["diff", "--name-only", "--no-renames", "-z", from, to],
    )
    .ok()?;
    Some(split_nul(&out).collect())
}

/// Whether `root` is the top of a git work tree.
pub fn is_git_root(root: &Path) -> bool {
    root.join(".git").exists()
}

/// Builds the manifest for `root`.
pub fn build(
    root: &Path,
    excludes: &Excludes,
    include: &[String],
) -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest {
        is_git: is_git_root(root),
        ..Manifest::default()
    };
    if manifest.is_git {
        let staged = git(root, &["ls-files", "--stage", "-z"])?;
        let mut tracked = std::collections::HashSet::new();
        let mut gitlinks = std::collections::HashSet::new();
        for entry in split_nul(&staged) {
            if let Some((meta, path)) = entry.split_once('\t') {
                if meta.starts_with("160000") {
                    gitlinks.insert(path.to_owned());
                } else {
                    tracked.insert(path.to_owned());
                }
            }
        }
        let others = git(root, &["ls-files", "--others", "--exclude-standard", "-z"])?;
        let mut paths: Vec<String> = tracked.iter().cloned().chain(split_nul(&others)).collect();
        paths.sort();
        paths.dedup();
        for path in paths {
            if gitlinks.contains(&path) || !safe_path(&path) {
                continue;
            }
            let is_tracked = tracked.contains(&path);
            if excludes.excluded(&path, is_tracked) || !included(include, &path) {
                continue;
            }
            match fs::symlink_metadata(root.join(&path)) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) => {
                    manifest.bytes += meta.len();
                    manifest.files.push(path);
                }
                Err(_) if is_tracked => manifest.deleted.push(path),
                Err(_) => {}
            }
        }
    } else {
        walk(root, root, excludes, include, &mut manifest)?;
        manifest.files.sort();
    }
    Ok(manifest)
}

fn included(include: &[String], path: &str) -> bool {
    include.is_empty() || include.iter().any(|p| rule_matches(p, path))
}

fn walk(
    root: &Path,
    dir: &Path,
    excludes: &Excludes,
    include: &[String],
    out: &mut Manifest,
) -> Result<(), ManifestError> {
    let entries = fs::read_dir(dir).map_err(|source| ManifestError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if excludes.excluded(&rel, false) {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &path, excludes, include, out)?;
        } else if included(include, &rel) {
            out.bytes += meta.len();
            out.files.push(rel);
        }
    }
    Ok(())
}

/// The local state a fingerprint covers, plus the dirty delta for guardrails.
#[derive(Debug, Clone, Default)]
pub struct LocalState {
    pub fingerprint: String,
    /// Paths that differ from HEAD (modified, staged, renamed, untracked), not excluded.
    pub dirty: Vec<String>,
    /// HEAD commit for git trees.
    pub head: Option<String>,
}

fn hash_stat(hasher: &mut Sha256, root: &Path, path: &str) {
    hasher.update(path.as_bytes());
    match fs::symlink_metadata(root.join(path)) {
        Ok(m) => hasher.update(
            format!(
                "\0{:o}\0{}\0{}.{}\0{}.{}\n",
                m.mode(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            )
            .as_bytes(),
        ),
        Err(_) => hasher.update(b"\0missing\n"),
    }
}

fn index_checksum(root: &Path) -> Vec<u8> {
    let index = root.join(".git/index");
    let Ok(data) = fs::read(&index) else {
        return Vec::new();
    };
    let tail = &data[data.len().saturating_sub(20)..];
    if tail.iter().all(|b| *b == 0) {
        // index.skipHash: no trailer, hash the whole file instead.
        Sha256::digest(&data).to_vec()
    } else {
        tail.to_vec()
    }
}

/// Computes the fingerprint of `root` with one `git status` (git trees) or one walk.
///
/// Changed files are hashed by their stat data (mode, size, mtime and ctime in nanoseconds),
/// not their bytes: reading contents would make the check O(bytes changed). A write that keeps
/// size, mtime and ctime identical to the nanosecond is not a practical risk.
pub fn fingerprint(
    root: &Path,
    excludes: &Excludes,
    include: &[String],
    extra: &[String],
) -> Result<LocalState, ManifestError> {
    let mut hasher = Sha256::new();
    hasher.update(b"crabbox-fp-v1\n");
    for line in excludes
        .describe()
        .iter()
        .chain(include.iter())
        .chain(extra.iter())
    {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    let mut dirty = Vec::new();
    let mut head = None;
    if is_git_root(root) {
        let status = git(
            root,
            &[
                "status",
                "--porcelain=v2",
                "-z",
                "--branch",
                "--untracked-files=all",
            ],
        )?;
        hasher.update(index_checksum(root));
        let mut fields = status.split(|b| *b == 0).filter(|s| !s.is_empty());
        while let Some(entry) = fields.next() {
            let text = String::from_utf8_lossy(entry);
            if text.starts_with("# ") {
                if let Some(oid) = text.strip_prefix("# branch.oid ") {
                    head = Some(oid.to_owned()).filter(|o| o != "(initial)");
                }
                hasher.update(entry);
                hasher.update(b"\n");
                continue;
            }
            // Renames/copies ("2 …") carry the original path as the next NUL field.
            if text.starts_with("2 ") {
                fields.next();
            }
            let path = match text.chars().next() {
                Some('1') => text.splitn(9, ' ').nth(8),
                Some('2') => text.splitn(10, ' ').nth(9),
                Some('u') => text.splitn(11, ' ').nth(10),
                Some('?' | '!') => text.get(2..),
                _ => None,
            };
            let Some(path) = path else { continue };
            if excludes.excluded(path, !text.starts_with('?')) || !included(include, path) {
                continue;
            }
            dirty.push(path.to_owned());
            hasher.update(&entry[..2]);
            hash_stat(&mut hasher, root, path);
        }
    } else {
        let mut manifest = Manifest::default();
        walk(root, root, excludes, include, &mut manifest)?;
        manifest.files.sort();
        for path in &manifest.files {
            hash_stat(&mut hasher, root, path);
        }
        dirty = manifest.files;
    }
    Ok(LocalState {
        fingerprint: hex::encode(hasher.finalize()),
        dirty,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclude_semantics() {
        let ex = Excludes::new(
            &["*.log".into(), "build/".into(), "!keep.log".into()],
            Some("# c\nsecret.txt\n\\!bang\n"),
        );
        assert!(ex.excluded("node_modules/x/y.js", false));
        assert!(ex.excluded("a/b/debug.log", false));
        assert!(!ex.excluded("keep.log", false));
        assert!(ex.excluded("build/out.o", false));
        assert!(ex.excluded("secret.txt", false));
        assert!(ex.excluded("!bang", false));
        assert!(ex.excluded(".crabbox/env/x", false));
        assert!(ex.excluded(".CRABBOX/Env/x", false));
        assert!(
            !ex.excluded("dist/app.js", true),
            "tracked files survive ambiguous built-ins"
        );
        assert!(ex.excluded("dist/app.js", false));
        assert!(ex.excluded("apps/web/.build/x", false));
        let reinclude = Excludes::new(&["!.crabbox/env".into()], None);
        assert!(
            reinclude.excluded(".crabbox/env/secret", false),
            "protected paths cannot be re-included"
        );
    }
}
