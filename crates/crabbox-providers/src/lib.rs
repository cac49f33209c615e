//! The `Provider` trait and its direct-mode implementations: `local` (a private sshd per lease
//! on this machine) and `ssh` (static hosts from config). Also the local claim store that lets
//! `list`, `status` and `stop` see leases across processes, and the model every cloud provider
//! shares (`cloud`). Providers return lease records; they never print and never decide what to
//! run on a lease.

pub mod claims;
pub mod cloud;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod facts;
pub mod images;
pub mod local;
pub mod record;
pub mod static_ssh;

use async_trait::async_trait;

pub use claims::ClaimStore;
pub use record::{
    AcquireRequest, Capabilities, Capability, ImageChoice, LeaseDesktop, LeaseRecord, MachineChoice,
};

/// Errors every provider speaks, so retry and fallback never parse provider strings.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("lease {0} not found")]
    NotFound(String),
    #[error("invalid lease request: {0}")]
    InvalidSpec(String),
    #[error("no capacity: {0}")]
    Capacity(String),
    #[error("quota exceeded: {0}")]
    Quota(String),
    #[error("rate limited: {0}")]
    RateLimited(String),
    #[error("provider authentication failed: {0}")]
    Auth(String),
    #[error("temporary provider failure: {0}")]
    Transient(String),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ProviderError {
    /// The error's own text, without the kind's wording ("no capacity: …"), for records that
    /// keep the kind beside it.
    pub fn message(&self) -> String {
        match self {
            Self::NotFound(text)
            | Self::InvalidSpec(text)
            | Self::Capacity(text)
            | Self::Quota(text)
            | Self::RateLimited(text)
            | Self::Auth(text)
            | Self::Transient(text) => text.clone(),
            Self::Io { context, source } => format!("{context}: {source}"),
        }
    }
}

/// Whether a lease's runner is still there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Alive,
    /// The runner is gone; the reason is shown to the user.
    Gone(String),
    /// The provider cannot tell without connecting.
    Unknown,
}

/// A lease backend. Object-safe; held as `Arc<dyn Provider>`.
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// Canonical provider name (`local`, `ssh`).
    fn name(&self) -> &'static str;

    /// Whether leases get a per-lease key (managed runners) or use the configured one.
    fn per_lease_key(&self) -> bool;

    /// The command that proves a runner is ready once SSH works; empty when an authenticated
    /// connection is proof enough.
    fn ready_check(&self, _record: &LeaseRecord) -> &'static str {
        "git --version >/dev/null && rsync --version >/dev/null"
    }

    /// What its leases can offer beyond a shell ([`Capability`]); a request for anything else
    /// is refused before a runner is made.
    fn capabilities(&self) -> &'static [Capability] {
        &[]
    }

    /// The target OSes a coordinator may ask it for (`MachineChoice::target`).
    fn targets(&self) -> &'static [crabbox_core::machine::TargetOs] {
        &[crabbox_core::machine::TargetOs::Linux]
    }

    /// Its native runner images, for providers that have them (AWS AMIs).
    fn images(&self) -> Option<&dyn images::Images> {
        None
    }

    /// Creates (or, for static hosts, adopts) a runner.
    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError>;

    /// Checks whether the lease's runner still exists.
    async fn health(&self, lease: &LeaseRecord) -> Health;

    /// Deletes the runner (static hosts: nothing to delete).
    async fn release(&self, lease: &LeaseRecord) -> Result<(), ProviderError>;

    /// Lease ids this provider currently holds resources for, so a coordinator can find
    /// runners no record accounts for (orphans). Providers that cannot list say so with an
    /// empty list.
    async fn inventory(&self) -> Result<Vec<String>, ProviderError> {
        Ok(Vec::new())
    }

    /// A runner that an interrupted create (a coordinator stopped between the provider's
    /// create call and its own record of it) already made for `lease_id`, ready to use, so the
    /// create can finish with it instead of deleting it or making another. `None` when there is
    /// none or the provider cannot find runners by lease.
    async fn adopt(&self, _lease_id: &str) -> Result<Option<LeaseRecord>, ProviderError> {
        Ok(None)
    }

    /// Records on the runner that the lease was used now (a cloud's labels: `last_touched_at`,
    /// `expires_at`), so that another machine's `cleanup` judges it by its real expiry.
    async fn touch(&self, _lease: &LeaseRecord) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Every runner this provider holds, as records with at least the lease id, the server id
    /// and the labels, for `cleanup` and `list` to judge runners no claim accounts for.
    /// Providers that cannot list return an empty list.
    async fn runners(&self) -> Result<Vec<LeaseRecord>, ProviderError> {
        Ok(Vec::new())
    }

    /// The tail of the runner's boot log (a cloud's console output), for the hint of a lease
    /// that never became ready; `None` where there is none.
    async fn boot_log(&self, _lease: &LeaseRecord) -> Option<String> {
        None
    }
}

/// Looks a provider up by name or alias.
pub fn provider_for(
    name: &str,
    cfg: &ProviderConfig,
) -> Result<std::sync::Arc<dyn Provider>, ProviderError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "local" => Ok(std::sync::Arc::new(local::LocalProvider::new(
            &cfg.state_dir,
        ))),
        "ssh" | "static" | "static-ssh" => Ok(std::sync::Arc::new(
            static_ssh::StaticSshProvider::new(cfg.static_host.clone()),
        )),
        other => Err(ProviderError::InvalidSpec(format!(
            "unknown provider {other:?} (this build supports: local, ssh)"
        ))),
    }
}

/// What providers need from the resolved configuration.
#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    pub state_dir: std::path::PathBuf,
    pub static_host: static_ssh::StaticHost,
}
