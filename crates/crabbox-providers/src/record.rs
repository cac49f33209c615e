//! Lease records as direct mode stores them in local claims.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A request for a new lease.
#[derive(Debug, Clone)]
pub struct AcquireRequest {
    pub lease_id: String,
    pub slug: String,
    pub class: String,
    pub public_key: String,
    pub ttl_secs: u64,
    pub idle_timeout_secs: u64,
    pub keep: bool,
}

/// One lease, as a provider created it and the CLI tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseRecord {
    #[serde(rename = "leaseID")]
    pub lease_id: String,
    pub slug: String,
    pub provider: String,
    pub server_id: String,
    pub server_type: String,
    pub ssh_host: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    #[serde(default)]
    pub ssh_fallback_ports: Vec<u16>,
    /// Host key line the provider vouches for (`ssh-ed25519 AAAA…`), if any.
    #[serde(default)]
    pub ssh_host_key: Option<String>,
    /// Key file for static hosts; managed leases use their per-lease key.
    #[serde(default)]
    pub ssh_key: Option<String>,
    pub work_root: String,
    pub keep: bool,
    #[serde(default)]
    pub repo_root: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    pub last_touched_at: u64,
    pub ttl_secs: u64,
    pub idle_timeout_secs: u64,
    /// `ready` or `running`.
    pub state: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl LeaseRecord {
    /// `min(created + ttl, last_touched + idle)`.
    pub fn expires_at(&self) -> u64 {
        (self.created_at + self.ttl_secs).min(self.last_touched_at + self.idle_timeout_secs)
    }

    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_at()
    }
}
