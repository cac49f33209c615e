//! The JSON/human view of a lease held by a local claim (`LeaseView`), as `list`, `status`,
//! `inspect`, `warmup` and `heartbeat` report it. A coordinator lease's view is built from
//! the coordinator's record instead (`super::brokered::view`).

use std::time::{Duration, UNIX_EPOCH};

use crabbox_api::view::LeaseView;
use crabbox_core::duration::format_duration;
use crabbox_providers::LeaseRecord;

use super::context::now_secs;
use super::runner::ssh_target;

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The view of a local claim with `state` decided by the caller.
pub fn claim_view(record: &LeaseRecord, state: String) -> LeaseView {
    let now = now_secs();
    LeaseView {
        id: record.lease_id.clone(),
        slug: record.slug.clone(),
        provider: record.provider.clone(),
        target: "linux".into(),
        ready: state == "ready" || state == "running",
        state,
        server_id: record.server_id.clone(),
        server_type: record.server_type.clone(),
        host: record.ssh_host.clone(),
        ssh_host: record.ssh_host.clone(),
        ssh_user: record.ssh_user.clone(),
        ssh_port: record.ssh_port,
        ssh_fallback_ports: record.ssh_fallback_ports.clone(),
        ssh_key: key_path(record),
        work_root: record.work_root.clone(),
        keep: record.keep,
        repo_root: record.repo_root.clone(),
        created_at: rfc3339(record.created_at),
        last_touched_at: rfc3339(record.last_touched_at),
        idle_for: format_duration(Duration::from_secs(
            now.saturating_sub(record.last_touched_at),
        )),
        idle_timeout: format_duration(Duration::from_secs(record.idle_timeout_secs)),
        ttl: format_duration(Duration::from_secs(record.ttl_secs)),
        expires_at: expires(record),
        has_host: !record.ssh_host.is_empty(),
        labels: record.labels.clone(),
        ssh_host_key: None,
        telemetry: None,
        telemetry_history: Vec::new(),
        provisioning_attempts: record
            .provisioning_attempts
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect(),
        estimated_hourly_usd: record.hourly_usd,
    }
}

/// When a claimed lease expires (TTL or idle timeout, whichever comes first), RFC 3339.
pub fn expires(record: &LeaseRecord) -> String {
    rfc3339(record.expires_at())
}

/// The key file a lease is reached with, as views show it.
pub fn key_path(record: &LeaseRecord) -> String {
    ssh_target(record)
        .key
        .map(|k| k.display().to_string())
        .unwrap_or_default()
}
