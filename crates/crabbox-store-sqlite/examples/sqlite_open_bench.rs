//! Measures what the integrity check at open costs on a large database (a hand-run
//! benchmark, not a test): fills a fresh file with `leases` leases (every field set, telemetry
//! history included, as a long-lived coordinator keeps them), then times `PRAGMA quick_check`
//! alone and the whole `SqliteStore::open` (which runs it), with the file in the page cache
//! (warm) and evicted from it first (cold: read from the disk, as after a reboot).
//!
//! ```text
//! cargo run --release -p crabbox-store-sqlite --example sqlite_open_bench -- [leases] [runs]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use crabbox_api::coord::Timestamp;
use crabbox_store::conformance::full_lease;
use crabbox_store::{LeaseIndex, Store};
use crabbox_store_sqlite::SqliteStore;

const CLIENTS: usize = 16;

#[expect(
    clippy::print_stdout,
    reason = "a hand-run benchmark prints its report"
)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let leases = args.next().transpose()?.unwrap_or(100_000);
    let runs = args.next().transpose()?.unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let store = Arc::new(SqliteStore::open(&path).await?);
    let filled = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let index = LeaseIndex {
                next_check_at: Some(Timestamp::now().plus_secs(3600)),
            };
            for n in (client..leases).step_by(CLIENTS) {
                let lease = full_lease(&format!("cbx_{n:012x}"));
                store.insert_lease(&lease, &index).await?;
            }
            Ok::<_, crabbox_store::StoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    store.close().await;
    drop(store);
    let size = std::fs::metadata(&path)?.len();
    println!(
        "filled {leases} leases in {:.1} s: {:.1} MiB",
        filled.elapsed().as_secs_f64(),
        size as f64 / f64::from(1 << 20)
    );

    for cold in [false, true] {
        let mut check = Vec::new();
        let mut open = Vec::new();
        for _ in 0..runs {
            if cold {
                evict(&path)?;
            }
            let conn = rusqlite::Connection::open(&path)?;
            let started = Instant::now();
            let verdict: String = conn.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
            check.push(started.elapsed());
            assert_eq!(verdict, "ok");
            drop(conn);
            if cold {
                evict(&path)?;
            }
            let started = Instant::now();
            let store = SqliteStore::open(&path).await?;
            open.push(started.elapsed());
            store.close().await;
        }
        let cache = if cold { "cold" } else { "warm" };
        println!("{cache}: quick_check alone: {}", spread(&mut check));
        println!("{cache}: SqliteStore::open:  {}", spread(&mut open));
    }
    Ok(())
}

/// `min / median / max` in milliseconds.
fn spread(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    )
}

/// Drops the file's pages from the page cache, so that the next read comes from the disk.
fn evict(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    file.sync_all()?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}
