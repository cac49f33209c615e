//! The view of a coordinator lease: its state, clock and telemetry as the coordinator
//! reports them.

use std::time::Duration;

use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_api::view::LeaseView;
use crabbox_core::duration::format_duration;
use crabbox_providers::LeaseRecord;

use super::record_from;
use crate::lease::view::key_path;

/// The view of a coordinator lease: its state, clock and telemetry as the coordinator reports
/// them; `claim` adds what only this machine knows (the repo it is claimed for).
pub fn view(lease: &Lease, url: &str, claim: Option<&LeaseRecord>) -> LeaseView {
    let record = record_from(lease, url);
    let now = Timestamp::now().millis();
    let idle_ms = now.saturating_sub(lease.last_touched_at.millis()).max(0);
    let mut labels = record.labels.clone();
    for (k, v) in [("owner", &lease.owner), ("org", &lease.org)] {
        if !v.is_empty() {
            labels.insert(k.to_owned(), v.clone());
        }
    }
    LeaseView {
        id: lease.id.clone(),
        slug: lease.slug.clone(),
        provider: lease.provider.clone(),
        target: if lease.target.is_empty() {
            "linux".to_owned()
        } else {
            lease.target.clone()
        },
        state: lease.state.as_str().to_owned(),
        server_id: record.server_id.clone(),
        server_type: lease.server_type.clone(),
        host: lease.host.clone(),
        ssh_host: lease.host.clone(),
        ssh_user: lease.ssh_user.clone(),
        ssh_port: record.ssh_port,
        ssh_fallback_ports: record.ssh_fallback_ports.clone(),
        ssh_key: key_path(&record),
        work_root: lease.work_root.clone(),
        keep: lease.keep,
        repo_root: claim.and_then(|c| c.repo_root.clone()),
        created_at: lease.created_at.to_string(),
        last_touched_at: lease.last_touched_at.to_string(),
        idle_for: format_duration(Duration::from_secs(
            u64::try_from(idle_ms / 1000).unwrap_or_default(),
        )),
        idle_timeout: format_duration(Duration::from_secs(lease.idle_timeout_seconds)),
        ttl: format_duration(Duration::from_secs(lease.ttl_seconds)),
        expires_at: lease.expires_at.to_string(),
        has_host: !lease.host.is_empty(),
        ready: lease.state == LeaseState::Active && !lease.host.is_empty(),
        labels,
        ssh_host_key: lease.ssh_host_key.clone(),
        telemetry: lease.telemetry.clone(),
        telemetry_history: lease.telemetry_history.clone(),
        provisioning_attempts: lease
            .extra
            .get("provisioningAttempts")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default(),
        estimated_hourly_usd: (lease.estimated_hourly_usd > 0.0)
            .then_some(lease.estimated_hourly_usd),
    }
}
