//! Leases as the commands use them, one interface for both ways a lease is held:
//!
//! - [`Leases`] is the front door: acquire a new lease, resolve an id or slug to a usable
//!   lease ([`Leases::resolve`]) or just find it ([`Leases::find`]), list, and the
//!   coordinator that records runs.
//! - [`Lease`] is one lease this machine acts on: its record (kept in the local claim), view,
//!   touch and heartbeat, keep-alive while a command runs, release.
//!
//! Behind both is a [`backend::Backend`]: `direct` (any `Provider`) or `brokered` (the
//! configured coordinator), chosen from the configuration for new leases and from the claim
//! for existing ones. Commands never branch on which.

mod acquire;
mod backend;
mod brokered;
mod context;
mod direct;
mod list;
mod runner;
mod view;

use std::time::Duration;

use crabbox_api::ExitStatus;
use crabbox_api::view::LeaseView;
use crabbox_client::Client;
use crabbox_providers::LeaseRecord;
use crabbox_remote::ssh::SshTarget;

use crate::error::{CliError, CliResult, WithStatus};
use crate::paths;

pub use acquire::NewLease;
pub use backend::{KeepAlive, ListQuery, Released, Row, SweepAction};
pub use brokered::is_brokered;
pub use context::{Ctx, LeaseFlags, canonical_provider, context, now_secs};
pub use runner::{Sampler, sampler};

use backend::{Backend, Sweep};
use brokered::Brokered;
use direct::Direct;

/// The leases a command can act on.
#[derive(Debug)]
pub struct Leases<'a> {
    ctx: &'a Ctx,
    /// Where new leases come from: the configured coordinator, else the configured provider.
    home: Box<dyn Backend>,
}

impl<'a> Leases<'a> {
    pub fn new(ctx: &'a Ctx) -> Self {
        let home: Box<dyn Backend> = match &ctx.broker {
            Some(client) => Box::new(Brokered::home(ctx, client)),
            None => Box::new(Direct::named(ctx, &ctx.settings.config().provider)),
        };
        Self { ctx, home }
    }

    /// The coordinator that records runs on new leases, if any.
    pub fn run_log(&self) -> Option<&Client> {
        self.home.run_log()
    }

    /// Finds a lease by id or slug without checking it: the local claims, then the
    /// coordinator (which knows leases this machine has no claim for).
    pub async fn find(&self, id: &str) -> CliResult<Lease<'a>> {
        if let Some(record) = self.ctx.claims.resolve(id).status(ExitStatus::Usage)? {
            return Ok(Lease::of(self.ctx, record));
        }
        match self.home.lookup(id).await? {
            Some((mut record, backend)) => {
                record.ssh_proxy = self.ctx.ssh_proxy();
                Ok(Lease {
                    ctx: self.ctx,
                    record,
                    backend,
                    claimed: false,
                })
            }
            None => Err(not_found(id)),
        }
    }

    /// Resolves `--id` (lease id or slug) to a lease that can be used now: its runner is
    /// there, the lease has not ended. A lease without a claim here (leased from another
    /// shell, or its claim cleaned up) is claimed when its per-lease key is here.
    pub async fn resolve(&self, id: &str) -> CliResult<Lease<'a>> {
        let mut lease = self.find(id).await?;
        if !lease.claimed {
            lease.check_key()?;
        }
        lease.backend.check_live(&mut lease.record).await?;
        if !lease.claimed {
            lease.claim()?;
        }
        Ok(lease)
    }

    /// Every readable local claim (unreadable ones are warned about).
    pub fn claims(&self) -> Vec<Lease<'a>> {
        let (records, warnings) = self.ctx.claims.list();
        for w in warnings {
            crate::output::warn(w);
        }
        records
            .into_iter()
            .map(|r| Lease::of(self.ctx, r))
            .collect()
    }
}

