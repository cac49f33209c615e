//! The fixed-id idempotent create, `PUT /v1/leases/{id}` (spec coordinator §4.3): the lease
//! id itself is the idempotency key, and a stored intent hash tells a replay from drift.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use crabbox_api::LeaseId;
use crabbox_api::coord::{Lease, LeaseRequest, LeaseState};
use serde_json::json;

use super::create::create_managed;
use super::{lease_body, shape};
use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::request::parse_json;
use crate::state::AppState;

/// `PUT /v1/leases/{id}`: fixed-id idempotent create.
pub async fn put_fixed(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: LeaseRequest = parse_json(&body)?;
    if !LeaseId::is_canonical(&id) {
        return Err(Failure::bad_request(
            "invalid_lease_id",
            format!("{id:?} is not a lease id (cbx_ + 12 hex)"),
        ));
    }
    if req.lease_id.as_deref().is_some_and(|b| b != id) {
        return Err(Failure::bad_request(
            "lease_id_mismatch",
            "body leaseID differs from the path",
        ));
    }
    if req.create_attempt_id.is_some() {
        return Err(Failure::bad_request(
            "create_attempt_not_allowed",
            "fixed-id creates are idempotent by themselves; drop createAttemptID",
        ));
    }
    let hash = fixed_intent_hash(&req);
    if let Some(existing) = state.store.get_lease(&id).await? {
        return fixed_replay(&state, &caller, existing.value, &hash);
    }
    create_managed(&state, &caller, req, Some((id, hash))).await
}

pub(super) fn fixed_replay(
    state: &AppState,
    caller: &Caller,
    lease: Lease,
    hash: &str,
) -> Result<Response> {
    let same_owner = lease.owner == caller.owner && lease.org == caller.org_key;
    if same_owner && lease.is_live() && lease.fixed_create_intent_hash.as_deref() == Some(hash) {
        let status = if lease.state == LeaseState::Active {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        };
        return Ok(lease_body(status, shape(state, caller, lease)));
    }
    Err(Failure::conflict(
        "lease_id_conflict",
        "lease id is bound to another create intent",
    ))
}

/// SHA-256 of the create intent: slug, keep and the request minus secrets, keys sorted.
fn fixed_intent_hash(req: &LeaseRequest) -> String {
    use sha2::Digest;
    let mut config = serde_json::to_value(req).unwrap_or_default();
    if let Some(obj) = config.as_object_mut() {
        obj.remove("leaseID");
        obj.remove("slug");
        obj.remove("requestedSlug");
        obj.remove("keep");
        if let Some(key) = obj.remove("sshPublicKey") {
            let digest = sha2::Sha256::digest(key.as_str().unwrap_or_default().as_bytes());
            obj.insert("sshPublicKey".into(), json!(hex::encode(digest)));
        }
    }
    let intent = json!({
        "requestedSlug": req.requested_slug.clone().or_else(|| req.slug.clone()),
        "lifecycle": {"keep": req.keep.unwrap_or(false)},
        "config": config,
    });
    // serde_json maps are ordered (BTreeMap), so this serialization is canonical.
    let mut h = sha2::Sha256::new();
    h.update(b"crabbox-fixed-lease-create-v2\0");
    h.update(intent.to_string().as_bytes());
    hex::encode(h.finalize())
}
