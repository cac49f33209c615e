//! `/v1/admin/*`: lease list, release and synchronous delete with admin visibility.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use crabbox_api::coord::LeaseState;
use serde_json::json;

use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::leases::{self, ListQuery};
use crate::lifecycle::CLEANUP_CLAIM_SECS;
use crate::providers;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    caller.require_admin()?;
    let leases = leases::list_for(&state, &caller, &q).await?;
    Ok(Json(json!({ "leases": leases })).into_response())
}

pub async fn release(
    state: State<AppState>,
    caller: Caller,
    key: Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    caller.require_admin()?;
    leases::release(state, caller, key, headers, body).await
}

/// Deletes the runner now, under a 30-minute claim, and waits for the provider.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Response> {
    caller.require_admin()?;
    let id = leases::resolve(&state, &caller, &key).await?.value.id;
    let now = state.now();
    let claimed = leases::modify(&state, &id, |l| {
        let fence = l.cleanup_claim_expires_at.or(l
            .cleanup_started_at
            .map(|t| t.plus_secs(CLEANUP_CLAIM_SECS)));
        if fence.is_some_and(|f| f > now) && l.cleanup_claim_expires_at != l.cleanup_started_at {
            return Err(Failure::conflict(
                "cleanup_in_progress",
                "another cleaner holds this lease's cleanup claim",
            ));
        }
        l.cleanup_started_at = Some(now);
        l.cleanup_claim_expires_at = Some(now.plus_secs(CLEANUP_CLAIM_SECS));
        Ok(())
    })
    .await?;
    let outcome = if claimed.cloud_id.is_empty() || claimed.is_registered() {
        Ok(())
    } else {
        match state.provider(&claimed.provider) {
            Some(p) => p
                .release(&providers::record_for(&claimed))
                .await
                .map_err(|e| state.redact(&e.to_string())),
            None => Err(format!("provider {} is not configured", claimed.provider)),
        }
    };
    let done = state.now();
    let lease = leases::modify(&state, &id, |l| {
        if l.cleanup_started_at != claimed.cleanup_started_at {
            return Ok(());
        }
        l.cleanup_started_at = None;
        l.cleanup_claim_expires_at = None;
        l.updated_at = done;
        match &outcome {
            Ok(()) => {
                if l.is_live() {
                    l.state = LeaseState::Released;
                    l.released_at = Some(done);
                }
                l.ended_at = Some(done);
                l.release_deletes_server = None;
                l.cleanup_error = None;
                l.cleanup_retry_at = None;
                l.cleanup_attempts = 0;
            }
            Err(message) => {
                l.cleanup_attempts += 1;
                l.cleanup_error = Some(message.clone());
                l.cleanup_failed_at = Some(done);
            }
        }
        Ok(())
    })
    .await?;
    if let Err(message) = outcome {
        return Err(
            Failure::new(StatusCode::BAD_GATEWAY, "provider_delete_failed")
                .message(message)
                .with("lease", leases::shape(&state, &caller, lease)),
        );
    }
    Ok(Json(json!({"lease": leases::shape(&state, &caller, lease)})).into_response())
}