/// `lease "<id>" not found` (exit 4) for a lease neither a claim nor a coordinator knows.
/// Refuses `command` on a Windows runner: the data plane (sync, launcher, archives) is POSIX
/// shell, bash and rsync, which a native Windows runner does not have.
pub fn posix_only(command: &str, record: &LeaseRecord) -> CliResult<()> {
    if record.target() == Some(crabbox_core::machine::TargetOs::Windows) {
        let lease = format!("lease {}", record.lease_id);
        return Err(windows_refused(command, &lease).hint(format!(
            "reach it with `crabbox ssh --id {}` (OpenSSH; cmd.exe and PowerShell)",
            record.lease_id
        )));
    }
    Ok(())
}

/// The error of a command this version cannot run on native Windows.
pub fn windows_refused(command: &str, what: &str) -> CliError {
    CliError::msg(
        ExitStatus::Usage,
        format!(
            "`crabbox {command}` on {what} running Windows is not supported by this version: \
             its sync and launcher need a POSIX shell, bash and rsync on the runner"
        ),
    )
}

pub fn not_found(id: &str) -> CliError {
    CliError::msg(ExitStatus::NotFound, format!("lease {id:?} not found"))
        .hint("`crabbox list` shows the leases on this machine")
}

/// One lease this machine acts on.
#[derive(Debug)]
pub struct Lease<'a> {
    ctx: &'a Ctx,
    pub record: LeaseRecord,
    backend: Box<dyn Backend>,
    /// Whether a local claim holds it.
    claimed: bool,
}

impl<'a> Lease<'a> {
    /// A claimed lease, with the backend its claim names. A proxy configured now (flag, env,
    /// config) wins over the one the claim remembers: the way to the runner is the user's.
    fn of(ctx: &'a Ctx, mut record: LeaseRecord) -> Self {
        if let Some(proxy) = ctx.ssh_proxy() {
            record.ssh_proxy = Some(proxy);
        }
        let backend: Box<dyn Backend> = if is_brokered(&record) {
            Box::new(Brokered::for_claim(ctx, &record))
        } else {
            Box::new(Direct::named(ctx, &record.provider))
        };
        Self {
            ctx,
            record,
            backend,
            claimed: true,
        }
    }

    /// The SSH target of its runner.
    pub fn target(&self) -> SshTarget {
        runner::ssh_target(&self.record)
    }

    /// Whether a coordinator holds it.
    pub fn is_brokered(&self) -> bool {
        is_brokered(&self.record)
    }

    /// The settings of the command acting on it.
    pub fn settings(&self) -> &crate::settings::Settings {
        &self.ctx.settings
    }

    /// Its provider, with this machine's configuration (a direct lease).
    pub fn provider(&self) -> CliResult<std::sync::Arc<dyn crabbox_providers::Provider>> {
        self.ctx.provider_named(&self.record.provider)
    }

    /// The remote workdir of this repo on it.
    pub fn workdir(&self) -> String {
        self.ctx.workdir(&self.record)
    }

    /// The repository it is used for.
    pub fn repo_root(&self) -> &std::path::Path {
        &self.ctx.repo_root
    }

    /// The coordinator that records runs on it, if any.
    pub fn run_log(&self) -> Option<&Client> {
        self.backend.run_log()
    }

    /// Its view as its backend reports it now; an unreachable or foreign coordinator shows
    /// the claim as `unknown`, a lease the coordinator no longer has as `stopped`.
    pub async fn view(&self) -> LeaseView {
        match self.backend.view(&self.record).await {
            Ok(view) => view,
            Err(e) if e.code == ExitStatus::NotFound.code() => {
                view::claim_view(&self.record, "stopped".to_owned())
            }
            Err(_) => view::claim_view(&self.record, "unknown".to_owned()),
        }
    }

    /// Its view now, or why it cannot be had (`status`).
    pub async fn current(&self) -> CliResult<LeaseView> {
        self.backend.view(&self.record).await
    }

    /// Its row in `list`.
    pub async fn row(&self) -> Row {
        self.backend.row(&self.record).await
    }

