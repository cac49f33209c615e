//! `crabbox status <id>`: one line about a lease.

use crabbox_api::ExitStatus;

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

/// Finds a lease by id or slug without checking its health: the local claims, then (brokered)
/// the coordinator.
pub async fn find(
    ctx: &Ctx,
    positional: Option<String>,
    flag: Option<String>,
) -> CliResult<crabbox_providers::LeaseRecord> {
    let ((Some(id), None) | (None, Some(id))) = (positional, flag) else {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "give exactly one lease id or slug",
        ));
    };
    if let Some(record) = ctx.claims.resolve(&id).status(ExitStatus::Usage)? {
        return Ok(record);
    }
    if let Some(client) = &ctx.broker {
        let lease = client
            .get_lease(&id)
            .await
            .map_err(|e| crate::broker::cli_error(e, &format!("lease {id:?} not found")))?;
        return Ok(crate::broker::record_from(&lease, client.base_url()));
    }
    Err(
        CliError::msg(ExitStatus::NotFound, format!("lease {id:?} not found"))
            .hint("`crabbox list` shows the leases on this machine"),
    )
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let record = find(&ctx, args.lease, args.id).await?;
    let v = lease::view(&ctx, &record).await;
    if args.json {
        output::json(&v);
    } else {
        output::out(format!(
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
        ));
    }
    Ok(0)
}
