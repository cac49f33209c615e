//! The JSON/human view of a lease (`LeaseView`) as `list`, `status`, `inspect`, `warmup` and
//! `cleanup` report it: a direct lease from its claim and its provider's health, a brokered
//! one from its coordinator's record.

use std::time::{Duration, UNIX_EPOCH};

use crabbox_api::view::LeaseView;
use crabbox_providers::{Health, LeaseRecord};

use crate::brokered;
use crate::lease::{Ctx, now_secs, ssh_target};

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// The JSON/human view of a lease. A brokered lease shows the coordinator's record when its
/// coordinator is the configured one, else its claim with state `unknown`.
pub async fn view(ctx: &Ctx, record: &LeaseRecord) -> LeaseView {
    if crate::broker::is_brokered(record) {
        let Some(client) = brokered::own_client(ctx, record) else {
            return claim_view(record, "unknown".to_owned());
        };
        return match client.get_lease(&record.lease_id).await {
            Ok(lease) => brokered::view(&lease, client.base_url(), Some(record)),
            Err(e) if e.status() == Some(404) => claim_view(record, "stopped".to_owned()),
            Err(_) => claim_view(record, "unknown".to_owned()),
        };
    }
    let health = match ctx.provider_for(record) {
        Ok(p) => p.health(record).await,
        Err(_) => Health::Unknown,
    };
    let state = match (&health, now_secs() >= record.expires_at()) {
        (Health::Gone(_), _) => "stopped".to_owned(),
        (_, true) => "expired".to_owned(),
        _ => record.state.clone(),
    };
    claim_view(record, state)
}

/// The view of a local claim with `state` decided by the caller.
pub fn claim_view(record: &LeaseRecord, state: String) -> LeaseView {
    let now = now_secs();
    let key = ssh_target(record)
        .key
        .map(|k| k.display().to_string())
        .unwrap_or_default();
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
        ssh_key: key,
        work_root: record.work_root.clone(),
        keep: record.keep,
        repo_root: record.repo_root.clone(),
        created_at: rfc3339(record.created_at),
        last_touched_at: rfc3339(record.last_touched_at),
        idle_for: crabbox_core::duration::format_duration(Duration::from_secs(
            now.saturating_sub(record.last_touched_at),
        )),
        idle_timeout: crabbox_core::duration::format_duration(Duration::from_secs(
            record.idle_timeout_secs,
        )),
        ttl: crabbox_core::duration::format_duration(Duration::from_secs(record.ttl_secs)),
        expires_at: rfc3339(record.expires_at()),
        has_host: !record.ssh_host.is_empty(),
        labels: record.labels.clone(),
        ssh_host_key: None,
        telemetry: None,
        telemetry_history: Vec::new(),
    }
}
