//! Measures the PostgreSQL store in a throwaway schema (a hand-run benchmark, not a test):
//! lease cycles (create → three heartbeats → run create and finish → release), then lone CAS
//! updates and inserts, each from `clients` concurrent clients.
//!
//! ```text
//! cargo run --release -p crabbox-store-postgres --example postgres_bench -- [clients] [cycles]
//! ```
//!
//! The server is `CRABBOX_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).

use std::sync::Arc;

use crabbox_store::Store as _;
use crabbox_store::conformance::bench;
use crabbox_store_postgres::{PgOptions, PgStore};
use sqlx::Connection as _;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let clients = args.next().transpose()?.unwrap_or(16);
    let cycles = args.next().transpose()?.unwrap_or(200);
    let url = std::env::var("CRABBOX_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("crabbox_bench_{}", std::process::id());
    let options = PgOptions {
        schema: schema.clone(),
        max_connections: u32::try_from(clients.clamp(1, 32))?,
        ..PgOptions::default()
    };
    let store = Arc::new(PgStore::connect(&url, options).await?);
    let outcome = async {
        bench::lease_cycles(store.clone(), "warm", clients, cycles / 10 + 1).await?;
        Ok::<_, crabbox_store::StoreError>([
            bench::lease_cycles(store.clone(), "cycle", clients, cycles).await?,
            bench::cas_updates(store.clone(), "cas", clients, cycles * 4).await?,
            bench::inserts(store.clone(), "insert", clients, cycles * 2).await?,
        ])
    }
    .await;
    store.close().await;
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await?;
    #[expect(
        clippy::print_stdout,
        reason = "a hand-run benchmark prints its report"
    )]
    for report in outcome? {
        println!("postgres, {clients} clients: {report}");
    }
    Ok(())
}
