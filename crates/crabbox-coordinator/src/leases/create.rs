//! Creating leases: `POST /v1/leases` and the create behind the fixed-id `PUT` (spec
//! coordinator §4.1–4.2): the record is stored as `provisioning` first, the provider is called
//! outside any lock, and the result is committed with a compare-and-swap.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use crabbox_api::LeaseId;
use crabbox_api::coord::{Lease, LeaseRequest, LeaseState, Timestamp};
use crabbox_store::StoreError;

use super::attempts::{
    AttemptOutcome, attempt_replay, bind_attempt, ensure_unreserved, join_attempt,
    valid_attempt_token,
};
use super::fixed::{fixed_intent_hash, fixed_replay};
use super::{lease_body, modify, shape};
use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::lifecycle::{self, DEFAULT_IDLE_SECS, DEFAULT_TTL_SECS, clamp_lifetime};
use crate::providers;
use crate::request::parse_json;
use crate::state::{AppState, random_hex};

/// `POST /v1/leases`.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: LeaseRequest = parse_json(&body)?;
    create_managed(&state, &caller, req, None).await
}

struct Plan {
    provider_name: String,
    provider: std::sync::Arc<dyn crabbox_providers::Provider>,
    public_key: String,
    lease: Lease,
}

fn plan(
    state: &AppState,
    caller: &Caller,
    req: &LeaseRequest,
    id: String,
    now: Timestamp,
) -> Result<Plan> {
    let provider_name = match req.provider.as_deref().map(str::trim) {
        None | Some("") => state.settings.default_provider.clone(),
        Some(p) => providers::canonical_name(p),
    };
    let Some(provider) = state.provider(&provider_name).cloned() else {
        if providers::is_known(&provider_name) {
            return Err(
                Failure::new(StatusCode::FAILED_DEPENDENCY, "provider_not_configured")
                    .with("provider", &provider_name)
                    .with("missing", providers::missing_settings(&provider_name))
                    .message(format!(
                        "provider {provider_name} is not configured on this coordinator"
                    )),
            );
        }
        return Err(Failure::bad_request(
            "unsupported_provider",
            format!(
                "unsupported provider: {provider_name} (this coordinator offers: {})",
                state
                    .providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let target = req
        .target
        .clone()
        .or_else(|| req.target_os.clone())
        .unwrap_or_else(|| "linux".into())
        .to_ascii_lowercase();
    if target != "linux" && target != "macos" && target != "windows" {
        return Err(Failure::bad_request(
            "invalid_target",
            format!("target {target:?} is not linux, macos or windows"),
        ));
    }
    if target != "linux" {
        return Err(Failure::bad_request(
            "unsupported_target",
            format!("provider {provider_name} offers linux runners only"),
        ));
    }
    let public_key = req.ssh_public_key.clone().unwrap_or_default();
    if public_key.trim().is_empty() {
        return Err(Failure::bad_request(
            "invalid_request",
            "sshPublicKey is required",
        ));
    }
    if !public_key.trim_start().starts_with("ssh-")
        && !public_key.trim_start().starts_with("ecdsa-")
    {
        return Err(Failure::bad_request(
            "invalid_request",
            "sshPublicKey must be an OpenSSH public key line (ssh-ed25519 AAAA…)",
        ));
    }
    let ttl = clamp_lifetime(req.ttl_seconds, DEFAULT_TTL_SECS);
    let idle = clamp_lifetime(req.idle_timeout_seconds, DEFAULT_IDLE_SECS);
    let class = req
        .class
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "beast".into());
    let server_type = req
        .server_type
        .clone()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| provider_name.clone());
    let rate = lifecycle::hourly_rate(&provider_name, &server_type, &state.settings.cost_rates);
    let pond = req
        .pond
        .as_deref()
        .map(crabbox_core::slug::normalize_slug)
        .unwrap_or_default();
    let exposed_ports = super::normalize_ports(req.exposed_ports.as_deref());
    let mut lease = Lease {
        id,
        provider: provider_name.clone(),
        owner: caller.owner.clone(),
        provider_owner: Some(caller.owner.clone()),
        org: caller.org_key.clone(),
        target,
        os: String::new(),
        profile: req.profile.clone().unwrap_or_else(|| "default".into()),
        class,
        server_type: server_type.clone(),
        requested_server_type: server_type,
        pond,
        exposed_ports,
        keep: req.keep.unwrap_or(false),
        ttl_seconds: ttl,
        idle_timeout_seconds: idle,
        state: LeaseState::Provisioning,
        created_at: now,
        updated_at: now,
        last_touched_at: now,
        estimated_hourly_usd: rate,
        max_estimated_usd: lifecycle::max_estimated_usd(ttl, rate),
        provisioning_request_started_at: Some(now),
        provisioning_coordinator_version: Some(state.generation.clone()),
        ..Lease::default()
    };
    lease.expires_at = lifecycle::expires_at(&lease);
    Ok(Plan {
        provider_name,
        provider,
        public_key,
        lease,
    })
}

pub(super) async fn create_managed(
    state: &AppState,
    caller: &Caller,
    req: LeaseRequest,
    fixed_id: Option<String>,
) -> Result<Response> {
    let now = state.now();
    // 1. Validate.
    let attempt_token = req.create_attempt_id.clone();
    let id = match (&fixed_id, &req.lease_id, &attempt_token) {
        (Some(id), _, _) => id.clone(),
        (None, Some(id), _) if LeaseId::is_canonical(id) => id.clone(),
        (None, Some(id), Some(_)) => {
            return Err(Failure::bad_request(
                "invalid_lease_id",
                format!("{id:?} is not a lease id (cbx_ + 12 hex)"),
            ));
        }
        (None, None, Some(_)) => {
            return Err(Failure::bad_request(
                "invalid_lease_id",
                "createAttemptID needs a client-minted leaseID",
            ));
        }
        _ => LeaseId::generate().as_str().to_owned(),
    };
    if let Some(token) = &attempt_token
        && !valid_attempt_token(token)
    {
        return Err(Failure::bad_request(
            "invalid_create_attempt_id",
            "createAttemptID must be cat_ + 32 hex",
        ));
    }
    let requested_slug = match req.requested_slug.as_deref().or(req.slug.as_deref()) {
        Some(raw) if !raw.trim().is_empty() => Some(
            crabbox_core::slug::requested_slug(raw)
                .map_err(|e| Failure::bad_request("invalid_slug", e.to_string()))?,
        ),
        Some(raw) if !raw.is_empty() => {
            return Err(Failure::bad_request("invalid_slug", "slug is blank"));
        }
        _ => None,
    };
    let Plan {
        provider_name,
        provider,
        public_key,
        mut lease,
    } = plan(state, caller, &req, id.clone(), now)?;
    let fixed_hash = fixed_id
        .is_some()
        .then(|| fixed_intent_hash(requested_slug.as_deref(), &lease, &public_key));
    if let Some(hash) = &fixed_hash {
        // The id itself is the idempotency key: a stored lease is a replay or a conflict.
        if let Some(existing) = state.store.get_lease(&id).await? {
            return fixed_replay(state, caller, existing.value, hash);
        }
        lease.fixed_create_intent_version = Some(2);
        lease.fixed_create_intent_hash = Some(hash.clone());
    }

    // 2. Idempotency: a create-attempt token binds this id to one create, and a pending or
    // bound attempt keeps every other create off the id.
    if let Some(token) = &attempt_token {
        if let AttemptOutcome::Replay(response) =
            join_attempt(state, caller, &id, token, now).await?
        {
            return Ok(response);
        }
        lease.create_attempt_id = Some(token.clone());
        lease.create_attempt_generation = Some(random_hex(16));
    } else {
        ensure_unreserved(state, &id).await?;
    }
    let reservation = Reservation {
        state: state.clone(),
        caller: caller.clone(),
        slug_base: requested_slug.unwrap_or_else(|| crabbox_core::slug::slug_for_lease(&id)),
        lease,
        fixed_hash,
        attempt_token,
        provider_name,
        provider,
        public_key,
    };
    // From the reservation on the create runs as a task of its own: a client that hangs up
    // (and retries with its token) must not strand a stored `provisioning` record or a runner.
    match tokio::spawn(reservation.run()).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::error!(lease = %id, error = %e, "create task failed");
            Err(Failure::internal("the create failed unexpectedly; retry"))
        }
    }
}

