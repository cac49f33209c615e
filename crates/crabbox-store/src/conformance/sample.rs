//! Records the cases store: a minimal lease and run, and a lease with every field set.

use std::collections::BTreeMap;

use crabbox_api::coord::{
    Lease, LeaseOwner, LeaseState, Lifecycle, Run, RunEvent, RunState, RunTelemetry, Share,
    Telemetry, Timestamp,
};
use serde_json::json;

use crate::LeaseIndex;

/// 2026-05-10T12:00:00Z, the "now" of the cases (inside May 2026).
pub const T0: Timestamp = Timestamp::from_millis(1_778_414_400_000);

/// 2026-05-01T00:00:00Z.
pub(crate) const MAY: Timestamp = Timestamp::from_millis(1_777_593_600_000);

/// A minute, in milliseconds.
pub(crate) const MIN: i64 = 60_000;

/// An active managed lease created at [`T0`].
pub fn lease(id: &str) -> Lease {
    Lease {
        id: id.to_owned(),
        slug: format!("slug-{id}"),
        provider: "hetzner".to_owned(),
        owner: "peter@example.com".to_owned(),
        org: "~1.b3BlbmNsYXc".to_owned(),
        target: "linux".to_owned(),
        state: LeaseState::Active,
        created_at: T0,
        updated_at: T0,
        last_touched_at: T0,
        expires_at: T0.plus_secs(3600),
        max_estimated_usd: 0.5,
        ..Lease::default()
    }
}

pub(crate) fn no_check() -> LeaseIndex {
    LeaseIndex {
        next_check_at: None,
    }
}

pub(crate) fn check_at(t: Timestamp) -> LeaseIndex {
    LeaseIndex {
        next_check_at: Some(t),
    }
}

fn sample(at: Timestamp, load: f64) -> Telemetry {
    Telemetry {
        captured_at: at,
        source: Some("crabbox-ready".to_owned()),
        cpu_count: Some(16),
        load1: Some(load),
        load5: Some(0.25),
        load15: Some(0.125),
        memory_percent: Some(41.5),
        disk_percent: Some(12.0),
        memory_used_bytes: Some(1 << 33),
        memory_total_bytes: Some(1 << 35),
        disk_used_bytes: Some(9_007_199_254_740_991),
        disk_total_bytes: Some(1 << 40),
        uptime_seconds: Some(86_400),
    }
}

