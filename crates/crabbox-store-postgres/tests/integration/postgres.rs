//! PostgreSQL-only behaviour.

use std::collections::BTreeMap;

use crabbox_store::conformance::{full_lease, lease};
use crabbox_store::{LeaseIndex, LeaseQuery, Store, StoreError};
use crabbox_store_postgres::{PgOptions, PgStore};
use sqlx::Connection as _;

use crate::{database_url, drop_schema, fresh_schema, options};

fn no_check() -> LeaseIndex {
    LeaseIndex {
        next_check_at: None,
    }
}

/// Runs `body` with a store in a fresh schema, dropping the schema afterwards.
async fn with_store<F, Fut>(body: F)
where
    F: FnOnce(PgStore, String) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let schema = fresh_schema();
    let store = PgStore::connect(&database_url(), options(&schema))
        .await
        .unwrap();
    let outcome = tokio::spawn(body(store, schema.clone())).await;
    drop_schema(&schema).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test]
async fn objects_live_in_the_schema_and_connections_name_the_coordinator() {
    with_store(|store, schema| async move {
        assert_eq!(store.schema(), schema);
        let mut conn = sqlx::PgConnection::connect(&database_url()).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
             ORDER BY 1",
        )
        .bind(&schema)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            tables,
            [
                "_sqlx_migrations",
                "create_attempts",
                "kv",
                "lease_month_spend",
                "lease_state_counts",
                "leases",
                "run_events",
                "run_leases",
                "run_logs",
                "runs"
            ]
        );
        store.ping().await.unwrap();
        let named: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(crabbox_store_postgres::APPLICATION_NAME)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(named >= 1);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    let schema = fresh_schema();
    let url = database_url();
    let (a, b) = tokio::join!(
        PgStore::connect(&url, options(&schema)),
        PgStore::connect(&url, options(&schema))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    a.insert_lease(&lease("cbx_shared"), &no_check())
        .await
        .unwrap();
    assert!(b.get_lease("cbx_shared").await.unwrap().is_some());
    a.close().await;
    b.close().await;
    drop_schema(&schema).await;
}

#[tokio::test]
async fn nul_in_indexed_text_is_stored_and_found() {
    with_store(|store, _| async move {
        let mut l = full_lease("cbx_nul\0id");
        l.owner = "own\0er".to_owned();
        l.slug = "sl\0ug".to_owned();
        store.insert_lease(&l, &no_check()).await.unwrap();
        let got = store.get_lease("cbx_nul\0id").await.unwrap().unwrap();
        assert_eq!(got.value, l, "the document keeps the NULs");
        let listed = store
            .list_leases(&LeaseQuery {
                owner: Some("own\0er".to_owned()),
                limit: 10,
                ..LeaseQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(listed, [l.clone()]);
        assert_eq!(store.live_leases_by_slug("sl\0ug").await.unwrap().len(), 1);
        store
            .kv_put("k\0ey", &serde_json::json!("v\0"), None)
            .await
            .unwrap();
        assert_eq!(
            store.kv_get("k\0ey").await.unwrap().unwrap().value,
            serde_json::json!("v\0")
        );
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn errors_never_show_the_password() {
    let secret = "hunter2-Secret";
    for url in [
        format!("postgres://postgres:{secret}@127.0.0.1:1/test"),
        format!("postgres://postgres:{secret}@127.0.0.1:notaport/test"),
        format!("postgres://postgres:{secret}@127.0.0.1:5432/test?sslmode=bogus"),
    ] {
        let err = PgStore::connect(
            &url,
            PgOptions {
                acquire_timeout: std::time::Duration::from_secs(2),
                ..options(&fresh_schema())
            },
        )
        .await
        .unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(matches!(err, StoreError::Backend(_)), "{text}");
        assert!(!text.contains(secret), "{text}");
        assert!(
            text.contains("***") || !text.contains("postgres://"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn unsafe_schema_names_are_refused() {
    for schema in ["Crabbox", "a;drop table x", "", "1x"] {
        let err = PgStore::connect(&database_url(), options(schema))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid schema name"), "{err}");
    }
}

type Catalog = BTreeMap<String, Vec<String>>;

/// Table (or view) → sorted column names, and the sorted secondary index names, of the SQLite
/// schema. The `run_writes` view is SQLite's way to write a run in one statement, not part of
/// the schema both share.
async fn sqlite_catalog() -> (Catalog, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator.db");
    crabbox_store_sqlite::SqliteStore::open(&path)
        .await
        .unwrap()
        .close()
        .await;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c \
         WHERE m.type IN ('table', 'view') AND m.name NOT LIKE '\\_%' ESCAPE '\\' \
         AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND m.name <> 'run_writes'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    (catalog(columns), indexes)
}

fn catalog(pairs: Vec<(String, String)>) -> Catalog {
    let mut out = Catalog::new();
    for (table, column) in pairs {
        out.entry(table).or_default().push(column);
    }
    for columns in out.values_mut() {
        columns.sort();
    }
    out
}

#[tokio::test]
async fn schema_is_in_lockstep_with_sqlite() {
    let (sqlite_tables, sqlite_indexes) = sqlite_catalog().await;
    with_store(move |store, schema| async move {
        let mut conn = sqlx::PgConnection::connect(&database_url()).await.unwrap();
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name NOT LIKE '\\_%'",
        )
        .bind(&schema)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 \
             AND indexname NOT LIKE '%\\_pkey' ORDER BY 1",
        )
        .bind(&schema)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(catalog(columns), sqlite_tables, "same tables and columns");
        assert_eq!(indexes, sqlite_indexes, "same indexes");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_damaged_document_is_reported_as_corrupt() {
    with_store(|store, schema| async move {
        store
            .insert_lease(&lease("cbx_bad"), &no_check())
            .await
            .unwrap();
        store
            .kv_put("bad", &serde_json::json!({}), None)
            .await
            .unwrap();
        let mut conn = sqlx::PgConnection::connect(&database_url()).await.unwrap();
        for table in ["leases", "kv"] {
            // Both names are fixed identifiers of this test.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {schema}.{table} SET doc = '{{\"id\": 1'"
            )))
            .execute(&mut conn)
            .await
            .unwrap();
        }
        assert!(matches!(
            store.get_lease("cbx_bad").await,
            Err(StoreError::Corrupt { key, .. }) if key == "lease cbx_bad"
        ));
        assert!(matches!(
            store.kv_take("bad").await,
            Err(StoreError::Corrupt { .. })
        ));
        store.close().await;
    })
    .await;
}
