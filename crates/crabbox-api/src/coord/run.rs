//! `RunRecord`, run events and the run request bodies (spec coordinator §2.3, §3.4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Telemetry, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    #[default]
    Running,
    Succeeded,
    Failed,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// An `(owner, org)` pair of a lease a run touched.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LeaseOwner {
    pub owner: String,
    pub org: String,
}

/// `run.telemetry`: first and last sample plus up to 60 samples in between.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RunTelemetry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<Telemetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<Telemetry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<Telemetry>,
}

/// A run record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: String,
    #[serde(rename = "leaseID", default)]
    pub lease_id: String,
    #[serde(rename = "leaseIDs", default)]
    pub lease_ids: Vec<String>,
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub org: String,
    #[serde(default)]
    pub lease_owners: Vec<LeaseOwner>,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub windows_mode: String,
    #[serde(default)]
    pub class: String,
    #[serde(default)]
    pub server_type: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
    pub state: RunState,
    #[serde(default)]
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub log_bytes: u64,
    #[serde(default)]
    pub log_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_likely: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<RunTelemetry>,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event_at: Option<Timestamp>,
    #[serde(default)]
    pub event_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The run phase an event of type `kind` moves its run to when the event names none (spec
/// coordinator §2.3): the coordinator derives it, and the CLI sends it so that every event
/// shows one. `run.failed` is not here: it also ends the run, which is the coordinator's to
/// do; `command.stdout`/`command.stderr` are older names of `stdout`/`stderr`.
pub fn derived_phase(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "leasing.started" => "leasing",
        "lease.created" => "leased",
        "bootstrap.waiting" => "bootstrap",
        "sync.started" => "sync",
        "sync.finished" => "synced",
        "command.started" | "stdout" | "stderr" | "command.stdout" | "command.stderr" => "command",
        "lease.released" => "released",
        _ => return None,
    })
}

/// A stored run event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunEvent {
    #[serde(rename = "runID")]
    pub run_id: String,
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(rename = "leaseID", default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    pub created_at: Timestamp,
}

/// `POST /v1/runs` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunCreateRequest {
    #[serde(rename = "leaseID", default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// `POST /v1/runs/{id}/events` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunEventRequest {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(rename = "leaseID", default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
    /// Kept only when it is a finite number; any other value is dropped.
    #[serde(
        default,
        deserialize_with = "super::number::number_or_absent",
        skip_serializing_if = "Option::is_none"
    )]
    pub exit_code: Option<f64>,
}

/// `POST /v1/runs/{id}/finish` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunFinishRequest {
    /// A missing or non-numeric exit code records the run as failed with exit code 1.
    #[serde(
        default,
        deserialize_with = "super::number::number_or_absent",
        skip_serializing_if = "Option::is_none"
    )]
    pub exit_code: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_chunks: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_truncated: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked_stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_likely: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Value>,
}
