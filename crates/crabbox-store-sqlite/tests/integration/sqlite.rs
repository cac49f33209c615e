//! SQLite-only behaviour.

use crabbox_api::coord::LeaseState;
use crabbox_store::conformance::{T0, full_lease, lease, run};
use crabbox_store::{LeaseIndex, RunQuery, Store, StoreError};
use crabbox_store_sqlite::SqliteStore;

fn no_check() -> LeaseIndex {
    LeaseIndex {
        next_check_at: None,
    }
}

#[tokio::test]
async fn reopening_keeps_records_and_applies_no_migration_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    let first = SqliteStore::open(&path).await.unwrap();
    first
        .insert_lease(&full_lease("cbx_keep"), &no_check())
        .await
        .unwrap();
    first
        .kv_put("k", &serde_json::json!(1), None)
        .await
        .unwrap();
    first.close().await;
    drop(first);

    let again = SqliteStore::open(&path).await.unwrap();
    assert_eq!(again.path(), Some(path.as_path()));
    let got = again.get_lease("cbx_keep").await.unwrap().unwrap();
    assert_eq!((got.version, got.value), (1, full_lease("cbx_keep")));
    assert_eq!(
        again.kv_get("k").await.unwrap().unwrap().value,
        serde_json::json!(1)
    );
    assert_eq!(
        again.lease_counts().await.unwrap()[1],
        (LeaseState::Active, 1),
        "counts survive a reopen"
    );
}

#[tokio::test]
async fn in_memory_store_works_and_leads_alone() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    assert_eq!(store.path(), None);
    store
        .insert_lease(&lease("cbx_mem"), &no_check())
        .await
        .unwrap();
    assert_eq!(
        store
            .get_lease("cbx_mem")
            .await
            .unwrap()
            .unwrap()
            .value
            .created_at,
        T0
    );
    let guard = store.try_leader().await.unwrap().expect("leads");
    assert!(store.try_leader().await.unwrap().is_none());
    drop(guard);
    assert!(store.try_leader().await.unwrap().is_some());
    // Another in-memory store is another database.
    let other = SqliteStore::open_in_memory().await.unwrap();
    assert!(other.get_lease("cbx_mem").await.unwrap().is_none());
}

#[tokio::test]
async fn a_damaged_document_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store
        .insert_lease(&lease("cbx_bad"), &no_check())
        .await
        .unwrap();
    store
        .kv_put("bad", &serde_json::json!({}), None)
        .await
        .unwrap();

    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("UPDATE leases SET doc = '{\"id\": 1'; UPDATE kv SET doc = 'nope';")
        .unwrap();

    match store.get_lease("cbx_bad").await {
        Err(StoreError::Corrupt { key, message }) => {
            assert_eq!(key, "lease cbx_bad");
            assert!(!message.is_empty());
        }
        other => panic!("expected corrupt, got {other:?}"),
    }
    assert!(
        matches!(store.kv_get("bad").await, Err(StoreError::Corrupt { key, .. }) if key == "bad")
    );
    assert!(matches!(
        store.kv_take("bad").await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn opening_an_unusable_path_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("coordinator.db");
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Backend(m) if m.contains("missing-dir")),
        "{err}"
    );
}

/// A file cut short (a copy that stopped half way) fails the open as damaged, naming the file,
/// not as a database that is unavailable for a while.
#[tokio::test]
async fn a_truncated_file_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    let store = SqliteStore::open(&path).await.unwrap();
    for n in 0..200 {
        store
            .insert_lease(&full_lease(&format!("cbx_{n:012x}")), &no_check())
            .await
            .unwrap();
    }
    store.close().await;
    drop(store);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = file.metadata().unwrap().len();
    assert!(
        len > 64 * 4096,
        "the file is large enough to cut: {len} bytes"
    );
    file.set_len(len / 2).unwrap();
    drop(file);

    let err = SqliteStore::open(&path).await.unwrap_err();
    let StoreError::Damaged(message) = &err else {
        panic!("expected a damaged database, got {err:?}");
    };
    assert!(message.contains(path.to_str().unwrap()), "{message}");
}

