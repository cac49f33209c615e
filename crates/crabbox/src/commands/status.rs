//! `crabbox status <id>`: one line about a lease. A brokered lease is read from its
//! coordinator (state, expiry after heartbeats, telemetry), never from the local claim alone.

use crabbox_api::ExitStatus;
use crabbox_api::coord::Timestamp;
use crabbox_api::view::LeaseView;

use crate::brokered;
use crate::error::{CliError, CliResult, WithStatus};
use crate::lease::{self, Ctx};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lease id or slug.
    pub lease: Option<String>,
    #[arg(long)]
    pub id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The one lease named by a positional argument or `--id` (exit 2 for none or both).
pub fn one_id(positional: Option<String>, flag: Option<String>) -> CliResult<String> {
    match (positional, flag) {
        (Some(id), None) | (None, Some(id)) => Ok(id),
        _ => Err(CliError::msg(
            ExitStatus::Usage,
            "give exactly one lease id or slug",
        )),
    }
}

/// Finds a lease by id or slug without checking its health: the local claims, then (brokered)
/// the coordinator.
pub async fn find(
    ctx: &Ctx,
    positional: Option<String>,
    flag: Option<String>,
) -> CliResult<crabbox_providers::LeaseRecord> {
    let id = one_id(positional, flag)?;
    if let Some(record) = ctx.claims.resolve(&id).status(ExitStatus::Usage)? {
        return Ok(record);
    }
    if let Some(client) = &ctx.broker {
        let lease = brokered::fetch(client, &id, None).await?;
        return Ok(crate::broker::record_from(&lease, client.base_url()));
    }
    Err(lease::not_found(&id))
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let id = one_id(args.lease, args.id)?;
    let claim = ctx.claims.resolve(&id).status(ExitStatus::Usage)?;
    let view = match (claim, &ctx.broker) {
        (Some(record), _) if !crate::broker::is_brokered(&record) => {
            lease::view(&ctx, &record).await
        }
        (Some(record), _) => {
            let client = brokered::client_for(&ctx, &record)?;
            let lease = brokered::fetch(&client, &record.lease_id, Some(&record)).await?;
            brokered::view(&lease, client.base_url(), Some(&record))
        }
        (None, Some(client)) => {
            let lease = brokered::fetch(client, &id, None).await?;
            brokered::view(&lease, client.base_url(), None)
        }
        (None, None) => return Err(lease::not_found(&id)),
    };
    if args.json {
        output::json(&view);
    } else {
        output::out(line(&view));
    }
    Ok(0)
}

/// The human status line; telemetry (brokered leases) is appended when the coordinator has it.
fn line(v: &LeaseView) -> String {
    let mut line = format!(
        "{} slug={} provider={} target={} state={} type={} host={} ready={} has_host={} idle_for={} idle_timeout={} expires={}",
        v.id,
        v.slug,
        v.provider,
        v.target,
        v.state,
        v.server_type,
        v.host,
        v.ready,
        v.has_host,
        v.idle_for,
        v.idle_timeout,
        v.expires_at
    );
    if let Some(t) = &v.telemetry {
        line.push_str(&brokered::telemetry_suffix(t, Timestamp::now()));
    }
    line
}
