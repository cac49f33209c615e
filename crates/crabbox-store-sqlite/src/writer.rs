//! Group commit: the writes of concurrent requests share one transaction.
//!
//! A commit costs more than the statement it commits: the WAL frames of every page the
//! statement dirtied, their checksums, the wal-index update and a pair of file locks. And while
//! one request holds the writer, a request that wants it too used to block its runtime thread
//! on the mutex, so that on two cores the second core waited instead of serving HTTP.
//!
//! So a write runs inline, on the caller's thread, only when the writer is idle and nothing is
//! queued (a single client pays no hand-off). Otherwise it is queued and the caller's task
//! waits without blocking its thread. A writer thread takes everything queued, up to
//! [`MAX_BATCH`] writes, and runs it as one transaction: one commit for all of them. A write's
//! result is reported only after its transaction committed, so a caller that was told its write
//! succeeded can read it anywhere.
//!
//! Every store write is one effective statement (a compare-and-swap, an insert, a delete, or the
//! run view's trigger), and SQLite rolls back a failed statement without ending the transaction
//! around it, so one write's failure (a version conflict, a duplicate) leaves the others in the
//! batch alone. A write of several statements (a batch of kv documents) runs them under a
//! savepoint of its own ([`all_or_nothing`]), so that its failure undoes exactly its own
//! statements. A failure that ends the transaction (I/O error, full disk) fails every write of
//! the batch that ran before it; the rest start a new transaction.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;

use crabbox_store::StoreError;
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Most writes one transaction commits.
const MAX_BATCH: usize = 64;

/// A queued write: runs its statements, and returns what to do once their transaction's fate
/// is known.
type Job = Box<dyn FnOnce(&Connection) -> Done + Send>;

/// Reports a write's own result once its transaction committed, or the failure that undid it.
type Done = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// The writer connection (`None` once closed) and the writes waiting for it.
#[derive(Default)]
struct Shared {
    conn: Mutex<Option<Connection>>,
    queue: Mutex<VecDeque<Job>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("queued", &lock(&self.queue).len())
            .finish_non_exhaustive()
    }
}

/// The writer thread; stopped (after finishing what is queued) when dropped.
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection) -> Result<Self, StoreError> {
        let shared = Arc::new(Shared {
            conn: Mutex::new(Some(conn)),
            ..Shared::default()
        });
        let own = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || run(&own))
            .map_err(|e| {
                StoreError::Backend(format!("could not start the sqlite writer thread: {e}"))
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The writer connection's slot (for reads and the checkpointer's catch-up pass).
    pub(crate) fn slot(&self) -> &Mutex<Option<Connection>> {
        &self.shared.conn
    }

    /// Runs `job` on the writer connection and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        if lock(&self.shared.queue).is_empty()
            && let Some(guard) = try_lock(&self.shared.conn)
        {
            // Idle: run it here, in its own (implicit) transaction.
            let conn = guard.as_ref().ok_or_else(closed)?;
            return job(conn);
        }
        let (tx, rx) = oneshot::channel();
        let queued: Job = Box::new(move |conn| {
            let result = job(conn);
            Box::new(move |committed| {
                let _ = tx.send(match committed {
                    Ok(()) => result,
                    Err(e) => Err(e.clone()),
                });
            })
        });
        lock(&self.shared.queue).push_back(queued);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "sqlite: the write did not run (the store was closed, or the write panicked)"
                    .to_owned(),
            ))
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The writer thread: waits for queued writes and commits them in batches.
///
/// It parks first and takes the connection only once woken: every write queued wakes it (and
/// one queued before it first parks leaves a token that wakes it at once). Taking the
/// connection to look at an empty queue would make a write that arrives in that instant queue
/// behind the writer instead of running inline, as a freshly started writer did.
fn run(shared: &Shared) {
    let mut idle = true;
    loop {
        if idle {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::park();
        }
        let conn = lock(&shared.conn);
        let jobs: Vec<Job> = {
            let mut queue = lock(&shared.queue);
            let n = queue.len().min(MAX_BATCH);
            queue.drain(..n).collect()
        };
        idle = jobs.is_empty();
        if idle {
            drop(conn);
            continue;
        }
        match conn.as_ref() {
            Some(conn) => batch(conn, jobs),
            None => {
                for job in jobs {
                    // The job is dropped unrun: its caller gets the closed error.
                    drop(job);
                }
            }
        }
    }
}

