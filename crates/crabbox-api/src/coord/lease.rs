//! `LeaseRecord` and the lease request bodies (spec coordinator §2.2, §3.3, §4.8).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Telemetry, Timestamp};

/// Lease states. "Live" means `provisioning` or `active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    #[default]
    Provisioning,
    Active,
    Released,
    Expired,
    Failed,
}

impl LeaseState {
    pub const ALL: [Self; 5] = [
        Self::Provisioning,
        Self::Active,
        Self::Released,
        Self::Expired,
        Self::Failed,
    ];

    pub fn is_live(self) -> bool {
        matches!(self, Self::Provisioning | Self::Active)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// `managed` leases are provisioned by the coordinator (the field is absent on the wire);
/// `registered` ones were provisioned by a client and are only tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    #[default]
    Managed,
    Registered,
}

impl Lifecycle {
    pub fn is_managed(&self) -> bool {
        *self == Self::Managed
    }
}

/// Sharing roster: `users` maps owner → `use|manage`; `org` grants a role to the lease's org.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Share {
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde skip_serializing_if passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde skip_serializing_if passes a reference"
)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A lease record as stored and (after shaping) returned by `/v1/leases`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub id: String,
    #[serde(default)]
    pub slug: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default, skip_serializing_if = "Lifecycle::is_managed")]
    pub lifecycle: Lifecycle,
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_owner: Option<String>,
    /// Org *key* in storage (`~1.<b64>` / `~0`); the display label in responses.
    #[serde(default)]
    pub org: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Share>,

    #[serde(default)]
    pub target: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub windows_mode: String,
    #[serde(default)]
    pub desktop: bool,
    /// The desktop environment a registered lease's client asked for (`xfce`, …).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub desktop_env: String,
    #[serde(default)]
    pub browser: bool,
    #[serde(default)]
    pub code: bool,
    #[serde(default)]
    pub profile: String,
    #[serde(default)]
    pub class: String,
    #[serde(default)]
    pub server_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requested_server_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pond: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,

    #[serde(rename = "cloudID", default)]
    pub cloud_id: String,
    #[serde(rename = "serverID", default)]
    pub server_id: u64,
    #[serde(default)]
    pub server_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub ssh_user: String,
    #[serde(default)]
    pub ssh_port: String,
    #[serde(default)]
    pub ssh_fallback_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
    #[serde(default)]
    pub work_root: String,

    #[serde(default)]
    pub keep: bool,
    #[serde(default)]
    pub ttl_seconds: u64,
    #[serde(default)]
    pub idle_timeout_seconds: u64,
    pub state: LeaseState,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_touched_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Timestamp>,

    #[serde(rename = "estimatedHourlyUSD", default)]
    pub estimated_hourly_usd: f64,
    #[serde(rename = "maxEstimatedUSD", default)]
    pub max_estimated_usd: f64,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub telemetry_history: Vec<Telemetry>,

    #[serde(default, skip_serializing_if = "is_zero")]
    pub cleanup_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_failed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_retry_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_claim_expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_deletes_server: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_error: Option<String>,

    // Provisioning fence (private: removed from responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_request_started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_request_settled_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_coordinator_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_recovery_observed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_recovery_missing_since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub provisioning_resource_may_exist: bool,

    // Idempotency (private).
    #[serde(
        rename = "createAttemptID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub create_attempt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_attempt_generation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_create_intent_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_create_intent_hash: Option<String>,

    // Runtime adapter binding of a registered lease (spec §4.8).
    #[serde(
        rename = "runtimeAdapterID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_adapter_id: Option<String>,
    #[serde(
        rename = "runtimeAdapterWorkspaceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_adapter_workspace_id: Option<String>,
    #[serde(
        rename = "runtimeAdapterRegistrationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_adapter_registration_id: Option<String>,

    /// Fields this port does not model, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Lease {
    pub fn is_live(&self) -> bool {
        self.state.is_live()
    }

    pub fn is_registered(&self) -> bool {
        self.lifecycle == Lifecycle::Registered
    }

    /// Strips private fields for a response (spec §2.2 "Response shaping").
    pub fn strip_private(&mut self) {
        self.provisioning_coordinator_version = None;
        self.provisioning_request_settled_at = None;
        self.provisioning_recovery_observed_at = None;
        self.provisioning_recovery_missing_since = None;
        self.fixed_create_intent_version = None;
        self.fixed_create_intent_hash = None;
        self.create_attempt_id = None;
        self.create_attempt_generation = None;
    }
}

