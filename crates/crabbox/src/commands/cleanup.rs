//! `crabbox cleanup`: release direct leases past their TTL or idle timeout, and forget local
//! claims of brokered leases that the configured coordinator reports ended and cleaned up.
//!
//! A brokered claim is only judged by the coordinator that created it; another coordinator's
//! claim is skipped, since nothing here can know its state. An ended lease whose runner
//! cleanup is still pending keeps its claim, so `crabbox stop` can confirm it later.

use crabbox_providers::cloud::labels::should_cleanup_orphan;

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
    failed |= sweep_orphans(&Leases::new(&ctx), args.dry_run).await;
    Ok(u8::from(failed))
}

/// Runners of the configured provider that no claim here accounts for: deleted when their
/// labels say they ended or are past their TTL (with a grace window), never with `keep=true`
/// (`should_cleanup_orphan`: another machine may be using one). True when a delete failed.
async fn sweep_orphans(leases: &Leases<'_>, dry_run: bool) -> bool {
    let now = lease::now_secs();
    let mut failed = false;
    for orphan in leases.orphans().await {
        let (id, server) = (&orphan.lease_id, &orphan.server_id);
        if orphan.labels.is_empty() {
            output::err(format!(
                "skip orphan lease={id} reason=no labels to judge it by"
            ));
            continue;
        }
        let decision = should_cleanup_orphan(&orphan.labels, now);
        let reason = &decision.reason;
        if !decision.delete {
            output::err(format!(
                "skip orphan lease={id} server={server} reason={reason}"
            ));
        } else if dry_run {
            output::out(format!(
                "would delete orphan lease={id} server={server} reason={reason}"
            ));
        } else {
            match leases.delete_orphan(&orphan).await {
                Ok(()) => output::out(format!(
                    "delete orphan lease={id} server={server} reason={reason}"
                )),
                Err(e) => {
                    failed = true;
                    output::err(format!(
                        "failed orphan lease={id} server={server} error={}",
                        e.error
                    ));
                }
            }
        }
    }
    failed
}