/// A lease with every field set, fields this port does not model (`extra`), and NUL and
/// non-ASCII characters in strings and keys that are not indexed.
pub fn full_lease(id: &str) -> Lease {
    let mut extra = serde_json::Map::new();
    extra.insert(
        "tailscale".to_owned(),
        json!({"enabled": true, "tags": ["tag:ci"], "authKeyExpiresAt": null}),
    );
    extra.insert(
        "network".to_owned(),
        json!({"sshSourceCIDRs": ["192.0.2.0/24"]}),
    );
    extra.insert("nul\u{0}key".to_owned(), json!("nul\u{0}value \u{1F980}"));
    extra.insert("bigNumber".to_owned(), json!(9_007_199_254_740_991_u64));
    Lease {
        id: id.to_owned(),
        slug: "blue-lobster".to_owned(),
        provider: "hetzner".to_owned(),
        lifecycle: Lifecycle::Managed,
        owner: "github:1234".to_owned(),
        provider_owner: Some("peter@example.com".to_owned()),
        org: "~1.b3BlbmNsYXc".to_owned(),
        share: Some(Share {
            users: BTreeMap::from([("github:99".to_owned(), "use".to_owned())]),
            org: Some("manage".to_owned()),
            updated_at: Some(T0),
            updated_by: Some("github:1234".to_owned()),
        }),
        target: "linux".to_owned(),
        os: "ubuntu:26.04".to_owned(),
        windows_mode: "normal".to_owned(),
        desktop: true,
        desktop_env: "xfce".to_owned(),
        browser: true,
        code: true,
        profile: "default".to_owned(),
        class: "standard".to_owned(),
        server_type: "cpx62".to_owned(),
        requested_server_type: "cpx62".to_owned(),
        pond: "alpha-pond".to_owned(),
        exposed_ports: vec!["8080".to_owned(), "9090".to_owned()],
        runtime_adapter_id: Some("devcontainer".to_owned()),
        runtime_adapter_workspace_id: Some("ws-\u{1F980}".to_owned()),
        runtime_adapter_registration_id: Some("reg-7".to_owned()),
        cloud_id: "123".to_owned(),
        server_id: 123,
        server_name: "crabbox-blue-lobster-7f8a2c1d\u{0}tail".to_owned(),
        provider_key: "crabbox-cbx-abcdef123456".to_owned(),
        region: "fsn1".to_owned(),
        host: "192.0.2.1".to_owned(),
        ssh_user: "crabbox".to_owned(),
        ssh_port: "2222".to_owned(),
        ssh_fallback_ports: vec!["22".to_owned()],
        ssh_host_key: Some("ssh-ed25519 AAAAC3Nz…".to_owned()),
        work_root: "/work/crabbox".to_owned(),
        keep: true,
        ttl_seconds: 5400,
        idle_timeout_seconds: 1800,
        state: LeaseState::Active,
        created_at: T0,
        updated_at: T0.plus_secs(41),
        last_touched_at: T0.plus_secs(40),
        expires_at: T0.plus_secs(1840),
        released_at: Some(T0.plus_secs(50)),
        ended_at: None,
        registered_at: Some(T0.plus_secs(1)),
        estimated_hourly_usd: 0.18,
        max_estimated_usd: 0.27,
        telemetry: Some(sample(T0.plus_secs(40), 1.5)),
        telemetry_history: vec![sample(T0.plus_secs(20), 0.5), sample(T0.plus_secs(40), 1.5)],
        cleanup_attempts: 2,
        cleanup_error: Some("provider said \"no\"\u{0}, then hung up".to_owned()),
        cleanup_failed_at: Some(T0.plus_secs(30)),
        cleanup_retry_at: Some(T0.plus_secs(330)),
        cleanup_started_at: Some(T0.plus_secs(29)),
        cleanup_claim_expires_at: Some(T0.plus_secs(1829)),
        release_deletes_server: Some(true),
        failure_error: Some("déjà vu ✓".to_owned()),
        provisioning_request_started_at: Some(T0.plus_millis(5)),
        provisioning_request_settled_at: Some(T0.plus_millis(900)),
        provisioning_coordinator_version: Some("6f1c0c1e-0000-4000-8000-000000000000".to_owned()),
        provisioning_recovery_observed_at: Some(T0.plus_secs(2)),
        provisioning_recovery_missing_since: Some(T0.plus_secs(3)),
        provisioning_resource_may_exist: true,
        create_attempt_id: Some("attempt-1".to_owned()),
        create_attempt_generation: Some("gen-1".to_owned()),
        fixed_create_intent_version: Some(2),
        fixed_create_intent_hash: Some("ab".repeat(32)),
        extra,
    }
}

/// A running run on `lease_id` started at `started`.
pub fn run(id: &str, lease_id: &str, started: Timestamp) -> Run {
    Run {
        id: id.to_owned(),
        lease_id: lease_id.to_owned(),
        lease_ids: vec![lease_id.to_owned()],
        slug: "blue-lobster".to_owned(),
        owner: "peter@example.com".to_owned(),
        org: "~1.b3BlbmNsYXc".to_owned(),
        lease_owners: vec![LeaseOwner {
            owner: "peter@example.com".to_owned(),
            org: "~1.b3BlbmNsYXc".to_owned(),
        }],
        provider: "hetzner".to_owned(),
        target: "linux".to_owned(),
        command: vec![
            "cargo".to_owned(),
            "test".to_owned(),
            "--\u{0}odd".to_owned(),
        ],
        state: RunState::Running,
        phase: "starting".to_owned(),
        telemetry: Some(RunTelemetry {
            start: Some(sample(started, 0.1)),
            end: None,
            samples: vec![sample(started, 0.1)],
        }),
        results: Some(json!({"junit": {"passed": 3, "failed": 0}})),
        started_at: started,
        ..Run::default()
    }
}

/// The run as it looks after finishing at `ended`.
pub(crate) fn finished(mut run: Run, state: RunState, ended: Timestamp) -> Run {
    run.state = state;
    run.phase = "done".into();
    run.exit_code = Some(i64::from(state != RunState::Succeeded));
    run.ended_at = Some(ended);
    run.last_event_at = Some(ended);
    run
}

/// Event number `seq` of `run_id`.
pub(crate) fn event(run_id: &str, seq: u64) -> RunEvent {
    RunEvent {
        run_id: run_id.to_owned(),
        seq,
        kind: "stdout".to_owned(),
        phase: Some("command".to_owned()),
        stream: Some("stdout".to_owned()),
        message: Some(format!("line {seq} \u{0} ✓")),
        data: Some(json!({"n": seq})),
        created_at: T0.plus_millis(i64::try_from(seq).unwrap_or(0)),
        ..RunEvent::default()
    }
}
