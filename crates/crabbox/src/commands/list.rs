//! `crabbox list`: leases known on this machine.

use crate::error::CliResult;
use crate::lease;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let (mut records, warnings) = ctx.claims.list();
    for w in warnings {
        output::warn(w);
    }
    if let Some(client) = &ctx.broker {
        // Brokered: the coordinator's live leases for this caller, plus local direct claims.
        let leases = client
            .list_leases("state=live&limit=500")
            .await
            .map_err(|e| crate::broker::cli_error(e, "could not list coordinator leases"))?;
        for lease in &leases {
            if !records.iter().any(|r| r.lease_id == lease.id) {
                records.push(crate::broker::record_from(lease, client.base_url()));
            }
        }
    }
    let mut views = Vec::new();
    for record in &records {
        views.push(lease::view(&ctx, record).await);
    }
    if args.json {
        output::json(&views);
        return Ok(0);
    }
    if views.is_empty() {
        output::err("no leases; `crabbox warmup` creates one");
    }
    for v in views {
        output::out(format!(
            "{:<20} {:<28} {:<12} {:<14} {:<15} lease={} slug={} keep={} target={} expires={}",
            v.server_id,
            v.slug,
            v.state,
            v.server_type,
            v.host,
            v.id,
            v.slug,
            v.keep,
            v.target,
            v.expires_at
        ));
    }
    Ok(0)
}
