//! The coordinator's default store: one SQLite file in WAL mode, used by one coordinator
//! process. Implements [`crabbox_store::Store`]; this crate owns the SQL, the schema
//! (`migrations/`, applied on open and kept in lockstep with `crabbox-store-postgres`) and the
//! reconciler's leader lock (an exclusive file lock on `<database>.leader`). It does not own the
//! record types or their rules (`crabbox-api`, `crabbox-store`).
//!
//! Writes go through one writer connection, so writers queue for it instead of spinning on
//! `SQLITE_BUSY`; reads use a few read-only connections, which WAL lets run alongside the
//! writer. Every write is one statement (a run with its events and log goes through a view's
//! `INSTEAD OF` trigger), because each statement is a round trip to the connection's thread:
//! there is no multi-statement transaction holding the write lock across round trips, and no
//! read lock ever has to be upgraded to a write lock. Other processes on the same file wait up
//! to five seconds for the write lock.

mod conn;
mod kv;
mod leader;
mod leases;
mod migrate;
mod runs;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crabbox_store::StoreError;
use sqlx::ConnectOptions as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};

use crate::conn::Connections;

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections next to the writer.
const READERS: usize = 2;

/// A coordinator store in one SQLite database.
pub struct SqliteStore {
    writer: Arc<Connections>,
    reader: Arc<Connections>,
    leader: leader::LeaderLock,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path` and brings its schema up to
    /// date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        migrate::run(options.clone(), path).await?;
        let writer = connect(options.clone(), path).await?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(connect(options.clone().read_only(true), path).await?);
        }
        let (writer, reader) = (
            Arc::new(Connections::new(vec![writer])),
            Arc::new(Connections::new(readers)),
        );
        Ok(Self {
            writer,
            reader,
            leader: leader::LeaderLock::File(leader_path(path)),
            path: Some(path.to_owned()),
        })
    }

    /// Opens a private in-memory database (one connection; gone when the store is dropped),
    /// for tests that need no file.
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .in_memory(true)
            .foreign_keys(true);
        let mut conn = connect(options, Path::new(":memory:")).await?;
        migrate::run_on(&mut conn).await?;
        let conn = Arc::new(Connections::new(vec![conn]));
        Ok(Self {
            writer: Arc::clone(&conn),
            reader: conn,
            leader: leader::LeaderLock::Memory(Arc::new(AtomicBool::new(false))),
            path: None,
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Closes every connection, waiting for running statements; later calls fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

async fn connect(
    options: SqliteConnectOptions,
    path: &Path,
) -> Result<SqliteConnection, StoreError> {
    options.connect().await.map_err(|e| opening(path, &e))
}

/// `<database path>.leader`, the file the reconciler's leader holds locked.
fn leader_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".leader");
    PathBuf::from(name)
}

fn opening(path: &Path, e: &sqlx::Error) -> StoreError {
    StoreError::Backend(format!(
        "could not open sqlite database {}: {e}",
        path.display()
    ))
}

/// A database failure as the store reports it.
#[expect(
    clippy::needless_pass_by_value,
    reason = "by value so that it reads `.map_err(backend)`"
)]
pub(crate) fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}
