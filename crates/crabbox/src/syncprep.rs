//! Builds what a sync sends, once the runner has asked for one. When the runner is where this
//! machine left it (it reports the fingerprint of our last sync), only paths that can have
//! changed are looked at: no full manifest, no full rsync comparison, and small deltas travel
//! inline as a tar on the session. Otherwise: the full manifest, the large-sync guardrails and
//! an rsync of every path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crabbox_remote::git_seed;
use crabbox_remote::manifest::{self, Excludes, LocalState};
use crabbox_remote::rsync::RsyncOptions;
use crabbox_remote::session::{RunnerSyncState, SyncPayload};

use crate::output;
use crate::syncstate::{self, SyncRecord};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Deltas up to this size travel inline as a tar on the session; larger ones use rsync.
const INLINE_MAX_BYTES: u64 = 16 * 1024 * 1024;
const INLINE_MAX_FILES: usize = 2000;

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
    /// The fingerprint result (state and its cost in ms), set once computed.
    pub local: Arc<OnceLock<(LocalState, u64)>>,
}

fn nul<'a>(paths: impl IntoIterator<Item = &'a String>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

/// Packs `paths` (relative to `root`) as a tar when they are small enough to send inline.
async fn inline_tar(root: &Path, paths: &[String], bytes: u64) -> Option<Vec<u8>> {
    if paths.len() > INLINE_MAX_FILES || bytes > INLINE_MAX_BYTES {
        return None;
    }
    if paths.is_empty() {
        return Some(Vec::new());
    }
    crabbox_remote::archive::tar_paths(root, paths).await.ok()
}

impl SyncInputs {
    pub async fn prepare(self, runner: RunnerSyncState) -> Result<SyncPayload, BoxError> {
        let seed = if self.git {
            git_seed::read_seed(&self.root, self.base_ref.as_deref()).await
        } else {
            None
        };
        let delta = match (&self.previous, self.local.get()) {
            (Some(prev), Some((now, _)))
                if prev.excludes == syncstate::excludes_key(&self.excludes, &self.include) =>
            {
                syncstate::delta_paths(
                    prev,
                    runner.fingerprint.as_deref(),
                    &now.dirty,
                    now.head.as_deref(),
                    |a, b| manifest::changed_between(&self.root, a, b),
                )
            }
            _ => None,
        };
        match delta {
            Some(paths) => Ok(self.delta_payload(paths.into_iter().collect(), seed).await),
            None => self.full_payload(seed).await,
        }
    }

    async fn delta_payload(
        self,
        paths: Vec<String>,
        seed: Option<git_seed::GitSeed>,
    ) -> SyncPayload {
        let mut upserts = Vec::new();
        let mut gone = Vec::new();
        let mut bytes = 0;
        for path in paths {
            match std::fs::symlink_metadata(self.root.join(&path)) {
                Ok(meta) if !meta.is_dir() && !self.excludes.excluded(&path, true) => {
                    bytes += meta.len();
                    upserts.push(path);
                }
                _ => gone.push(path),
            }
        }
        let tar = inline_tar(&self.root, &upserts, bytes).await;
        SyncPayload {
            manifest: nul(&upserts),
            deleted: nul(&gone),
            delta: true,
            tar,
            files: upserts.len(),
            bytes,
            local_root: self.root,
            rsync: self.rsync,
            git: seed,
        }
    }

    async fn full_payload(self, seed: Option<git_seed::GitSeed>) -> Result<SyncPayload, BoxError> {
        let m = tokio::task::spawn_blocking({
            let (root, excludes, include) = (
                self.root.clone(),
                self.excludes.clone(),
                self.include.clone(),
            );
            move || manifest::build(&root, &excludes, &include)
        })
        .await??;
        let limits = self.limits;
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
        Ok(SyncPayload {
            manifest: m.files_nul(),
            deleted: m.deleted_nul(),
            delta: false,
            tar: None,
            files: m.files.len(),
            bytes: m.bytes,
            local_root: self.root,
            rsync: self.rsync,
            git: seed,
        })
    }
}
