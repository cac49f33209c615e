//! JSON views printed by `--json` and `--timing-json`. Field names are camelCase and follow the
//! existing Crabbox output so scripts written against it keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::coord::Telemetry;

/// A lease as `list`, `status`, `inspect` and `warmup` report it (`statusView` in the spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    pub id: String,
    pub slug: String,
    pub provider: String,
    pub target: String,
    /// Direct leases: `ready`, `running`, `stopped` (its runner is gone), `expired`. Brokered
    /// leases: the coordinator's state (`provisioning`, `active`, `released`, `expired`,
    /// `failed`), `stopped` when the coordinator no longer knows it, `unknown` when the lease
    /// belongs to a coordinator other than the configured one.
    pub state: String,
    pub server_id: String,
    pub server_type: String,
    pub host: String,
    pub ssh_host: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_fallback_ports: Vec<u16>,
    pub ssh_key: String,
    pub work_root: String,
    pub keep: bool,
    pub repo_root: Option<String>,
    pub created_at: String,
    pub last_touched_at: String,
    /// Go duration string, e.g. `4m12s`.
    pub idle_for: String,
    pub idle_timeout: String,
    pub ttl: String,
    pub expires_at: String,
    pub has_host: bool,
    pub ready: bool,
    pub labels: BTreeMap<String, String>,
    /// Brokered leases: the host key the coordinator vouches for (`algo base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
    /// Brokered leases: the runner's latest telemetry sample, as the coordinator keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
    /// Brokered leases: the coordinator's recent samples, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telemetry_history: Vec<Telemetry>,
    /// Cloud leases: every launch tried before the one that succeeded (`region`,
    /// `serverType`, `market`, `category`, `code`, `message`, `durationMs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioning_attempts: Vec<serde_json::Value>,
    /// What the runner costs per hour, where a provider charges for it.
    #[serde(
        rename = "estimatedHourlyUSD",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub estimated_hourly_usd: Option<f64>,
}

/// One measured sync step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPhase {
    pub name: String,
    pub ms: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The record `run --timing-json` and `warmup --timing-json` print on stderr.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimingReport {
    pub provider: String,
    pub lease_id: String,
    pub slug: String,
    pub lease_ms: u64,
    pub bootstrap_ms: u64,
    pub sync_ms: u64,
    pub sync_phases: Vec<SyncPhase>,
    pub sync_skipped: bool,
    pub command_ms: u64,
    pub total_ms: u64,
    pub exit_code: i32,
    /// `succeeded`, `failed` or `canceled`.
    pub run_status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error_kind: String,
    pub run_id: String,
    pub repo_path: String,
    pub workdir: String,
    pub stop_command: String,
    pub idle_timeout: String,
    pub lease_stopped: bool,
    /// Why releasing the lease after the run failed (the lease is still held).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lease_stop_error: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
}

/// `warmup --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarmupView {
    pub lease: LeaseView,
    pub total_ms: u64,
}
