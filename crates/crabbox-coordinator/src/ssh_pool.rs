//! Provider `ssh` inside the coordinator: a pool of static hosts leased one lease per host.
//!
//! A host is claimed with an insert-if-absent document (`ssh-pool:<host>`) in the store, so
//! replicas sharing a database never hand one host to two leases. On acquire the coordinator
//! (with its own pool key) appends the lease's public key to the host's authorized keys,
//! tagged `crabbox-lease:<id>`, and creates the work root; on release it removes exactly that
//! line and frees the claim.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use crabbox_providers::{AcquireRequest, Health, LeaseRecord, Provider, ProviderError};
use crabbox_remote::quote::sh_quote;
use crabbox_remote::ssh::{HostKeyPolicy, SshTarget};
use crabbox_store::{Store, StoreError};

/// One pool host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolHost {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl PoolHost {
    /// Parses `user@host[:port]`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (user, rest) = raw
            .split_once('@')
            .ok_or_else(|| format!("pool host {raw:?} must be user@host[:port]"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("pool host {raw:?} has an invalid port"))?,
            ),
            None => (rest, 22),
        };
        if user.is_empty() || host.is_empty() {
            return Err(format!("pool host {raw:?} must be user@host[:port]"));
        }
        Ok(Self {
            user: user.to_owned(),
            host: host.to_owned(),
            port,
        })
    }

    fn key(&self) -> String {
        format!("ssh-pool:{self}")
    }
}

impl std::fmt::Display for PoolHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// The pool provider.
#[derive(Debug, Clone)]
pub struct SshPoolProvider {
    pub hosts: Vec<PoolHost>,
    /// The coordinator's key for reaching pool hosts.
    pub key: Option<PathBuf>,
    pub work_root: String,
    /// Remote authorized-keys file lease keys are added to.
    pub authorized_keys: String,
    pub known_hosts: PathBuf,
    pub store: Arc<dyn Store>,
}

fn io(context: &str, e: impl std::error::Error + Send + Sync + 'static) -> ProviderError {
    ProviderError::Io {
        context: context.to_owned(),
        source: Box::new(e),
    }
}

/// A host's failure for a summary of several: the message without the variant's prefix,
/// and with the cause of an IO error.
fn failure_detail(e: &ProviderError) -> String {
    match e {
        ProviderError::Transient(message) => message.clone(),
        ProviderError::Io { context, source } => format!("{context}: {source}"),
        other => other.to_string(),
    }
}

impl SshPoolProvider {
    fn target(&self, host: &PoolHost) -> SshTarget {
        SshTarget {
            user: host.user.clone(),
            host: host.host.clone(),
            port: host.port,
            fallback_ports: Vec::new(),
            key: self.key.clone(),
            known_hosts: self.known_hosts.clone(),
            host_keys: HostKeyPolicy::AcceptNew,
            control_dir: None,
            proxy: None,
        }
    }

