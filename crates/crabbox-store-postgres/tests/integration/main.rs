//! The PostgreSQL store against a real server (127.0.0.1:5432, trust auth; override with
//! `CRABBOX_TEST_DATABASE_URL`): the shared conformance suite in a fresh schema per case, and
//! what only PostgreSQL has (schemas, replicas, NUL in indexed text, URL redaction, lockstep
//! with the SQLite schema).

mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use crabbox_store::Store;
use crabbox_store::conformance::Fixture;
use crabbox_store_postgres::{PgOptions, PgStore};
use sqlx::Connection as _;

pub fn database_url() -> String {
    std::env::var("CRABBOX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test (or earlier run) uses.
pub fn fresh_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "crabbox_t_{:x}_{nanos:x}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn options(schema: &str) -> PgOptions {
    PgOptions {
        schema: schema.to_owned(),
        max_connections: 4,
        ..PgOptions::default()
    }
}

pub async fn drop_schema(schema: &str) {
    let mut conn = sqlx::PgConnection::connect(&database_url()).await.unwrap();
    // The name came from fresh_schema: plain lowercase identifier characters.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
}

/// A store in a schema of its own, dropped at teardown.
struct PgFixture {
    schema: String,
    store: Arc<PgStore>,
}

impl PgFixture {
    async fn new() -> Self {
        let schema = fresh_schema();
        let store = PgStore::connect(&database_url(), options(&schema))
            .await
            .unwrap();
        Self {
            schema,
            store: Arc::new(store),
        }
    }
}

#[async_trait]
impl Fixture for PgFixture {
    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// A second pool on the same schema, as another coordinator replica.
    async fn replica(&self) -> Arc<dyn Store> {
        Arc::new(
            PgStore::connect(&database_url(), options(&self.schema))
                .await
                .unwrap(),
        )
    }

    async fn teardown(&self) {
        self.store.close().await;
        drop_schema(&self.schema).await;
    }
}

crabbox_store::conformance_tests!(PgFixture::new());
