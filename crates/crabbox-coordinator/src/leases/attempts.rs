//! Create-attempt tokens and `POST /v1/leases/{id}/cancel-create` (spec coordinator §4.3): a
//! `create-attempt:<id>` record binds a client-minted lease id to one create, so retries join
//! it and a cancel reaches it wherever it is.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crabbox_api::LeaseId;
use crabbox_api::coord::{CreateAttempt, Lease, ReleaseRequest, Timestamp};
use crabbox_store::StoreError;
use serde::Deserialize;
use serde_json::json;

use super::{CAS_ATTEMPTS, apply_release, lease_body, shape};
use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::request::parse_json;
use crate::state::AppState;

pub(super) fn valid_attempt_token(token: &str) -> bool {
    token.len() == 36
        && token.starts_with("cat_")
        && token[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Refuses a create without a token (ordinary or fixed-id) of a lease id that a pending or
/// bound create attempt holds: the attempt's owner may still be retrying it. An unbound canceled
/// tombstone holds nothing.
pub(super) async fn ensure_unreserved(state: &AppState, id: &str) -> Result<()> {
    if let Some(found) = state.store.get_attempt(id).await?
        && (found.value.state != "canceled" || found.value.canonical_lease_id.is_some())
    {
        return Err(Failure::conflict(
            "lease_id_conflict",
            "lease id is already reserved",
        ));
    }
    Ok(())
}

pub(super) enum AttemptOutcome {
    Proceed,
    Replay(Response),
}

pub(super) async fn join_attempt(
    state: &AppState,
    caller: &Caller,
    id: &str,
    token: &str,
    now: Timestamp,
) -> Result<AttemptOutcome> {
    for _ in 0..CAS_ATTEMPTS {
        match state.store.get_attempt(id).await? {
            None => {
                let attempt = CreateAttempt {
                    version: 1,
                    requested_lease_id: id.to_owned(),
                    token: token.to_owned(),
                    owner: caller.owner.clone(),
                    org: caller.org_key.clone(),
                    state: "pending".into(),
                    canonical_lease_id: None,
                    cloud_id: None,
                    generation: None,
                    created_at: now,
                    updated_at: now,
                };
                match state.store.put_attempt(&attempt, None).await {
                    Ok(_) => return Ok(AttemptOutcome::Proceed),
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(found) => {
                let a = found.value;
                let same = a.token == token && a.owner == caller.owner && a.org == caller.org_key;
                if !same {
                    if a.state == "canceled" && a.canonical_lease_id.is_none() {
                        // An unbound tombstone only blocks its own owner, org and token: another
                        // tenant (whatever token it sends) or another token takes the id over.
                        let mut fresh = a.clone();
                        fresh.token = token.to_owned();
                        fresh.owner = caller.owner.clone();
                        fresh.org = caller.org_key.clone();
                        fresh.state = "pending".into();
                        fresh.updated_at = now;
                        match state.store.put_attempt(&fresh, Some(found.version)).await {
                            Ok(_) => return Ok(AttemptOutcome::Proceed),
                            Err(StoreError::Conflict(_)) => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    return Err(Failure::conflict(
                        "create_attempt_conflict",
                        "lease id is already reserved by another create attempt",
                    ));
                }
                if a.state == "canceled" {
                    return Err(Failure::conflict(
                        "create_canceled",
                        "this create was canceled",
                    ));
                }
                match &a.canonical_lease_id {
                    None => return Ok(AttemptOutcome::Proceed),
                    Some(lease_id) => {
                        return match state.store.get_lease(lease_id).await? {
                            Some(l) => attempt_replay(state, caller, l.value, token)
                                .map(AttemptOutcome::Replay),
                            None => Err(Failure::conflict(
                                "create_attempt_binding_conflict",
                                "the create attempt is bound to a lease that no longer exists",
                            )),
                        };
                    }
                }
            }
        }
    }
    Err(Failure::conflict(
        "create_attempt_conflict",
        "create attempt kept changing; retry",
    ))
}

/// The answer to a retry of create attempt `token` that found `lease` stored under its id:
/// the lease itself when that attempt made it and it is live (`200`, possibly still
/// `provisioning`: the first request is finishing it), `409 lease_state_changed` when it has
/// ended, and `409 lease_id_conflict` when someone else's create made it.
pub(super) fn attempt_replay(
    state: &AppState,
    caller: &Caller,
    lease: Lease,
    token: &str,
) -> Result<Response> {
    let ours = lease.create_attempt_id.as_deref() == Some(token)
        && lease.owner == caller.owner
        && lease.org == caller.org_key;
    if !ours {
        return Err(Failure::conflict(
            "lease_id_conflict",
            "lease id already exists",
        ));
    }
    if lease.is_live() {
        return Ok(lease_body(StatusCode::OK, shape(state, caller, lease)));
    }
    Err(Failure::conflict(
        "lease_state_changed",
        format!(
            "the lease of this create attempt is {}",
            lease.state.as_str()
        ),
    )
    .with("lease", shape(state, caller, lease)))
}

/// Binds the pending attempt `token` to the lease this create just stored (`generation`
/// tells this create's lease from any later one). Refuses with `409 create_canceled` when a
/// cancel got there first, and `409 create_attempt_binding_conflict` when the attempt now
/// belongs to something else; the caller then ends its lease without provisioning.
pub(super) async fn bind_attempt(
    state: &AppState,
    id: &str,
    token: &str,
    generation: Option<String>,
    now: Timestamp,
) -> Result<()> {
    for _ in 0..CAS_ATTEMPTS {
        let Some(found) = state.store.get_attempt(id).await? else {
            return Err(Failure::conflict(
                "create_attempt_binding_conflict",
                "the create attempt disappeared while this create reserved its lease",
            ));
        };
        let mut a = found.value;
        if a.token != token {
            return Err(Failure::conflict(
                "create_attempt_binding_conflict",
                "the create attempt changed while this create reserved its lease",
            ));
        }
        if a.state == "canceled" {
            return Err(Failure::conflict(
                "create_canceled",
                "this create was canceled",
            ));
        }
        if a.canonical_lease_id.is_some()
            && (a.canonical_lease_id.as_deref() != Some(id) || a.generation != generation)
        {
            return Err(Failure::conflict(
                "create_attempt_binding_conflict",
                "the create attempt is bound to another create",
            ));
        }
        a.canonical_lease_id = Some(id.to_owned());
        a.generation.clone_from(&generation);
        a.updated_at = now;
        // A cancel may write between the read and this write: then read again and decide.
        match state.store.put_attempt(&a, Some(found.version)).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(_)) => state.metrics.cas_retry(),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::conflict(
        "create_attempt_conflict",
        "the create attempt kept changing; retry",
    ))
}

// ---- cancel-create -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelRequest {
    #[serde(rename = "createAttemptID")]
    create_attempt_id: String,
}

pub async fn cancel_create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: CancelRequest = parse_json(&body)?;
    if !LeaseId::is_canonical(&id) {
        return Err(Failure::bad_request("invalid_lease_id", "not a lease id"));
    }
    if !valid_attempt_token(&req.create_attempt_id) {
        return Err(Failure::bad_request(
            "invalid_create_attempt_id",
            "createAttemptID must be cat_ + 32 hex",
        ));
    }
    let now = state.now();
    let token = req.create_attempt_id;
    let mut bound = None;
    for attempt in 0..=CAS_ATTEMPTS {
        if attempt == CAS_ATTEMPTS {
            return Err(Failure::conflict("create_attempt_conflict", "retry"));
        }
        let existing = state.store.get_attempt(&id).await?;
        let (mut record, expected) = match existing {
            Some(found) => {
                let a = &found.value;
                if !caller.admin && (a.owner != caller.owner || a.org != caller.org_key) {
                    return Err(Failure::not_found());
                }
                if a.token != token {
                    return Err(Failure::conflict(
                        "create_attempt_conflict",
                        "lease id is reserved by another create attempt",
                    ));
                }
                (found.value.clone(), Some(found.version))
            }
            None => (
                CreateAttempt {
                    version: 1,
                    requested_lease_id: id.clone(),
                    token: token.clone(),
                    owner: caller.owner.clone(),
                    org: caller.org_key.clone(),
                    state: "canceled".into(),
                    canonical_lease_id: None,
                    cloud_id: None,
                    generation: None,
                    created_at: now,
                    updated_at: now,
                },
                None,
            ),
        };
        record.state = "canceled".into();
        record.updated_at = now;
        match state.store.put_attempt(&record, expected).await {
            Ok(_) => {
                bound = record
                    .canonical_lease_id
                    .clone()
                    .zip(record.generation.clone());
                break;
            }
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut body = json!({"canceledCreate": {
        "version": 1, "requestedLeaseID": id, "createAttemptID": token, "state": "canceled"}});
    if let Some((lease_id, generation)) = bound
        && let Some(l) = state.store.get_lease(&lease_id).await?
        && l.value.create_attempt_generation.as_deref() == Some(generation.as_str())
    {
        let released = apply_release(
            &state,
            &Caller::system(),
            &lease_id,
            None,
            &ReleaseRequest {
                expected_provider: None,
                delete: Some(true),
            },
        )
        .await?;
        body["lease"] = serde_json::to_value(shape(&state, &caller, released)).unwrap_or_default();
    }
    Ok(Json(body).into_response())
}
