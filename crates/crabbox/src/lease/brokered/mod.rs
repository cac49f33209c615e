//! Brokered leases: the configured coordinator makes, expires and deletes runners; the CLI
//! keeps a local claim (labelled with the coordinator's URL) so the lease's SSH key and repo
//! stay tied to it.
//!
//! A claim is only ever acted on through the coordinator that created it. With another
//! coordinator configured (or none) the command is refused and the claim and its SSH key are
//! kept: releasing "elsewhere" would report success while the lease kept running.

mod create;
mod heartbeat;
mod list;
mod release;
mod view;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use crabbox_api::ExitStatus;
use crabbox_api::coord::Lease;
use crabbox_api::view::LeaseView;
use crabbox_client::{Client, ClientError};
use crabbox_providers::{AcquireRequest, LeaseRecord};

use super::backend::{Backend, KeepAlive, ListQuery, Listing, Released, Row, Sweep, SweepAction};
use super::context::Ctx;
use super::runner::Sampler;
use super::view::claim_view;
use crate::broker;
use crate::error::{CliError, CliResult};
use crate::interrupt::Interrupt;
use crate::output;

pub use view::view;

/// Attempts at a call whose outcome was uncertain (transport error, 5xx) before giving up:
/// releasing or canceling twice is harmless.
const UNCERTAIN_TRIES: u32 = 5;

/// The label that marks a claim as brokered (value: the coordinator URL).
pub const BROKER_LABEL: &str = "broker";

/// Whether a claim is a coordinator lease.
pub fn is_brokered(record: &LeaseRecord) -> bool {
    record.labels.contains_key(BROKER_LABEL)
}

/// The coordinator URL a brokered claim was created through (empty when unrecorded).
pub fn claim_url(record: &LeaseRecord) -> &str {
    record.labels.get(BROKER_LABEL).map_or("", String::as_str)
}

/// Whether two coordinator URLs name the same coordinator.
pub fn same_coordinator(a: &str, b: &str) -> bool {
    let norm = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
    !a.trim().is_empty() && norm(a) == norm(b)
}

