//! Workspace archives of checkpoints: a runner's workdir stored on this machine as a `.tar.zst`,
//! checked before it is trusted, and restored onto a runner without ever leaving the workdir
//! half-replaced.
//!
//! - [`create`] streams `tar -C <workdir> -cf - .` (zstd-compressed on the runner when it has
//!   zstd, here otherwise) into `<dest>.tmp` and renames it into place.
//! - [`check`] walks an archive's tar headers with bounded memory and refuses anything that could
//!   write outside the workdir, into the lease's own `.crabbox` state, or exhaust the runner's
//!   inodes. It also reads the `workspace.tar.gz` archives of the Go system.
//! - [`restore`] extracts into a staging directory next to the workdir while the same bytes are
//!   checked here, and only when both succeeded moves the stage into place with renames. The
//!   runner is sent only bytes whose entries have already passed the check (see `receive.rs`).
//!   [`plan`] is its dry run: the check and a read-only look at the workdir.
//!
//! The tar headers are parsed here rather than with a tar crate because the check must read them
//! exactly as GNU tar on the runner does (names from pax, GNU long names or the ustar prefix; a
//! hard link's size; the end-of-archive marker), and must bound the memory a hostile header can
//! claim.

mod check;
mod create;
mod error;
mod format;
mod receive;
mod remote;
mod restore;
mod tar_stream;
#[cfg(test)]
mod testing;

pub use check::{CheckReport, check};
pub use create::{ArchiveStats, create};
pub use error::{ArchiveError, Refusal};
pub use restore::{RestoreMode, RestorePlan, RestoreStats, plan, restore};

/// The most entries an archive may hold. A cap against archives built to exhaust a runner's
/// inodes (a million empty files compress to a few kilobytes): real workspaces stay far below
/// it, and a restore stops sending once an archive passes it.
pub const MAX_ENTRIES: u64 = 500_000;

/// Paths in a workdir that belong to the lease rather than to the workspace (its environment,
/// scripts, logs, captures and run records): never archived. In an archive, the environment
/// and scripts are refused (neither system ever archived them); logs, captures and run records
/// ([`SKIPPED_PATHS`], which the Go system's archives may hold) are left out of a restore.
pub const PROTECTED_PATHS: [&str; 5] = [
    ".crabbox/env",
    ".crabbox/scripts",
    ".crabbox/logs",
    ".crabbox/captures",
    ".crabbox/runs",
];

/// The protected paths a restore leaves out instead of refusing the archive.
pub const SKIPPED_PATHS: [&str; 3] = [".crabbox/logs", ".crabbox/captures", ".crabbox/runs"];

/// Runs blocking work (file IO, decompression) off the async runtime; a panic there is re-raised
/// here.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}
