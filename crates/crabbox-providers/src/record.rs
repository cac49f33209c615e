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
    /// The machine asked for beyond the class, where the provider has a choice: an exact type
    /// (`--type`, no fallback), the market to try first and the architecture (`--market`,
    /// `--arch`). `None` means the provider's configured default.
    pub machine: MachineChoice,
}

/// `--type`, `--market`, `--arch` of a lease request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineChoice {
    pub server_type: Option<String>,
    pub market: Option<crabbox_core::machine::Market>,
    pub architecture: Option<crabbox_core::machine::Architecture>,
}

/// One lease, as a provider created it and the CLI tracks it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The jump host or proxy command the runner is reached through, as configured when the
    /// lease was made (later commands reach it the same way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_proxy: Option<crabbox_remote::ssh::SshProxy>,
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
    /// Every launch a cloud provider tried before this one succeeded (type, market, region,
    /// error), as `inspect` shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provisioning_attempts: Vec<crate::cloud::ProvisioningAttempt>,
    /// What the runner costs per hour, in USD, and where the price came from
    /// (`configured`, `live`, `table`, `default`); absent where nothing is charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub price_source: String,
}

impl LeaseRecord {
    /// A coordinator lease as a provider (and the CLI's claims) see it.
    pub fn from_coordinator(lease: &crabbox_api::coord::Lease) -> Self {
        let secs = |t: crabbox_api::coord::Timestamp| u64::try_from(t.millis() / 1000).unwrap_or(0);
        Self {
            lease_id: lease.id.clone(),
            slug: lease.slug.clone(),
            provider: lease.provider.clone(),
            server_id: lease.cloud_id.clone(),
            server_type: lease.server_type.clone(),
            ssh_host: lease.host.clone(),
            ssh_user: lease.ssh_user.clone(),
            ssh_port: lease.ssh_port.parse().unwrap_or(22),
            ssh_fallback_ports: lease
                .ssh_fallback_ports
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
            ssh_host_key: lease.ssh_host_key.clone(),
            ssh_key: None,
            ssh_proxy: None,
            work_root: lease.work_root.clone(),
            keep: lease.keep,
            repo_root: None,
            created_at: secs(lease.created_at),
            last_touched_at: secs(lease.last_touched_at),
            ttl_secs: lease.ttl_seconds,
            idle_timeout_secs: lease.idle_timeout_seconds,
            state: "ready".into(),
            // Where the runner is, under the label its provider reads it from.
            labels: match lease.provider.as_str() {
                _ if lease.region.is_empty() => BTreeMap::default(),
                "hetzner" => [("hetzner_location".to_owned(), lease.region.clone())].into(),
                "azure" => [("azure_location".to_owned(), lease.region.clone())].into(),
                _ => [("aws_region".to_owned(), lease.region.clone())].into(),
            },
            provisioning_attempts: Vec::new(),
            hourly_usd: (lease.estimated_hourly_usd > 0.0).then_some(lease.estimated_hourly_usd),
            price_source: String::new(),
        }
    }

    /// `min(created + ttl, last_touched + idle)`.
    pub fn expires_at(&self) -> u64 {
        (self.created_at + self.ttl_secs).min(self.last_touched_at + self.idle_timeout_secs)
    }

    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_at()
    }
}
