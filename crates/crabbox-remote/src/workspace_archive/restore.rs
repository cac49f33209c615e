//! Restoring an archive onto a runner, and its dry run. The archive is extracted into a staging
//! directory next to the workdir while it is checked (`receive.rs`); only when both succeeded does
//! a second call move the stage into place, by renames on one file system. Until then the
//! workdir is untouched, and a refused archive leaves nothing behind.

use std::path::Path;

use rand_core::RngCore;

use crate::ssh::SshTarget;

use super::format::Format;
use super::receive::{Received, receive};
use super::{ArchiveError, CheckReport, blocking, check, remote};

const RESTORE_SCRIPT: &str = include_str!("scripts/restore.pl");

/// How a restore treats what is already in the workdir.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreMode {
    /// Replace the workdir with the archive's tree. Without it the archive is merged in: what
    /// the archive holds replaces what is there, everything else stays.
    pub clear: bool,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreStats {
    pub workdir: String,
    pub clear: bool,
    /// Entries in the archive (files, directories, links).
    pub entries: u64,
    /// Archive bytes sent to the runner.
    pub bytes_sent: u64,
}

/// What a restore would do (its dry run): the archive's check, and the workdir as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub workdir: String,
    pub clear: bool,
    pub check: CheckReport,
    /// Whether the workdir exists (as a directory).
    pub workdir_exists: bool,
    /// Entries directly in the workdir now: what `clear` would remove (1 when a file stands
    /// where the workdir should be).
    pub top_level_entries: u64,
}

/// Checks `archive` here and looks at `workdir` on the runner, changing nothing.
pub async fn plan(
    target: &SshTarget,
    archive: &Path,
    workdir: &str,
    mode: RestoreMode,
) -> Result<RestorePlan, ArchiveError> {
    let workdir = workdir_path(workdir)?;
    let path = archive.to_owned();
    let (checked, probed) = tokio::join!(blocking(move || check(&path)), probe(target, &workdir));
    let check = checked?;
    let (workdir_exists, top_level_entries) = probed?;
    Ok(RestorePlan {
        workdir,
        clear: mode.clear,
        check,
        workdir_exists,
        top_level_entries,
    })
}

/// Restores `archive` into `workdir` on the runner (creating it and its parents as needed).
/// When the archive is refused or anything fails before the final step, the workdir is left
/// as it was and the staging directory is removed.
pub async fn restore(
    target: &SshTarget,
    archive: &Path,
    workdir: &str,
    mode: RestoreMode,
) -> Result<RestoreStats, ArchiveError> {
    let workdir = workdir_path(workdir)?;
    let opened = Format::open(archive)?;
    let suffix = random_suffix();
    let stage = format!("{workdir}.crabbox-restore-{suffix}");
    let outcome: Result<Received, ArchiveError> = async {
        let received = receive(target, archive, opened, &stage).await?;
        apply(target, &stage, &workdir, &suffix, mode).await?;
        Ok(received)
    }
    .await;
    let received = match outcome {
        Ok(received) => received,
        Err(err) => {
            // Best effort: the runner's scripts clean up after their own failures too.
            let discard = remote::perl(target, RESTORE_SCRIPT, &["discard", &stage]);
            let _ = remote::run(target, "removing the staging directory", discard).await;
            return Err(err);
        }
    };
    Ok(RestoreStats {
        workdir,
        clear: mode.clear,
        entries: received.report.entries,
        bytes_sent: received.sent,
    })
}

/// The second call: moves the stage into place.
async fn apply(
    target: &SshTarget,
    stage: &str,
    workdir: &str,
    suffix: &str,
    mode: RestoreMode,
) -> Result<(), ArchiveError> {
    let old = format!("{workdir}.crabbox-old-{suffix}");
    let cmd = if mode.clear {
        remote::perl(target, RESTORE_SCRIPT, &["clear", stage, workdir, &old])
    } else {
        remote::perl(target, RESTORE_SCRIPT, &["merge", stage, workdir])
    };
    remote::run(target, "applying the restored archive", cmd)
        .await
        .map(drop)
}

/// Whether `workdir` exists as a directory, and how many entries it holds.
async fn probe(target: &SshTarget, workdir: &str) -> Result<(bool, u64), ArchiveError> {
    let action = "looking at the workdir";
    let cmd = remote::perl(target, RESTORE_SCRIPT, &["probe", workdir]);
    let out = remote::run(target, action, cmd).await?;
    let mut words = out.split_whitespace();
    match (words.next(), words.next().and_then(|n| n.parse().ok())) {
        (Some("dir"), Some(entries)) => Ok((true, entries)),
        (Some("other" | "none"), Some(entries)) => Ok((false, entries)),
        _ => Err(remote::remote_error(
            target,
            action,
            format!("unexpected answer {:?}", out.trim()),
            None,
        )),
    }
}

/// The workdir without trailing slashes; refuses paths that cannot be replaced by a rename.
fn workdir_path(workdir: &str) -> Result<String, ArchiveError> {
    let trimmed = workdir.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or_default();
    if matches!(last, "" | "." | "..") {
        return Err(ArchiveError::InvalidWorkdir(workdir.to_owned()));
    }
    Ok(trimmed.to_owned())
}

/// 16 random hex digits, so concurrent restores never share a staging directory.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdirs_are_paths_a_rename_can_replace() {
        assert_eq!(workdir_path("/work/repo/").unwrap(), "/work/repo");
        assert_eq!(workdir_path("repo").unwrap(), "repo");
        for bad in ["", "/", "//", "/work/.", "/work/..", ".."] {
            assert!(workdir_path(bad).is_err(), "{bad}");
        }
    }
}
