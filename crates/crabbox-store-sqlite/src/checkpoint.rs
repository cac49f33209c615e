//! WAL checkpoints on a thread of their own, so that no request pays for one.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: that
//! commit copies every page back into the database file and fsyncs it while it still holds the
//! writer, and every write queued behind it waits (the tail of the heartbeat latency). Here the
//! writer's automatic checkpoint is only a backstop (at [`crate::conn::BACKSTOP_PAGES`]) and
//! this thread runs a `PASSIVE` checkpoint on its own connection every [`INTERVAL`]: passive
//! checkpoints take no lock that writers or readers wait for.
//!
//! The log starts over from its beginning only at a commit that finds it entirely copied,
//! which under steady writes a concurrent checkpoint never achieves (the writer appends while it
//! copies). So once the log is past [`CATCH_UP_PAGES`], the thread takes the writer's mutex for
//! a second pass (`RESTART`), which copies what is left, syncs the log and the database file,
//! and waits for readers of the old log to finish, so that the next commit starts the log over.
//! Writers wait for that pass, so the thread first makes it short: passive passes back to back
//! until little is left to copy, then it syncs the database file (a passive pass that does not
//! catch up leaves what it copied unsynced) and the log (until a sync finds little to write)
//! itself. Measured on a 2-core VM under 16 busy clients, the pass went from 8-15 ms (syncing
//! megabytes) to 2-6 ms.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crabbox_store::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::conn::Connections;
use crate::opening;

/// How often the thread checkpoints.
const INTERVAL: Duration = Duration::from_millis(50);

/// Log size (pages, about 16 MiB) above which a checkpoint holds writers off to finish (see
/// the module docs). Each time costs writers a few milliseconds, so not too often: at 1,000
/// pages it came every ~100 ms under 16 busy clients and put the heartbeat p99 over 10 ms; at
/// 4,000 the log peaks near 40 MiB.
const CATCH_UP_PAGES: i64 = 4_000;

/// How long the second pass waits for readers still reading the old log.
const RESTART_WAIT: Duration = Duration::from_millis(5);

/// How often the second pass looks again for readers of the old log: a read takes tens of
/// microseconds, and SQLite's own busy handler would sleep a whole millisecond first.
const RESTART_POLL: Duration = Duration::from_micros(50);

/// Pages the second pass may have left to copy (it copies them, and syncs, while writers wait).
const LEFT_PAGES: i64 = 64;

/// Most passive passes (or log syncs) run back to back to get there.
const MAX_PASSES: usize = 4;

/// A log sync this quick found little to write.
const QUICK_SYNC: Duration = Duration::from_millis(1);

/// The running checkpoint thread; stopped when dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode).
    pub(crate) fn start(path: &Path, db: Arc<Connections>) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        // Only the second pass waits (for readers of the old log, which take microseconds);
        // a passive checkpoint never does.
        .and_then(|conn| conn.busy_handler(Some(wait_for_readers)).map(|()| conn))
        .map_err(|e| opening(path, &e))?;
        // A passive pass that does not catch up with the writer leaves the pages it copied
        // unsynced; the second pass would sync them all while writers wait. This handle syncs
        // them before.
        let database = std::fs::File::open(path)
            .map_err(|e| StoreError::Backend(format!("could not open {}: {e}", path.display())))?;
        let log_path = {
            let mut name = path.as_os_str().to_owned();
            name.push("-wal");
            std::path::PathBuf::from(name)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::park_timeout(INTERVAL);
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    // Busy or failed: the next tick (or the writer's backstop) catches up.
                    let Ok(pass) = passive(&conn) else { continue };
                    if pass.log > CATCH_UP_PAGES
                        && converge(&conn, pass)
                        && database.sync_data().is_ok()
                        && presync(&log_path)
                    {
                        // Closed store: nothing left to catch up with.
                        let Ok(_writers_wait) = db.writer() else {
                            break;
                        };
                        let _ = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                    }
                }
            })
            .map_err(|e| {
                StoreError::Backend(format!("could not start the sqlite checkpoint thread: {e}"))
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for a checkpoint in progress.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The checkpoint connection's busy handler: polls every [`RESTART_POLL`], up to
/// [`RESTART_WAIT`] in all.
fn wait_for_readers(attempt: i32) -> bool {
    let waited = RESTART_POLL * u32::try_from(attempt).unwrap_or(u32::MAX);
    if waited >= RESTART_WAIT {
        return false;
    }
    std::thread::sleep(RESTART_POLL);
    true
}

/// Syncs the log until a sync finds little left to write (writers keep appending meanwhile),
/// so that the one in the second pass, while writers wait, is short. False if it failed.
fn presync(log_path: &Path) -> bool {
    let Ok(log) = std::fs::File::open(log_path) else {
        return false;
    };
    for _ in 0..MAX_PASSES {
        let started = std::time::Instant::now();
        if log.sync_data().is_err() {
            return false;
        }
        if started.elapsed() < QUICK_SYNC {
            break;
        }
    }
    true
}

/// What a checkpoint pass saw and did, in pages.
#[derive(Debug, Clone, Copy)]
struct Pass {
    /// In the log.
    log: i64,
    /// Of those, copied into the database by now.
    copied: i64,
}

impl Pass {
    fn left(self) -> i64 {
        self.log - self.copied
    }
}

/// Runs a passive checkpoint.
fn passive(conn: &Connection) -> rusqlite::Result<Pass> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Pass {
            log: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// Repeats passive passes until what is left for the second pass (what writers wait for) is
/// small: each pass copies what was appended during the one before, so each is shorter. False
/// if a pass failed.
fn converge(conn: &Connection, mut pass: Pass) -> bool {
    for _ in 0..MAX_PASSES {
        if pass.left() <= LEFT_PAGES {
            break;
        }
        match passive(conn) {
            Ok(next) => pass = next,
            Err(_) => return false,
        }
    }
    true
}
