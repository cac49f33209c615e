//! Measures lease cycles per second on a fresh SQLite file (a hand-run benchmark, not a test):
//!
//! ```text
//! cargo run --release -p crabbox-store-sqlite --example cycle_bench -- [clients] [cycles]
//! ```

use std::sync::Arc;

use crabbox_store::conformance::bench;
use crabbox_store_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let clients = args.next().transpose()?.unwrap_or(16);
    let cycles = args.next().transpose()?.unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).await?);
    // Warm up (prepared statements, page cache), then measure on a store that already holds
    // the warm-up's ended leases.
    bench::lease_cycles(store.clone(), "warm", clients, cycles / 10 + 1).await?;
    let report = bench::lease_cycles(store.clone(), "run", clients, cycles).await?;
    #[expect(
        clippy::print_stdout,
        reason = "a hand-run benchmark prints its report"
    )]
    {
        println!("sqlite, {clients} clients: {report}");
    }
    store.close().await;
    Ok(())
}