/// Another process holding `<database>.leader` (here util-linux `flock`, which takes the same
/// kind of lock) keeps this one from leading until it lets go.
#[tokio::test]
async fn another_process_holding_the_leader_file_blocks_leading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let lock_file = dir.path().join("coordinator.db.leader");
    let ready = dir.path().join("locked");
    // The shell opens the file, locks it with flock(1) and then becomes `sleep`, so the one
    // process holding the lock is the child killed below.
    let mut holder = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "exec 9>'{}' && flock 9 && touch '{}' && exec sleep 30",
            lock_file.display(),
            ready.display()
        ))
        .spawn()
        .expect("flock(1) from util-linux");
    for _ in 0..100 {
        if ready.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(ready.exists(), "the other process took the lock");
    let while_held = store.try_leader().await.unwrap();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        while_held.is_none(),
        "must not lead while another process does"
    );
    let guard = store.try_leader().await.unwrap();
    assert!(
        guard.is_some_and(|g| g.is_held()),
        "leads once the other process is gone"
    );
}

/// Several stores opening the same new file at once (as replicas starting together would)
/// all open, and the schema is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_opening_a_new_file_together_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let path = path.clone();
        opening.spawn(async move { SqliteStore::open(&path).await });
    }
    let stores: Vec<SqliteStore> = opening
        .join_all()
        .await
        .into_iter()
        .map(|s| s.unwrap())
        .collect();
    stores[0]
        .insert_lease(&lease("cbx_shared"), &no_check())
        .await
        .unwrap();
    assert!(stores[3].get_lease("cbx_shared").await.unwrap().is_some());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let applied: Vec<String> = conn
        .prepare("SELECT description FROM _migrations ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(applied, ["coordinator", "run_leases"]);
}

/// A file migrated by an earlier build (which recorded migrations in sqlx's table, and had
/// only the first migration) opens without applying it again, and gets the later ones: its
/// stored runs are then found by every lease they ran on.
#[tokio::test]
async fn a_database_migrated_by_sqlx_is_not_migrated_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    let mut stored = run("run_old", "cbx_first", T0);
    stored.lease_ids.push("cbx_second".to_owned());
    "cbx_second".clone_into(&mut stored.lease_id);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(include_str!("../../migrations/0001_coordinator.sql"))
        .unwrap();
    conn.execute_batch(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL); \
         INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, 'coordinator', TRUE, x'00', 1); \
         INSERT INTO kv (key, version, doc) VALUES ('kept', 1, '1');",
    )
    .unwrap();
    conn.execute(
        "INSERT INTO runs (id, lease_id, owner, org, state, started_at, version, doc) \
         VALUES ('run_old', 'cbx_second', 'o', 'g', 'running', ?1, 1, ?2)",
        (T0.millis(), serde_json::to_string(&stored).unwrap()),
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.kv_get("kept").await.unwrap().unwrap().value,
        serde_json::json!(1)
    );
    for lease in ["cbx_first", "cbx_second", "blue-lobster"] {
        let found = store
            .list_runs(&RunQuery {
                lease: Some(lease.to_owned()),
                limit: 10,
                ..RunQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(found, [stored.clone()], "{lease}");
    }
}

#[tokio::test]
async fn a_closed_store_fails_calls_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("coordinator.db"))
        .await
        .unwrap();
    store.close().await;
    let err = store.get_lease("cbx_gone").await.unwrap_err();
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(store.ping().await.is_err());
}

/// Checkpoints run beside the writers and start the log over: under a sustained stream of
/// heartbeat-like writes the `-wal` file stays far below what the writer's own backstop
/// (25,000 pages, ~100 MiB) would allow, and every write is there after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_stays_small_under_sustained_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    let wal = dir.path().join("coordinator.db-wal");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut l = full_lease("cbx_busy");
    let mut version = store.insert_lease(&l, &no_check()).await.unwrap();
    let mut largest = 0;
    // Each write appends at least two pages (the row, the next-check index), so without a
    // log restart these 24,000 writes (~190 MiB of log) would reach the backstop.
    for n in 0..24_000_i64 {
        l.last_touched_at = T0.plus_secs(n);
        let index = LeaseIndex {
            next_check_at: Some(T0.plus_secs(n + 60)),
        };
        version = store.update_lease(&l, &index, version).await.unwrap();
        if n % 500 == 0 {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
    }
    assert!(
        largest < 64 << 20,
        "the -wal file reached {largest} bytes: checkpoints are not keeping up"
    );
    store.close().await;
    drop(store);
    let again = SqliteStore::open(&path).await.unwrap();
    let got = again.get_lease("cbx_busy").await.unwrap().unwrap();
    assert_eq!((got.version, got.value), (version, l));
}
