//! The reconciler's leader role on SQLite: an exclusive, non-blocking `flock` on
//! `<database>.leader`. The kernel drops the lock when the file is closed, also when the
//! process dies, so a crashed leader never blocks the next one. Locks taken through separate
//! opens exclude each other also within one process.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crabbox_store::{LeaderGuard, StoreError};
use rustix::fs::{FlockOperation, flock};

#[derive(Debug)]
pub(crate) enum LeaderLock {
    /// Lock file next to the database.
    File(PathBuf),
    /// An in-memory database is private to its store: a flag is enough.
    Memory(Arc<AtomicBool>),
}

impl LeaderLock {
    /// Fails when the lock file cannot be opened for writing, so that a coordinator that could
    /// never run the reconciler says so when it starts instead of warning every pass.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match self {
            Self::File(path) => open(path).map(drop).map_err(|e| lock_error(path, &e)),
            Self::Memory(_) => Ok(()),
        }
    }

    pub(crate) fn try_acquire(&self) -> Result<Option<Box<dyn LeaderGuard>>, StoreError> {
        match self {
            Self::File(path) => {
                let file = open(path).map_err(|e| lock_error(path, &e))?;
                match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                    Ok(()) => Ok(Some(Box::new(FileGuard { _file: file }))),
                    Err(e) if e == rustix::io::Errno::WOULDBLOCK => Ok(None),
                    Err(e) => Err(lock_error(path, &e.into())),
                }
            }
            Self::Memory(flag) => Ok(flag
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
                .then(|| Box::new(FlagGuard(Arc::clone(flag))) as Box<dyn LeaderGuard>)),
        }
    }
}

fn open(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

fn lock_error(path: &std::path::Path, e: &io::Error) -> StoreError {
    StoreError::Backend(format!("leader lock {}: {e}", path.display()))
}

/// Holds the lock while the file stays open.
#[derive(Debug)]
struct FileGuard {
    _file: File,
}

impl LeaderGuard for FileGuard {
    fn is_held(&self) -> bool {
        // A flock cannot be taken away from an open file.
        true
    }
}

#[derive(Debug)]
struct FlagGuard(Arc<AtomicBool>);

impl LeaderGuard for FlagGuard {
    fn is_held(&self) -> bool {
        true
    }
}

impl Drop for FlagGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
