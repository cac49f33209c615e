//! The store's connections: one writer and a few read-only connections, each behind a plain
//! mutex and used inline on the calling thread.
//!
//! A statement takes microseconds, so a caller runs a read directly, even from an async task,
//! instead of handing it to another thread and waiting: that hand-off (two context switches
//! per statement) cost more than the statement itself. A guard is held only for the
//! statements of one store call and never across an `.await` (the store's functions that
//! take a [`Conn`] are not async). Writes go through [`Connections::write`]: inline when the
//! writer is idle, else committed in a batch by the writer thread (`writer`).

use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crabbox_store::StoreError;
use rusqlite::{Connection, OpenFlags};

use crate::writer::{Writer, lock, try_lock};

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's own automatic checkpoint, for when the checkpoint thread (`checkpoint`) cannot
/// keep up: about 100 MiB of log at the default page size (the thread keeps the log under
/// about 40 MiB).
pub(crate) const BACKSTOP_PAGES: i64 = 25_000;

/// Prepared statements kept per connection: more than the store has distinct statements,
/// counting the shapes of the filtered list queries that are in use.
const STATEMENT_CACHE: usize = 64;

type Slot = Mutex<Option<Connection>>;

#[derive(Debug)]
pub(crate) struct Connections {
    writer: Writer,
    /// Empty for an in-memory database, which exists only on the writer's connection.
    readers: Vec<Slot>,
    /// Which reader a caller waits for when all are busy.
    next: AtomicUsize,
}

/// One connection, exclusively, until dropped.
#[derive(Debug)]
pub(crate) struct Conn<'a>(MutexGuard<'a, Option<Connection>>);

impl Deref for Conn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0.as_ref().expect("checked when the guard was made")
    }
}

impl<'a> Conn<'a> {
    fn new(guard: MutexGuard<'a, Option<Connection>>) -> Result<Self, StoreError> {
        if guard.is_none() {
            return Err(StoreError::Backend(
                "sqlite: the store is closed".to_owned(),
            ));
        }
        Ok(Self(guard))
    }
}

impl Connections {
    pub(crate) fn new(writer: Connection, readers: Vec<Connection>) -> Result<Self, StoreError> {
        Ok(Self {
            writer: Writer::start(writer)?,
            readers: readers.into_iter().map(|c| Mutex::new(Some(c))).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `job`, a write, on the writer connection and returns its result once committed
    /// (see `writer`). `job` must make at most one change (one effective statement), or make
    /// its changes inside `writer::all_or_nothing`.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(job).await
    }

    /// The writer connection itself, once the write before has finished: held, it keeps
    /// every write waiting.
    pub(crate) fn writer(&self) -> Result<Conn<'_>, StoreError> {
        Conn::new(lock(self.writer.slot()))
    }

    /// For a lookup by primary key: the writer if it is idle, else a reader. A reader's page
    /// cache is discarded at the first read after any write, so under steady writes every
    /// lookup on a reader fetches its pages again; the writer's cache stays warm. Only point
    /// lookups take the writer (they hold it for microseconds); scans stay on the readers.
    pub(crate) fn point_reader(&self) -> Result<Conn<'_>, StoreError> {
        match try_lock(self.writer.slot()) {
            Some(guard) => Conn::new(guard),
            None => self.reader(),
        }
    }

    /// An idle reader if there is one, else one in turn once it is free.
    pub(crate) fn reader(&self) -> Result<Conn<'_>, StoreError> {
        if self.readers.is_empty() {
            return self.writer();
        }
        let idle = self.readers.iter().find_map(try_lock);
        let guard = idle.unwrap_or_else(|| {
            let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
            lock(&self.readers[turn])
        });
        Conn::new(guard)
    }

    /// Every connection, writer first, for a health check.
    pub(crate) fn each(&self) -> impl Iterator<Item = Result<Conn<'_>, StoreError>> {
        std::iter::once(self.writer.slot())
            .chain(&self.readers)
            .map(|slot| Conn::new(lock(slot)))
    }

    /// Closes every connection once its current call is done; later calls fail.
    pub(crate) fn close(&self) {
        for slot in self.readers.iter().chain([self.writer.slot()]) {
            drop(lock(slot).take());
        }
    }
}

/// Opens the writer connection on `path`, creating the file if missing, in WAL mode.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Set first, so that a second process opening the same new file waits for the first.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    enter_wal(&conn)?;
    // In WAL mode, NORMAL syncs at checkpoints only: a power loss may undo the last commits
    // but never corrupts the file.
    conn.pragma_update(None, "synchronous", "normal")?;
    // Checkpoints run on their own thread (`checkpoint`); this is the writer's backstop.
    conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)?;
    configure(&conn)?;
    Ok(conn)
}

/// Switches the database to WAL mode (a no-op when it is already). The switch takes the file's
/// exclusive lock without SQLite's busy handler, so while another connection opening the same
/// new file holds a lock it fails at once with `SQLITE_BUSY` (or leaves the mode unchanged):
/// retried here until the busy timeout.
fn enter_wal(conn: &Connection) -> Result<(), rusqlite::Error> {
    let started = std::time::Instant::now();
    loop {
        let mode = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get::<_, String>(0));
        let busy = match &mode {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => true,
            Err(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy),
        };
        if !busy || started.elapsed() >= BUSY_TIMEOUT {
            return match mode {
                Ok(mode) => Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(format!(
                        "could not switch the database to WAL mode (it stays {mode})"
                    )),
                )),
                Err(e) => Err(e),
            };
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Opens a read-only connection on the (existing, migrated) database at `path`.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    configure(&conn)?;
    Ok(conn)
}

/// A private in-memory database.
pub(crate) fn open_memory() -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_in_memory()?;
    configure(&conn)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.pragma_update(None, "foreign_keys", "on")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}
