//! `crabbox __watch <root> <dir>` (hidden): the file watcher daemon for one sync root, which
//! the fingerprint starts detached the first time it finds none (see `crabbox_remote::watch`).
//! Also builds the watcher settings the fingerprint's callers pass along.

use std::path::PathBuf;

use crabbox_remote::watch::{Launcher, Watch};

use crate::lease::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The canonical sync root to watch.
    pub root: PathBuf,
    /// The root's private watcher directory (socket, lock, cache).
    pub dir: PathBuf,
}

/// Runs the daemon until it exits; its stdio is `/dev/null`, so failures only show in the
/// exit code.
#[cfg(target_os = "linux")]
pub fn run(args: &Args) -> u8 {
    use crabbox_remote::watch::WatchDir;
    use crabbox_remote::watch::daemon::{self, DaemonOptions};
    let Ok(dir) = WatchDir::existing(args.dir.clone()) else {
        return 1;
    };
    match daemon::serve(&DaemonOptions::new(args.root.clone(), dir)) {
        Ok(_) => 0,
        Err(_) => 1,
    }
}

#[cfg(not(target_os = "linux"))]
pub fn run(_args: &Args) -> u8 {
    crate::output::err("error: the file watcher needs Linux (inotify)");
    1
}

/// The watcher settings for fingerprints in this run: `None` when `sync.watch` is off or the
/// platform has no watcher. Daemons are this binary's `__watch`.
pub fn settings(ctx: &Ctx) -> Option<Watch> {
    if !ctx.settings.config().sync.watch || !crabbox_remote::watch::SUPPORTED {
        return None;
    }
    let program = std::env::current_exe().ok()?;
    Some(Watch::new(
        ctx.state_dir.clone(),
        Launcher {
            program,
            args: vec!["__watch".into()],
            env: Vec::new(),
        },
    ))
}
