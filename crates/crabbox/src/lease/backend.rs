//! The one interface behind which a lease is held, with two implementations: direct (any
//! `Provider`, `super::direct`) and brokered (the configured coordinator,
//! `super::brokered`). Commands never see it: they use `super::Leases` and `super::Lease`,
//! which pick the implementation from the configuration (new leases) or from the claim
//! (existing ones) and keep the local claims.

use std::time::Duration;

use async_trait::async_trait;
use crabbox_api::view::LeaseView;
use crabbox_client::Client;
use crabbox_providers::{AcquireRequest, LeaseRecord};

use super::runner::Sampler;
use crate::error::CliResult;
use crate::interrupt::Interrupt;

#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// What progress lines call it: the provider (`local`, `ssh`) or `coordinator`.
    fn name(&self) -> String;

    /// Whether new leases get a per-lease key (managed runners) or use the configured one.
    fn per_lease_key(&self) -> bool;

    /// The command that proves a new runner ready once SSH works (empty: an authenticated
    /// connection is proof enough).
    fn ready_check(&self, record: &LeaseRecord) -> &'static str;

    /// Makes a new lease. A first signal (`interrupt`) may stop it with exit 130, undoing
    /// what was made; a direct provider's create is never abandoned midway.
    async fn create(&self, req: &AcquireRequest, interrupt: &Interrupt) -> CliResult<LeaseRecord>;

    /// The tail of a new runner's boot log, for the hint of a lease that never became ready.
    async fn boot_log(&self, _record: &LeaseRecord) -> Option<String> {
        None
    }

    /// A lease this machine has no claim for, by id or slug (`None`: this backend knows
    /// leases only through claims).
    async fn lookup(&self, id: &str) -> CliResult<Option<(LeaseRecord, Box<dyn Backend>)>>;

    /// Fails (with a hint) when the lease can no longer be used; takes the backend's current
    /// clock fields into `record`.
    async fn check_live(&self, record: &mut LeaseRecord) -> CliResult<()>;

    /// The lease as its backend reports it now.
    async fn view(&self, record: &LeaseRecord) -> CliResult<LeaseView>;

    /// The lease's row in `list --json`: the coordinator's own lease object for coordinator
    /// leases, the view otherwise.
    async fn row(&self, record: &LeaseRecord) -> Row;

    /// One heartbeat now, optionally setting a new idle timeout; `record` takes the new
    /// clock. `expected_provider` guards against acting on another provider's lease.
    async fn heartbeat(
        &self,
        record: &mut LeaseRecord,
        idle_timeout: Option<Duration>,
        expected_provider: Option<String>,
    ) -> CliResult<LeaseView>;

    /// Keeps the lease alive while a command runs, until the returned guard is dropped.
    /// With `idle_timeout` the first heartbeat sets it and is awaited (a refusal fails).
    async fn keep_alive(
        &self,
        record: &mut LeaseRecord,
        sample: Sampler,
        idle_timeout: Option<Duration>,
    ) -> CliResult<Option<KeepAlive>>;

    /// Releases the lease and its runner. With `confirm`, also waits until the runner's
    /// deletion is confirmed (`stop`). Local claims are the caller's.
    async fn release(&self, record: &LeaseRecord, confirm: bool) -> CliResult<Released>;

    /// What `cleanup` and `list --refresh` should do with this claim.
    async fn sweep(&self, record: &LeaseRecord) -> Sweep;

    /// Every lease this backend lists for the caller (`list`), as rows; claims it does not
    /// list are added by the caller unless the listing is `exhaustive`.
    async fn list(&self, query: &ListQuery, claims: &[LeaseRecord]) -> CliResult<Listing>;

    /// Runners this backend holds that no claim accounts for (`list --refresh`, `cleanup`):
    /// records with the lease id and, where the provider can list them, the server id and
    /// labels.
    async fn orphans(&self, claims: &[LeaseRecord]) -> Vec<LeaseRecord>;

    /// Deletes a runner [`Backend::orphans`] named.
    async fn delete_orphan(&self, record: &LeaseRecord) -> CliResult<()>;

    /// The coordinator that records runs on leases of this backend.
    fn run_log(&self) -> Option<&Client>;
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// A direct lease: its runner was deleted (static hosts: nothing to delete).
    Deleted,
    /// The coordinator released the lease (and deletes its runner).
    ByCoordinator,
    /// The coordinator that created the lease answered 404: it ended and was pruned, or this
    /// login cannot see it. Either way there is nothing left to release from here.
    Gone {
        /// That coordinator's URL.
        coordinator: String,
    },
}

/// What to do with a claim (`cleanup`, `list --refresh`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep {
    pub action: SweepAction,
    pub reason: String,
    /// The lease or its runner no longer exists: the claim is stale.
    pub stale: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepAction {
    /// Release the lease (a direct runner past its time, or gone).
    Release,
    /// Forget the claim: the coordinator ended the lease and cleaned up after it.
    Forget,
    /// Leave it.
    Keep,
}

impl Sweep {
    pub fn new(action: SweepAction, reason: impl Into<String>, stale: bool) -> Self {
        Self {
            action,
            reason: reason.into(),
            stale,
        }
    }
}

/// What `list` asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this provider's leases (canonical name).
    pub provider: Option<String>,
    /// Every owner's leases (coordinator admin).
    pub all: bool,
}

/// One listed lease: its human view, the JSON printed for it, and `key=value` pairs the human
/// line ends with.
#[derive(Debug, Clone)]
pub struct Row {
    pub view: LeaseView,
    pub json: serde_json::Value,
    pub extra: String,
}

impl Row {
    /// A row whose JSON is the view itself.
    pub fn of_view(view: LeaseView) -> Self {
        let json = serde_json::to_value(&view).expect("views serialize");
        Self {
            view,
            json,
            extra: String::new(),
        }
    }
}

/// What a backend listed.
#[derive(Debug, Default)]
pub struct Listing {
    pub rows: Vec<Row>,
    /// Every lease that matters is listed: claims it left out are not added (`list --all`).
    pub exhaustive: bool,
}

/// Keeps a lease alive in the background until dropped.
#[derive(Debug)]
pub struct KeepAlive {
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    pub fn new(task: tokio::task::JoinHandle<()>) -> Self {
        Self { task }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}
