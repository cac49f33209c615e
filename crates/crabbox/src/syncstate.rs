//! What this machine last synced to a lease's workdir: the fingerprint the runner stored, the
//! HEAD and the dirty paths at that time. When the runner still reports that fingerprint, the
//! next sync only needs rsync to look at paths that could have changed since (the old and new
//! dirty sets plus what changed between the two HEADs), instead of the whole tree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crabbox_remote::sync::ManifestOptions;
use serde::{Deserialize, Serialize};
use sha2_free::short_hash;

/// The record kept per (lease, workdir).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    pub fingerprint: String,
    /// Exclude and include rules in force; a change forces a full sync (newly excluded paths
    /// must be pruned).
    #[serde(default)]
    pub excludes: String,
    pub head: Option<String>,
    pub dirty: Vec<String>,
}

fn path_for(state_dir: &Path, lease_id: &str, workdir: &str) -> PathBuf {
    state_dir
        .join("sync")
        .join(lease_id)
        .join(format!("{}.json", short_hash(workdir)))
}

pub fn load(state_dir: &Path, lease_id: &str, workdir: &str) -> Option<SyncRecord> {
    let text = std::fs::read(path_for(state_dir, lease_id, workdir)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Saves atomically; failures only cost a full comparison next time.
pub fn save(state_dir: &Path, lease_id: &str, workdir: &str, record: &SyncRecord) {
    let path = path_for(state_dir, lease_id, workdir);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, serde_json::to_vec(record).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// Forgets every record of a lease (on release).
pub fn forget(state_dir: &Path, lease_id: &str) {
    let _ = std::fs::remove_dir_all(state_dir.join("sync").join(lease_id));
}

/// Identity of the exclude and include rules.
pub fn excludes_key(scope: &ManifestOptions) -> String {
    let mut text = String::new();
    for rule in scope.excludes.rules() {
        text.push_str(&rule.to_string());
        text.push('\n');
    }
    text.push('\0');
    for pattern in scope.include.texts() {
        text.push_str(pattern);
        text.push('\n');
    }
    short_hash(&text)
}

/// Paths rsync must compare for a delta sync, or `None` when a full comparison is needed.
pub fn delta_paths(
    previous: &SyncRecord,
    runner_fingerprint: Option<&str>,
    dirty_now: &[String],
    head_now: Option<&str>,
    changed_between: impl FnOnce(&str, &str) -> Option<Vec<String>>,
) -> Option<BTreeSet<String>> {
    if runner_fingerprint != Some(previous.fingerprint.as_str()) || previous.fingerprint.is_empty()
    {
        return None;
    }
    let mut paths: BTreeSet<String> = previous.dirty.iter().chain(dirty_now).cloned().collect();
    match (previous.head.as_deref(), head_now) {
        (Some(a), Some(b)) if a != b => paths.extend(changed_between(a, b)?),
        (None, Some(_)) | (Some(_), None) => return None,
        _ => {}
    }
    Some(paths)
}

mod sha2_free {
    /// FNV-1a 64 of a string, as 16 hex digits (file naming only).
    pub fn short_hash(s: &str) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fp: &str, head: Option<&str>, dirty: &[&str]) -> SyncRecord {
        SyncRecord {
            excludes: String::new(),
            fingerprint: fp.into(),
            head: head.map(str::to_owned),
            dirty: dirty.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn delta_only_when_the_runner_is_where_we_left_it() {
        let prev = rec("fp1", Some("h1"), &["a"]);
        let none = |_: &str, _: &str| -> Option<Vec<String>> { panic!("heads are equal") };
        assert_eq!(
            delta_paths(&prev, Some("other"), &[], Some("h1"), none),
            None
        );
        assert_eq!(delta_paths(&prev, None, &[], Some("h1"), none), None);
        let got = delta_paths(&prev, Some("fp1"), &["b".into()], Some("h1"), none).unwrap();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        let moved = delta_paths(&prev, Some("fp1"), &[], Some("h2"), |a, b| {
            assert_eq!((a, b), ("h1", "h2"));
            Some(vec!["c".into()])
        })
        .unwrap();
        assert_eq!(moved.into_iter().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(
            delta_paths(&prev, Some("fp1"), &[], Some("h2"), |_, _| None),
            None
        );
    }
}
