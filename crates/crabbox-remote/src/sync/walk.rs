//! Lists the files of a directory that is not a git work tree, applying the sync rules while
//! walking so excluded directories (`node_modules`, `target`) are never read.

use std::fs::{self, Metadata};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::SyncError;
use super::exclude::{ExcludeRules, IncludeRules, Verdict};

/// One file or symlink found by [`walk`].
#[derive(Debug)]
pub(crate) struct WalkEntry {
    /// POSIX path relative to the root.
    pub path: String,
    /// `lstat` data: symlinks are described, never followed.
    pub meta: Metadata,
}

/// What a walk found: in-scope files sorted by path, and names it could not represent.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    pub files: Vec<WalkEntry>,
    /// Paths that are not valid UTF-8 (shown lossily); they cannot go in a manifest.
    pub skipped: Vec<String>,
}

/// Walks `root` without following symlinked directories. Sockets, FIFOs and devices are
/// ignored; symlinks are listed as entries of their own.
pub(crate) fn walk(
    root: &Path,
    excludes: &ExcludeRules,
    include: &IncludeRules,
) -> Result<Walked, SyncError> {
    let mut out = Walked::default();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_owned(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        // Something removed while we walk is simply not there; anything else is an error, so
        // an unreadable directory never silently shrinks the sync.
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(SyncError::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| SyncError::io(&dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                out.skipped
                    .push(format!("{rel_dir}{}", name.to_string_lossy()));
                continue;
            };
            let rel = format!("{rel_dir}{name}");
            let file_type = entry
                .file_type()
                .map_err(|e| SyncError::io(entry.path(), e))?;
            let comps: Vec<&str> = rel.split('/').collect();
            if file_type.is_dir() {
                if !excludes.prunes_dir(&comps) && include.may_contain(&comps) {
                    let sub = format!("{rel}/");
                    stack.push((entry.path(), sub));
                }
                continue;
            }
            if !(file_type.is_file() || file_type.is_symlink())
                || excludes.verdict_of(&comps, false, false) != Verdict::Included
                || !include.matches_comps(&comps, false)
            {
                continue;
            }
            // `DirEntry::metadata` does not follow symlinks.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(SyncError::io(entry.path(), e)),
            };
            out.files.push(WalkEntry { path: rel, meta });
        }
    }
    out.files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    out.skipped.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_prunes_excluded_dirs_and_keeps_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, body) in [
            ("src/main.rs", "fn main() {}"),
            ("node_modules/pkg/index.js", "x"),
            ("dist/app.js", "x"),
            ("a b/ü.txt", "unicode"),
            (".crabbox/env/token", "secret"),
        ] {
            fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            fs::write(root.join(path), body).unwrap();
        }
        std::os::unix::fs::symlink("src", root.join("src-link")).unwrap();
        let excludes = ExcludeRules::new(&[], "");
        let walked = walk(root, &excludes, &IncludeRules::default()).unwrap();
        let paths: Vec<&str> = walked.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a b/ü.txt", "src-link", "src/main.rs"]);
        assert!(walked.files[1].meta.file_type().is_symlink());

        let only_src = IncludeRules::new(&["src/*.rs".to_owned()]);
        let walked = walk(root, &excludes, &only_src).unwrap();
        let paths: Vec<&str> = walked.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["src/main.rs"]);
    }

    #[test]
    fn walk_descends_into_excluded_dirs_when_a_rule_re_includes_below() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("target/keep")).unwrap();
        fs::write(root.join("target/keep/a.txt"), "a").unwrap();
        fs::write(root.join("target/drop.txt"), "b").unwrap();
        let excludes = ExcludeRules::new(&["!target/keep".to_owned()], "");
        let walked = walk(root, &excludes, &IncludeRules::default()).unwrap();
        let paths: Vec<&str> = walked.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["target/keep/a.txt"]);
    }
}
