//! Releasing a coordinator lease: `POST /v1/leases/{id}/release` through the lease's own
//! coordinator (the admin route when the member's own route cannot), and for `stop`, waiting
//! until the coordinator confirms the runner's cleanup (spec §1.3).

use std::time::{Duration, Instant};

use crabbox_api::ExitStatus;
use crabbox_api::coord::{Lease, ReleaseRequest, Timestamp};
use crabbox_client::Client;
use crabbox_providers::LeaseRecord;

use super::UNCERTAIN_TRIES;
use crate::broker;
use crate::error::{CliError, CliResult};
use crate::lease::backend::{Released, Sweep, SweepAction};
use crate::output;

/// How long `stop` waits for the coordinator to confirm the runner's cleanup (spec §1.3).
const CLEANUP_WAIT: Duration = Duration::from_mins(5);
/// The longest pause between two looks at the lease.
const CLEANUP_POLL: Duration = Duration::from_secs(2);

/// `POST /v1/leases/{id}/release {"delete": true}` on `client`, which must be the lease's own
/// coordinator; uncertain answers are retried (spec §1.3: 5 attempts,
/// 2 s × n apart). When the caller's own route answers 401 or 404 and an admin token is
/// configured (`admin`, for the same coordinator), the release goes through the admin route.
pub async fn release(
    client: &Client,
    record: &LeaseRecord,
    admin: Option<&Client>,
) -> CliResult<Released> {
    let url = client.base_url();
    let req = ReleaseRequest {
        expected_provider: Some(record.provider.clone()).filter(|p| !p.is_empty()),
        delete: Some(true),
    };
    let mut attempt = 0;
    let mut via_admin = false;
    loop {
        attempt += 1;
        let answer = match (via_admin, admin) {
            (true, Some(admin)) => admin.admin_release(&record.lease_id, &req).await,
            _ => client.release(&record.lease_id, &req).await,
        };
        match answer {
            Ok(_) => return Ok(Released::ByCoordinator),
            Err(e) if !via_admin && admin.is_some() && matches!(e.status(), Some(401 | 404)) => {
                output::warn(format!(
                    "{e}; releasing lease {} through the admin route",
                    record.lease_id
                ));
                via_admin = true;
                attempt = 0;
            }
            Err(e) if e.status() == Some(404) => {
                return Ok(Released::Gone {
                    coordinator: url.to_owned(),
                });
            }
            Err(e) if e.is_uncertain() && attempt < UNCERTAIN_TRIES => {
                let pause = Duration::from_secs(2 * u64::from(attempt));
                output::warn(format!(
                    "{e}; retrying the release in {}s (attempt {attempt} of {UNCERTAIN_TRIES})",
                    pause.as_secs()
                ));
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                return Err(broker::error_at(
                    e,
                    &format!(
                        "could not release lease {} on coordinator {url}",
                        record.lease_id
                    ),
                    Some(url),
                ));
            }
        }
    }
}

/// Whether the coordinator is done with a lease: it ended and no runner cleanup is running,
/// failed or scheduled.
fn cleaned_up(lease: &Lease) -> bool {
    !lease.is_live()
        && lease.cleanup_started_at.is_none()
        && lease.cleanup_error.is_none()
        && lease.cleanup_retry_at.is_none()
}

/// Polls `GET /v1/leases/{id}` (quickly at first, then every 2 s, for up to 5 min) until the
/// coordinator confirms the cleanup. A failed delete whose retry is scheduled after the wait
/// would end gives up at once: it cannot be confirmed in time.
pub async fn confirm_cleanup(client: &Client, record: &LeaseRecord) -> CliResult<()> {
    let started = Instant::now();
    let deadline =
        Timestamp::now().plus_secs(i64::try_from(CLEANUP_WAIT.as_secs()).unwrap_or(i64::MAX));
    let mut pause = Duration::from_millis(250);
    let mut last: Option<Lease> = None;
    loop {
        match client.get_lease(&record.lease_id).await {
            Ok(lease) if cleaned_up(&lease) => return Ok(()),
            Ok(lease) => {
                let hopeless = lease.cleanup_retry_at.is_some_and(|r| r >= deadline);
                last = Some(lease);
                if hopeless {
                    break;
                }
            }
            // Pruned after its cleanup: nothing is left on the coordinator.
            Err(e) if e.status() == Some(404) => return Ok(()),
            Err(e) => output::warn(format!(
                "could not check the cleanup of lease {}: {e}",
                record.lease_id
            )),
        }
        let waited = started.elapsed();
        if waited >= CLEANUP_WAIT {
            break;
        }
        tokio::time::sleep(pause.min(CLEANUP_WAIT.saturating_sub(waited))).await;
        pause = (pause * 2).min(CLEANUP_POLL);
    }
    Err(unconfirmed(client.base_url(), record, last.as_ref()))
}

/// Exit 5: the coordinator has not confirmed the cleanup; the claim and key are kept.
fn unconfirmed(url: &str, record: &LeaseRecord, lease: Option<&Lease>) -> CliError {
    let detail = match lease {
        Some(l) if l.is_live() => format!("it is still {}", l.state.as_str()),
        Some(l) => match (&l.cleanup_error, l.cleanup_retry_at) {
            (Some(e), Some(retry)) => format!("deleting the runner failed: {e}; retry at {retry}"),
            (Some(e), None) => format!("deleting the runner failed: {e}"),
            (None, _) => "the runner is still being deleted".to_owned(),
        },
        None => "the coordinator could not be asked".to_owned(),
    };
    CliError::msg(
        ExitStatus::Readiness,
        format!(
            "lease {} was released, but coordinator {url} has not confirmed its cleanup ({detail}); \
             local claim and SSH artifacts were preserved",
            record.lease_id
        ),
    )
    .hint(format!(
        "the coordinator retries failed deletes; run `crabbox stop {}` again later to confirm \
         and forget it, or ask an admin (`crabbox admin delete --force {}`)",
        record.lease_id, record.lease_id
    ))
}

/// A claim of a lease its coordinator still knows.
pub fn sweep(lease: &Lease) -> Sweep {
    let state = lease.state.as_str();
    if lease.is_live() {
        Sweep::new(
            SweepAction::Keep,
            format!("{state} expires={}", lease.expires_at),
            false,
        )
    } else if cleaned_up(lease) {
        Sweep::new(SweepAction::Forget, state, true)
    } else {
        Sweep::new(SweepAction::Keep, format!("{state} cleanup=pending"), false)
    }
}

#[cfg(test)]
mod tests {
    use crabbox_api::coord::LeaseState;

    use super::*;

    fn reason(lease: &Lease) -> String {
        let sweep = sweep(lease);
        let verb = match sweep.action {
            SweepAction::Forget => "forget",
            SweepAction::Keep => "skip",
            SweepAction::Release => "delete",
        };
        format!("{verb} {}", sweep.reason)
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
