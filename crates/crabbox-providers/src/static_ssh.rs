//! The `ssh` provider: a static host from config (`static.host`, `static.user`, …). Nothing is
//! provisioned or deleted; a lease is the claim that binds the host to a repository.

use async_trait::async_trait;

use crate::record::{AcquireRequest, LeaseRecord};
use crate::{Health, Provider, ProviderError};

/// Configured static host.
#[derive(Debug, Clone, Default)]
pub struct StaticHost {
    pub id: Option<String>,
    pub name: Option<String>,
    pub host: Option<String>,
    pub user: String,
    pub port: u16,
    pub fallback_ports: Vec<u16>,
    pub work_root: String,
    pub key: Option<String>,
}

/// The static ssh provider.
#[derive(Debug, Clone)]
pub struct StaticSshProvider {
    host: StaticHost,
}

impl StaticSshProvider {
    pub fn new(host: StaticHost) -> Self {
        Self { host }
    }

    /// `static.id`, else `static_<host>` with anything but `[a-z0-9]` turned into `-`.
    pub fn lease_id(&self, host: &str) -> String {
        self.host
            .id
            .clone()
            .unwrap_or_else(|| format!("static_{}", crabbox_core::slug::normalize_slug(host)))
    }
}

#[async_trait]
impl Provider for StaticSshProvider {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn per_lease_key(&self) -> bool {
        false
    }

    fn ready_check(&self, _record: &LeaseRecord) -> &'static str {
        "git --version >/dev/null && rsync --version >/dev/null && tar --version >/dev/null"
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError> {
        let Some(host) = self.host.host.clone().filter(|h| !h.trim().is_empty()) else {
            return Err(ProviderError::InvalidSpec(
                "provider ssh needs static.host (config) or CRABBOX_STATIC_HOST".into(),
            ));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let slug = self.host.name.as_deref().map_or_else(
            || crabbox_core::slug::normalize_slug(&host),
            crabbox_core::slug::normalize_slug,
        );
        Ok(LeaseRecord {
            lease_id: self.lease_id(&host),
            slug,
            provider: "ssh".into(),
            server_id: host.clone(),
            server_type: "ssh".into(),
            ssh_host: host,
            ssh_user: self.host.user.clone(),
            ssh_port: self.host.port,
            ssh_fallback_ports: self.host.fallback_ports.clone(),
            ssh_host_key: None,
            ssh_key: self.host.key.clone(),
            ssh_proxy: None,
            work_root: self.host.work_root.clone(),
            keep: true,
            repo_root: None,
            created_at: now,
            last_touched_at: now,
            ttl_secs: req.ttl_secs,
            idle_timeout_secs: req.idle_timeout_secs,
            state: "ready".into(),
            labels: std::collections::BTreeMap::default(),
            ..LeaseRecord::default()
        })
    }

    async fn health(&self, _lease: &LeaseRecord) -> Health {
        Health::Unknown
    }

    async fn release(&self, _lease: &LeaseRecord) -> Result<(), ProviderError> {
        Ok(())
    }
}
