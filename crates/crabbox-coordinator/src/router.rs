//! The `/v1` router, with request metrics, structured request logs and body limits.

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::error::Failure;
use crate::state::AppState;
use crate::{admin, images, leases, login, runs, service, usage};

/// Authenticated bodies up to 16 MiB; run finishes up to 64 MiB; login bodies 1 MiB.
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;
pub const FINISH_BODY_LIMIT: usize = 64 * 1024 * 1024;
pub const PUBLIC_BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let auth_routes = Router::new()
        .route("/v1/auth/github/start", post(login::start))
        .route("/v1/auth/github/callback", get(login::callback))
        .route("/v1/auth/github/poll", post(login::poll))
        .layer(DefaultBodyLimit::max(PUBLIC_BODY_LIMIT))
        .layer(middleware::from_fn(limit_public));
    let finish = Router::new()
        .route("/v1/runs/{id}/finish", post(runs::finish))
        .layer(DefaultBodyLimit::max(FINISH_BODY_LIMIT));
    Router::new()
        .route("/", get(service::root))
        .route("/v1/health", get(service::health))
        .route(
            "/v1/ready",
            get(service::ready)
                .head(service::ready)
                .fallback(service::ready_method_not_allowed),
        )
        .route("/v1/openapi.json", get(service::openapi))
        .route("/metrics", get(service::metrics))
        .route("/v1/whoami", get(service::whoami))
        .route("/v1/pool", get(service::pool))
        .route("/v1/leases", post(leases::create).get(leases::list))
        .route("/v1/leases/capability-aware", post(leases::create))
        .route("/v1/leases/{id}", get(leases::get).put(leases::put_fixed))
        .route("/v1/leases/{id}/cancel-create", post(leases::cancel_create))
        .route("/v1/leases/{id}/registration", put(leases::register))
        .route("/v1/leases/{id}/heartbeat", post(leases::heartbeat))
        .route("/v1/leases/{id}/release", post(leases::release))
        .route("/v1/runs", post(runs::create).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/logs", get(runs::logs))
        .route(
            "/v1/runs/{id}/events",
            get(runs::events).post(runs::post_event),
        )
        .route("/v1/runs/{id}/telemetry", post(runs::post_telemetry))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/images", post(images::create).get(images::list))
        .route("/v1/images/{id}", get(images::get).delete(images::delete))
        .route("/v1/images/{id}/promote", post(images::promote))
        .route(
            "/v1/images/{id}/fast-snapshot-restore",
            get(images::fsr_status),
        )
        .route("/v1/admin/leases", get(admin::list))
        .route("/v1/admin/leases/{id}/release", post(admin::release))
        .route("/v1/admin/leases/{id}/delete", post(admin::delete))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .merge(finish)
        .merge(auth_routes)
        .fallback(service::fallback)
        // After every route is added: a known path with a method it does not serve.
        .method_not_allowed_fallback(service::wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Unauthenticated bodies are refused early by their declared length.
async fn limit_public(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > PUBLIC_BODY_LIMIT) {
        return Failure::too_large().into_response();
    }
    next.run(req).await
}

/// Refusals the framework makes before a handler runs (path, query and body-limit rejections)
/// come as `text/plain`; they get the stable JSON error body (spec §1) instead. Handler errors
/// are JSON already, HTML login pages stay HTML, and successes pass after one status check.
async fn stable_error_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are a line or two; anything longer is not one of them.
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .unwrap_or_default();
    let mut stable =
        Failure::from_framework(status, String::from_utf8_lossy(&text).trim()).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        stable.headers_mut().insert(header::ALLOW, allow.clone());
    }
    stable
}

/// JSON responses say `application/json; charset=utf-8` (spec §1). axum's `Json` writes a bare
/// `application/json`; rewriting that one header here covers every handler, error bodies
/// included, for a byte comparison and a static header value per response.
fn declare_utf8_json(response: &mut Response) {
    let headers = response.headers_mut();
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json")
    {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
}

/// Counts every request by route template and status and logs it.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let mut response = stable_error_body(next.run(req).await).await;
    let status = response.status();
    declare_utf8_json(&mut response);
    state
        .metrics
        .request(method.as_str(), &route, status.as_u16());
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let code = status.as_u16();
    // Successes are debug-level: at thousands of requests per second an info line each would
    // cost more than the request. Refusals are info, server errors warn.
    if status.is_server_error() {
        tracing::warn!(method = %method, route = %route, status = code, ms, "request");
    } else if status.is_client_error() {
        tracing::info!(method = %method, route = %route, status = code, ms, "request");
    } else {
        tracing::debug!(method = %method, route = %route, status = code, ms, "request");
    }
    response
}
