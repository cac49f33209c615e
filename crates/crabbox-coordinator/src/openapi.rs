//! `GET /v1/openapi.json`: the API this server implements, generated from the same route table
//! the router is checked against (a test asserts every listed route is routed and every routed
//! path is listed).

use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    User,
    Admin,
}

/// `(method, path, auth, summary, success status, error statuses)`.
pub type Route = (
    &'static str,
    &'static str,
    Auth,
    &'static str,
    u16,
    &'static [u16],
);

pub const ROUTES: &[Route] = &[
    (
        "get",
        "/v1/health",
        Auth::None,
        "Liveness; never touches the database",
        200,
        &[],
    ),
    (
        "get",
        "/v1/ready",
        Auth::None,
        "Readiness: the database answers",
        200,
        &[503],
    ),
    (
        "get",
        "/v1/openapi.json",
        Auth::None,
        "This document",
        200,
        &[],
    ),
    (
        "get",
        "/metrics",
        Auth::None,
        "Prometheus metrics",
        200,
        &[],
    ),
    (
        "get",
        "/v1/whoami",
        Auth::User,
        "The authenticated principal",
        200,
        &[401],
    ),
    (
        "get",
        "/v1/pool",
        Auth::Admin,
        "Runners behind live leases, checked with their providers",
        200,
        &[401, 403],
    ),
    (
        "post",
        "/v1/leases",
        Auth::User,
        "Create a managed lease (three-phase; idempotent with createAttemptID)",
        201,
        &[400, 401, 409, 424, 429, 500, 503],
    ),
    (
        "post",
        "/v1/leases/capability-aware",
        Auth::User,
        "Alias of POST /v1/leases",
        201,
        &[400, 401, 409, 424, 429, 500, 503],
    ),
    (
        "get",
        "/v1/leases",
        Auth::User,
        "List visible leases, newest first",
        200,
        &[400, 401],
    ),
    (
        "get",
        "/v1/leases/{id}",
        Auth::User,
        "Get a lease by id or slug",
        200,
        &[401, 404, 409],
    ),
    (
        "put",
        "/v1/leases/{id}",
        Auth::User,
        "Fixed-id idempotent create",
        201,
        &[200, 202, 400, 401, 409, 424, 429],
    ),
    (
        "post",
        "/v1/leases/{id}/cancel-create",
        Auth::User,
        "Cancel a create attempt",
        200,
        &[400, 401, 404, 409],
    ),
    (
        "put",
        "/v1/leases/{id}/registration",
        Auth::User,
        "Register or refresh a client-provisioned lease",
        201,
        &[200, 400, 401, 409],
    ),
    (
        "post",
        "/v1/leases/{id}/heartbeat",
        Auth::User,
        "Touch a lease, optionally with telemetry",
        200,
        &[400, 401, 403, 404, 409],
    ),
    (
        "post",
        "/v1/leases/{id}/release",
        Auth::User,
        "Release a lease (queues the runner delete)",
        200,
        &[400, 401, 403, 404, 409],
    ),
    (
        "post",
        "/v1/runs",
        Auth::User,
        "Record a run",
        201,
        &[400, 401, 404],
    ),
    (
        "get",
        "/v1/runs",
        Auth::User,
        "List readable runs, newest first",
        200,
        &[400, 401],
    ),
    (
        "get",
        "/v1/runs/{id}",
        Auth::User,
        "Get a run",
        200,
        &[401, 404],
    ),
    (
        "get",
        "/v1/runs/{id}/logs",
        Auth::User,
        "The retained log (last 8 MiB), text/plain",
        200,
        &[401, 404],
    ),
    (
        "get",
        "/v1/runs/{id}/events",
        Auth::User,
        "Events after a sequence number",
        200,
        &[401, 404],
    ),
    (
        "post",
        "/v1/runs/{id}/events",
        Auth::User,
        "Append an event",
        201,
        &[400, 401, 404],
    ),
    (
        "post",
        "/v1/runs/{id}/telemetry",
        Auth::User,
        "Append a telemetry sample",
        200,
        &[400, 401, 404],
    ),
    (
        "post",
        "/v1/runs/{id}/finish",
        Auth::User,
        "Finish a run with exit code, timings and log",
        200,
        &[400, 401, 404],
    ),
    (
        "get",
        "/v1/usage",
        Auth::User,
        "Monthly usage summary and limits",
        200,
        &[400, 401],
    ),
    (
        "get",
        "/v1/admin/leases",
        Auth::Admin,
        "List all leases",
        200,
        &[401, 403],
    ),
    (
        "post",
        "/v1/admin/leases/{id}/release",
        Auth::Admin,
        "Release any lease",
        200,
        &[401, 403, 404, 409],
    ),
    (
        "post",
        "/v1/admin/leases/{id}/delete",
        Auth::Admin,
        "Delete a lease's runner now",
        200,
        &[401, 403, 404, 409, 502],
    ),
    (
        "post",
        "/v1/auth/github/start",
        Auth::None,
        "Begin a GitHub browser login",
        200,
        &[400, 429, 503],
    ),
    (
        "get",
        "/v1/auth/github/callback",
        Auth::None,
        "GitHub OAuth callback",
        303,
        &[400, 403, 409, 500, 503],
    ),
    (
        "post",
        "/v1/auth/github/poll",
        Auth::None,
        "Poll a pending login",
        200,
        &[400, 403, 410],
    ),
];

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted (still provisioning)",
        303 => "Redirect to the CLI's loopback listener",
        400 => "Invalid request (error body names the field)",
        401 => "Not authenticated",
        403 => "Visible but not permitted",
        404 => "Not found or not visible",
        409 => "Conflict with the current state",
        410 => "Expired",
        424 => "Provider not configured",
        429 => "Cap or rate limit exceeded",
        502 => "Provider failure",
        503 => "Dependency unavailable",
        _ => "Error",
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, auth, summary, ok, errors) in ROUTES {
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        let mut responses = Map::new();
        let ok_schema = match *path {
            p if p.ends_with("/logs") => json!({"text/plain": {"schema": {"type": "string"}}}),
            "/metrics" => json!({"text/plain": {"schema": {"type": "string"}}}),
            _ => json!({"application/json": {"schema": {"type": "object"}}}),
        };
        responses.insert(
            ok.to_string(),
            json!({"description": status_text(*ok), "content": ok_schema}),
        );
        for code in *errors {
            responses.insert(
                code.to_string(),
                json!({"description": status_text(*code),
                       "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
        }
        let mut op = json!({"summary": summary, "responses": responses});
        if path.contains("{id}") {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true,
                                       "schema": {"type": "string"}}]);
        }
        match auth {
            Auth::None => op["security"] = json!([]),
            Auth::User => {}
            Auth::Admin => op["x-crabbox-admin"] = json!(true),
        }
        if matches!(*method, "post" | "put") && *auth != Auth::None
            || path.starts_with("/v1/auth") && *method == "post"
        {
            op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Crabbox coordinator", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "string"}, "message": {"type": "string"}}}}
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}
