//! Direct leases: a provider (`local`, `ssh`) makes and deletes the runner on this machine's
//! behalf; the local claim is the only record of the lease.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crabbox_api::ExitStatus;
use crabbox_api::view::LeaseView;
use crabbox_client::Client;
use crabbox_providers::{AcquireRequest, Health, LeaseRecord, Provider, ProviderError};

use super::backend::{Backend, KeepAlive, ListQuery, Listing, Released, Row, Sweep, SweepAction};
use super::context::{Ctx, now_secs};
use super::runner::Sampler;
use super::view::{claim_view, expires};
use crate::error::{CliError, CliResult, WithStatus};
use crate::interrupt::Interrupt;
use crate::output;

/// A direct provider, or why it cannot be used (an unknown provider name in config or in a
/// claim): the error is given by every operation that needs the provider.
#[derive(Debug)]
pub struct Direct {
    name: String,
    provider: Result<Arc<dyn Provider>, String>,
}

impl Direct {
    /// The provider named `name`, configured from `ctx`.
    pub fn named(ctx: &Ctx, name: &str) -> Self {
        Self {
            name: name.to_owned(),
            provider: ctx
                .provider_named(name)
                .map_err(|e| format!("{:#}", e.error)),
        }
    }

    fn provider(&self) -> CliResult<&Arc<dyn Provider>> {
        self.provider.as_ref().map_err(|message| {
            CliError::msg(ExitStatus::Usage, message).hint(
                "set provider: local or provider: ssh (with static.host) in crabbox.yaml, or \
                 pass --provider",
            )
        })
    }

    async fn health(&self, record: &LeaseRecord) -> Health {
        match &self.provider {
            Ok(p) => p.health(record).await,
            Err(_) => Health::Unknown,
        }
    }

    /// Fails with `status` and a hint when the provider says the runner is gone.
    async fn ensure_runner(&self, record: &LeaseRecord, status: ExitStatus) -> CliResult<()> {
        if let Health::Gone(reason) = self.provider()?.health(record).await {
            return Err(CliError::msg(
                status,
                format!(
                    "lease {} ({}) is gone: {reason}",
                    record.lease_id, record.slug
                ),
            )
            .hint(format!(
                "run `crabbox stop {}` to forget it, then `crabbox warmup` for a new one",
                record.lease_id
            )));
        }
        Ok(())
    }

    /// The claim's state as its provider sees the runner now.
    async fn state(&self, record: &LeaseRecord) -> String {
        match (self.health(record).await, now_secs() >= record.expires_at()) {
            (Health::Gone(_), _) => "stopped".to_owned(),
            (_, true) => "expired".to_owned(),
            _ => record.state.clone(),
        }
    }
}

#[async_trait]
impl Backend for Direct {
    fn name(&self) -> String {
        self.provider
            .as_ref()
            .map_or_else(|_| self.name.clone(), |p| p.name().to_owned())
    }

    fn per_lease_key(&self) -> bool {
        self.provider.as_ref().is_ok_and(|p| p.per_lease_key())
    }

