//! `/v1/auth/github/*`: the GitHub browser login for `crabbox login` (spec §2.7, §5.4). The
//! flow itself lives in `crabbox_auth::GithubLogin`; these handlers translate HTTP.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{Failure, Result};
use crate::request::parse_json;
use crate::state::AppState;

fn login_service(state: &AppState) -> Result<&crabbox_auth::GithubLogin> {
    state.github_login.as_ref().ok_or_else(|| {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "github_oauth_not_configured",
        )
        .message("GitHub OAuth is not configured")
    })
}

fn login_failure(e: &crabbox_auth::LoginError) -> Failure {
    let mut f = Failure::new(e.status, e.code);
    if let Some(m) = &e.message {
        f = f.message(m.clone());
    }
    f
}

pub async fn start(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    let service = login_service(&state)?;
    let req: crabbox_auth::StartRequest = parse_json(&body)?;
    let source = state.auth.source_ip(peer.ip(), &headers).to_string();
    let started = service
        .start(&req, &source, state.now())
        .await
        .map_err(|e| login_failure(&e))?;
    Ok(Json(started).into_response())
}

/// The origin this request arrived on (`Host`, with the scheme a proxy reports).
fn request_origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<crabbox_auth::CallbackQuery>,
) -> Result<Response> {
    let service = login_service(&state)?;
    let outcome = service
        .callback(&q, &request_origin(&headers), &headers, state.now())
        .await;
    let (status, headers, body) = outcome.into_response_parts();
    Ok((status, headers, body).into_response())
}

pub async fn poll(State(state): State<AppState>, body: axum::body::Bytes) -> Result<Response> {
    let service = login_service(&state)?;
    let req: crabbox_auth::PollRequest = parse_json(&body)?;
    let answer = service
        .poll(&req, state.now())
        .await
        .map_err(|e| login_failure(&e))?;
    Ok((answer.status(), Json(answer.body())).into_response())
}