    async fn exec(&self, host: &PoolHost, script: &str) -> Result<(), ProviderError> {
        let out = self
            .target(host)
            .capture(script)
            .await
            .map_err(|e| io(&format!("could not reach pool host {host}"), e))?;
        if out.code == 0 {
            Ok(())
        } else {
            Err(ProviderError::Transient(format!(
                "pool host {host} answered {}: {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    fn keys_path(&self) -> String {
        match self.authorized_keys.strip_prefix("~/") {
            Some(rest) => format!("\"$HOME\"/{}", sh_quote(rest)),
            None => sh_quote(&self.authorized_keys),
        }
    }

    fn host_of(&self, record: &LeaseRecord) -> Option<PoolHost> {
        self.hosts
            .iter()
            .find(|h| {
                h.host == record.ssh_host && h.port == record.ssh_port && h.user == record.ssh_user
            })
            .cloned()
    }
}

#[async_trait]
impl Provider for SshPoolProvider {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn per_lease_key(&self) -> bool {
        true
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError> {
        let claim = serde_json::json!({"leaseID": req.lease_id});
        let line = format!("{} crabbox-lease:{}", req.public_key.trim(), req.lease_id);
        let keys = self.keys_path();
        let script = format!(
            "set -e; umask 077; mkdir -p \"$(dirname {keys})\" {root}; printf '%s\\n' {line} >> {keys}",
            root = sh_quote(&self.work_root),
            line = sh_quote(&line),
        );
        // Free hosts in order: a host that cannot be set up gives its claim back and the next
        // free one is tried, so one dead host does not stop the pool.
        let mut failures = Vec::new();
        let mut chosen = None;
        for host in &self.hosts {
            match self.store.kv_put(&host.key(), &claim, None).await {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(ProviderError::Transient(e.to_string())),
            }
            match self.exec(host, &script).await {
                Ok(()) => {
                    chosen = Some(host.clone());
                    break;
                }
                Err(e) => {
                    tracing::warn!(host = %host, lease = %req.lease_id, error = %e, "pool host failed; trying the next free one");
                    let _ = self.store.kv_delete(&host.key()).await;
                    failures.push(failure_detail(&e));
                }
            }
        }
        let Some(host) = chosen else {
            if failures.is_empty() {
                return Err(ProviderError::Capacity(format!(
                    "all {} ssh pool hosts are leased",
                    self.hosts.len()
                )));
            }
            return Err(ProviderError::Transient(format!(
                "no free ssh pool host could be set up: {}",
                failures.join("; ")
            )));
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(LeaseRecord {
            lease_id: req.lease_id.clone(),
            slug: req.slug.clone(),
            provider: "ssh".into(),
            server_id: format!("{}@{}:{}", host.user, host.host, host.port),
            server_type: "ssh".into(),
            ssh_host: host.host.clone(),
            ssh_user: host.user.clone(),
            ssh_port: host.port,
            ssh_fallback_ports: Vec::new(),
            ssh_host_key: None,
            ssh_key: None,
            ssh_proxy: None,
            work_root: self.work_root.clone(),
            keep: req.keep,
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

    async fn release(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let host = match self.host_of(lease) {
            Some(h) => Some(h),
            // Orphan sweep: only the lease id is known; find its claim.
            None => self.claimed_host(&lease.lease_id).await?,
        };
        let Some(host) = host else {
            return Ok(()); // no host holds this lease: nothing to undo
        };
        let marker = format!("crabbox-lease:{}", lease.lease_id);
        let keys = self.keys_path();
        let script = format!(
            "f={keys}; [ -f \"$f\" ] || exit 0; grep -v -F -- {m} \"$f\" > \"$f.crabbox-tmp\" || true; cat \"$f.crabbox-tmp\" > \"$f\"; rm -f \"$f.crabbox-tmp\"",
            m = sh_quote(&format!(" {marker}")),
        );
        self.exec(&host, &script).await?;
        if let Ok(Some(claim)) = self.store.kv_get(&host.key()).await
            && claim.value["leaseID"] == lease.lease_id.as_str()
        {
            let _ = self.store.kv_delete(&host.key()).await;
        }
        Ok(())
    }

    async fn inventory(&self) -> Result<Vec<String>, ProviderError> {
        let claims = self
            .store
            .kv_list("ssh-pool:", 10_000)
            .await
            .map_err(|e| ProviderError::Transient(e.to_string()))?;
        Ok(claims
            .into_iter()
            .filter_map(|(_, v)| v["leaseID"].as_str().map(str::to_owned))
            .collect())
    }
}

impl SshPoolProvider {
    async fn claimed_host(&self, lease_id: &str) -> Result<Option<PoolHost>, ProviderError> {
        for host in &self.hosts {
            if let Ok(Some(claim)) = self.store.kv_get(&host.key()).await
                && claim.value["leaseID"] == lease_id
            {
                return Ok(Some(host.clone()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_hosts_parse() {
        assert_eq!(
            PoolHost::parse("ci@build-1:2222").unwrap(),
            PoolHost {
                user: "ci".into(),
                host: "build-1".into(),
                port: 2222
            }
        );
        assert_eq!(PoolHost::parse("ci@build-2").unwrap().port, 22);
        assert!(PoolHost::parse("build-3").is_err());
        assert!(PoolHost::parse("ci@h:notaport").is_err());
    }
}