/// `POST /v1/leases` body. Unknown selectors are kept in `extra` for providers that read them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct LeaseRequest {
    #[serde(rename = "leaseID", default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(
        rename = "createAttemptID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub create_attempt_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_slug: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(rename = "targetOS", default, skip_serializing_if = "Option::is_none")]
    pub target_os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "super::number::number_or_absent",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_seconds: Option<f64>,
    #[serde(
        default,
        deserialize_with = "super::number::number_or_absent",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pond: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<Vec<String>>,
    /// What the lease offers beyond a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `POST …/heartbeat` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_provider: Option<String>,
    #[serde(
        default,
        deserialize_with = "super::number::number_or_absent",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Value>,
}

/// `POST …/release` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<bool>,
}

/// `PUT /v1/leases/{id}/registration` body (spec §4.8).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegistrationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<bool>,
    #[serde(rename = "cloudID", default, skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
    #[serde(rename = "serverID", default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_fallback_ports: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pond: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "super::number::number_or_absent",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl_seconds: Option<f64>,
    #[serde(
        default,
        deserialize_with = "super::number::number_or_absent",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout_seconds: Option<f64>,
    #[serde(
        rename = "runtimeAdapterID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_adapter_id: Option<String>,
    #[serde(
        rename = "runtimeAdapterWorkspaceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_adapter_workspace_id: Option<String>,
    #[serde(
        rename = "runtimeAdapterRegistrationID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub runtime_adapter_registration_id: Option<String>,
}

/// `create-attempt:<requestedLeaseID>` record (spec §3.6, §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateAttempt {
    pub version: u32,
    #[serde(rename = "requestedLeaseID")]
    pub requested_lease_id: String,
    pub token: String,
    pub owner: String,
    pub org: String,
    /// `pending` or `canceled`.
    pub state: String,
    #[serde(
        rename = "canonicalLeaseID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub canonical_lease_id: Option<String>,
    #[serde(rename = "cloudID", default, skip_serializing_if = "Option::is_none")]
    pub cloud_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_round_trips_with_unknown_fields_kept() {
        let json = r#"{"id":"cbx_abcdef123456","slug":"blue-lobster","provider":"hetzner","target":"linux",
 "os":"ubuntu:26.04","desktop":false,"browser":false,"code":false,"cloudID":"123",
 "owner":"peter@example.com","providerOwner":"peter@example.com","org":"openclaw",
 "profile":"default","class":"standard","serverType":"cpx62","requestedServerType":"cpx62",
 "serverID":123,"serverName":"crabbox-blue-lobster-7f8a2c1d","providerKey":"crabbox-cbx-abcdef123456",
 "host":"192.0.2.1","sshUser":"crabbox","sshPort":"2222","sshFallbackPorts":["22"],
 "workRoot":"/work/crabbox","keep":true,"ttlSeconds":1200,"idleTimeoutSeconds":360,
 "estimatedHourlyUSD":0.18,"maxEstimatedUSD":0.06,"state":"active","pond":"alpha-pond",
 "exposedPorts":["8080","9090"],"createdAt":"2026-05-01T00:00:00.000Z",
 "updatedAt":"2026-05-01T00:00:41.000Z","lastTouchedAt":"2026-05-01T00:00:00.000Z",
 "expiresAt":"2026-05-01T00:06:00.000Z","tailscale":{"enabled":false}}"#;
        let lease: Lease = serde_json::from_str(json).unwrap();
        assert_eq!(lease.state, LeaseState::Active);
        assert_eq!(lease.server_id, 123);
        assert!(lease.extra.contains_key("tailscale"));
        let back: Value = serde_json::to_value(&lease).unwrap();
        let orig: Value = serde_json::from_str(json).unwrap();
        assert_eq!(back, orig);
    }
}
