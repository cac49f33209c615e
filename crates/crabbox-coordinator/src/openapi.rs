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

/// The schemas of the wire types, generated from the same Rust types the handlers serialize.
struct Schemas(schemars::SchemaGenerator);

impl Schemas {
    fn new() -> Self {
        let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
        });
        Self(settings.into_generator())
    }

    fn of<T: schemars::JsonSchema>(&mut self) -> Value {
        self.0.subschema_for::<T>().to_value()
    }

    fn wrapped<T: schemars::JsonSchema>(&mut self, key: &str, list: bool) -> Value {
        let inner = self.of::<T>();
        let inner = if list {
            json!({"type": "array", "items": inner})
        } else {
            inner
        };
        json!({"type": "object", "required": [key], "properties": {key: inner}})
    }
}

/// The JSON answer of a successful call.
fn response_schema(s: &mut Schemas, method: &str, path: &str) -> Value {
    use crabbox_api::coord::{CostLimits, Lease, Run, RunEvent, UsageSummary, Whoami};
    match (method, path) {
        ("get", "/v1/leases" | "/v1/admin/leases") => s.wrapped::<Lease>("leases", true),
        (_, p) if p.starts_with("/v1/leases") || p.starts_with("/v1/admin/leases/") => {
            s.wrapped::<Lease>("lease", false)
        }
        ("get", "/v1/runs") => s.wrapped::<Run>("runs", true),
        ("get", "/v1/runs/{id}/events") => s.wrapped::<RunEvent>("events", true),
        ("post", "/v1/runs/{id}/events") => s.wrapped::<RunEvent>("event", false),
        (_, p) if p.starts_with("/v1/runs") => s.wrapped::<Run>("run", false),
        (_, "/v1/whoami") => s.of::<Whoami>(),
        (_, "/v1/usage") => {
            let (usage, limits) = (s.of::<UsageSummary>(), s.of::<CostLimits>());
            json!({"type": "object", "properties": {"usage": usage, "limits": limits}})
        }
        _ => json!({"type": "object"}),
    }
}

/// The JSON body a call takes, when it takes one.
fn request_schema(s: &mut Schemas, method: &str, path: &str) -> Option<Value> {
    use crabbox_api::coord::{
        HeartbeatRequest, LeaseRequest, RegistrationRequest, ReleaseRequest, RunCreateRequest,
        RunEventRequest, RunFinishRequest,
    };
    Some(match (method, path) {
        ("post", "/v1/leases" | "/v1/leases/capability-aware") | ("put", "/v1/leases/{id}") => {
            s.of::<LeaseRequest>()
        }
        ("put", "/v1/leases/{id}/registration") => s.of::<RegistrationRequest>(),
        ("post", "/v1/leases/{id}/heartbeat") => s.of::<HeartbeatRequest>(),
        ("post", "/v1/leases/{id}/release" | "/v1/admin/leases/{id}/release") => {
            s.of::<ReleaseRequest>()
        }
        ("post", "/v1/runs") => s.of::<RunCreateRequest>(),
        ("post", "/v1/runs/{id}/events") => s.of::<RunEventRequest>(),
        ("post", "/v1/runs/{id}/finish") => s.of::<RunFinishRequest>(),
        ("post", p) if p.starts_with("/v1/") => json!({"type": "object"}),
        _ => return None,
    })
}

pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let error = schemas.of::<crabbox_api::coord::ApiError>();
    let mut paths = Map::new();
    for (method, path, auth, summary, ok, errors) in ROUTES {
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        let mut responses = Map::new();
        let ok_schema = match *path {
            p if p.ends_with("/logs") => json!({"text/plain": {"schema": {"type": "string"}}}),
            "/metrics" => json!({"text/plain": {"schema": {"type": "string"}}}),
            p if p.starts_with("/v1/auth") => {
                json!({"application/json": {"schema": {"type": "object"}}})
            }
            _ => {
                json!({"application/json": {"schema": response_schema(&mut schemas, method, path)}})
            }
        };
        responses.insert(
            ok.to_string(),
            json!({"description": status_text(*ok), "content": ok_schema}),
        );
        for code in *errors {
            responses.insert(
                code.to_string(),
                json!({"description": status_text(*code),
                       "content": {"application/json": {"schema": error}}}),
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
        if let Some(body) = request_schema(&mut schemas, method, path) {
            op["requestBody"] =
                json!({"required": false, "content": {"application/json": {"schema": body}}});
        }
        entry[*method] = op;
    }
    let definitions: Map<String, Value> = schemas.0.take_definitions(true).into_iter().collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Crabbox coordinator", "version": env!("CARGO_PKG_VERSION")},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": definitions,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}
