//! Reserving and provisioning a validated create (spec coordinator §4.2 steps 2–5): allocate
//! its slug, store the lease as `provisioning`, bind its create attempt, call the provider
//! outside any lock and commit the result, or settle the lease however the create ends.

use axum::http::StatusCode;
use axum::response::Response;
use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_store::StoreError;

use super::attempts::{attempt_replay, bind_attempt};
use super::fixed::fixed_replay;
use super::{lease_body, modify, shape};
use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::lifecycle;
use crate::providers;
use crate::state::AppState;

/// A validated create, ready to reserve its lease id and provision.
pub(super) struct Reservation {
    pub(super) state: AppState,
    pub(super) caller: Caller,
    pub(super) slug_base: String,
    /// The record to store, `provisioning`.
    pub(super) lease: Lease,
    pub(super) fixed_hash: Option<String>,
    pub(super) attempt_token: Option<String>,
    pub(super) provider_name: String,
    pub(super) provider: std::sync::Arc<dyn crabbox_providers::Provider>,
    pub(super) public_key: String,
}

/// How a create that never made a runner ends its stored reservation.
enum Ending<'a> {
    /// Its create attempt was canceled first: `released`, like a canceled bound create.
    Canceled,
    /// Anything else that stopped it: `failed`, with the reason.
    Failed(&'a str),
}

impl Reservation {
    pub(super) async fn run(mut self) -> Result<Response> {
        let _running = self.state.creating(&self.lease.id);
        let (state, caller) = (&self.state, &self.caller);
        let id = self.lease.id.clone();
        let now = self.lease.created_at;
        // 3. Slug, caps, reservation. Retries of a pending attempt race each other to the
        // insert; every one that finds the lease already stored joins it instead.
        if let Some(token) = &self.attempt_token
            && let Some(existing) = state.store.get_lease(&id).await?
        {
            return attempt_replay(state, caller, existing.value, token);
        }
        self.lease.slug = allocate_slug(state, caller, &self.slug_base, &id, now).await?;
        if let Err(refused) = crate::caps::admit(state, &self.lease, now).await {
            // A joiner admitted after its own attempt's lease was stored counts that lease
            // against the caps: it is a replay, not a second lease.
            if let Some(token) = &self.attempt_token
                && let Some(existing) = state.store.get_lease(&id).await?
            {
                return attempt_replay(state, caller, existing.value, token);
            }
            return Err(refused);
        }
        let index = lifecycle::index(&self.lease, state.settings.settle_secs);
        match state.store.insert_lease(&self.lease, &index).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => {
                let existing = state.store.get_lease(&id).await?;
                return match (existing, &self.fixed_hash, &self.attempt_token) {
                    (Some(existing), Some(hash), _) => {
                        fixed_replay(state, caller, existing.value, hash)
                    }
                    (Some(existing), None, Some(token)) => {
                        attempt_replay(state, caller, existing.value, token)
                    }
                    _ => Err(Failure::conflict(
                        "lease_id_conflict",
                        "lease id already exists",
                    )),
                };
            }
            Err(e) => return Err(e.into()),
        }
        state.metrics.lease_created(&self.provider_name);

