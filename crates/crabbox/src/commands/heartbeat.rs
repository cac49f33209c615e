//! `crabbox heartbeat <id>` (spec §1.17): one heartbeat now. A brokered lease is touched on
//! its coordinator with the runner's Linux telemetry (sampled over SSH when its key is here),
//! optionally setting a new idle timeout; a direct lease's claim is touched. Prints the new
//! expiry.

use std::time::Duration;

use crabbox_api::ExitStatus;
use crabbox_api::view::LeaseView;
use serde::Serialize;

use crate::commands::status::check_provider;
use crate::error::{CliError, CliResult};
use crate::lease::{self, Leases, canonical_provider};
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

pub async fn run(args: Args) -> CliResult<u8> {
    let idle_timeout = args
        .idle_timeout
        .as_deref()
        .map(parse_idle_timeout)
        .transpose()?;
    let ctx = lease::context(Vec::new())?;
    let mut lease = Leases::new(&ctx).find(&args.target.one()?).await?;
    if let Some(wanted) = &args.provider {
        check_provider(&lease.record, wanted)?;
    }
    let expected = args.provider.as_deref().map(canonical_provider);
    let beat = Beat::from(lease.heartbeat(idle_timeout, expected).await?);
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
