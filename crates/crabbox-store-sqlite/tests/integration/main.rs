//! The SQLite store: the shared conformance suite on a fresh database file per case, and what
//! only SQLite has (reopening a file, the in-memory database, damaged documents).

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use crabbox_store::Store;
use crabbox_store::conformance::Fixture;
use crabbox_store_sqlite::SqliteStore;

/// A database file in its own temporary directory.
struct SqliteFixture {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
}

impl SqliteFixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("coordinator.db"))
                .await
                .unwrap(),
        );
        Self { dir, store }
    }
}

#[async_trait]
impl Fixture for SqliteFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn replica(&self) -> Arc<dyn Store> {
        Arc::new(
            SqliteStore::open(&self.dir.path().join("coordinator.db"))
                .await
                .unwrap(),
        )
    }

    async fn teardown(&self) {
        self.store.close().await;
    }
}

crabbox_store::conformance_tests!(SqliteFixture::new());
