//! `crabbox cleanup`: release direct leases past their TTL or idle timeout.

use crate::error::CliResult;
use crate::lease;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only say what would be released.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let now = lease::now_secs();
    let (records, _) = ctx.claims.list();
    let mut failed = false;
    for record in records {
        let view = lease::view(&ctx, &record).await;
        let reason = match view.state.as_str() {
            "expired" => "expired",
            "stopped" => "runner gone",
            _ => {
                output::err(format!(
                    "skip lease id={} slug={} reason=active expires={}",
                    record.lease_id, record.slug, view.expires_at
                ));
                continue;
            }
        };
        if args.dry_run {
            output::out(format!(
                "would delete lease id={} slug={} reason={reason}",
                record.lease_id, record.slug
            ));
            continue;
        }
        match lease::release(&ctx, &record).await {
            Ok(()) => output::out(format!(
                "delete lease id={} slug={} reason={reason}",
                record.lease_id, record.slug
            )),
            Err(e) => {
                failed = true;
                output::err(format!(
                    "failed lease id={} error={}",
                    record.lease_id, e.error
                ));
            }
        }
        let _ = now;
    }
    Ok(u8::from(failed))
}