/// Runs `jobs` in one transaction (a lone job in its own implicit one) and reports each.
fn batch(conn: &Connection, jobs: Vec<Job>) {
    if jobs.len() == 1 {
        for job in jobs {
            if let Some(done) = attempt(conn, job) {
                done(Ok(()));
            }
        }
        return;
    }
    let mut pending: Vec<Done> = Vec::with_capacity(jobs.len());
    for job in jobs {
        if conn.is_autocommit()
            && let Err(e) = conn.execute_batch("BEGIN IMMEDIATE")
        {
            // Cannot open a transaction (another process holds the lock past the busy
            // timeout): this job runs on its own and meets the same error itself.
            drop(e);
            if let Some(done) = attempt(conn, job) {
                done(Ok(()));
            }
            continue;
        }
        let done = attempt(conn, job);
        if conn.is_autocommit() {
            // The job's failure ended the transaction, undoing the writes before it.
            let undone = StoreError::Backend(
                "sqlite: a failure in the same transaction undid this write; retry".to_owned(),
            );
            for done in pending.drain(..) {
                done(Err(&undone));
            }
            if let Some(done) = done {
                done(Err(&undone));
            }
            continue;
        }
        pending.extend(done);
    }
    if conn.is_autocommit() {
        return;
    }
    let committed = conn.execute_batch("COMMIT").map_err(crate::backend);
    if committed.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for done in pending {
        done(committed.as_ref().map(|&()| ()));
    }
}

/// Runs `statements`, a write of several changes, all or nothing. Inside a batch's transaction
/// they run under a savepoint that their failure rolls back, leaving the batch's other writes
/// alone; on their own they run in a transaction that takes the write lock first (`BEGIN
/// IMMEDIATE`), so that a read lock is never upgraded. A panic undoes them too: half of them
/// must not commit with the rest of a batch.
pub(crate) fn all_or_nothing<T>(
    conn: &Connection,
    statements: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let (begin, commit, undo) = if conn.is_autocommit() {
        ("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK")
    } else {
        (
            "SAVEPOINT all_or_nothing",
            "RELEASE all_or_nothing",
            "ROLLBACK TO all_or_nothing; RELEASE all_or_nothing",
        )
    };
    conn.execute_batch(begin).map_err(crate::backend)?;
    let mut guard = Undo { conn, undo };
    let value = statements(conn)?;
    conn.execute_batch(commit).map_err(crate::backend)?;
    guard.undo = "";
    Ok(value)
}

/// Undoes an [`all_or_nothing`] write that did not reach its end (an error, a failed commit,
/// a panic) when dropped. When the failure already ended the transaction there is nothing left
/// to undo, and the statement fails harmlessly.
struct Undo<'a> {
    conn: &'a Connection,
    /// Empty once the write committed.
    undo: &'static str,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.undo.is_empty() {
            let _ = self.conn.execute_batch(self.undo);
        }
    }
}

/// Runs one job; `None` if it panicked (its caller then gets an error).
fn attempt(conn: &Connection, job: Job) -> Option<Done> {
    catch_unwind(AssertUnwindSafe(|| job(conn))).ok()
}

fn closed() -> StoreError {
    StoreError::Backend("sqlite: the store is closed".to_owned())
}

