//! Git-aware sync planning on the local side: which paths are in scope (excludes, include
//! whitelist), the manifest rsync sends, the large-sync guardrails, and the fingerprint that
//! lets an unchanged tree skip the sync. Everything here is blocking and spawns at most one
//! `git` per call; callers on an async runtime use `spawn_blocking`.
//!
//! Typical use:
//!
//! ```no_run
//! use std::path::Path;
//! use crabbox_remote::sync::{
//!     FingerprintOptions, Limits, ManifestOptions, build_manifest, check_guardrails,
//!     local_state,
//! };
//!
//! # fn main() -> Result<(), crabbox_remote::sync::SyncError> {
//! let root = Path::new(".");
//! let scope = ManifestOptions::load(root, &[], &[])?;
//! let state = local_state(root, &FingerprintOptions { scope: &scope, delete: true, checksum: false, extra: &[] })?;
//! let manifest = build_manifest(root, &scope)?;
//! let check = check_guardrails(&manifest, Some(&state.dirty), &Limits::default());
//! # let _ = check;
//! # Ok(())
//! # }
//! ```

mod error;
pub mod exclude;
pub mod fingerprint;
pub(crate) mod git;
mod glob;
pub mod guardrail;
pub mod manifest;
#[cfg(test)]
mod testing;
mod walk;

pub use error::SyncError;
pub use exclude::{ExcludeRule, ExcludeRules, IncludeRules, RuleOrigin, Verdict};
pub use fingerprint::{DirtyDelta, FingerprintOptions, LocalState, local_state};
pub use git::{changed_between, git_dir, is_git_root};
pub use guardrail::{
    DirSize, GuardrailCheck, GuardrailOutcome, GuardrailScope, Limits, check_guardrails,
    human_bytes, top_dirs, top_files,
};
pub use manifest::{Manifest, ManifestEntry, ManifestOptions, ProtectedTracked, build_manifest};
