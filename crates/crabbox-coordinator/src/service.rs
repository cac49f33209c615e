//! Service routes: health, readiness, whoami, pool, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crabbox_api::coord::{LeaseState, Whoami};
use crabbox_store::LeaseQuery;
use serde_json::json;

use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::providers;
use crate::state::AppState;

pub async fn health() -> Response {
    Json(json!({"ok": true, "service": "crabbox-coordinator"})).into_response()
}

/// `GET /` → `302 Location: /portal`, as the entry answers it (spec §2.1, §5.1). axum's
/// `Redirect` offers only 303/307/308, so the response is built by hand.
pub async fn root() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/portal")]).into_response()
}

pub async fn ready(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"ok": false, "error": "dependency_unavailable"})),
            )
                .into_response()
        }
    }
}

pub async fn whoami(caller: Caller) -> Json<Whoami> {
    Json(caller.whoami())
}

/// `GET /v1/pool` (admin): the runners behind live leases, each checked with its provider.
pub async fn pool(State(state): State<AppState>, caller: Caller) -> Result<Response> {
    caller.require_admin()?;
    let leases = state
        .store
        .list_leases(&LeaseQuery {
            states: vec![LeaseState::Provisioning, LeaseState::Active],
            limit: 500,
            ..LeaseQuery::default()
        })
        .await?;
    let mut machines = Vec::new();
    for lease in leases
        .iter()
        .filter(|l| !l.is_registered() && !l.cloud_id.is_empty())
    {
        let health = match state.provider(&lease.provider) {
            Some(p) => match p.health(&providers::record_for(lease)).await {
                crabbox_providers::Health::Alive => "running".to_owned(),
                crabbox_providers::Health::Gone(why) => format!("gone: {why}"),
                crabbox_providers::Health::Unknown => "unknown".to_owned(),
            },
            None => "provider not configured".to_owned(),
        };
        machines.push(json!({
            "provider": lease.provider, "id": lease.cloud_id, "name": lease.server_name,
            "host": lease.host, "serverType": lease.server_type, "status": health,
            "leaseID": lease.id, "slug": lease.slug, "owner": lease.owner,
        }));
    }
    Ok(Json(json!({ "machines": machines })).into_response())
}

pub async fn metrics(State(state): State<AppState>) -> Result<Response> {
    // A store that cannot answer must not hide the request counters (they say what failed).
    let counts = match state.store.lease_counts().await {
        Ok(counts) => Some(
            LeaseState::ALL
                .iter()
                .map(|s| {
                    let n = counts.iter().find(|(st, _)| st == s).map_or(0, |(_, n)| *n);
                    (s.as_str().to_owned(), n)
                })
                .collect::<Vec<(String, u64)>>(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "/metrics could not read lease counts");
            None
        }
    };
    let body = state.metrics.render(counts.as_deref(), state.is_leader());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

pub async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

/// `/v1/ready` with another method: `405 method_not_allowed` with `allow: GET, HEAD`, without
/// authentication, as the Node server answers it (spec §2.1).
pub async fn ready_method_not_allowed() -> Response {
    let mut response = Failure::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
        .message("/v1/ready answers GET and HEAD")
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// A known path with a method it does not serve. Routes are method and path together
/// (spec §2), so this is an unknown route like any other (see [`fallback`]); the router adds
/// the `allow` header listing the methods the path does serve.
pub async fn wrong_method(State(state): State<AppState>, req: Request) -> Response {
    unknown_route(&state, req, true).await
}

/// Unknown routes. The entry authenticates before the fleet routes (spec §5.1), so an
/// anonymous caller gets `401` and learns nothing about which paths exist; authenticated
/// callers get `404 not_found` (spec §1). Like the entry, `/v1/internal/*` (never served from
/// outside) and `/v1/auth/*` (the login flow, before any credential exists) answer `404`
/// unauthenticated.
pub async fn fallback(State(state): State<AppState>, req: Request) -> Response {
    unknown_route(&state, req, false).await
}

async fn unknown_route(state: &AppState, req: Request, path_is_known: bool) -> Response {
    let (mut parts, _) = req.into_parts();
    let path = parts.uri.path();
    let unauthenticated = path == "/v1/internal"
        || path.starts_with("/v1/internal/")
        || path.starts_with("/v1/auth/");
    if !unauthenticated && let Err(refused) = Caller::from_request_parts(&mut parts, state).await {
        return refused;
    }
    let (method, path) = (&parts.method, parts.uri.path());
    let message = if path_is_known {
        format!("{method} is not served on {path}; the allow header lists the methods that are")
    } else {
        format!("no route for {method} {path}")
    };
    Failure::not_found().message(message).into_response()
}
