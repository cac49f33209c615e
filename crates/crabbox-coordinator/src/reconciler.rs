//! The reconciler: expires leases past their TTL or idle deadline, deletes their runners with
//! retries, finishes queued release deletes, recovers interrupted provisioning and prunes old
//! records (spec §4.5, §4.9, §4.10).
//!
//! Exactly one replica runs it at a time (`Store::try_leader`: a PostgreSQL advisory lock, or a
//! file lock next to the SQLite database). Work is found through the `next_check_at` index, so
//! a pass costs the number of due leases, not the number of stored ones. Every state change is
//! a compare-and-swap; a provider delete happens outside any transaction under a 30-minute
//! claim written first, so a crashed replica's claim simply expires and is retried.

use std::time::Duration;

use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_providers::cloud::labels::should_cleanup_orphan;
use crabbox_store::LeaderGuard;
use tokio_util::sync::CancellationToken;

use crate::error::Failure;
use crate::leases::modify;
use crate::lifecycle::{self, CLEANUP_CLAIM_SECS, CLEANUP_RETRY_SECS};
use crate::providers;
use crate::state::AppState;

/// Leases handled per batch (bounded so one pass never holds up the process).
pub const BATCH: usize = 16;
/// Longest sleep between looks at the schedule (other replicas' writes do not wake us).
const MAX_IDLE: Duration = Duration::from_secs(2);
/// How often old records are pruned.
const PRUNE_EVERY: Duration = Duration::from_mins(1);
/// Pause between prune batches while old records are left.
const PRUNE_BACKLOG_PAUSE: Duration = Duration::from_secs(1);

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub expired: u64,
    pub deleted: u64,
    pub failed_cleanups: u64,
    pub recovered: u64,
    pub pruned_runs: u64,
    pub pruned_leases: u64,
    pub orphans_deleted: u64,
}

/// Runs until `shutdown` fires: acquires the leader role when free and runs passes when due.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut guard: Option<Box<dyn LeaderGuard>> = None;
    // Pruning is paced by the process's own clock: it is housekeeping, not lease time.
    let mut last_prune: Option<tokio::time::Instant> = None;
    // A full batch pruned: more old records wait, so the next prune comes 1 s later instead of
    // a minute (spec §4.10: the old coordinator re-armed its alarm 1 s out while a cursor was
    // left), without holding up the lease work of the passes between.
    let mut prune_backlog = false;
    loop {
        if guard.as_ref().is_none_or(|g| !g.is_held()) {
            guard = match state.store.try_leader().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(error = %e, "could not check the reconciler lock");
                    None
                }
            };
            if guard.is_some() {
                tracing::info!("this replica now runs the reconciler");
            }
        }
        state.set_leader(guard.is_some());
        let mut sleep = MAX_IDLE;
        if guard.is_some() {
            let prune = last_prune.is_none_or(|at| {
                at.elapsed() >= PRUNE_EVERY
                    || (prune_backlog && at.elapsed() >= PRUNE_BACKLOG_PAUSE)
            });
            if prune {
                last_prune = Some(tokio::time::Instant::now());
            }
            match pass(&state, prune).await {
                Ok((report, more)) => {
                    if report != PassReport::default() {
                        tracing::info!(?report, "reconciler pass");
                    }
                    if more {
                        sleep = Duration::ZERO;
                    }
                    if prune {
                        prune_backlog = report.pruned_runs >= BATCH as u64
                            || report.pruned_leases >= BATCH as u64;
                    }
                    if prune_backlog {
                        sleep = sleep.min(PRUNE_BACKLOG_PAUSE);
                    }
                }
                Err(e) => tracing::warn!(error = ?e.body, "reconciler pass failed"),
            }
            if let Ok(Some(next)) = state.store.next_check_at().await {
                let wait = u64::try_from(next.millis() - state.now().millis()).unwrap_or(0);
                sleep = sleep.min(Duration::from_millis(wait.max(5)));
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = state.reconcile_wake.notified() => {}
            () = tokio::time::sleep(sleep) => {}
        }
    }
    drop(guard);
}

