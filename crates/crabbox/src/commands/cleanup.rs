//! `crabbox cleanup`: release direct leases past their TTL or idle timeout, and forget local
//! claims of brokered leases that the configured coordinator reports ended and cleaned up.
//!
//! A brokered claim is only judged by the coordinator that created it (see
//! [`brokered::own_client`]); another coordinator's claim is skipped, since nothing here can
//! know its state. An ended lease whose runner cleanup is still pending keeps its claim, so
//! `crabbox stop` can confirm it later.

use crabbox_api::coord::Lease;
use crabbox_providers::LeaseRecord;

use crate::brokered;
use crate::commands::stop;
use crate::error::CliResult;
use crate::lease::{self, Ctx};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only say what would be released or forgotten.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// What cleanup does with one claim.
enum Action {
    /// Release the lease (a direct runner past its time, or gone).
    Delete(&'static str),
    /// Forget the claim: the coordinator ended the lease and cleaned up after it.
    Forget(String),
    /// Leave it.
    Skip(String),
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let (records, _) = ctx.claims.list();
    let mut failed = false;
    for record in records {
        let action = if crate::broker::is_brokered(&record) {
            brokered_action(&ctx, &record).await
        } else {
            direct_action(&ctx, &record).await
        };
        let (id, slug) = (&record.lease_id, &record.slug);
        match action {
            Action::Skip(reason) => {
                output::err(format!("skip lease id={id} slug={slug} reason={reason}"));
            }
            Action::Forget(reason) if args.dry_run => output::out(format!(
                "would forget lease id={id} slug={slug} reason={reason}"
            )),
            Action::Delete(reason) if args.dry_run => output::out(format!(
                "would delete lease id={id} slug={slug} reason={reason}"
            )),
            Action::Forget(reason) => match stop::forget(&ctx, &record) {
                Ok(()) => output::out(format!("forget lease id={id} slug={slug} reason={reason}")),
                Err(e) => {
                    failed = true;
                    output::err(format!("failed lease id={id} error={}", e.error));
                }
            },
            Action::Delete(reason) => match lease::release(&ctx, &record).await {
                Ok(()) => output::out(format!("delete lease id={id} slug={slug} reason={reason}")),
                Err(e) => {
                    failed = true;
                    output::err(format!("failed lease id={id} error={}", e.error));
                }
            },
        }
    }
    Ok(u8::from(failed))
}

/// A direct lease: released once expired or its runner is gone.
async fn direct_action(ctx: &Ctx, record: &LeaseRecord) -> Action {
    let view = lease::view(ctx, record).await;
    match view.state.as_str() {
        "expired" => Action::Delete("expired"),
        "stopped" => Action::Delete("runner gone"),
        _ => Action::Skip(format!("active expires={}", view.expires_at)),
    }
}

/// A brokered claim: forgotten once its own coordinator reports the lease ended with no
/// runner cleanup running, failed or scheduled (or no longer has it at all).
async fn brokered_action(ctx: &Ctx, record: &LeaseRecord) -> Action {
    let Some(client) = brokered::own_client(ctx, record) else {
        return Action::Skip(format!(
            "other-coordinator coordinator={}",
            brokered::claim_url(record)
        ));
    };
    match client.get_lease(&record.lease_id).await {
        Ok(lease) => lease_action(&lease),
        Err(e) if e.status() == Some(404) => Action::Forget("gone-on-coordinator".to_owned()),
        Err(e) => {
            output::warn(format!(
                "could not read lease {} on coordinator {}: {e}",
                record.lease_id,
                client.base_url()
            ));
            Action::Skip("coordinator-unreachable".to_owned())
        }
    }
}

fn lease_action(lease: &Lease) -> Action {
    let state = lease.state.as_str();
    if lease.is_live() {
        Action::Skip(format!("{state} expires={}", lease.expires_at))
    } else if stop::cleaned_up(lease) {
        Action::Forget(state.to_owned())
    } else {
        Action::Skip(format!("{state} cleanup=pending"))
    }
}

#[cfg(test)]
mod tests {
    use crabbox_api::coord::{LeaseState, Timestamp};

    use super::*;

    fn reason(lease: &Lease) -> String {
        match lease_action(lease) {
            Action::Forget(r) => format!("forget {r}"),
            Action::Skip(r) => format!("skip {r}"),
            Action::Delete(r) => format!("delete {r}"),
        }
    }

    #[test]
    fn ended_leases_are_forgotten_once_their_cleanup_is_done() {
        let mut lease = Lease {
            state: LeaseState::Failed,
            ..Lease::default()
        };
        assert_eq!(reason(&lease), "forget failed");
        lease.cleanup_error = Some("delete failed".into());
        lease.cleanup_retry_at = Some(Timestamp(5));
        assert_eq!(reason(&lease), "skip failed cleanup=pending");
        lease.state = LeaseState::Released;
        lease.cleanup_error = None;
        lease.cleanup_retry_at = None;
        lease.cleanup_started_at = Some(Timestamp(1));
        assert_eq!(reason(&lease), "skip released cleanup=pending");
        lease.cleanup_started_at = None;
        assert_eq!(reason(&lease), "forget released");
        lease.state = LeaseState::Active;
        assert!(reason(&lease).starts_with("skip active expires="));
    }
}
