//! `crabbox stop <id-or-slug>` (alias `release`).

use crabbox_api::ExitStatus;

use crate::brokered::{self, Released as Brokered};
use crate::error::{CliError, CliResult, WithStatus};
use crate::lease::{self, Released};
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
                let lease = brokered::fetch(client, &id, None).await?;
                crate::broker::record_from(&lease, client.base_url())
            }
            None => return Err(lease::not_found(&id)),
        },
    };
    match lease::release_lease(&ctx, &record).await? {
        Released::Deleted => output::err(format!(
            "deleted lease={} server={} name={}",
            record.lease_id, record.server_id, record.slug
        )),
        Released::Brokered(Brokered::Released) => output::err(format!(
            "released lease={} server={}",
            record.lease_id, record.server_id
        )),
        Released::Brokered(Brokered::Gone) => {
            output::err(format!(
                "note: coordinator {} no longer has lease {} (it ended and was pruned, or this \
                 login cannot see it); forgot its local claim and SSH key",
                brokered::claim_url(&record),
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