        // The lease is stored: from here on every way out settles it.
        let answer = self.provision().await;
        if let Err(failure) = &answer {
            let ending = if failure.body.error == "create_canceled" {
                Ending::Canceled
            } else {
                Ending::Failed(
                    failure
                        .body
                        .message
                        .as_deref()
                        .unwrap_or("the create failed"),
                )
            };
            // A no-op when the lease already moved on (released, finalized, failed).
            self.end(ending).await;
        }
        answer
    }

    /// Binds the create attempt, calls the provider and commits its result.
    async fn provision(&self) -> Result<Response> {
        let (state, caller) = (&self.state, &self.caller);
        let id = &self.lease.id;
        if let Some(token) = &self.attempt_token {
            bind_attempt(
                state,
                id,
                token,
                self.lease.create_attempt_generation.clone(),
                self.lease.created_at,
            )
            .await?;
        }
        // A cancel or release that landed since the reservation: provision nothing.
        match state.store.get_lease(id).await? {
            Some(current) if self.is_ours(&current.value) => {}
            current => return Err(self.state_changed(current.map(|c| c.value))),
        }

        // 4. The provider call, outside any lock or transaction.
        let started = std::time::Instant::now();
        let acquired = self
            .provider
            .acquire(&providers::acquire_request(&self.lease, &self.public_key))
            .await;
        state.metrics.provision_ms(started.elapsed());
        let record = match acquired {
            Ok(record) => record,
            Err(e) => {
                let message = state.redact(&e.to_string());
                tracing::warn!(lease = %id, provider = %self.provider_name, error = %message, "provider create failed");
                let failed_at = state.now();
                let mut lost = false;
                let after = modify(state, id, |l| {
                    // Released or canceled meanwhile: that ending stands.
                    lost = !self.is_ours(l);
                    if lost {
                        return Ok(());
                    }
                    l.state = LeaseState::Failed;
                    l.ended_at = Some(failed_at);
                    l.updated_at = failed_at;
                    l.failure_error = Some(message.clone());
                    l.cleanup_error = Some(message.clone());
                    l.cleanup_failed_at = Some(failed_at);
                    l.provisioning_request_settled_at = Some(failed_at);
                    Ok(())
                })
                .await;
                if lost {
                    return Err(self.state_changed(after.ok()));
                }
                let status = providers::status_for(&e);
                return Err(Failure::new(status, providers::code_for(&e)).message(message));
            }
        };

        // 5. Finalize, unless the lease was released or canceled meanwhile.
        let done = state.now();
        let mut lost = false;
        let finalized = modify(state, id, |l| {
            lost = !self.is_ours(l);
            if lost {
                return Ok(());
            }
            super::activate(l, &record, &state.settings.cost_rates, done);
            Ok(())
        })
        .await;
        match finalized {
            Ok(lease) if !lost => Ok(lease_body(StatusCode::CREATED, shape(state, caller, lease))),
            other => {
                // Released (or gone) while provisioning: delete what was just made.
                let mut current = match other {
                    Ok(l) => Some(l),
                    Err(_) => state
                        .store
                        .get_lease(id)
                        .await
                        .ok()
                        .flatten()
                        .map(|v| v.value),
                };
                if let Err(e) = self
                    .provider
                    .release(&record_for_cleanup(id, &record))
                    .await
                {
                    let message = state.redact(&e.to_string());
                    tracing::warn!(lease = %id, error = %message, "could not delete a runner created for a released lease; the reconciler retries");
                    current = self.owe_delete(&record, &message).await.or(current);
                }
                Err(self.state_changed(current))
            }
        }
    }

    /// Whether `stored` is still this create's reservation, waiting for its runner.
    fn is_ours(&self, stored: &Lease) -> bool {
        stored.state == LeaseState::Provisioning
            && stored.owner == self.lease.owner
            && stored.org == self.lease.org
            && stored.created_at == self.lease.created_at
            && stored.create_attempt_generation == self.lease.create_attempt_generation
            && stored.provisioning_coordinator_version
                == self.lease.provisioning_coordinator_version
    }

    /// Records the runner a lost create made on the ended lease, as a delete still owed, so
    /// the reconciler retries it like any failed cleanup.
    async fn owe_delete(
        &self,
        record: &crabbox_providers::LeaseRecord,
        message: &str,
    ) -> Option<Lease> {
        let now = self.state.now();
        let owed = modify(&self.state, &self.lease.id, |l| {
            if l.is_live() || !l.cloud_id.is_empty() || l.created_at != self.lease.created_at {
                return Ok(());
            }
            providers::apply_record(l, record);
            l.updated_at = now;
            l.release_deletes_server = Some(true);
            l.cleanup_attempts += 1;
            l.cleanup_error = Some(message.to_owned());
            l.cleanup_failed_at = Some(now);
            l.cleanup_retry_at = Some(now.plus_secs(lifecycle::CLEANUP_RETRY_SECS));
            Ok(())
        })
        .await;
        match owed {
            Ok(lease) => Some(lease),
            Err(e) => {
                tracing::warn!(lease = %self.lease.id, error = ?e.body, "could not record a runner left to delete");
                None
            }
        }
    }

    fn state_changed(&self, current: Option<Lease>) -> Failure {
        let mut failure = Failure::conflict(
            "lease_state_changed",
            "the lease was released or canceled while it was being provisioned",
        );
        if let Some(l) = current {
            failure = failure.with("lease", shape(&self.state, &self.caller, l));
        }
        failure
    }

    /// Ends the stored reservation of a create that made no runner, unless it already moved on.
    async fn end(&self, ending: Ending<'_>) {
        match self.state.store.get_lease(&self.lease.id).await {
            Ok(Some(stored)) if self.is_ours(&stored.value) => {}
            _ => return,
        }
        let now = self.state.now();
        let ended = modify(&self.state, &self.lease.id, |l| {
            if !self.is_ours(l) {
                return Ok(());
            }
            l.ended_at = Some(now);
            l.updated_at = now;
            l.provisioning_request_settled_at = Some(now);
            match ending {
                Ending::Canceled => {
                    l.state = LeaseState::Released;
                    l.released_at = Some(now);
                }
                Ending::Failed(why) => {
                    l.state = LeaseState::Failed;
                    l.failure_error = Some(why.to_owned());
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = ended {
            tracing::warn!(lease = %self.lease.id, error = ?e.body, "could not end an abandoned create's lease");
        }
    }
}

fn record_for_cleanup(
    id: &str,
    record: &crabbox_providers::LeaseRecord,
) -> crabbox_providers::LeaseRecord {
    let mut r = record.clone();
    id.clone_into(&mut r.lease_id);
    r
}

/// The first slug candidate no live, unexpired lease of the same owner and org uses.
async fn allocate_slug(
    state: &AppState,
    caller: &Caller,
    base: &str,
    id: &str,
    now: Timestamp,
) -> Result<String> {
    let mut candidates = Vec::new();
    let _ = crabbox_core::slug::allocate_slug(base, id, |s| {
        candidates.push(s.to_owned());
        true
    });
    for candidate in candidates {
        let taken = state
            .store
            .live_leases_by_slug(&candidate)
            .await?
            .iter()
            .any(|l| {
                l.value.owner == caller.owner
                    && l.value.org == caller.org_key
                    && l.value.expires_at > now
            });
        if !taken {
            return Ok(candidate);
        }
    }
    Err(Failure::conflict(
        "slug_unavailable",
        format!("could not allocate a unique slug from {base:?}; pick another"),
    ))
}
