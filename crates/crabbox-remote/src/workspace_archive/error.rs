//! What can go wrong with a workspace archive. [`ArchiveError::Refused`] and
//! [`ArchiveError::Invalid`] are the archive's fault (a CLI's "bad input" exit code); the other
//! variants are the runner's, the network's or this machine's.

use std::path::PathBuf;

use crate::process::ProcessError;

use super::MAX_ENTRIES;

/// Error creating, checking or restoring a workspace archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry the check refuses (hostile or unusable); nothing on the runner was changed.
    #[error("archive entry {entry:?} {reason}")]
    Refused { entry: String, reason: Refusal },
    /// The file is not a readable workspace archive: unknown format, corrupt or truncated.
    #[error("{} is not a valid workspace archive: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// The archive file does not exist.
    #[error("archive {} does not exist", .0.display())]
    Missing(PathBuf),
    /// The workdir to archive does not exist on the runner.
    #[error("workdir {workdir} does not exist on {host}")]
    MissingWorkdir { host: String, workdir: String },
    /// The workdir given for a restore cannot be one (empty, `/`, or ending in `.` or `..`).
    #[error("cannot restore into {0:?}: not a workdir path")]
    InvalidWorkdir(String),
    /// ssh or the remote side failed; `detail` ends with the tail of the remote stderr.
    #[error("{action} on {host} failed: {detail}")]
    Remote {
        host: String,
        action: &'static str,
        detail: String,
        #[source]
        source: Option<ProcessError>,
    },
    /// Reading or writing a local file failed.
    #[error("io error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ArchiveError {
    /// Whether the archive itself is at fault (refused or unreadable), as opposed to the runner,
    /// the connection or this machine.
    pub fn is_bad_archive(&self) -> bool {
        matches!(self, Self::Refused { .. } | Self::Invalid { .. })
    }

    pub(super) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(super) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Why the check refused an entry; the message follows the entry's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is an absolute path")]
    Absolute,
    #[error("escapes the workdir")]
    Escapes,
    #[error("passes through the symlink {0:?}")]
    ThroughSymlink(String),
    #[error("is a symlink to {0:?}, outside the workdir")]
    SymlinkOutside(String),
    /// A symlink target that climbs (`..`) out of a path that is itself a symlink, so where it
    /// ends cannot be known from the archive.
    #[error("is a symlink to {target:?}, which climbs out of the symlink {via:?}")]
    SymlinkClimbs { target: String, via: String },
    #[error("is a hard link to {0:?}, outside the workdir")]
    HardLinkOutside(String),
    #[error("is a link with an empty target")]
    EmptyLink,
    #[error("is a {}, which a workspace archive may not contain", special_name(*.0))]
    Special(u8),
    #[error("is a directory or link that claims to carry data")]
    UnexpectedData,
    #[error("is inside {0}, which belongs to the lease and is never restored")]
    Protected(&'static str),
    #[error("would replace {0} with something that is not a directory")]
    NotADirectory(&'static str),
    #[error("is past the limit of {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("is past the number of links the check can keep track of")]
    TooManyLinks,
}

/// The name of a tar entry type the check refuses.
fn special_name(typeflag: u8) -> String {
    match typeflag {
        b'3' => "character device".to_owned(),
        b'4' => "block device".to_owned(),
        b'6' => "fifo".to_owned(),
        b'S' => "sparse file".to_owned(),
        b'D' => "GNU dump directory".to_owned(),
        b'V' => "volume label".to_owned(),
        b'M' => "multi-volume continuation".to_owned(),
        other => format!("tar entry of type {:?}", char::from(other)),
    }
}
