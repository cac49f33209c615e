//! `crabbox stop <id-or-slug>` (alias `release`).

use crabbox_api::ExitStatus;

use crate::error::{CliError, CliResult, WithStatus};
use crate::lease;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Lease id or slug.
    pub lease: Option<String>,
    /// Lease id or slug (same as the positional argument).
    #[arg(long)]
    pub id: Option<String>,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ((Some(id), None) | (None, Some(id))) = (args.lease, args.id) else {
        return Err(CliError::msg(
            ExitStatus::Usage,
            "give exactly one lease: `crabbox stop <id-or-slug>` or `--id`",
        ));
    };
    let ctx = lease::context(Vec::new())?;
    let record = match ctx.claims.resolve(&id).status(ExitStatus::Usage)? {
        Some(record) => record,
        None => match &ctx.broker {
            // A coordinator lease without a claim here: release it there.
            Some(client) => {
                let lease = client
                    .get_lease(&id)
                    .await
                    .map_err(|e| crate::broker::cli_error(e, &format!("lease {id:?} not found")))?;
                crate::broker::record_from(&lease, client.base_url())
            }
            None => {
                return Err(
                    CliError::msg(ExitStatus::NotFound, format!("lease {id:?} not found"))
                        .hint("`crabbox list` shows the leases on this machine"),
                );
            }
        },
    };
    lease::release(&ctx, &record).await?;
    output::err(format!(
        "deleted lease={} server={} name={}",
        record.lease_id, record.server_id, record.slug
    ));
    Ok(0)
}
