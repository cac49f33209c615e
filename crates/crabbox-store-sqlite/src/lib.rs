//! The coordinator's default store: one SQLite file in WAL mode, used by one coordinator
//! process. Implements [`crabbox_store::Store`]; this crate owns the SQL, the schema
//! (`migrations/`, applied on open and kept in lockstep with `crabbox-store-postgres`) and the
//! reconciler's leader lock (an exclusive file lock on `<database>.leader`). It does not own the
//! record types or their rules (`crabbox-api`, `crabbox-store`).
//!
//! Reads run SQLite inline on the calling thread through `rusqlite` (see `conn`) on a few
//! read-only connections, which WAL lets run alongside the writer. There is one writer
//! connection, so writers never spin on `SQLITE_BUSY`: a write runs inline when the writer is
//! idle, and otherwise queues for the writer thread, which commits what is queued together
//! (group commit, see `writer`). Every write is one effective statement (a run with its events
//! and log goes through a view's `INSTEAD OF` trigger), except a batch of kv documents, whose
//! statements share a savepoint; a read lock is never upgraded to a write lock. Other processes on the same file wait up to five seconds for the write lock.

mod checkpoint;
mod conn;
mod integrity;
mod kv;
mod leader;
mod leases;
mod migrate;
mod runs;
mod store;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crabbox_store::StoreError;

use crate::conn::Connections;

/// Read-only connections next to the writer.
const READERS: usize = 2;

/// How [`SqliteStore::open_with`] opens a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Check the file with `PRAGMA quick_check` before using it. It reads the whole file (on
    /// a 2-core VM about 0.3 s per 400 MiB from the page cache, 2.6 s from the disk), so a
    /// caller that restarts often on a large file may skip it; a damaged file then fails
    /// requests instead of the open.
    pub quick_check: bool,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { quick_check: true }
    }
}

/// A coordinator store in one SQLite database.
pub struct SqliteStore {
    db: Arc<Connections>,
    /// `None` in memory.
    checkpointer: Mutex<Option<checkpoint::Checkpointer>>,
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
    /// Opens (creating if missing) the database file at `path`, checks it (`PRAGMA
    /// quick_check`; a damaged file is [`StoreError::Damaged`]) and brings its schema up to
    /// date. Runs on a blocking thread: it may wait up to the busy timeout for another process
    /// that is migrating the same file.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default()).await
    }

    /// [`open`](Self::open) with `options`.
    pub async fn open_with(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(owned, &options))
            .await
            .map_err(|e| {
                StoreError::Backend(format!(
                    "could not open sqlite database {}: {e}",
                    path.display()
                ))
            })?
    }

    fn open_blocking(path: PathBuf, options: &SqliteOptions) -> Result<Self, StoreError> {
        create_private(&path)?;
        let mut writer = conn::open_writer(&path).map_err(|e| opening(&path, &e))?;
        // SQLite opens a file it may not write read-only without a word; the first write
        // would fail much later, on a request.
        if writer
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| opening(&path, &e))?
        {
            return Err(StoreError::Backend(format!(
                "the sqlite database {} is read-only for this process: the coordinator writes it \
                 (check the file's owner and mode, and its directory's)",
                path.display()
            )));
        }
        if options.quick_check {
            integrity::quick_check(&writer, &path)?;
        }
        migrate::run(&mut writer)?;
        let leader = leader::LeaderLock::File(leader_path(&path));
        leader.check()?;
        let readers = (0..READERS)
            .map(|_| conn::open_reader(&path).map_err(|e| opening(&path, &e)))
            .collect::<Result<_, _>>()?;
        let db = Arc::new(Connections::new(writer, readers)?);
        let checkpointer = checkpoint::Checkpointer::start(&path, Arc::clone(&db))?;
        Ok(Self {
            db,
            checkpointer: Mutex::new(Some(checkpointer)),
            leader,
            path: Some(path),
        })
    }

    /// Opens a private in-memory database (one connection; gone when the store is dropped),
    /// for tests that need no file.
    #[expect(
        clippy::unused_async,
        reason = "async like the rest of the stores' API, so that callers need not change"
    )]
    pub async fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = conn::open_memory().map_err(|e| opening(Path::new(":memory:"), &e))?;
        migrate::run(&mut conn)?;
        Ok(Self {
            db: Arc::new(Connections::new(conn, Vec::new())?),
            checkpointer: Mutex::new(None),
            leader: leader::LeaderLock::Memory(Arc::new(AtomicBool::new(false))),
            path: None,
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// `<database path>.leader`, the file the reconciler's leader holds locked.
fn leader_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".leader");
    PathBuf::from(name)
}

fn opening(path: &Path, e: &rusqlite::Error) -> StoreError {
    integrity::damage(path, e).unwrap_or_else(|| {
        StoreError::Backend(format!(
            "could not open sqlite database {}: {e}",
            path.display()
        ))
    })
}

/// A database failure as the store reports it.
#[expect(
    clippy::needless_pass_by_value,
    reason = "by value so that it reads `.map_err(backend)`"
)]
pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite: {e}"))
}

/// Runs a filtered list query on a reader: the first two columns of every row, as text.
pub(crate) fn text_pairs(
    db: &Connections,
    sql: &str,
    params: Vec<rusqlite::types::ToSqlOutput<'_>>,
) -> Result<Vec<(String, String)>, StoreError> {
    db.reader()?
        .prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.query_map(rusqlite::params_from_iter(params), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect()
        })
        .map_err(backend)
}

/// Runs `sql`, a `DELETE` of at most `?2` rows that ended before `?1`; the number deleted.
pub(crate) async fn prune(
    db: &Connections,
    sql: &'static str,
    before: crabbox_api::coord::Timestamp,
    limit: usize,
) -> Result<u64, StoreError> {
    let params = (before.millis(), crabbox_store::codec::sql_limit(limit));
    db.write(move |conn| {
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map(|deleted| deleted as u64)
            .map_err(backend)
    })
    .await
}

/// Creates the database file, readable by its owner only, when it does not exist yet: it
/// holds run logs and login records. SQLite gives the `-wal` and `-shm` files it creates the
/// database file's mode. An existing file keeps its mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "could not create the sqlite database {}: {e}",
            path.display()
        ))),
    }
}
