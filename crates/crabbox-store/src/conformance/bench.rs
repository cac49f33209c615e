//! A load generator for measuring a backend by hand: concurrent clients each repeating the
//! store calls of one coordinator lease cycle (create → three heartbeats → run create and
//! finish → release). Timing is reported, never asserted.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crabbox_api::coord::{LeaseState, RunState, Timestamp};
use tokio::task::JoinSet;

use super::sample::{event, finished, lease, run};
use crate::{LeaseIndex, Store, StoreError};

/// What a run of [`lease_cycles`] measured.
#[derive(Debug, Clone)]
pub struct CycleReport {
    pub cycles: usize,
    pub elapsed: Duration,
    /// Latencies of one heartbeat (read + compare-and-swap), sorted.
    pub heartbeats: Vec<Duration>,
    /// Latencies of one lone compare-and-swap write, sorted.
    pub cas_writes: Vec<Duration>,
}

impl CycleReport {
    pub fn cycles_per_sec(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64()
    }

    pub fn cas_per_sec(&self) -> f64 {
        self.cas_writes.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `permille`/1000 of the sorted samples.
    fn percentile(sorted: &[Duration], permille: usize) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        sorted[(sorted.len() - 1) * permille / 1000]
    }
}

impl fmt::Display for CycleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = |v: &[Duration], q| Self::percentile(v, q).as_secs_f64() * 1000.0;
        write!(
            f,
            "{} cycles in {:.2}s = {:.0} cycles/s; {:.0} CAS writes/s; heartbeat p50 {:.2} ms \
             p99 {:.2} ms max {:.2} ms; CAS write p50 {:.2} ms p99 {:.2} ms",
            self.cycles,
            self.elapsed.as_secs_f64(),
            self.cycles_per_sec(),
            self.cas_per_sec(),
            p(&self.heartbeats, 500),
            p(&self.heartbeats, 990),
            p(&self.heartbeats, 1000),
            p(&self.cas_writes, 500),
            p(&self.cas_writes, 990),
        )
    }
}

#[derive(Default)]
struct Timings {
    heartbeats: Vec<Duration>,
    cas_writes: Vec<Duration>,
}

/// Runs `clients` concurrent clients, each doing `cycles` lease cycles with ids prefixed by
/// `tag` (so repeated runs on one database do not collide).
pub async fn lease_cycles(
    store: Arc<dyn Store>,
    tag: &str,
    clients: usize,
    cycles: usize,
) -> Result<CycleReport, StoreError> {
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        let store = Arc::clone(&store);
        let tag = format!("{tag}-{client}");
        tasks.spawn(async move {
            let mut timings = Timings::default();
            for cycle in 0..cycles {
                one_cycle(&*store, &format!("{tag}-{cycle}"), &mut timings).await?;
            }
            Ok::<_, StoreError>(timings)
        });
    }
    let mut all = Timings::default();
    while let Some(done) = tasks.join_next().await {
        let timings = done.map_err(|e| StoreError::Backend(format!("bench client: {e}")))??;
        all.heartbeats.extend(timings.heartbeats);
        all.cas_writes.extend(timings.cas_writes);
    }
    let elapsed = start.elapsed();
    all.heartbeats.sort_unstable();
    all.cas_writes.sort_unstable();
    Ok(CycleReport {
        cycles: clients * cycles,
        elapsed,
        heartbeats: all.heartbeats,
        cas_writes: all.cas_writes,
    })
}

async fn one_cycle(store: &dyn Store, id: &str, t: &mut Timings) -> Result<(), StoreError> {
    let now = Timestamp::now();
    let (year, month) = now.year_month();
    let mut l = lease(id);
    l.state = LeaseState::Provisioning;
    l.created_at = now;
    let check = LeaseIndex {
        next_check_at: Some(now.plus_secs(3600)),
    };
    // Create: admission, slug collision check, reserve, finalize.
    store
        .admission(&l.owner, &l.org, Timestamp::month_start(year, month))
        .await?;
    store.live_leases_by_slug(&l.slug).await?;
    let mut version = store.insert_lease(&l, &check).await?;
    l.state = LeaseState::Active;
    l.cloud_id = format!("cloud-{id}");
    let started = Instant::now();
    version = store.update_lease(&l, &check, version).await?;
    t.cas_writes.push(started.elapsed());
    for beat in 0..3 {
        let started = Instant::now();
        let read = store
            .get_lease(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.into()))?;
        let mut l = read.value;
        l.last_touched_at = now.plus_secs(beat);
        store.update_lease(&l, &check, read.version).await?;
        t.heartbeats.push(started.elapsed());
        version = read.version + 1;
    }
    // A run on the lease: create with its first event, finish with events and a log.
    let run_id = format!("run-{id}");
    let r = run(&run_id, id, now);
    let run_version = store.insert_run(&r, &[event(&run_id, 1)]).await?;
    let done = finished(r, RunState::Succeeded, now.plus_secs(1));
    let log = "test result: ok. 42 passed; 0 failed\n".repeat(24);
    let started = Instant::now();
    store
        .update_run(
            &done,
            run_version,
            &[event(&run_id, 2), event(&run_id, 3)],
            Some(&log),
        )
        .await?;
    t.cas_writes.push(started.elapsed());
    // Release.
    let read = store
        .get_lease(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.into()))?;
    debug_assert_eq!(read.version, version);
    let mut l = read.value;
    l.state = LeaseState::Released;
    l.ended_at = Some(now.plus_secs(2));
    let started = Instant::now();
    store
        .update_lease(
            &l,
            &LeaseIndex {
                next_check_at: None,
            },
            read.version,
        )
        .await?;
    t.cas_writes.push(started.elapsed());
    Ok(())
}
