//! `crabbox heartbeat <id>` (spec §1.17): one heartbeat now. A brokered lease is touched on
//! its coordinator with the runner's Linux telemetry (sampled over SSH when its key is here),
//! optionally setting a new idle timeout; a direct lease's claim is touched. Prints the new
//! expiry.

use std::time::Duration;

use crabbox_api::ExitStatus;
use crabbox_api::coord::HeartbeatRequest;
use crabbox_api::view::LeaseView;
use crabbox_providers::LeaseRecord;
use serde::Serialize;

use crate::brokered;
use crate::commands::status::{self, canonical_provider, check_provider};
use crate::error::{CliError, CliResult, WithStatus};
use crate::lease::{self, Ctx};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::status::LeaseArg,
    /// The provider the lease must belong to (exit 4 otherwise).
    #[arg(long)]
    pub provider: Option<String>,
    /// Also set the lease's idle timeout, Go syntax (e.g. 45m); must be positive.
    #[arg(long = "idle-timeout", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `heartbeat --json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Beat {
    id: String,
    slug: String,
    provider: String,
    state: String,
    last_touched_at: String,
    idle_timeout: String,
    expires_at: String,
}

impl From<LeaseView> for Beat {
    fn from(v: LeaseView) -> Self {
        Self {
            id: v.id,
            slug: v.slug,
            provider: v.provider,
            state: v.state,
            last_touched_at: v.last_touched_at,
            idle_timeout: v.idle_timeout,
            expires_at: v.expires_at,
        }
    }
}

/// How long the runner's telemetry may take (spec §4.9).
const TELEMETRY_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(args: Args) -> CliResult<u8> {
    let idle_timeout = args
        .idle_timeout
        .as_deref()
        .map(parse_idle_timeout)
        .transpose()?;
    let ctx = lease::context(Vec::new())?;
    let mut record = status::find(&ctx, args.target).await?;
    if let Some(wanted) = &args.provider {
        check_provider(&record, wanted)?;
    }
    let view = if crate::broker::is_brokered(&record) {
        beat_brokered(&ctx, &mut record, args.provider.as_deref(), idle_timeout).await?
    } else {
        beat_direct(&ctx, &mut record, idle_timeout).await?
    };
    let beat = Beat::from(view);
    if args.json {
        output::json(&beat);
    } else {
        output::out(format!(
            "heartbeat lease={} slug={} provider={} state={} idle_timeout={} last_touched={} expires={}",
            beat.id,
            beat.slug,
            beat.provider,
            beat.state,
            beat.idle_timeout,
            beat.last_touched_at,
            beat.expires_at
        ));
    }
    Ok(0)
}

fn parse_idle_timeout(raw: &str) -> CliResult<Duration> {
    let hint = "pass a positive duration in Go syntax, e.g. --idle-timeout 45m";
    let d = crabbox_core::duration::parse_duration(raw)
        .map_err(|e| CliError::new(ExitStatus::Usage, e).hint(hint))?;
    if d.as_secs() == 0 {
        return Err(CliError::msg(
            ExitStatus::Usage,
            format!("--idle-timeout {raw:?} must be at least one second"),
        )
        .hint(hint));
    }
    Ok(d)
}

/// `POST /v1/leases/{id}/heartbeat` with the runner's telemetry; the claim (if any) takes the
/// coordinator's new clock.
async fn beat_brokered(
    ctx: &Ctx,
    record: &mut LeaseRecord,
    provider: Option<&str>,
    idle_timeout: Option<Duration>,
) -> CliResult<LeaseView> {
    let client = brokered::client_for(ctx, record)?;
    let target = lease::ssh_target(record);
    let telemetry = if target.key.as_ref().is_some_and(|k| k.is_file()) {
        let sample = crate::broker::sampler(target);
        tokio::time::timeout(TELEMETRY_TIMEOUT, sample())
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    if telemetry.is_none() {
        output::warn(format!(
            "no telemetry from the runner of lease {} (its SSH key is not here, or it did not \
             answer in {}s); heartbeating without it",
            record.lease_id,
            TELEMETRY_TIMEOUT.as_secs()
        ));
    }
    let req = HeartbeatRequest {
        expected_provider: Some(
            provider.map_or_else(|| record.provider.clone(), canonical_provider),
        ),
        idle_timeout_seconds: idle_timeout.map(|d| d.as_secs() as f64),
        telemetry,
    };
    let url = client.base_url();
    let lease = client
        .heartbeat(&record.lease_id, &req)
        .await
        .map_err(|e| {
            crate::broker::error_at(
                e,
                &format!(
                    "could not heartbeat lease {} on coordinator {url}",
                    record.lease_id
                ),
                Some(url),
            )
        })?;
    let claimed = ctx
        .claims
        .resolve(&record.lease_id)
        .ok()
        .flatten()
        .is_some();
    brokered::refresh(record, &lease);
    if claimed {
        let updated = record.clone();
        let _ = ctx
            .claims
            .with_lock(&record.lease_id, || ctx.claims.write(&updated));
    }
    Ok(brokered::view(&lease, url, claimed.then_some(&*record)))
}

/// A direct lease: its runner must still be there; the claim is touched (and takes the new
/// idle timeout).
async fn beat_direct(
    ctx: &Ctx,
    record: &mut LeaseRecord,
    idle_timeout: Option<Duration>,
) -> CliResult<LeaseView> {
    lease::ensure_runner(ctx, record, ExitStatus::NotFound).await?;
    if let Some(d) = idle_timeout {
        record.idle_timeout_secs = d.as_secs();
    }
    lease::touch(ctx, record);
    let saved = ctx
        .claims
        .resolve(&record.lease_id)
        .status(ExitStatus::Failure)?;
    if saved.is_none_or(|s| s.last_touched_at != record.last_touched_at) {
        return Err(CliError::msg(
            ExitStatus::Failure,
            format!(
                "could not record the heartbeat in the claim of lease {}",
                record.lease_id
            ),
        ));
    }
    Ok(lease::claim_view(record, record.state.clone()))
}
