//! `crabbox stop <id-or-slug>` (alias `release`).
//!
//! A brokered lease is released through its coordinator, which deletes the runner in the
//! background; `stop` then polls the lease until the coordinator confirms the cleanup (spec
//! §1.3) and only then forgets the local claim and SSH key. Unconfirmed cleanup is exit 5 with
//! both kept, so `stop` can be run again.

use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_api::coord::{Lease, Timestamp};
use crabbox_client::Client;
use crabbox_providers::LeaseRecord;

use crate::brokered::{self, Released as Brokered};
use crate::commands::status::check_provider;
use crate::error::{CliError, CliResult, WithStatus};
use crate::lease::{self, Ctx, Released};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::status::LeaseArg,
    /// The provider the lease must belong to; a lease of another provider is not touched
    /// (exit 4).
    #[arg(long)]
    pub provider: Option<String>,
}

/// How long `stop` waits for the coordinator to confirm the runner's cleanup (spec §1.3).
const CLEANUP_WAIT: Duration = Duration::from_mins(5);
/// The longest pause between two looks at the lease.
const CLEANUP_POLL: Duration = Duration::from_secs(2);

pub async fn run(args: Args) -> CliResult<u8> {
    let id = args
        .target
        .one()
        .map_err(|e| e.hint("give exactly one lease: `crabbox stop <id-or-slug>` or `--id`"))?;
    let ctx = lease::context(Vec::new())?;
    let record = match ctx.claims.resolve(&id).status(ExitStatus::Usage)? {
        Some(record) => record,
        None => match &ctx.broker {
            // A coordinator lease without a claim here: release it there.
            Some(client) => {
                let lease = brokered::fetch(client, &id, None).await?;
                crate::broker::record_from(&lease, client.base_url())
            }
            None => return Err(lease::not_found(&id)),
        },
    };
    if let Some(wanted) = &args.provider {
        check_provider(&record, wanted)?;
    }
    if crate::broker::is_brokered(&record) {
        return stop_brokered(&ctx, &record).await;
    }
    if lease::release_lease(&ctx, &record).await? == Released::Deleted {
        output::err(format!(
            "deleted lease={} server={} name={}",
            record.lease_id, record.server_id, record.slug
        ));
    }
    Ok(0)
}

/// Releases through the lease's own coordinator, waits for the cleanup to be confirmed, then
/// forgets the claim and key.
async fn stop_brokered(ctx: &Ctx, record: &LeaseRecord) -> CliResult<u8> {
    let client = brokered::client_for(ctx, record)?;
    lease::ssh_target(record).close_master().await;
    let admin = crate::broker::require_admin(&ctx.settings).ok();
    match brokered::release(&client, record, admin.as_ref()).await? {
        Brokered::Released => {
            // The admin sees every lease: a release that went through the admin route is only
            // confirmed there (the member's own route answers 404 for it).
            confirm_cleanup(admin.as_ref().unwrap_or(&client), record).await?;
            forget(ctx, record)?;
            output::err(format!(
                "released lease={} server={}",
                record.lease_id, record.server_id
            ));
        }
        Brokered::Gone => {
            forget(ctx, record)?;
            output::err(format!(
                "note: coordinator {} no longer has lease {} (it ended and was pruned, or this \
                 login cannot see it); forgot its local claim and SSH key",
                brokered::claim_url(record),
                record.lease_id
            ));
            output::err(format!(
                "forgot lease={} server={}",
                record.lease_id, record.server_id
            ));
        }
    }
    Ok(0)
}

/// Forgets a lease on this machine: its claim, SSH key and sync state.
pub fn forget(ctx: &Ctx, record: &LeaseRecord) -> CliResult<()> {
    ctx.claims
        .remove(&record.lease_id)
        .status(ExitStatus::Failure)?;
    let _ = std::fs::remove_dir_all(crate::paths::lease_key_dir(&record.lease_id));
    crate::syncstate::forget(&ctx.state_dir, &record.lease_id);
    Ok(())
}

/// Whether the coordinator is done with a lease: it ended and no runner cleanup is running,
/// failed or scheduled.
pub fn cleaned_up(lease: &Lease) -> bool {
    !lease.is_live()
        && lease.cleanup_started_at.is_none()
        && lease.cleanup_error.is_none()
        && lease.cleanup_retry_at.is_none()
}

/// Polls `GET /v1/leases/{id}` (quickly at first, then every 2 s, for up to 5 min) until the
/// coordinator confirms the cleanup. A failed delete whose retry is scheduled after the wait
/// would end gives up at once: it cannot be confirmed in time.
async fn confirm_cleanup(client: &Client, record: &LeaseRecord) -> CliResult<()> {
    let started = Instant::now();
    let deadline =
        Timestamp::now().plus_secs(i64::try_from(CLEANUP_WAIT.as_secs()).unwrap_or(i64::MAX));
    let mut pause = Duration::from_millis(250);
    let mut last: Option<Lease> = None;
    loop {
        match client.get_lease(&record.lease_id).await {
            Ok(lease) if cleaned_up(&lease) => return Ok(()),
            Ok(lease) => {
                let hopeless = lease.cleanup_retry_at.is_some_and(|r| r >= deadline);
                last = Some(lease);
                if hopeless {
                    break;
                }
            }
            // Pruned after its cleanup: nothing is left on the coordinator.
            Err(e) if e.status() == Some(404) => return Ok(()),
            Err(e) => output::warn(format!(
                "could not check the cleanup of lease {}: {e}",
                record.lease_id
            )),
        }
        let waited = started.elapsed();
        if waited >= CLEANUP_WAIT {
            break;
        }
        tokio::time::sleep(pause.min(CLEANUP_WAIT.saturating_sub(waited))).await;
        pause = (pause * 2).min(CLEANUP_POLL);
    }
    Err(unconfirmed(client.base_url(), record, last.as_ref()))
}

/// Exit 5: the coordinator has not confirmed the cleanup; the claim and key are kept.
fn unconfirmed(url: &str, record: &LeaseRecord, lease: Option<&Lease>) -> CliError {
    let detail = match lease {
        Some(l) if l.is_live() => format!("it is still {}", l.state.as_str()),
        Some(l) => match (&l.cleanup_error, l.cleanup_retry_at) {
            (Some(e), Some(retry)) => format!("deleting the runner failed: {e}; retry at {retry}"),
            (Some(e), None) => format!("deleting the runner failed: {e}"),
            (None, _) => "the runner is still being deleted".to_owned(),
        },
        None => "the coordinator could not be asked".to_owned(),
    };
    CliError::msg(
        ExitStatus::Readiness,
        format!(
            "lease {} was released, but coordinator {url} has not confirmed its cleanup ({detail}); \
             local claim and SSH artifacts were preserved",
            record.lease_id
        ),
    )
    .hint(format!(
        "the coordinator retries failed deletes; run `crabbox stop {}` again later to confirm \
         and forget it, or ask an admin (`crabbox admin delete --force {}`)",
        record.lease_id, record.lease_id
    ))
}
