//! The rules of the fixed-id idempotent create, `PUT /v1/leases/{id}` (spec coordinator §4.3):
//! the lease id itself is the idempotency key, and a stored intent hash tells a replay from
//! drift. The handler is [`super::create`]'s; the reservation applies the replay rule too, when
//! it loses the insert to a concurrent create of the same id.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use crabbox_api::coord::{Lease, LeaseState};
use serde_json::{Value, json};

use super::{lease_body, shape};
use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::state::AppState;

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

/// SHA-256 (hex) of a fixed-id create's intent (spec §4.3): the normalised requested slug,
/// `keep`, and the config the create acts on after defaults and normalisation, with the public
/// key replaced by its SHA-256. So a body that spells out a default, or writes the slug
/// differently, is the same intent; a request field this coordinator ignores is not part of it.
pub(super) fn fixed_intent_hash(
    requested_slug: Option<&str>,
    lease: &Lease,
    public_key: &str,
) -> String {
    use sha2::Digest;
    // BTreeMaps serialize with sorted keys whatever serde_json's map features are, so the
    // text, and the hash, is canonical.
    let config: BTreeMap<&str, Value> = BTreeMap::from([
        ("class", json!(lease.class)),
        ("exposedPorts", json!(lease.exposed_ports)),
        ("idleTimeoutSeconds", json!(lease.idle_timeout_seconds)),
        ("os", json!(lease.os)),
        ("pond", json!(lease.pond)),
        ("profile", json!(lease.profile)),
        ("provider", json!(lease.provider)),
        ("serverType", json!(lease.requested_server_type)),
        (
            "sshPublicKey",
            json!(hex::encode(sha2::Sha256::digest(
                public_key.trim().as_bytes()
            ))),
        ),
        ("target", json!(lease.target)),
        ("ttlSeconds", json!(lease.ttl_seconds)),
    ]);
    let mut intent: BTreeMap<&str, Value> = BTreeMap::from([
        ("config", json!(config)),
        ("lifecycle", json!({"keep": lease.keep})),
    ]);
    if let Some(slug) = requested_slug {
        intent.insert("requestedSlug", json!(slug));
    }
    let text = serde_json::to_string(&intent).unwrap_or_default();
    let mut h = sha2::Sha256::new();
    h.update(b"crabbox-fixed-lease-create-v2\0");
    h.update(text.as_bytes());
    hex::encode(h.finalize())
}