/// A coordinator lease as the CLI tracks it in its local claims.
pub fn record_from(lease: &Lease, url: &str) -> LeaseRecord {
    let mut record = LeaseRecord::from_coordinator(lease);
    record.labels = [
        (BROKER_LABEL.to_owned(), url.to_owned()),
        ("class".to_owned(), lease.class.clone()),
    ]
    .into();
    // The target says how readiness and commands reach the runner (PowerShell on Windows).
    for (key, value) in [
        ("target", &lease.target),
        ("windows_mode", &lease.windows_mode),
    ] {
        if !value.is_empty() {
            record.labels.insert(key.to_owned(), value.clone());
        }
    }
    // Where the desktop and browser are, where the runner's differ from a cloud's.
    let extra = |key: &str| {
        lease
            .extra
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let defaults = crabbox_providers::LeaseDesktop::of(&LeaseRecord::default());
    record.labels.extend(
        crabbox_providers::LeaseDesktop {
            display: lease
                .desktop
                .then(|| extra("desktopDisplay").unwrap_or_else(|| ":99".into())),
            desktop_env: Some(lease.desktop_env.clone())
                .filter(|e| !e.is_empty())
                .unwrap_or(defaults.desktop_env),
            vnc_port: extra("vncPort")
                .and_then(|p| p.parse().ok())
                .unwrap_or(defaults.vnc_port),
            vnc_password_file: extra("vncPasswordFile").unwrap_or(defaults.vnc_password_file),
            browser: lease.browser.then(|| {
                extra("browserBin").unwrap_or_else(|| "/usr/local/bin/crabbox-browser".into())
            }),
        }
        .labels(),
    );
    record
}

/// Copies the coordinator's clock fields into a claim record (heartbeats from other processes
/// move them), so expiry warnings and later views start from the truth.
fn refresh(record: &mut LeaseRecord, lease: &Lease) {
    let fresh = LeaseRecord::from_coordinator(lease);
    record.created_at = fresh.created_at;
    record.last_touched_at = fresh.last_touched_at;
    record.ttl_secs = fresh.ttl_secs;
    record.idle_timeout_secs = fresh.idle_timeout_secs;
}

/// Leases through a coordinator.
#[derive(Debug)]
pub struct Brokered {
    /// The lease's own coordinator, when it is the configured one; `None` refuses every
    /// operation (see [`Brokered::client`]).
    client: Option<Client>,
    /// The admin route of that coordinator, when an admin token is configured.
    admin: Option<Client>,
    /// The coordinator the lease was (or new leases are) created through.
    url: String,
    /// The configured coordinator, for errors about a claim of another one.
    configured: Option<String>,
    /// The provider new leases are asked for (`None`: the coordinator's default).
    provider: Option<String>,
    /// The lease (empty for new leases), for messages.
    lease_id: String,
    /// Whether this machine holds a claim for the lease (hints differ).
    claimed: bool,
    /// The lease as last fetched, used once by the next view instead of asking again.
    fetched: Mutex<Option<Lease>>,
}

impl Brokered {
    /// The configured coordinator, for new leases.
    pub fn home(ctx: &Ctx, client: &Client) -> Self {
        Self {
            client: Some(client.clone()),
            admin: broker::require_admin(&ctx.settings).ok(),
            url: client.base_url().to_owned(),
            configured: Some(client.base_url().to_owned()),
            provider: ctx.explicit_provider(),
            lease_id: String::new(),
            claimed: false,
            fetched: Mutex::default(),
        }
    }

    /// The coordinator of a local claim: usable only when it is the configured one.
    pub fn for_claim(ctx: &Ctx, record: &LeaseRecord) -> Self {
        let url = claim_url(record).to_owned();
        let own = ctx
            .broker
            .as_ref()
            .filter(|c| same_coordinator(&url, c.base_url()));
        Self {
            client: own.cloned(),
            admin: own.and_then(|_| broker::require_admin(&ctx.settings).ok()),
            url,
            configured: ctx.broker.as_ref().map(|c| c.base_url().to_owned()),
            provider: None,
            lease_id: record.lease_id.clone(),
            claimed: true,
            fetched: Mutex::default(),
        }
    }

    /// The lease's own coordinator, or an error (exit 2) that leaves the claim alone.
    fn client(&self) -> CliResult<&Client> {
        if let Some(client) = &self.client {
            return Ok(client);
        }
        let url = &self.url;
        let configured = match &self.configured {
            Some(c) => format!("the configured coordinator is {c}"),
            None => "no coordinator is configured".to_owned(),
        };
        Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "lease {} was created through coordinator {url}, but {configured}",
                self.lease_id
            ),
        )
        .hint(format!(
            "log in to that coordinator (`crabbox login --url {url}`, or set \
             CRABBOX_COORDINATOR={url} with its token) to use or release this lease; its \
             local claim and SSH key are kept"
        )))
    }

    /// `GET /v1/leases/{id-or-slug}` (or the lease fetched moments ago). A 404 is exit 4
    /// naming the coordinator.
    async fn fetch(&self, id: &str) -> CliResult<Lease> {
        if let Some(lease) = self.fetched.lock().expect("fetch cache").take() {
            return Ok(lease);
        }
        let client = self.client()?;
        client
            .get_lease(id)
            .await
            .map_err(|e| self.lookup_error(e, id))
    }

    fn lookup_error(&self, e: ClientError, id: &str) -> CliError {
        let url = &self.url;
        if e.status() != Some(404) {
            return broker::error_at(
                e,
                &format!("could not look up lease {id:?} on coordinator {url}"),
                Some(url),
            );
        }
        let err = CliError::msg(
            ExitStatus::NotFound,
            format!("lease {id:?} not found on coordinator {url}"),
        );
        if self.claimed {
            err.hint(format!(
                "it ended and was pruned, or this login cannot see it; `crabbox stop {id}` \
                 forgets the local claim"
            ))
        } else {
            err.hint(format!(
                "`crabbox list` shows your leases on {url}; other users' leases are not visible \
                 to you"
            ))
        }
    }
}

#[async_trait]
impl Backend for Brokered {
    fn name(&self) -> String {
        "coordinator".to_owned()
    }

    fn per_lease_key(&self) -> bool {
        true
    }

