//! Builds what a sync sends, once the runner has asked for one: the manifest, the guardrail
//! verdict, the git seed, and (when the runner is where this machine left it) the short list of
//! paths rsync has to compare.

use std::path::PathBuf;

use crabbox_remote::git_seed;
use crabbox_remote::manifest::{self, Excludes, LocalState};
use crabbox_remote::rsync::RsyncOptions;
use crabbox_remote::session::{RunnerSyncState, SyncPayload};

use crate::output;
use crate::syncstate::{self, SyncRecord};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Large-sync thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub warn_files: u64,
    pub warn_bytes: u64,
    pub fail_files: u64,
    pub fail_bytes: u64,
    pub allow_large: bool,
}

/// Everything needed to prepare a sync.
#[derive(Debug)]
pub struct SyncInputs {
    pub root: PathBuf,
    pub excludes: Excludes,
    pub include: Vec<String>,
    pub limits: Limits,
    pub base_ref: Option<String>,
    pub git: bool,
    pub rsync: RsyncOptions,
    pub previous: Option<SyncRecord>,
    pub local: Option<LocalState>,
}

fn nul(paths: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

/// Deltas up to this size travel inline as a tar on the session; larger ones use rsync.
const INLINE_MAX_BYTES: u64 = 16 * 1024 * 1024;
const INLINE_MAX_FILES: usize = 2000;

/// Packs `paths` (relative to `root`) as a tar when they are small enough to send inline.
async fn inline_tar(root: &std::path::Path, paths: &[String]) -> Option<Vec<u8>> {
    if paths.len() > INLINE_MAX_FILES {
        return None;
    }
    let bytes: u64 = paths
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(root.join(p)).ok())
        .map(|m| m.len())
        .sum();
    if bytes > INLINE_MAX_BYTES {
        return None;
    }
    if paths.is_empty() {
        return Some(Vec::new());
    }
    crabbox_remote::archive::tar_paths(root, paths).await.ok()
}

impl SyncInputs {
    pub async fn prepare(self, runner: RunnerSyncState) -> Result<SyncPayload, BoxError> {
        let Self {
            root,
            excludes,
            include,
            limits,
            base_ref,
            git,
            rsync,
            previous,
            local,
        } = self;
        let m = tokio::task::spawn_blocking({
            let root = root.clone();
            move || manifest::build(&root, &excludes, &include)
        })
        .await??;
        let files = m.files.len() as u64;
        if !limits.allow_large && (files >= limits.fail_files || m.bytes >= limits.fail_bytes) {
            return Err(format!(
                "sync candidate too large: {files} files, {} bytes (limits {} files / {} bytes); exclude paths in .crabboxignore, or use --force-sync-large or CRABBOX_SYNC_ALLOW_LARGE=1",
                m.bytes, limits.fail_files, limits.fail_bytes
            )
            .into());
        }
        if files >= limits.warn_files || m.bytes >= limits.warn_bytes {
            output::warn(format!("large sync: {files} files, {} bytes", m.bytes));
        }
        let delta = match (&previous, &local) {
            (Some(prev), Some(now)) => syncstate::delta_paths(
                prev,
                runner.fingerprint.as_deref(),
                &now.dirty,
                now.head.as_deref(),
                |a, b| manifest::changed_between(&root, a, b),
            ),
            _ => None,
        };
        let seed = if git {
            git_seed::read_seed(&root, base_ref.as_deref()).await
        } else {
            None
        };
        let (list, removed, tar) = match delta {
            Some(paths) => {
                let in_manifest: std::collections::HashSet<&str> =
                    m.files.iter().map(String::as_str).collect();
                let (upserts, gone): (Vec<String>, Vec<String>) = paths
                    .into_iter()
                    .partition(|p| in_manifest.contains(p.as_str()));
                let tar = inline_tar(&root, &upserts).await;
                (nul(upserts), nul(gone), Some(tar))
            }
            None => (m.files_nul(), m.deleted_nul(), None),
        };
        Ok(SyncPayload {
            local_root: root,
            manifest: list,
            delta: tar.is_some(),
            tar: tar.flatten(),
            deleted: removed,
            files: m.files.len(),
            bytes: m.bytes,
            rsync,
            git: seed,
        })
    }
}
