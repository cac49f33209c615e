//! `crabbox cleanup`: release direct leases past their TTL or idle timeout, and forget local
//! claims of brokered leases that the configured coordinator reports ended and cleaned up.
//!
//! A brokered claim is only judged by the coordinator that created it; another coordinator's
//! claim is skipped, since nothing here can know its state. An ended lease whose runner
//! cleanup is still pending keeps its claim, so `crabbox stop` can confirm it later.

use crate::error::CliResult;
use crate::lease::{self, Leases, SweepAction};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only say what would be released or forgotten.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let mut failed = false;
    for lease in Leases::new(&ctx).claims() {
        let sweep = lease.sweep().await;
        let (id, slug, reason) = (&lease.record.lease_id, &lease.record.slug, &sweep.reason);
        let (verb, done) = match sweep.action {
            SweepAction::Keep => {
                output::err(format!("skip lease id={id} slug={slug} reason={reason}"));
                continue;
            }
            SweepAction::Forget if args.dry_run => ("would forget", Ok(())),
            SweepAction::Release if args.dry_run => ("would delete", Ok(())),
            SweepAction::Forget => ("forget", lease.forget().await),
            SweepAction::Release => ("delete", lease.release().await.map(drop)),
        };
        match done {
            Ok(()) => output::out(format!("{verb} lease id={id} slug={slug} reason={reason}")),
            Err(e) => {
                failed = true;
                output::err(format!("failed lease id={id} error={}", e.error));
            }
        }
    }
    Ok(u8::from(failed))
}