    /// A cloud runner is ready when its bootstrap says so (`crabbox-ready`); a pool host or a
    /// coordinator-side local runner when its tools answer.
    fn ready_check(&self, record: &LeaseRecord) -> &'static str {
        match record.provider.as_str() {
            "aws" | "hetzner" | "azure" => crabbox_providers::cloud::ready_check(record),
            _ => "git --version >/dev/null && rsync --version >/dev/null",
        }
    }

    async fn create(&self, req: &AcquireRequest, interrupt: &Interrupt) -> CliResult<LeaseRecord> {
        create::create_or_cancel(self.client()?, self.provider.clone(), req, interrupt).await
    }

    async fn lookup(&self, id: &str) -> CliResult<Option<(LeaseRecord, Box<dyn Backend>)>> {
        let lease = self.fetch(id).await?;
        let record = record_from(&lease, &self.url);
        let found = Self {
            client: self.client.clone(),
            admin: self.admin.clone(),
            url: self.url.clone(),
            configured: self.configured.clone(),
            provider: None,
            lease_id: record.lease_id.clone(),
            claimed: false,
            fetched: Mutex::new(Some(lease)),
        };
        Ok(Some((record, Box::new(found))))
    }

    async fn check_live(&self, record: &mut LeaseRecord) -> CliResult<()> {
        let lease = self.fetch(&record.lease_id).await?;
        if !lease.is_live() {
            return Err(CliError::msg(
                ExitStatus::NotFound,
                format!(
                    "lease {} ({}) is gone: coordinator {} reports it {}",
                    record.lease_id,
                    record.slug,
                    self.url,
                    lease.state.as_str()
                ),
            )
            .hint(format!(
                "run `crabbox stop {}` to forget it, then `crabbox warmup` for a new one",
                record.lease_id
            )));
        }
        refresh(record, &lease);
        Ok(())
    }

    async fn view(&self, record: &LeaseRecord) -> CliResult<LeaseView> {
        let lease = self.fetch(&record.lease_id).await?;
        Ok(view(&lease, &self.url, self.claimed.then_some(record)))
    }

    async fn row(&self, record: &LeaseRecord) -> Row {
        if self.client.is_none() {
            output::err(format!(
                "note: lease {} belongs to coordinator {} (configured: {}); its state is unknown \
                 here",
                record.lease_id,
                self.url,
                self.configured.as_deref().unwrap_or("none")
            ));
            return Row::of_view(claim_view(record, "unknown".to_owned()));
        }
        match self.fetch(&record.lease_id).await {
            Ok(lease) => list::coordinator_row(&lease, &self.url, Some(record)),
            Err(e) if e.code == ExitStatus::NotFound.code() => {
                Row::of_view(claim_view(record, "stopped".to_owned()))
            }
            Err(e) => {
                output::warn(format!(
                    "could not read lease {}: {:#}",
                    record.lease_id, e.error
                ));
                Row::of_view(claim_view(record, "unknown".to_owned()))
            }
        }
    }

    async fn heartbeat(
        &self,
        record: &mut LeaseRecord,
        idle_timeout: Option<Duration>,
        expected_provider: Option<String>,
    ) -> CliResult<LeaseView> {
        let client = self.client()?;
        let lease = heartbeat::once(client, record, idle_timeout, expected_provider).await?;
        refresh(record, &lease);
        Ok(view(&lease, &self.url, self.claimed.then_some(&*record)))
    }

    async fn keep_alive(
        &self,
        record: &mut LeaseRecord,
        sample: Sampler,
        idle_timeout: Option<Duration>,
    ) -> CliResult<Option<KeepAlive>> {
        let client = self.client()?.clone();
        heartbeat::start(client, record, sample, idle_timeout)
            .await
            .map(Some)
    }

    async fn release(&self, record: &LeaseRecord, confirm: bool) -> CliResult<Released> {
        let client = self.client()?;
        let released = release::release(client, record, self.admin.as_ref()).await?;
        if confirm && released == Released::ByCoordinator {
            // The admin sees every lease: a release that went through the admin route is
            // only confirmed there (the member's own route answers 404 for it).
            release::confirm_cleanup(self.admin.as_ref().unwrap_or(client), record).await?;
        }
        Ok(released)
    }

    /// Forgotten once its own coordinator reports the lease ended with no runner cleanup
    /// running, failed or scheduled (or no longer has it at all).
    async fn sweep(&self, record: &LeaseRecord) -> Sweep {
        let Some(client) = &self.client else {
            return Sweep::new(
                SweepAction::Keep,
                format!("other-coordinator coordinator={}", self.url),
                false,
            );
        };
        match client.get_lease(&record.lease_id).await {
            Ok(lease) => release::sweep(&lease),
            Err(e) if e.status() == Some(404) => {
                Sweep::new(SweepAction::Forget, "gone-on-coordinator", true)
            }
            Err(e) => {
                output::warn(format!(
                    "could not read lease {} on coordinator {}: {e}",
                    record.lease_id, self.url
                ));
                Sweep::new(SweepAction::Keep, "coordinator-unreachable", false)
            }
        }
    }

    async fn list(&self, query: &ListQuery, claims: &[LeaseRecord]) -> CliResult<Listing> {
        let client = self.client()?;
        if query.all
            && let Some(listing) = list::all(self.admin.as_ref(), query, claims).await?
        {
            return Ok(listing);
        }
        list::own(client, query, claims).await
    }

    /// The coordinator finds and deletes runners without a lease itself.
    async fn orphans(&self, _claims: &[LeaseRecord]) -> Vec<LeaseRecord> {
        Vec::new()
    }

    async fn delete_orphan(&self, record: &LeaseRecord) -> CliResult<()> {
        Err(CliError::msg(
            ExitStatus::Usage,
            format!(
                "runner of lease {} is the coordinator's to delete",
                record.lease_id
            ),
        ))
    }

    fn run_log(&self) -> Option<&Client> {
        self.client.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_urls_compare_without_trailing_slash_or_case() {
        assert!(same_coordinator(
            "http://127.0.0.1:8080/",
            "HTTP://127.0.0.1:8080"
        ));
        assert!(!same_coordinator(
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8081"
        ));
        assert!(
            !same_coordinator("", ""),
            "an unrecorded coordinator is nobody's"
        );
    }
}