/// One pass over due leases (at most one batch) plus optional pruning. Returns whether more
/// due work is waiting.
pub async fn pass(state: &AppState, prune: bool) -> Result<(PassReport, bool), Failure> {
    let now = state.now();
    let due = state.store.due_leases(now, BATCH).await?;
    let more = due.len() == BATCH;
    let mut report = PassReport::default();
    let mut claims = Vec::new();
    for lease in due {
        if let Some(claimed) = triage(state, lease.value, now, &mut report).await? {
            claims.push(claimed);
        }
    }
    // Provider deletes run concurrently, outside any transaction.
    let results = futures_util::future::join_all(claims.into_iter().map(|lease| async move {
        let outcome = delete_runner(state, &lease).await;
        (lease, outcome)
    }))
    .await;
    for (lease, outcome) in results {
        settle(state, &lease, outcome, &mut report).await?;
    }
    if prune {
        report.orphans_deleted = sweep_orphans(state).await;
        let cutoff = now.plus_secs(-i64::from(state.settings.run_retention_days) * 86_400);
        report.pruned_runs = state.store.prune_runs(cutoff, BATCH).await?;
        report.pruned_leases = state.store.prune_leases(cutoff, BATCH).await?;
    }
    state
        .metrics
        .reconcile_pass(report.expired, report.failed_cleanups);
    Ok((report, more))
}

fn claim_fence(lease: &Lease) -> Option<Timestamp> {
    lease.cleanup_claim_expires_at.or(lease
        .cleanup_started_at
        .map(|t| t.plus_secs(CLEANUP_CLAIM_SECS)))
}

/// Decides what a due lease needs; returns it when a provider delete was claimed.
async fn triage(
    state: &AppState,
    lease: Lease,
    now: Timestamp,
    report: &mut PassReport,
) -> Result<Option<Lease>, Failure> {
    let settle = state.settings.settle_secs;
    // Interrupted provisioning: no resource recorded, and no create task for it: started by
    // another process generation (a crash, a restart), or by this one whose task is gone.
    if lease.state == LeaseState::Provisioning
        && lease.cloud_id.is_empty()
        && lease.provisioning_request_started_at.is_some()
        && (lease.provisioning_coordinator_version.as_deref() != Some(state.generation.as_str())
            || !state.is_creating(&lease.id))
    {
        match lease.provisioning_recovery_observed_at {
            None => {
                let _ = modify(state, &lease.id, |l| {
                    if l.provisioning_recovery_observed_at.is_none() {
                        l.provisioning_recovery_observed_at = Some(now);
                    }
                    Ok(())
                })
                .await;
                return Ok(None);
            }
            Some(seen) if seen.plus_secs(settle) > now && lease.expires_at > now => {
                return Ok(None);
            }
            Some(_) => {
                recover_interrupted(state, &lease, now).await?;
                report.recovered += 1;
                return Ok(None);
            }
        }
    }
    if lease.is_live() && lease.expires_at > now {
        if lease.state == LeaseState::Provisioning && lease.cloud_id.is_empty() {
            // This process's own create is still running: look again one settle window later.
            modify(state, &lease.id, |l| {
                if l.state == LeaseState::Provisioning {
                    l.provisioning_recovery_observed_at = Some(now);
                }
                Ok(())
            })
            .await?;
        }
        return Ok(None);
    }
    if let Some(retry) = lease.cleanup_retry_at
        && retry > now
    {
        return Ok(None);
    }
    if let Some(fence) = claim_fence(&lease) {
        // A live claim by another cleaner (zero-length claims are release hand-offs).
        if fence > now && lease.cleanup_claim_expires_at != lease.cleanup_started_at {
            return Ok(None);
        }
    }
    if lease.is_live() && lease.is_registered() {
        modify(state, &lease.id, |l| {
            if l.is_live() && l.expires_at <= now {
                l.state = LeaseState::Expired;
                l.ended_at = Some(now);
                l.updated_at = now;
            }
            Ok(())
        })
        .await?;
        report.expired += 1;
        return Ok(None);
    }
    if lease.is_live() && lease.cloud_id.is_empty() {
        modify(state, &lease.id, |l| {
            if l.is_live() && l.cloud_id.is_empty() && l.expires_at <= now {
                l.state = LeaseState::Failed;
                l.ended_at = Some(now);
                l.updated_at = now;
                l.cleanup_error =
                    Some("lease expired before provider returned a cloud resource".into());
            }
            Ok(())
        })
        .await?;
        report.expired += 1;
        return Ok(None);
    }
    if !lease.is_live() && !lifecycle::cleanup_pending(&lease) {
        // Nothing owed; clear the schedule entry by rewriting the index.
        modify(state, &lease.id, |_| Ok(())).await?;
        return Ok(None);
    }
    // Claim the delete.
    let mut claimed = false;
    let lease = modify(state, &lease.id, |l| {
        claimed = false;
        let owes = (l.is_live() && l.expires_at <= now) || lifecycle::cleanup_pending(l);
        let fenced = claim_fence(l).is_some_and(|f| f > now)
            && l.cleanup_claim_expires_at != l.cleanup_started_at;
        if !owes || fenced || l.cleanup_retry_at.is_some_and(|r| r > now) {
            return Ok(());
        }
        l.cleanup_started_at = Some(now);
        l.cleanup_claim_expires_at = Some(now.plus_secs(CLEANUP_CLAIM_SECS));
        claimed = true;
        Ok(())
    })
    .await?;
    Ok(claimed.then_some(lease))
}