/// A panic while a guard was held leaves the data usable (SQLite rolls back an unfinished
/// statement; rusqlite resets statements when they are dropped).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`lock`] if nobody holds it.
pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crabbox_store::StoreError;
    use rusqlite::Connection;

    use super::{Writer, all_or_nothing, lock};

    /// A writer on a fresh file with one table, `t (k TEXT PRIMARY KEY)`, plus a second
    /// connection to look at what was committed.
    fn open() -> (tempfile::TempDir, Arc<Writer>, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let conn = crate::conn::open_writer(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .unwrap();
        let look = Connection::open(&path).unwrap();
        (dir, Arc::new(Writer::start(conn).unwrap()), look)
    }

    type TestJob = Box<dyn FnOnce(&Connection) -> Result<bool, StoreError> + Send>;

    fn insert(k: &'static str) -> impl FnOnce(&Connection) -> Result<bool, StoreError> {
        move |conn| {
            conn.execute("INSERT INTO t (k) VALUES (?1)", [k])
                .map_err(crate::backend)?;
            // Inside a transaction of the batch's, not its own?
            Ok(!conn.is_autocommit())
        }
    }

    fn keys(look: &Connection) -> Vec<String> {
        look.prepare("SELECT k FROM t ORDER BY k")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Queues `jobs` while the writer is held, so that they form one batch, and returns what
    /// each write reported.
    async fn batch_of(writer: &Arc<Writer>, jobs: Vec<TestJob>) -> Vec<Result<bool, StoreError>> {
        let held = lock(writer.slot());
        let count = jobs.len();
        let mut tasks = Vec::new();
        for job in jobs {
            let own = Arc::clone(writer);
            tasks.push(tokio::spawn(async move { own.write(job).await }));
            // Queued in this order. (The test body runs outside the runtime's workers, so
            // blocking it here lets the spawned task run.)
            while lock(&writer.shared.queue).len() < tasks.len() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(lock(&writer.shared.queue).len(), count);
        drop(held);
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_write_runs_inline_and_queued_writes_commit_together() {
        let (_dir, writer, look) = open();
        // Idle writer: the write runs on its own, in its own implicit transaction.
        assert!(!writer.write(insert("alone")).await.unwrap());
        let jobs: Vec<TestJob> = vec![
            Box::new(insert("a")),
            Box::new(insert("b")),
            Box::new(insert("c")),
        ];
        let results = batch_of(&writer, jobs).await;
        // All three ran inside one explicit transaction, and all three are committed.
        assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
        assert_eq!(keys(&look), ["a", "alone", "b", "c"]);
    }

    /// A batch of `a`, `middle`, `b`: `middle` fails with `message`, `a` and `b` commit.
    async fn the_middle_write_fails_alone(middle: TestJob, message: &str) {
        let (_dir, writer, look) = open();
        let jobs: Vec<TestJob> = vec![Box::new(insert("a")), middle, Box::new(insert("b"))];
        let results = batch_of(&writer, jobs).await;
        assert!(matches!(results[0], Ok(true)), "{results:?}");
        assert!(
            matches!(&results[1], Err(StoreError::Backend(m)) if m.contains(message)),
            "{results:?}"
        );
        assert!(matches!(results[2], Ok(true)), "{results:?}");
        assert_eq!(keys(&look), ["a", "b"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_leaves_the_rest_of_its_batch() {
        the_middle_write_fails_alone(Box::new(insert("a")), "UNIQUE").await;
    }

    /// Inserts `c` and then runs `last`, which fails or panics, all or nothing.
    fn c_then(last: fn(&Connection) -> Result<bool, StoreError>) -> TestJob {
        Box::new(move |conn: &Connection| {
            all_or_nothing(conn, |conn| {
                insert("c")(conn)?;
                last(conn)
            })
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_of_several_statements_undoes_only_itself() {
        the_middle_write_fails_alone(c_then(|conn| insert("a")(conn)), "UNIQUE").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_of_several_statements_undoes_only_itself() {
        the_middle_write_fails_alone(c_then(|_| panic!("a bug in a write")), "did not run").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_of_several_statements_commits_whole_in_a_batch_and_alone() {
        let (_dir, writer, look) = open();
        let both = |first: &'static str, second: &'static str| -> TestJob {
            Box::new(move |conn: &Connection| {
                all_or_nothing(conn, |conn| {
                    insert(first)(conn)?;
                    insert(second)(conn)
                })
            })
        };
        let results = batch_of(&writer, vec![Box::new(insert("a")), both("b", "c")]).await;
        assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
        assert_eq!(keys(&look), ["a", "b", "c"]);

        // Alone it is a transaction of its own, which ends with it: failed, it leaves nothing,
        // and either way the next lone write commits on its own.
        let failed = writer.write(both("d", "a")).await;
        assert!(
            matches!(&failed, Err(StoreError::Backend(m)) if m.contains("UNIQUE")),
            "{failed:?}"
        );
        assert!(!writer.write(insert("e")).await.unwrap());
        assert!(writer.write(both("f", "g")).await.unwrap());
        assert!(!writer.write(insert("h")).await.unwrap());
        assert_eq!(keys(&look), ["a", "b", "c", "e", "f", "g", "h"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_write_of_the_batch() {
        let (_dir, writer, look) = open();
        // A deferred foreign key is checked at COMMIT: one bad row fails the commit.
        writer
            .write(|conn| {
                conn.execute_batch(
                    "CREATE TABLE child (p TEXT REFERENCES t (k) DEFERRABLE INITIALLY DEFERRED)",
                )
                .map_err(crate::backend)
            })
            .await
            .unwrap();
        let jobs: Vec<TestJob> = vec![
            Box::new(insert("a")),
            Box::new(|conn: &Connection| {
                conn.execute("INSERT INTO child (p) VALUES ('missing')", [])
                    .map(|_| true)
                    .map_err(crate::backend)
            }),
            Box::new(insert("b")),
        ];
        let results = batch_of(&writer, jobs).await;
        for result in &results {
            assert!(
                matches!(result, Err(StoreError::Backend(m)) if m.contains("FOREIGN KEY")),
                "{results:?}"
            );
        }
        assert!(keys(&look).is_empty());
        // The writer goes on.
        assert!(!writer.write(insert("c")).await.unwrap());
        assert_eq!(keys(&look), ["c"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_ends_the_transaction_undoes_only_the_writes_before_it() {
        let (_dir, writer, look) = open();
        let jobs: Vec<TestJob> = vec![
            Box::new(insert("a")),
            Box::new(|conn: &Connection| {
                conn.execute_batch("ROLLBACK")
                    .map(|()| true)
                    .map_err(crate::backend)
            }),
            Box::new(insert("b")),
        ];
        let results = batch_of(&writer, jobs).await;
        assert!(
            matches!(&results[0], Err(StoreError::Backend(m)) if m.contains("undid this write")),
            "{results:?}"
        );
        assert!(
            matches!(results[1], Err(StoreError::Backend(_))),
            "{results:?}"
        );
        assert!(matches!(results[2], Ok(true)), "{results:?}");
        assert_eq!(keys(&look), ["b"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_alone() {
        the_middle_write_fails_alone(
            Box::new(|_: &Connection| panic!("a bug in a write")),
            "did not run",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_panicked_inline_leaves_the_writer_usable_inline() {
        let (_dir, writer, look) = open();
        let panicked = tokio::spawn({
            let writer = Arc::clone(&writer);
            async move {
                writer
                    .write(|_: &Connection| -> Result<(), StoreError> { panic!("a bug") })
                    .await
            }
        })
        .await;
        assert!(panicked.is_err_and(|e| e.is_panic()));
        // The writer's mutex is poisoned now; an idle writer still runs the next write on the
        // caller's thread, not on the writer thread.
        let thread = writer
            .write(|conn: &Connection| {
                insert("b")(conn)?;
                Ok(std::thread::current().name().map(str::to_owned))
            })
            .await
            .unwrap();
        assert_ne!(thread.as_deref(), Some("sqlite-writer"));
        assert_eq!(keys(&look), ["b"]);

        // A write of several statements that panicked inline leaves no transaction open.
        let panicked = tokio::spawn({
            let writer = Arc::clone(&writer);
            async move { writer.write(c_then(|_| panic!("a bug"))).await }
        })
        .await;
        assert!(panicked.is_err_and(|e| e.is_panic()));
        assert!(!writer.write(insert("d")).await.unwrap());
        assert_eq!(keys(&look), ["b", "d"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_on_a_closed_store_fail_instead_of_hanging() {
        let (_dir, writer, _look) = open();
        let queued = {
            let mut held = lock(writer.slot());
            let queued = tokio::spawn({
                let writer = Arc::clone(&writer);
                async move { writer.write(insert("a")).await }
            });
            while lock(&writer.shared.queue).is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Close, as `Connections::close` does: take the connection out.
            drop(held.take());
            queued
        };
        let result = tokio::time::timeout(Duration::from_secs(10), queued)
            .await
            .expect("the queued write must not hang")
            .unwrap();
        assert!(matches!(result, Err(StoreError::Backend(_))), "{result:?}");
        let result = writer.write(insert("b")).await;
        assert!(
            matches!(&result, Err(StoreError::Backend(m)) if m.contains("closed")),
            "{result:?}"
        );
    }
}
