//! Large-sync guardrails (spec/cli-dataplane.md §4.8 step 4) and the "top files / top dirs"
//! summaries shown with a warning and by `sync-plan`.

use std::collections::HashMap;

use super::fingerprint::DirtyDelta;
use super::manifest::{Manifest, ManifestEntry};

/// Thresholds for a sync; a zero limit is disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub warn_files: u64,
    pub warn_bytes: u64,
    pub fail_files: u64,
    pub fail_bytes: u64,
    /// `--force-sync-large` / `CRABBOX_SYNC_ALLOW_LARGE=1`: fail-level syncs only warn.
    pub allow_large: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            warn_files: 50_000,
            warn_bytes: 5 << 30,
            fail_files: 150_000,
            fail_bytes: 20 << 30,
            allow_large: false,
        }
    }
}

/// What the guardrail measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardrailScope {
    /// The locally changed paths (when there are any): what this sync adds to the last one.
    DirtyDelta,
    /// The whole manifest.
    Candidate,
}

impl GuardrailScope {
    /// `dirty_delta` or `candidate`, as in messages and `sync-plan --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DirtyDelta => "dirty_delta",
            Self::Candidate => "candidate",
        }
    }
}

/// The verdict, with human-readable reasons for anything but `Ok`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardrailOutcome {
    Ok,
    Warn { reasons: Vec<String> },
    Fail { reasons: Vec<String> },
}

/// A guardrail check: the scope and size it measured and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailCheck {
    pub scope: GuardrailScope,
    pub files: u64,
    pub bytes: u64,
    pub outcome: GuardrailOutcome,
}

/// Checks the dirty delta when it is non-empty, else the whole candidate, against `limits`.
pub fn check_guardrails(
    manifest: &Manifest,
    dirty: Option<&DirtyDelta>,
    limits: &Limits,
) -> GuardrailCheck {
    let (scope, files, bytes) = match dirty {
        Some(d) if !d.paths.is_empty() => (GuardrailScope::DirtyDelta, d.paths.len(), d.bytes),
        _ => (
            GuardrailScope::Candidate,
            manifest.files.len(),
            manifest.total_bytes,
        ),
    };
    let files = files as u64;
    let over = |limit: u64, value: u64| limit > 0 && value >= limit;
    let reasons = |file_limit: u64, byte_limit: u64| {
        let mut reasons = Vec::new();
        if over(file_limit, files) {
            reasons.push(format!("{files} files >= {file_limit} files"));
        }
        if over(byte_limit, bytes) {
            reasons.push(format!(
                "{} >= {}",
                human_bytes(bytes),
                human_bytes(byte_limit)
            ));
        }
        reasons
    };
    let fail = reasons(limits.fail_files, limits.fail_bytes);
    let warn = reasons(limits.warn_files, limits.warn_bytes);
    let outcome = match (fail.is_empty(), limits.allow_large) {
        (false, false) => GuardrailOutcome::Fail { reasons: fail },
        (false, true) => GuardrailOutcome::Warn { reasons: fail },
        (true, _) if warn.is_empty() => GuardrailOutcome::Ok,
        (true, _) => GuardrailOutcome::Warn { reasons: warn },
    };
    GuardrailCheck {
        scope,
        files,
        bytes,
        outcome,
    }
}

/// Files and bytes under one directory of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSize {
    pub dir: String,
    pub files: u64,
    pub bytes: u64,
}

/// The `n` largest directories by bytes. Files directly in a top-level directory count for
/// that directory (`src/main.rs` → `src`); deeper files count for their first two levels
/// (`src/a/b/c.rs` → `src/a`), so one huge top-level directory is broken down; root files
/// count for `.`.
pub fn top_dirs(manifest: &Manifest, n: usize) -> Vec<DirSize> {
    let mut groups: HashMap<&str, (u64, u64)> = HashMap::new();
    for file in &manifest.files {
        let path = file.path.as_str();
        let key = match path.match_indices('/').map(|(i, _)| i).nth(1) {
            Some(second) => &path[..second],
            None => path.rfind('/').map_or(".", |first| &path[..first]),
        };
        let group = groups.entry(key).or_default();
        group.0 += 1;
        group.1 += file.size;
    }
    let mut dirs: Vec<DirSize> = groups
        .into_iter()
        .map(|(dir, (files, bytes))| DirSize {
            dir: dir.to_owned(),
            files,
            bytes,
        })
        .collect();
    dirs.sort_unstable_by(|a, b| {
        (b.bytes, b.files)
            .cmp(&(a.bytes, a.files))
            .then_with(|| a.dir.cmp(&b.dir))
    });
    dirs.truncate(n);
    dirs
}

