//! `/metrics` in the Prometheus text format: request counters by route and status, lease and
//! reconciler counters, and lease counts by state read from the store at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    leases_created: Mutex<BTreeMap<String, u64>>,
    heartbeats: AtomicU64,
    releases: AtomicU64,
    cas_retries: AtomicU64,
    provision_ms_sum: AtomicU64,
    provision_count: AtomicU64,
    reconcile_passes: AtomicU64,
    reconcile_expired: AtomicU64,
    reconcile_cleanup_failures: AtomicU64,
    runs_created: AtomicU64,
    runs_finished: AtomicU64,
}

impl Metrics {
    pub fn request(&self, method: &str, route: &str, status: u16) {
        let mut map = self.requests.lock().expect("metrics lock");
        *map.entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
    }

    pub fn lease_created(&self, provider: &str) {
        *self
            .leases_created
            .lock()
            .expect("metrics lock")
            .entry(provider.to_owned())
            .or_default() += 1;
    }

    pub fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    pub fn release(&self) {
        self.releases.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cas_retry(&self) {
        self.cas_retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn provision_ms(&self, d: Duration) {
        self.provision_ms_sum
            .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        self.provision_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconcile_pass(&self, expired: u64, failures: u64) {
        self.reconcile_passes.fetch_add(1, Ordering::Relaxed);
        self.reconcile_expired.fetch_add(expired, Ordering::Relaxed);
        self.reconcile_cleanup_failures
            .fetch_add(failures, Ordering::Relaxed);
    }

    pub fn run_created(&self) {
        self.runs_created.fetch_add(1, Ordering::Relaxed);
    }

    pub fn run_finished(&self) {
        self.runs_finished.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders every metric; `lease_states` comes from the store.
    pub fn render(&self, lease_states: &[(String, u64)], leader: bool) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        out.push_str("# HELP crabbox_http_requests_total HTTP requests by route and status.\n# TYPE crabbox_http_requests_total counter\n");
        for ((method, route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "crabbox_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP crabbox_leases_created_total Lease creates accepted, by provider.\n# TYPE crabbox_leases_created_total counter\n");
        for (provider, n) in self.leases_created.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "crabbox_leases_created_total{{provider=\"{provider}\"}} {n}"
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "crabbox_lease_heartbeats_total",
            "Lease heartbeats applied.",
            load(&self.heartbeats),
        );
        counter(
            &mut out,
            "crabbox_lease_releases_total",
            "Lease releases.",
            load(&self.releases),
        );
        counter(
            &mut out,
            "crabbox_store_cas_retries_total",
            "Compare-and-swap writes retried after a concurrent change.",
            load(&self.cas_retries),
        );
        counter(
            &mut out,
            "crabbox_provision_milliseconds_sum",
            "Time spent in provider creates.",
            load(&self.provision_ms_sum),
        );
        counter(
            &mut out,
            "crabbox_provision_count",
            "Provider creates attempted.",
            load(&self.provision_count),
        );
        counter(
            &mut out,
            "crabbox_reconcile_passes_total",
            "Reconciler passes run by this replica.",
            load(&self.reconcile_passes),
        );
        counter(
            &mut out,
            "crabbox_reconcile_expired_total",
            "Leases the reconciler ended.",
            load(&self.reconcile_expired),
        );
        counter(
            &mut out,
            "crabbox_reconcile_cleanup_failures_total",
            "Provider deletes that failed and will be retried.",
            load(&self.reconcile_cleanup_failures),
        );
        counter(
            &mut out,
            "crabbox_runs_created_total",
            "Runs recorded.",
            load(&self.runs_created),
        );
        counter(
            &mut out,
            "crabbox_runs_finished_total",
            "Runs finished.",
            load(&self.runs_finished),
        );
        out.push_str(
            "# HELP crabbox_leases Stored leases by state.\n# TYPE crabbox_leases gauge\n",
        );
        for (state, n) in lease_states {
            let _ = writeln!(out, "crabbox_leases{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP crabbox_reconciler_leader Whether this replica runs the reconciler.\n# TYPE crabbox_reconciler_leader gauge\ncrabbox_reconciler_leader {}",
            u8::from(leader)
        );
        out
    }
}
