//! A load generator for measuring a backend by hand: concurrent clients repeating the store
//! calls of one coordinator lease cycle (create → three heartbeats → run create and finish →
//! release), or single kinds of write. Timing is reported, never asserted.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crabbox_api::coord::{LeaseState, RunState, Timestamp};
use tokio::task::JoinSet;

use super::sample::{event, finished, lease, run};
use crate::{LeaseIndex, Store, StoreError};

/// Throughput and latency of one kind of operation.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was counted (`lease cycles`, `CAS updates`, …).
    pub what: &'static str,
    pub count: usize,
    pub elapsed: Duration,
    /// What `latencies` measure.
    pub timed: &'static str,
    /// Sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn per_sec(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `permille`/1000 of the samples.
    pub fn percentile(&self, permille: usize) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[(self.latencies.len() - 1) * permille / 1000]
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |permille| self.percentile(permille).as_secs_f64() * 1000.0;
        write!(
            f,
            "{} {} in {:.2}s = {:.0}/s; {} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.count,
            self.what,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            self.timed,
            ms(500),
            ms(990),
            ms(1000),
        )
    }
}

/// Runs `clients` tasks, each calling `work(client)`, which returns the latencies it timed.
async fn concurrently<F, Fut>(
    what: &'static str,
    timed: &'static str,
    count: usize,
    clients: usize,
    work: F,
) -> Result<Report, StoreError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Vec<Duration>, StoreError>> + Send + 'static,
{
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for client in 0..clients {
        tasks.spawn(work(client));
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.map_err(|e| StoreError::Backend(format!("bench client: {e}")))??);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    Ok(Report {
        what,
        count,
        elapsed,
        timed,
        latencies,
    })
}

/// `clients` concurrent clients, each doing `cycles` lease cycles with ids prefixed by `tag`
/// (so repeated runs on one database do not collide). Times each heartbeat.
pub async fn lease_cycles(
    store: Arc<dyn Store>,
    tag: &str,
    clients: usize,
    cycles: usize,
) -> Result<Report, StoreError> {
    concurrently(
        "lease cycles",
        "heartbeat",
        clients * cycles,
        clients,
        |client| {
            let store = Arc::clone(&store);
            let tag = format!("{tag}-{client}");
            async move {
                let mut heartbeats = Vec::with_capacity(3 * cycles);
                for cycle in 0..cycles {
                    one_cycle(&*store, &format!("{tag}-{cycle}"), &mut heartbeats).await?;
                }
                Ok(heartbeats)
            }
        },
    )
    .await
}

/// `clients` concurrent clients, each inserting `count` leases.
pub async fn inserts(
    store: Arc<dyn Store>,
    tag: &str,
    clients: usize,
    count: usize,
) -> Result<Report, StoreError> {
    concurrently(
        "lease inserts",
        "insert",
        clients * count,
        clients,
        |client| {
            let store = Arc::clone(&store);
            let tag = format!("{tag}-{client}");
            async move {
                let mut latencies = Vec::with_capacity(count);
                let index = LeaseIndex {
                    next_check_at: Some(Timestamp::now().plus_secs(3600)),
                };
                for n in 0..count {
                    let l = lease(&format!("{tag}-{n}"));
                    let started = Instant::now();
                    store.insert_lease(&l, &index).await?;
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            }
        },
    )
    .await
}

/// `clients` concurrent clients, each compare-and-swapping its own lease `count` times (the
/// version is known, so each is one write).
pub async fn cas_updates(
    store: Arc<dyn Store>,
    tag: &str,
    clients: usize,
    count: usize,
) -> Result<Report, StoreError> {
    concurrently(
        "CAS updates",
        "update",
        clients * count,
        clients,
        |client| {
            let store = Arc::clone(&store);
            let id = format!("{tag}-{client}");
            async move {
                let mut latencies = Vec::with_capacity(count);
                let mut l = lease(&id);
                let now = Timestamp::now();
                let mut version = store
                    .insert_lease(
                        &l,
                        &LeaseIndex {
                            next_check_at: None,
                        },
                    )
                    .await?;
                for n in 0..count {
                    l.last_touched_at = now.plus_millis(i64::try_from(n).unwrap_or(0));
                    let index = LeaseIndex {
                        next_check_at: Some(l.last_touched_at.plus_secs(1800)),
                    };
                    let started = Instant::now();
                    version = store.update_lease(&l, &index, version).await?;
                    latencies.push(started.elapsed());
                }
                Ok(latencies)
            }
        },
    )
    .await
}

async fn one_cycle(
    store: &dyn Store,
    id: &str,
    heartbeats: &mut Vec<Duration>,
) -> Result<(), StoreError> {
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
    let version = store.insert_lease(&l, &check).await?;
    l.state = LeaseState::Active;
    l.cloud_id = format!("cloud-{id}");
    store.update_lease(&l, &check, version).await?;
    for beat in 0..3 {
        let started = Instant::now();
        let read = store
            .get_lease(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(id.into()))?;
        let mut l = read.value;
        l.last_touched_at = now.plus_secs(beat);
        store.update_lease(&l, &check, read.version).await?;
        heartbeats.push(started.elapsed());
    }
    // A run on the lease: create with its first event, finish with events and a log.
    let run_id = format!("run-{id}");
    let r = run(&run_id, id, now);
    let run_version = store.insert_run(&r, &[event(&run_id, 1)]).await?;
    let done = finished(r, RunState::Succeeded, now.plus_secs(1));
    let log = "test result: ok. 42 passed; 0 failed\n".repeat(24);
    store
        .update_run(
            &done,
            run_version,
            &[event(&run_id, 2), event(&run_id, 3)],
            Some(&log),
        )
        .await?;
    // Release.
    let read = store
        .get_lease(id)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.into()))?;
    let mut l = read.value;
    l.state = LeaseState::Released;
    l.ended_at = Some(now.plus_secs(2));
    store
        .update_lease(
            &l,
            &LeaseIndex {
                next_check_at: None,
            },
            read.version,
        )
        .await?;
    Ok(())
}