/// The `n` largest files, largest first.
pub fn top_files(manifest: &Manifest, n: usize) -> Vec<&ManifestEntry> {
    let mut files: Vec<&ManifestEntry> = manifest.files.iter().collect();
    files.sort_unstable_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    files.truncate(n);
    files
}

/// Bytes in binary units with one decimal (`512 B`, `1.5 KiB`, `20.0 GiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[(&str, u64)]) -> Manifest {
        Manifest {
            files: files
                .iter()
                .map(|(path, size)| ManifestEntry {
                    path: (*path).to_owned(),
                    size: *size,
                    is_symlink: false,
                })
                .collect(),
            total_bytes: files.iter().map(|(_, s)| s).sum(),
            ..Manifest::default()
        }
    }

    fn limits(warn_files: u64, fail_files: u64) -> Limits {
        Limits {
            warn_files,
            warn_bytes: 1000,
            fail_files,
            fail_bytes: 10_000,
            allow_large: false,
        }
    }

    #[test]
    fn scope_is_the_dirty_delta_when_there_is_one() {
        let m = manifest(&[("a", 10), ("b", 10), ("c", 10)]);
        let check = check_guardrails(&m, None, &limits(3, 5));
        assert_eq!(check.scope, GuardrailScope::Candidate);
        assert_eq!(
            check.outcome,
            GuardrailOutcome::Warn {
                reasons: vec!["3 files >= 3 files".into()]
            }
        );
        let dirty = DirtyDelta {
            paths: vec!["a".into()],
            bytes: 10,
        };
        let check = check_guardrails(&m, Some(&dirty), &limits(3, 5));
        assert_eq!(
            (check.scope, check.files, check.bytes),
            (GuardrailScope::DirtyDelta, 1, 10)
        );
        assert_eq!(check.outcome, GuardrailOutcome::Ok);
        let empty = DirtyDelta::default();
        let check = check_guardrails(&m, Some(&empty), &limits(3, 5));
        assert_eq!(check.scope, GuardrailScope::Candidate);
    }

    #[test]
    fn fail_threshold_fails_unless_allowed() {
        let m = manifest(&[("a", 20_000)]);
        let check = check_guardrails(&m, None, &limits(10, 20));
        assert_eq!(
            check.outcome,
            GuardrailOutcome::Fail {
                reasons: vec!["19.5 KiB >= 9.8 KiB".into()]
            }
        );
        let allowed = Limits {
            allow_large: true,
            ..limits(10, 20)
        };
        assert!(matches!(
            check_guardrails(&m, None, &allowed).outcome,
            GuardrailOutcome::Warn { .. }
        ));
        let off = Limits {
            warn_files: 0,
            warn_bytes: 0,
            fail_files: 0,
            fail_bytes: 0,
            allow_large: false,
        };
        assert_eq!(
            check_guardrails(&m, None, &off).outcome,
            GuardrailOutcome::Ok
        );
    }

    #[test]
    fn top_dirs_group_one_level_at_top_and_two_below() {
        let m = manifest(&[
            ("README.md", 5),
            ("src/main.rs", 10),
            ("src/a/b/c.rs", 100),
            ("src/a/d.rs", 1),
            ("docs/x/y.md", 50),
        ]);
        let dirs = top_dirs(&m, 10);
        let got: Vec<(&str, u64, u64)> = dirs
            .iter()
            .map(|d| (d.dir.as_str(), d.files, d.bytes))
            .collect();
        assert_eq!(
            got,
            [
                ("src/a", 2, 101),
                ("docs/x", 1, 50),
                ("src", 1, 10),
                (".", 1, 5)
            ]
        );
        assert_eq!(top_dirs(&m, 1).len(), 1);
        let files: Vec<&str> = top_files(&m, 2).iter().map(|f| f.path.as_str()).collect();
        assert_eq!(files, ["src/a/b/c.rs", "docs/x/y.md"]);
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