/// The runner an interrupted create made for `lease`, if its provider finds one ready.
async fn adoptable(state: &AppState, lease: &Lease) -> Option<crabbox_providers::LeaseRecord> {
    let provider = state.provider(&lease.provider)?;
    match tokio::time::timeout(Duration::from_mins(10), provider.adopt(&lease.id)).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::warn!(lease = %lease.id, error = %state.redact(&e.to_string()), "could not look for the runner of an interrupted create");
            None
        }
        Err(_) => None,
    }
}

async fn delete_runner(state: &AppState, lease: &Lease) -> Result<(), String> {
    let Some(provider) = state.provider(&lease.provider) else {
        return Err(format!(
            "provider {} is not configured on this coordinator",
            lease.provider
        ));
    };
    tokio::time::timeout(
        Duration::from_mins(10),
        provider.release(&providers::record_for(lease)),
    )
    .await
    .map_err(|_| "provider delete timed out after 10 minutes".to_owned())?
    .map_err(|e| state.redact(&e.to_string()))
}

async fn settle(
    state: &AppState,
    claimed: &Lease,
    outcome: Result<(), String>,
    report: &mut PassReport,
) -> Result<(), Failure> {
    let now = state.now();
    let claim = claimed.cleanup_started_at;
    let ok = outcome.is_ok();
    modify(state, &claimed.id, |l| {
        if l.cleanup_started_at != claim {
            return Ok(()); // someone else owns the cleanup now
        }
        l.cleanup_started_at = None;
        l.cleanup_claim_expires_at = None;
        l.updated_at = now;
        match &outcome {
            Ok(()) => {
                if l.is_live() {
                    l.state = LeaseState::Expired;
                }
                l.ended_at = Some(now);
                l.cleanup_attempts = 0;
                l.cleanup_error = None;
                l.cleanup_failed_at = None;
                l.cleanup_retry_at = None;
                l.release_deletes_server = None;
            }
            Err(message) => {
                l.cleanup_attempts += 1;
                l.cleanup_error = Some(message.clone());
                l.cleanup_failed_at = Some(now);
                l.cleanup_retry_at = Some(now.plus_secs(CLEANUP_RETRY_SECS));
            }
        }
        Ok(())
    })
    .await?;
    if ok {
        report.deleted += 1;
        if claimed.is_live() {
            report.expired += 1;
        }
    } else {
        report.failed_cleanups += 1;
        tracing::warn!(lease = %claimed.id, error = ?outcome.err(), "runner delete failed; will retry in 5 minutes");
    }
    Ok(())
}

