//! `crabbox stop <id-or-slug>` (alias `release`).
//!
//! A direct lease's runner is deleted. A brokered lease is released through its coordinator,
//! which deletes the runner in the background; `stop` then waits until the coordinator
//! confirms the cleanup (spec §1.3) and only then forgets the local claim and SSH key.
//! Unconfirmed cleanup is exit 5 with both kept, so `stop` can be run again.

use crate::commands::status::{LeaseArg, check_provider};
use crate::error::CliResult;
use crate::lease::{self, Leases, Released};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: LeaseArg,
    /// The provider the lease must belong to; a lease of another provider is not touched
    /// (exit 4).
    #[arg(long)]
    pub provider: Option<String>,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let id = args
        .target
        .one()
        .map_err(|e| e.hint("give exactly one lease: `crabbox stop <id-or-slug>` or `--id`"))?;
    let ctx = lease::context(Vec::new())?;
    let lease = Leases::new(&ctx).find(&id).await?;
    let record = &lease.record;
    if let Some(wanted) = &args.provider {
        check_provider(record, wanted)?;
    }
    let (id, server) = (&record.lease_id, &record.server_id);
    match lease.stop().await? {
        Released::Deleted => output::err(format!(
            "deleted lease={id} server={server} name={}",
            record.slug
        )),
        Released::ByCoordinator => output::err(format!("released lease={id} server={server}")),
        Released::Gone { coordinator } => {
            output::err(format!(
                "note: coordinator {coordinator} no longer has lease {id} (it ended and was \
                 pruned, or this login cannot see it); forgot its local claim and SSH key"
            ));
            output::err(format!("forgot lease={id} server={server}"));
        }
    }
    Ok(0)
}
