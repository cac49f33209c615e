//! WAL checkpoints on a thread of their own, so that no request pays for one.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past 1,000 pages: that
//! commit copies every page back into the database file and fsyncs it while it still holds the
//! writer, and every write queued behind it waits (the tail of the heartbeat latency). Here the
//! writer's automatic checkpoint is only a backstop (at [`BACKSTOP_PAGES`]) and this thread runs
//! a `PASSIVE` checkpoint on its own connection every [`INTERVAL`]: passive checkpoints take
//! no lock that writers or readers wait for.
//!
//! The log starts over from its beginning only at a commit that finds it entirely copied,
//! which under steady writes a concurrent checkpoint never achieves (the writer appends while it
//! copies). So once the log is past [`CATCH_UP_PAGES`], the thread takes the writer's mutex for
//! a second pass (`RESTART`), which has only the frames appended during the first to copy and then
//! waits for readers of the old log to finish, so that the next commit starts the log over:
//! writers wait for that short copy and its fsync instead of for the whole checkpoint.

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

/// Log size (pages) above which a checkpoint holds writers off to finish (see the module docs).
const CATCH_UP_PAGES: i64 = 1_000;

/// How long the second pass waits for readers still reading the old log.
const RESTART_WAIT: Duration = Duration::from_millis(5);

/// The writer's own automatic checkpoint, for when this thread cannot keep up (about 40 MiB
/// of log at the default page size).
pub(crate) const BACKSTOP_PAGES: i64 = 10_000;

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
        .and_then(|conn| conn.busy_timeout(RESTART_WAIT).map(|()| conn))
        .map_err(|e| opening(path, &e))?;
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
                    let Ok(log) = passive(&conn) else { continue };
                    if log > CATCH_UP_PAGES {
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

/// Runs a passive checkpoint; the log's size in pages before it.
fn passive(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))
}