/// Deletes runners that no lease record accounts for (a create whose record was pruned, or
/// state copied from elsewhere). Runners of live leases, of ended leases still owed a delete,
/// and of leases released without delete are left to the lease lifecycle. A cloud's runner
/// carries labels and may be another machine's direct lease in the same account, so it is
/// judged as `crabbox cleanup` judges one (`should_cleanup_orphan`: never `keep=true`, else
/// once its labels say it ended or 10 minutes past its TTL). Runs with the periodic prune, so
/// at start-up too.
async fn sweep_orphans(state: &AppState) -> u64 {
    let now = u64::try_from(state.now().millis() / 1000).unwrap_or_default();
    let mut deleted = 0;
    for (name, provider) in &state.providers {
        let ids = match provider.inventory().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(provider = %name, error = %e, "could not list runners");
                continue;
            }
        };
        let mut labelled = match provider.runners().await {
            Ok(runners) => runners,
            Err(e) => {
                tracing::warn!(provider = %name, error = %e, "could not list runners");
                continue;
            }
        };
        for id in ids {
            if owned(state, &id).await {
                continue;
            }
            let record = match labelled.iter().position(|r| r.lease_id == id) {
                Some(at) => {
                    let runner = labelled.swap_remove(at);
                    let decision = should_cleanup_orphan(&runner.labels, now);
                    if !decision.delete {
                        tracing::debug!(provider = %name, lease = %id, reason = %decision.reason, "orphaned runner kept");
                        continue;
                    }
                    runner
                }
                None => crabbox_providers::LeaseRecord {
                    lease_id: id.clone(),
                    provider: name.clone(),
                    ..providers::record_for(&Lease {
                        id: id.clone(),
                        provider: name.clone(),
                        ..Lease::default()
                    })
                },
            };
            match provider.release(&record).await {
                Ok(()) => {
                    deleted += 1;
                    tracing::info!(provider = %name, lease = %id, "deleted an orphaned runner");
                }
                Err(e) => {
                    tracing::warn!(provider = %name, lease = %id, error = %e, "could not delete an orphaned runner");
                }
            }
        }
    }
    deleted
}

/// Whether a lease record accounts for the runner of `lease_id`.
async fn owned(state: &AppState, lease_id: &str) -> bool {
    match state.store.get_lease(lease_id).await {
        // A runner released with `delete: false` is kept on purpose.
        Ok(Some(l)) => {
            l.value.is_live()
                || lifecycle::cleanup_pending(&l.value)
                || l.value.release_deletes_server == Some(false)
        }
        Ok(None) => false,
        Err(_) => true, // cannot tell: leave it
    }
}

/// A create whose coordinator died mid-call: remove anything the provider may have made for
/// this lease (deletes are idempotent and tolerate absence), then mark the lease failed.
async fn recover_interrupted(
    state: &AppState,
    lease: &Lease,
    now: Timestamp,
) -> Result<(), Failure> {
    if let Some(record) = adoptable(state, lease).await {
        modify(state, &lease.id, |l| {
            if l.state == LeaseState::Provisioning && l.cloud_id.is_empty() {
                crate::leases::activate(l, &record, &state.settings.cost_rates, now);
                tracing::info!(lease = %l.id, cloud_id = %l.cloud_id, "adopted the runner an interrupted create made");
            }
            Ok(())
        })
        .await?;
        return Ok(());
    }
    let outcome = delete_runner(state, lease).await;
    modify(state, &lease.id, |l| {
        if l.state != LeaseState::Provisioning || !l.cloud_id.is_empty() {
            return Ok(());
        }
        match &outcome {
            Ok(()) => {
                l.state = LeaseState::Failed;
                l.ended_at = Some(now);
                l.updated_at = now;
                l.failure_error = Some(
                    "provisioning was interrupted (the coordinator stopped mid-create); anything it started was removed"
                        .into(),
                );
                l.provisioning_request_settled_at = Some(now);
            }
            Err(message) => {
                l.cleanup_error = Some(message.clone());
                l.cleanup_failed_at = Some(now);
                l.provisioning_recovery_observed_at = Some(now);
            }
        }
        Ok(())
    })
    .await?;
    Ok(())
}
