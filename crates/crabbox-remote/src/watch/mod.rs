//! A file-system watcher that lets the sync fingerprint skip `git status` when nothing under
//! the sync root changed (Linux, inotify).
//!
//! Proving "nothing changed" by looking costs one `git status`, a scan of every tracked file;
//! the only cheaper proof is to have been told about every change. A daemon per sync root
//! (`crabbox __watch`) watches every directory under it and counts changes in a generation.
//! The fingerprint's caller asks the daemon for its generation *before* computing and caches
//! `(daemon nonce, generation, key, state)`; the next lookup returns the cached state without
//! running git when the same daemon reports the same generation and the key (options, git
//! configuration files outside the root, environment) still matches. Everything else — no
//! daemon, a slow or confused one, a daemon that lost events or hit the watch limit — falls
//! back to computing, silently; a missing daemon is started once per process.
//!
//! What inotify cannot see is documented in `docs/design/data-plane.md`: writes through hard
//! links that live outside the root, writes through shared memory maps that never close the
//! file, and network or FUSE file systems (refused outright).

mod cache;
#[cfg(target_os = "linux")]
pub mod daemon;
mod dir;
pub mod protocol;
#[cfg(target_os = "linux")]
mod tree;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use dir::WatchDir;
pub use protocol::{Answer, AskError, ask};

use crate::sync::{FingerprintOptions, LocalState, SyncError};

/// Whether this platform has a watcher.
pub const SUPPORTED: bool = cfg!(target_os = "linux");
/// How long a lookup waits for the daemon's answer before computing instead.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(20);

/// How to start a daemon: `program args… <root> <watch dir>`, detached.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

/// Watcher settings for fingerprint lookups; one per run (clones share it).
#[derive(Debug, Clone)]
pub struct Watch {
    /// The CLI state directory; per-root directories live under `<state>/watch`.
    pub state_dir: PathBuf,
    pub launcher: Launcher,
    /// How long to wait for an answer ([`ASK_TIMEOUT`] unless changed).
    pub timeout: Duration,
    /// Set once this `Watch` started a daemon: a daemon that cannot start costs one spawn
    /// per run at most.
    spawned: Arc<AtomicBool>,
}

impl Watch {
    pub fn new(state_dir: PathBuf, launcher: Launcher) -> Self {
        Self {
            state_dir,
            launcher,
            timeout: ASK_TIMEOUT,
            spawned: Arc::default(),
        }
    }

    /// Starts a daemon for `root` unless this `Watch` already started one.
    fn spawn_once(&self, root: &Path, dir: &WatchDir) {
        if self.spawned.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut args = self.launcher.args.clone();
        args.push(root.as_os_str().to_owned());
        args.push(dir.path().as_os_str().to_owned());
        let _ = crate::process::spawn_detached(&self.launcher.program, &args, &self.launcher.env);
    }
}

/// Where a fingerprint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The cached state: the watcher saw no change since it was computed; git did not run.
    Watcher,
    /// Computed now (`git status` or a walk).
    Computed,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Watcher => "watcher",
            Self::Computed => "computed",
        }
    }
}

/// The result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// Nothing changed since this state was computed.
    Hit(LocalState),
    /// Compute the state, then hand it to [`Pending::store`].
    Miss(Pending),
}

/// A lookup that missed: remembers the daemon's generation read before computing.
#[derive(Debug)]
pub struct Pending {
    target: Option<cache::Target>,
}

impl Pending {
    /// Caches `state`, computed after the lookup, for the next lookup (when the daemon's answer
    /// can be trusted later).
    pub fn store(self, state: &LocalState) {
        if let Some(target) = self.target {
            target.store(state);
        }
    }
}

/// Asks the daemon for `root` and compares its answer with the cached entry. Starts a daemon
/// when none is listening. Never fails: trouble of any kind is a miss.
pub fn lookup(watch: &Watch, root: &Path, opts: &FingerprintOptions<'_>) -> Lookup {
    let miss = || Lookup::Miss(Pending { target: None });
    if !SUPPORTED {
        return miss();
    }
    let Ok(root) = root.canonicalize() else {
        return miss();
    };
    let Ok(dir) = WatchDir::for_root(&watch.state_dir, &root) else {
        return miss();
    };
    let answer = match protocol::ask(&dir.socket(), watch.timeout) {
        Ok(answer) => answer,
        Err(AskError::Absent) => {
            watch.spawn_once(&root, &dir);
            return miss();
        }
        Err(_) => return miss(),
    };
    if !answer.ready {
        return miss();
    }
    match cache::check(&dir, &root, opts, &answer) {
        cache::Check::Hit(state) => Lookup::Hit(state),
        cache::Check::Miss(target) => Lookup::Miss(Pending { target }),
    }
}

/// [`crate::sync::local_state`], served from the watcher's cache when it proves nothing
/// changed. Without `watch` (or off Linux) it is exactly `local_state`.
pub fn local_state(
    root: &Path,
    opts: &FingerprintOptions<'_>,
    watch: Option<&Watch>,
) -> Result<(LocalState, Source), SyncError> {
    let pending = match watch.map(|w| lookup(w, root, opts)) {
        Some(Lookup::Hit(state)) => return Ok((state, Source::Watcher)),
        Some(Lookup::Miss(pending)) => Some(pending),
        None => None,
    };
    let state = crate::sync::local_state(root, opts)?;
    if let Some(pending) = pending {
        pending.store(&state);
    }
    Ok((state, Source::Computed))
}

/// The daemon's state for `root`, for `doctor`: `Ok(None)` when none is running.
pub fn status(state_dir: &Path, root: &Path) -> std::io::Result<Option<Answer>> {
    let root = root.canonicalize()?;
    let dir = WatchDir::for_root(state_dir, &root)?;
    match protocol::ask(&dir.socket(), Duration::from_secs(1)) {
        Ok(answer) => Ok(Some(answer)),
        Err(AskError::Absent) => Ok(None),
        Err(AskError::Io(e)) => Err(e),
        Err(AskError::Garbage) => Err(std::io::Error::other(
            "the watcher's answer was not understood",
        )),
    }
}
