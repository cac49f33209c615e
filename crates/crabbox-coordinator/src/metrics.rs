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
    /// Counts a request. Methods outside the standard set count as `other`: the label must
    /// not take whatever token an unauthenticated client sends (one series each, forever).
    pub fn request(&self, method: &str, route: &str, status: u16) {
        const KNOWN: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
        ];
        let method = KNOWN
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
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

    /// Renders every metric; `lease_states` comes from the store, `None` when it could not be
    /// read (the in-memory metrics still render, and `crabbox_store_up` says 0).
    pub fn render(&self, lease_states: Option<&[(String, u64)]>, leader: bool) -> String {
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
        let _ = writeln!(
            out,
            "# HELP crabbox_provision_seconds Time spent in provider creates.\n\
             # TYPE crabbox_provision_seconds summary\n\
             crabbox_provision_seconds_sum {}\n\
             crabbox_provision_seconds_count {}",
            Seconds(load(&self.provision_ms_sum)),
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
        for (state, n) in lease_states.unwrap_or_default() {
            let _ = writeln!(out, "crabbox_leases{{state=\"{state}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP crabbox_store_up Whether the store answered this scrape's queries.\n# TYPE crabbox_store_up gauge\ncrabbox_store_up {}",
            u8::from(lease_states.is_some())
        );
        let _ = writeln!(
            out,
            "# HELP crabbox_reconciler_leader Whether this replica runs the reconciler.\n# TYPE crabbox_reconciler_leader gauge\ncrabbox_reconciler_leader {}",
            u8::from(leader)
        );
        out
    }
}

/// Milliseconds shown as seconds with millisecond precision, without going through a float.
struct Seconds(u64);

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_series() {
        let m = Metrics::default();
        for i in 0..100 {
            m.request(&format!("M{i:05}"), "unmatched", 405);
        }
        m.request("GET", "/v1/health", 200);
        let text = m.render(Some(&[]), false);
        assert!(
            text.contains(
                "crabbox_http_requests_total{method=\"other\",route=\"unmatched\",status=\"405\"} 100"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("crabbox_http_requests_total{").count(),
            2,
            "{text}"
        );
    }

    #[test]
    fn a_store_that_cannot_answer_leaves_the_counters() {
        let m = Metrics::default();
        m.request("POST", "/v1/leases", 503);
        m.provision_ms(Duration::from_millis(1_250));
        let text = m.render(None, true);
        assert!(text.contains("crabbox_store_up 0"), "{text}");
        assert!(!text.contains("crabbox_leases{"), "{text}");
        assert!(text.contains("status=\"503\"} 1"), "{text}");
        assert!(
            text.contains("# TYPE crabbox_provision_seconds summary"),
            "{text}"
        );
        assert!(
            text.contains("crabbox_provision_seconds_sum 1.250\n"),
            "{text}"
        );
        assert!(
            text.contains("crabbox_provision_seconds_count 1\n"),
            "{text}"
        );
        let up = m.render(Some(&[("active".to_owned(), 2)]), true);
        assert!(up.contains("crabbox_store_up 1"), "{up}");
        assert!(up.contains("crabbox_leases{state=\"active\"} 2"), "{up}");
    }
}