    fn ready_check(&self, record: &LeaseRecord) -> &'static str {
        self.provider
            .as_ref()
            .map_or("true", |p| p.ready_check(record))
    }

    async fn create(&self, req: &AcquireRequest, interrupt: &Interrupt) -> CliResult<LeaseRecord> {
        let provider = self.provider()?;
        if let Some(missing) = req
            .capabilities
            .asked()
            .into_iter()
            .find(|c| !provider.capabilities().contains(c))
        {
            let offered: Vec<&str> = provider.capabilities().iter().map(|c| c.as_str()).collect();
            return Err(CliError::msg(
                ExitStatus::Usage,
                format!(
                    "provider {} cannot offer a {} lease",
                    provider.name(),
                    missing.as_str()
                ),
            )
            .hint(if offered.is_empty() {
                format!(
                    "drop --{}, or lease from a provider that offers it",
                    missing.as_str()
                )
            } else {
                format!(
                    "{} offers {}; drop --{} or choose another provider",
                    provider.name(),
                    offered.join(", "),
                    missing.as_str()
                )
            }));
        }
        let acquire = provider.acquire(req);
        tokio::pin!(acquire);
        // A cloud create cannot be dropped midway (it would leak what it launched): on a
        // signal it is let finish, and the caller then releases what it made.
        let created = tokio::select! {
            created = &mut acquire => created,
            () = interrupt.wait() => {
                output::err(format!(
                    "interrupted; waiting for the {} create in flight to finish, to delete it",
                    provider.name()
                ));
                acquire.await
            }
        };
        created.map_err(|e| {
            let status = match e {
                ProviderError::InvalidSpec(_) => ExitStatus::Usage,
                ProviderError::Auth(_) => ExitStatus::Auth,
                _ => ExitStatus::Failure,
            };
            CliError::new(status, e)
        })
    }

    async fn boot_log(&self, record: &LeaseRecord) -> Option<String> {
        self.provider.as_ref().ok()?.boot_log(record).await
    }

    async fn lookup(&self, _id: &str) -> CliResult<Option<(LeaseRecord, Box<dyn Backend>)>> {
        Ok(None)
    }

    async fn check_live(&self, record: &mut LeaseRecord) -> CliResult<()> {
        self.ensure_runner(record, ExitStatus::Remote).await?;
        if now_secs() >= record.expires_at() {
            output::warn(format!(
                "lease {} is past its TTL or idle timeout; `crabbox cleanup` would release it",
                record.lease_id
            ));
        }
        Ok(())
    }

    async fn view(&self, record: &LeaseRecord) -> CliResult<LeaseView> {
        Ok(claim_view(record, self.state(record).await))
    }

    async fn row(&self, record: &LeaseRecord) -> Row {
        Row::of_view(claim_view(record, self.state(record).await))
    }

    async fn heartbeat(
        &self,
        record: &mut LeaseRecord,
        idle_timeout: Option<Duration>,
        _expected_provider: Option<String>,
    ) -> CliResult<LeaseView> {
        self.ensure_runner(record, ExitStatus::NotFound).await?;
        if let Some(d) = idle_timeout {
            record.idle_timeout_secs = d.as_secs();
        }
        record.last_touched_at = now_secs();
        if let Err(e) = self.provider()?.touch(record).await {
            output::warn(format!(
                "could not record the heartbeat on the {} runner: {e}",
                self.name
            ));
        }
        Ok(claim_view(record, record.state.clone()))
    }

    /// The claim was touched when the run started; nothing runs in the background.
    async fn keep_alive(
        &self,
        _record: &mut LeaseRecord,
        _sample: Sampler,
        _idle_timeout: Option<Duration>,
    ) -> CliResult<Option<KeepAlive>> {
        Ok(None)
    }

    async fn release(&self, record: &LeaseRecord, _confirm: bool) -> CliResult<Released> {
        self.provider()?
            .release(record)
            .await
            .status(ExitStatus::Remote)?;
        Ok(Released::Deleted)
    }

    /// Released once expired or its runner is gone.
    async fn sweep(&self, record: &LeaseRecord) -> Sweep {
        match self.state(record).await.as_str() {
            "expired" => Sweep::new(SweepAction::Release, "expired", false),
            "stopped" => Sweep::new(SweepAction::Release, "runner gone", true),
            _ => Sweep::new(
                SweepAction::Keep,
                format!("active expires={}", expires(record)),
                false,
            ),
        }
    }

    /// A direct provider knows its leases only through the claims.
    async fn list(&self, query: &ListQuery, _claims: &[LeaseRecord]) -> CliResult<Listing> {
        if query.all {
            output::err(
                "note: --all lists every owner's leases on a coordinator; none is configured, \
                 so these are this machine's leases",
            );
        }
        Ok(Listing::default())
    }

    async fn orphans(&self, claims: &[LeaseRecord]) -> Vec<LeaseRecord> {
        let Ok(provider) = &self.provider else {
            return Vec::new();
        };
        let unclaimed = |id: &String| !claims.iter().any(|c| &c.lease_id == id);
        let listed = match provider.runners().await {
            Ok(runners) if !runners.is_empty() => Ok(runners),
            // Providers that list only lease ids.
            Ok(_) => provider.inventory().await.map(|ids| {
                ids.into_iter()
                    .map(|lease_id| LeaseRecord {
                        lease_id,
                        provider: provider.name().to_owned(),
                        ..LeaseRecord::default()
                    })
                    .collect()
            }),
            Err(e) => Err(e),
        };
        match listed {
            Ok(records) => records
                .into_iter()
                .filter(|r| unclaimed(&r.lease_id))
                .collect(),
            Err(e) => {
                output::warn(format!(
                    "could not list the {} provider's runners: {e}",
                    self.name
                ));
                Vec::new()
            }
        }
    }

    async fn delete_orphan(&self, record: &LeaseRecord) -> CliResult<()> {
        self.provider()?
            .release(record)
            .await
            .map_err(|e| CliError::new(ExitStatus::Failure, e))
    }

    fn run_log(&self) -> Option<&Client> {
        None
    }
}