    /// Marks it used now (refreshes the claim's idle timer).
    pub fn touch(&mut self) {
        self.record.last_touched_at = now_secs();
        self.save_claim();
    }

    /// One heartbeat now (`crabbox heartbeat`), optionally setting a new idle timeout; the
    /// claim, if any, takes the new clock.
    pub async fn heartbeat(
        &mut self,
        idle_timeout: Option<Duration>,
        expected_provider: Option<String>,
    ) -> CliResult<LeaseView> {
        let view = self
            .backend
            .heartbeat(&mut self.record, idle_timeout, expected_provider)
            .await?;
        if self.claimed {
            let id = self.record.lease_id.clone();
            let updated = self.record.clone();
            self.ctx
                .claims
                .with_lock(&id, || self.ctx.claims.write(&updated))
                .map_err(|e| {
                    CliError::new(ExitStatus::Failure, e).hint(format!(
                        "could not record the heartbeat in the claim of lease {id}"
                    ))
                })?;
        }
        Ok(view)
    }

    /// Keeps it alive while a command runs (brokered: heartbeats with telemetry), until the
    /// guard is dropped. `idle_timeout` sets a new idle timeout first.
    pub async fn keep_alive(
        &mut self,
        sample: Sampler,
        idle_timeout: Option<Duration>,
    ) -> CliResult<Option<KeepAlive>> {
        self.backend
            .keep_alive(&mut self.record, sample, idle_timeout)
            .await
    }

    /// Releases it after a run: the runner is deleted (or the coordinator asked to), then
    /// the claim, key and sync state are forgotten.
    pub async fn release(&self) -> CliResult<Released> {
        self.release_and_forget(false).await
    }

    /// `stop`: [`Lease::release`], and a coordinator lease's claim is forgotten only once the
    /// coordinator confirms the runner's cleanup (exit 5 with everything kept otherwise).
    pub async fn stop(&self) -> CliResult<Released> {
        self.release_and_forget(true).await
    }

    async fn release_and_forget(&self, confirm: bool) -> CliResult<Released> {
        // The runner is about to go: its connection goes first, so no master is left holding
        // one (a lease that then cannot be released gets a new master when used again).
        self.target().close_master().await;
        let released = self.backend.release(&self.record, confirm).await?;
        self.forget().await?;
        Ok(released)
    }

    /// What `cleanup` and `list --refresh` should do with it.
    pub(crate) async fn sweep(&self) -> Sweep {
        self.backend.sweep(&self.record).await
    }

    /// Forgets it on this machine: its SSH master, claim, key and sync state.
    pub async fn forget(&self) -> CliResult<()> {
        self.target().close_master().await;
        let id = &self.record.lease_id;
        self.ctx.claims.remove(id).status(ExitStatus::Failure)?;
        let _ = std::fs::remove_dir_all(paths::lease_key_dir(id));
        crate::syncstate::forget(&self.ctx.state_dir, id);
        Ok(())
    }

    fn save_claim(&self) {
        let id = self.record.lease_id.clone();
        let updated = self.record.clone();
        let _ = self
            .ctx
            .claims
            .with_lock(&id, || self.ctx.claims.write(&updated));
    }

    /// A lease found without a claim is usable only with its per-lease key on this machine.
    fn check_key(&self) -> CliResult<()> {
        let key_dir = paths::lease_key_dir(&self.record.lease_id);
        if key_dir.join("id_ed25519").is_file() {
            return Ok(());
        }
        Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "lease {} was created on another machine; its SSH key is not here",
                self.record.lease_id
            ),
        )
        .hint("run from the machine that leased it, or `crabbox warmup` a new one"))
    }

    /// Claims a lease found without a claim, for this repo.
    fn claim(&mut self) -> CliResult<()> {
        self.record.repo_root = Some(self.ctx.repo_root.display().to_string());
        runner::pin_host_key(&self.record).status(ExitStatus::Failure)?;
        self.ctx
            .claims
            .write(&self.record)
            .status(ExitStatus::Failure)?;
        self.claimed = true;
        Ok(())
    }
}
