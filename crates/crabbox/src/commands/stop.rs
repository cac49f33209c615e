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
    let record = ctx
        .claims
        .resolve(&id)
        .status(ExitStatus::Usage)?
        .ok_or_else(|| {
            CliError::msg(ExitStatus::NotFound, format!("lease {id:?} not found"))
                .hint("`crabbox list` shows the leases on this machine")
        })?;
    lease::release(&ctx, &record).await?;
    output::err(format!(
        "deleted lease={} server={} name={}",
        record.lease_id, record.server_id, record.slug
    ));
    Ok(0)
}