/// A validated create, ready to reserve its lease id and provision.
struct Reservation {
    state: AppState,
    caller: Caller,
    slug_base: String,
    /// The record to store, `provisioning`.
    lease: Lease,
    fixed_hash: Option<String>,
    attempt_token: Option<String>,
    provider_name: String,
    provider: std::sync::Arc<dyn crabbox_providers::Provider>,
    public_key: String,
}

/// How a create that never made a runner ends its stored reservation.
enum Ending<'a> {
    /// Its create attempt was canceled first: `released`, like a canceled bound create.
    Canceled,
    /// Anything else that stopped it: `failed`, with the reason.
    Failed(&'a str),
}

impl Reservation {
    async fn run(mut self) -> Result<Response> {
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
            providers::apply_record(l, &record);
            l.state = LeaseState::Active;
            l.updated_at = done;
            l.provisioning_request_started_at = None;
            l.provisioning_request_settled_at = None;
            l.provisioning_coordinator_version = None;
            l.provisioning_recovery_observed_at = None;
            l.provisioning_recovery_missing_since = None;
            let rate =
                lifecycle::hourly_rate(&l.provider, &l.server_type, &state.settings.cost_rates);
            l.estimated_hourly_usd = rate;
            l.max_estimated_usd = lifecycle::max_estimated_usd(l.ttl_seconds, rate);
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

fn record_for_cleanup(
    id: &str,
    record: &crabbox_providers::LeaseRecord,
) -> crabbox_providers::LeaseRecord {
    let mut r = record.clone();
    id.clone_into(&mut r.lease_id);
    r
}
