//! Measures the SQLite store on a fresh file (a hand-run benchmark, not a test): lease cycles
//! (create → three heartbeats → run create and finish → release), then lone CAS updates and
//! inserts, each from `clients` concurrent clients.
//!
//! ```text
//! cargo run --release -p crabbox-store-sqlite --example sqlite_bench -- [clients] [cycles]
//! ```

use std::sync::Arc;

use crabbox_store::Store as _;
use crabbox_store::conformance::bench;
use crabbox_store_sqlite::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let clients = args.next().transpose()?.unwrap_or(16);
    let cycles = args.next().transpose()?.unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.db")).await?);
    // Warm up (prepared statements, page cache); the measured runs then also see the ended
    // leases of the ones before them.
    bench::lease_cycles(store.clone(), "warm", clients, cycles / 10 + 1).await?;
    let reports = [
        bench::lease_cycles(store.clone(), "cycle", clients, cycles).await?,
        bench::cas_updates(store.clone(), "cas", clients, cycles * 4).await?,
        bench::inserts(store.clone(), "insert", clients, cycles * 2).await?,
    ];
    #[expect(
        clippy::print_stdout,
        reason = "a hand-run benchmark prints its report"
    )]
    for report in reports {
        println!("sqlite, {clients} clients: {report}");
    }
    store.close().await;
    Ok(())
}
