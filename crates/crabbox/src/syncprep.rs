//! Builds what a sync sends, once the runner has asked for one. When the runner is where this
//! machine left it (it reports the fingerprint of our last sync), only paths that can have
//! changed are looked at: no full manifest, no full rsync comparison, and small deltas travel
//! inline as a tar on the session. Otherwise: the full manifest, the large-sync guardrails and
//! an rsync of every path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crabbox_remote::git_seed;
use crabbox_remote::rsync::RsyncOptions;
use crabbox_remote::session::{RunnerSyncState, SyncPayload};
use crabbox_remote::sync::{
    self, DirtyDelta, GuardrailCheck, GuardrailOutcome, Limits, LocalState, Manifest,
    ManifestOptions, Verdict,
};

use crate::output;
use crate::syncstate::{self, SyncRecord};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Deltas up to this size travel inline as a tar on the session; larger ones use rsync.
const INLINE_MAX_BYTES: u64 = 16 * 1024 * 1024;
const INLINE_MAX_FILES: usize = 2000;
/// How many example paths a warning names.
const EXAMPLES: usize = 5;

/// Everything needed to prepare a sync.
#[derive(Debug)]
pub struct SyncInputs {
    pub root: PathBuf,
    pub scope: ManifestOptions,
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

/// Fails a sync past the fail thresholds; warns (with the largest directories, when the whole
/// candidate was measured) past the warn thresholds.
pub fn enforce_guardrails(check: &GuardrailCheck, manifest: &Manifest) -> Result<(), BoxError> {
    let size = format!("{} files, {}", check.files, sync::human_bytes(check.bytes));
    match &check.outcome {
        GuardrailOutcome::Ok => Ok(()),
        GuardrailOutcome::Fail { reasons } => Err(format!(
            "sync {} too large: {size} ({}); exclude paths in .crabboxignore or sync.exclude, or use --force-sync-large or CRABBOX_SYNC_ALLOW_LARGE=1",
            check.scope.as_str(),
            reasons.join(", ")
        )
        .into()),
        GuardrailOutcome::Warn { reasons } => {
            let dirs: Vec<String> = sync::top_dirs(manifest, EXAMPLES)
                .iter()
                .map(|d| {
                    format!(
                        "{} ({} files, {})",
                        d.dir,
                        d.files,
                        sync::human_bytes(d.bytes)
                    )
                })
                .collect();
            let top = if dirs.is_empty() {
                String::new()
            } else {
                format!("; top dirs: {}", dirs.join(", "))
            };
            output::warn(format!(
                "large sync {}: {size} ({}){top}",
                check.scope.as_str(),
                reasons.join(", ")
            ));
            Ok(())
        }
    }
}

/// Tells the user about what the manifest kept or left out on its own.
pub fn warn_about(manifest: &Manifest) {
    if !manifest.protected_tracked.is_empty() {
        let examples: Vec<String> = manifest
            .protected_tracked
            .iter()
            .take(EXAMPLES)
            .map(|p| format!("{} ({})", p.path, p.pattern))
            .collect();
        output::warn(format!(
            "syncing {} tracked files that built-in excludes would skip: {}{}; add them to .crabboxignore to leave them out",
            manifest.protected_tracked.len(),
            examples.join(", "),
            more(manifest.protected_tracked.len())
        ));
    }
    if !manifest.skipped.is_empty() {
        output::warn(format!(
            "not syncing {} paths that are not UTF-8 or leave the sync root: {}{}",
            manifest.skipped.len(),
            manifest
                .skipped
                .iter()
                .take(EXAMPLES)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            more(manifest.skipped.len())
        ));
    }
}

/// What besides the scope and the `delete`/`checksum` flags keys the fingerprint.
pub fn fingerprint_extra(config: &crabbox_core::config::Config) -> Vec<String> {
    vec![format!("gitSeed={}", config.sync.git_seed)]
}

fn more(total: usize) -> String {
    if total > EXAMPLES {
        format!(" and {} more", total - EXAMPLES)
    } else {
        String::new()
    }
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
                if prev.excludes == syncstate::excludes_key(&self.scope) =>
            {
                syncstate::delta_paths(
                    prev,
                    runner.fingerprint.as_deref(),
                    &now.dirty.paths,
                    now.head.as_deref(),
                    |a, b| sync::changed_between(&self.root, a, b).ok(),
                )
            }
            _ => None,
        };
        match delta {
            Some(paths) => self.delta_payload(paths.into_iter().collect(), seed).await,
            None => self.full_payload(seed).await,
        }
    }

    fn dirty(&self) -> Option<&DirtyDelta> {
        self.local.get().map(|(state, _)| &state.dirty)
    }

    async fn delta_payload(
        self,
        paths: Vec<String>,
        seed: Option<git_seed::GitSeed>,
    ) -> Result<SyncPayload, BoxError> {
        if let Some(dirty) = self.dirty().filter(|d| !d.paths.is_empty()) {
            let check = sync::check_guardrails(&Manifest::default(), Some(dirty), &self.limits);
            enforce_guardrails(&check, &Manifest::default())?;
        }
        let mut upserts = Vec::new();
        let mut gone = Vec::new();
        let mut bytes = 0;
        for path in paths {
            // Paths from the dirty sets are in scope already; paths that changed between two
            // commits are tracked, so the ambiguous built-ins keep them as in a full manifest.
            let in_scope = !matches!(
                self.scope.excludes.verdict(&path, false, true),
                Verdict::Excluded(_)
            ) && self.scope.include.matches(&path);
            match std::fs::symlink_metadata(self.root.join(&path)) {
                Ok(meta) if !meta.is_dir() && in_scope => {
                    bytes += meta.len();
                    upserts.push(path);
                }
                _ => gone.push(path),
            }
        }
        let tar = inline_tar(&self.root, &upserts, bytes).await;
        Ok(SyncPayload {
            manifest: nul(&upserts),
            deleted: nul(&gone),
            delta: true,
            tar,
            files: upserts.len(),
            bytes,
            local_root: self.root,
            rsync: self.rsync,
            git: seed,
        })
    }

    async fn full_payload(self, seed: Option<git_seed::GitSeed>) -> Result<SyncPayload, BoxError> {
        let m = tokio::task::spawn_blocking({
            let (root, scope) = (self.root.clone(), self.scope.clone());
            move || sync::build_manifest(&root, &scope)
        })
        .await??;
        warn_about(&m);
        let check = sync::check_guardrails(&m, self.dirty(), &self.limits);
        enforce_guardrails(&check, &m)?;
        Ok(SyncPayload {
            manifest: m.files_from_bytes(),
            deleted: m.deleted_from_bytes(),
            delta: false,
            tar: None,
            files: m.files.len(),
            bytes: m.total_bytes,
            local_root: self.root,
            rsync: self.rsync,
            git: seed,
        })
    }
}
