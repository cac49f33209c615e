//! `GET /v1/openapi.json`: the API this server implements, generated from the same route table
//! the router is checked against (a test asserts every listed route is routed and every routed
//! path is listed, and validates real responses, status and body, against this document).

use serde_json::{Map, Value, json};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    User,
    Admin,
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub auth: Auth,
    pub summary: &'static str,
    /// Success statuses; they all answer the route's one success body.
    pub ok: &'static [u16],
    /// Refusals particular to the route. The ones every route of a kind shares are added by
    /// [`shared_errors`]: 401/503 when authenticated, 403 for admin routes, 400 for a path
    /// parameter, 400/413 for a request body.
    pub errors: &'static [u16],
}

const fn route(
    method: &'static str,
    path: &'static str,
    auth: Auth,
    summary: &'static str,
    ok: &'static [u16],
    errors: &'static [u16],
) -> Route {
    Route {
        method,
        path,
        auth,
        summary,
        ok,
        errors,
    }
}

/// Statuses a lease create can answer besides the shared ones: provider refusals map to
/// 400/404/429/502/503 (`providers::status_for`), 424 is an unconfigured provider, 409 a
/// conflict or replay of an ended lease, 429 a cap, 500 a provider failure.
const CREATE_ERRORS: &[u16] = &[404, 409, 424, 429, 500, 502];

pub const ROUTES: &[Route] = &[
    route(
        "get",
        "/v1/health",
        Auth::None,
        "Liveness; never touches the database",
        &[200],
        &[],
    ),
    route(
        "get",
        "/v1/ready",
        Auth::None,
        "Readiness: the database answers",
        &[200],
        &[405, 503],
    ),
    route(
        "head",
        "/v1/ready",
        Auth::None,
        "Readiness without a body",
        &[200],
        &[503],
    ),
    route(
        "get",
        "/v1/openapi.json",
        Auth::None,
        "This document",
        &[200],
        &[],
    ),
    route(
        "get",
        "/metrics",
        Auth::None,
        "Prometheus metrics",
        &[200],
        &[],
    ),
    route(
        "get",
        "/v1/whoami",
        Auth::User,
        "The authenticated principal",
        &[200],
        &[],
    ),
    route(
        "get",
        "/v1/pool",
        Auth::Admin,
        "Runners behind live leases, checked with their providers",
        &[200],
        &[],
    ),
    route(
        "post",
        "/v1/leases",
        Auth::User,
        "Create a managed lease (three-phase); 200 replays a createAttemptID bound to a live lease",
        &[201, 200],
        CREATE_ERRORS,
    ),
    route(
        "post",
        "/v1/leases/capability-aware",
        Auth::User,
        "Alias of POST /v1/leases",
        &[201, 200],
        CREATE_ERRORS,
    ),
    route(
        "get",
        "/v1/leases",
        Auth::User,
        "List visible leases, newest first (query state, provider, owner, org | orgKind, limit)",
        &[200],
        &[400],
    ),
    route(
        "get",
        "/v1/leases/{id}",
        Auth::User,
        "Get a lease by id or slug",
        &[200],
        &[404, 409],
    ),
    route(
        "put",
        "/v1/leases/{id}",
        Auth::User,
        "Fixed-id idempotent create: 201 new, 200 replay of an active lease, 202 still provisioning",
        &[201, 200, 202],
        CREATE_ERRORS,
    ),
    route(
        "post",
        "/v1/leases/{id}/cancel-create",
        Auth::User,
        "Cancel a create attempt",
        &[200],
        &[404, 409],
    ),
    route(
        "put",
        "/v1/leases/{id}/registration",
        Auth::User,
        "Register (201) or refresh (200) a client-provisioned lease",
        &[201, 200],
        &[409],
    ),
    route(
        "post",
        "/v1/leases/{id}/heartbeat",
        Auth::User,
        "Touch a lease, optionally with telemetry",
        &[200],
        &[403, 404, 409],
    ),
    route(
        "post",
        "/v1/leases/{id}/release",
        Auth::User,
        "Release a lease (queues the runner delete)",
        &[200],
        &[403, 404, 409],
    ),
    route(
        "post",
        "/v1/runs",
        Auth::User,
        "Record a run",
        &[201],
        &[404],
    ),
    route(
        "get",
        "/v1/runs",
        Auth::User,
        "List readable runs, newest first (query leaseID: the id or slug of any lease a run ran on; owner, org | orgKind, state, limit)",
        &[200],
        &[400],
    ),
    route(
        "get",
        "/v1/runs/{id}",
        Auth::User,
        "Get a run",
        &[200],
        &[404],
    ),
    route(
        "get",
        "/v1/runs/{id}/logs",
        Auth::User,
        "The retained log (last 8 MiB), text/plain",
        &[200],
        &[404],
    ),
    route(
        "get",
        "/v1/runs/{id}/events",
        Auth::User,
        "Events after a sequence number (query after, limit)",
        &[200],
        &[404],
    ),
    route(
        "post",
        "/v1/runs/{id}/events",
        Auth::User,
        "Append an event",
        &[201],
        &[404, 409],
    ),
    route(
        "post",
        "/v1/runs/{id}/telemetry",
        Auth::User,
        "Append a telemetry sample",
        &[200],
        &[404, 409],
    ),
    route(
        "post",
        "/v1/runs/{id}/finish",
        Auth::User,
        "Finish a run with exit code, timings and log (body up to 64 MiB)",
        &[200],
        &[404, 409],
    ),
    route(
        "get",
        "/v1/usage",
        Auth::User,
        "Monthly usage summary and limits (query scope, month, owner, org | orgKind)",
        &[200],
        &[400],
    ),
    route(
        "get",
        "/v1/admin/leases",
        Auth::Admin,
        "List all leases",
        &[200],
        &[400],
    ),
    route(
        "post",
        "/v1/admin/leases/{id}/release",
        Auth::Admin,
        "Release any lease",
        &[200],
        &[404, 409],
    ),
    route(
        "post",
        "/v1/admin/leases/{id}/delete",
        Auth::Admin,
        "Delete a lease's runner now",
        &[200],
        &[404, 409, 502],
    ),
    route(
        "post",
        "/v1/images",
        Auth::Admin,
        "Make an image of a lease's runner (body leaseID, name, noReboot, strategy)",
        &[201],
        &[404, 429, 502, 503],
    ),
    route(
        "get",
        "/v1/images",
        Auth::Admin,
        "The promoted image of each scope, the promotion history, Crabbox's images (query provider, region)",
        &[200],
        &[400, 502, 503],
    ),
    route(
        "get",
        "/v1/images/{id}",
        Auth::Admin,
        "One image, with the scopes it is promoted in (query provider, region)",
        &[200],
        &[404, 502, 503],
    ),
    route(
        "post",
        "/v1/images/{id}/promote",
        Auth::Admin,
        "Make an image the default of its scope (body target, os, region, serverType, architecture, fastSnapshotRestore, fsrAz)",
        &[200],
        &[404, 409, 502, 503],
    ),
    route(
        "get",
        "/v1/images/{id}/fast-snapshot-restore",
        Auth::Admin,
        "Fast snapshot restore of an image's snapshots (query region, fsrAz)",
        &[200],
        &[404, 502, 503],
    ),
    route(
        "delete",
        "/v1/images/{id}",
        Auth::Admin,
        "Delete an image Crabbox made and its snapshots (query region, force)",
        &[200],
        &[404, 409, 502, 503],
    ),
    route(
        "post",
        "/v1/auth/github/start",
        Auth::None,
        "Begin a GitHub browser login",
        &[200],
        &[429, 503],
    ),
    route(
        "get",
        "/v1/auth/github/callback",
        Auth::None,
        "GitHub OAuth callback: 303 to the CLI's loopback listener, 302 for the portal",
        &[303, 302],
        &[400, 403, 409, 413, 500, 503],
    ),
    route(
        "post",
        "/v1/auth/github/poll",
        Auth::None,
        "Poll a pending login",
        &[200],
        &[403, 410, 503],
    ),
];

/// The refusals every route of a kind can answer, besides its own.
fn shared_errors(route: &Route, takes_body: bool) -> Vec<u16> {
    let mut codes = route.errors.to_vec();
    if route.auth != Auth::None {
        // An `x-crabbox-org` that is no org label (400 invalid_org_identity); not
        // authenticated; the store unavailable.
        codes.extend([400, 401, 503]);
    }
    if route.auth == Auth::Admin {
        codes.push(403);
    }
    if route.path.contains('{') {
        // A path segment that is not valid percent-encoded UTF-8.
        codes.push(400);
    }
    if takes_body {
        codes.extend([400, 413]);
    }
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted (still provisioning)",
        302 => "Redirect to the portal",
        303 => "Redirect to the CLI's loopback listener",
        400 => "Invalid request (error body names the field or part)",
        401 => "Not authenticated",
        403 => "Visible but not permitted, or admin required",
        404 => "Not found or not visible",
        405 => "Method not allowed",
        409 => "Conflict with the current state",
        410 => "Expired",
        413 => "Request body too large (the connection is closed)",
        424 => "Provider not configured",
        429 => "Cap or rate limit exceeded",
        500 => "Provider or internal failure",
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

/// `POST /v1/leases/{id}/cancel-create`: the tombstone, plus the lease when the attempt was
/// bound to one (which the cancel released).
fn canceled_create(s: &mut Schemas) -> Value {
    let lease = s.of::<crabbox_api::coord::Lease>();
    json!({
        "type": "object",
        "required": ["canceledCreate"],
        "properties": {
            "canceledCreate": {
                "type": "object",
                "required": ["version", "requestedLeaseID", "createAttemptID", "state"],
                "properties": {
                    "version": {"type": "integer"},
                    "requestedLeaseID": {"type": "string"},
                    "createAttemptID": {"type": "string"},
                    "state": {"const": "canceled"},
                },
            },
            "lease": lease,
        },
    })
}

/// The JSON answer of a successful call.
fn response_schema(s: &mut Schemas, method: &str, path: &str) -> Value {
    use crabbox_api::coord::{CostLimits, Lease, Run, RunEvent, UsageSummary, Whoami};
    match (method, path) {
        (_, "/v1/health") => json!({"type": "object", "required": ["ok", "service"],
            "properties": {"ok": {"type": "boolean"}, "service": {"type": "string"}}}),
        (_, "/v1/ready") => json!({"type": "object", "required": ["ok"],
            "properties": {"ok": {"type": "boolean"}}}),
        (_, "/v1/pool") => json!({"type": "object", "required": ["machines"],
            "properties": {"machines": {"type": "array", "items": {"type": "object"}}}}),
        ("get", "/v1/leases" | "/v1/admin/leases") => s.wrapped::<Lease>("leases", true),
        (_, "/v1/leases/{id}/cancel-create") => canceled_create(s),
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
            json!({"type": "object", "required": ["usage", "limits"],
                   "properties": {"usage": usage, "limits": limits}})
        }
        _ => json!({"type": "object"}),
    }
}

/// The documented content of a successful call; `None` when it has no body.
fn success_content(s: &mut Schemas, method: &str, path: &str) -> Option<Value> {
    let text = json!({"text/plain": {"schema": {"type": "string"}}});
    match path {
        _ if method == "head" => None,
        "/v1/auth/github/callback" => None,
        "/metrics" => Some(text),
        p if p.ends_with("/logs") => Some(text),
        _ => Some(json!({"application/json": {"schema": response_schema(s, method, path)}})),
    }
}

/// The documented content of a refusal: the stable error body, with the login flow's
/// exceptions (a poll of an expired login is `{"status":"expired"}`; the browser callback
/// answers HTML pages).
fn error_content(error: &Value, method: &str, path: &str, code: u16) -> Option<Value> {
    match (method, path, code) {
        ("head", _, _) => None,
        (_, "/v1/auth/github/poll", 410) => Some(json!({"application/json": {"schema": {
            "type": "object", "required": ["status"],
            "properties": {"status": {"const": "expired"}}}}})),
        (_, "/v1/auth/github/callback", _) => Some(json!({
            "application/json": {"schema": error},
            "text/html": {"schema": {"type": "string"}},
        })),
        _ => Some(json!({"application/json": {"schema": error}})),
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
        ("post", "/v1/leases/{id}/cancel-create") => json!({"type": "object",
            "required": ["createAttemptID"],
            "properties": {"createAttemptID": {"type": "string"}}}),
        ("post", "/v1/runs") => s.of::<RunCreateRequest>(),
        ("post", "/v1/runs/{id}/events") => s.of::<RunEventRequest>(),
        ("post", "/v1/runs/{id}/finish") => s.of::<RunFinishRequest>(),
        ("post", "/v1/admin/leases/{id}/delete") => return None,
        ("post", p) if p.starts_with("/v1/") => json!({"type": "object"}),
        _ => return None,
    })
}

fn response(description: &str, content: Option<Value>) -> Value {
    let mut response = json!({"description": description});
    if let Some(content) = content {
        response["content"] = content;
    }
    response
}

pub fn document() -> Value {
    let mut schemas = Schemas::new();
    let error = schemas.of::<crabbox_api::coord::ApiError>();
    let mut paths = Map::new();
    for route in ROUTES {
        let (method, path) = (route.method, route.path);
        let body = request_schema(&mut schemas, method, path);
        let mut responses = Map::new();
        for ok in route.ok {
            let content = success_content(&mut schemas, method, path);
            responses.insert(ok.to_string(), response(status_text(*ok), content));
        }
        for code in shared_errors(route, body.is_some()) {
            let content = error_content(&error, method, path, code);
            responses.insert(code.to_string(), response(status_text(code), content));
        }
        let mut op = json!({"summary": route.summary, "responses": responses});
        if path.contains("{id}") {
            op["parameters"] = json!([{"name": "id", "in": "path", "required": true,
                                       "schema": {"type": "string"}}]);
        }
        match route.auth {
            Auth::None => op["security"] = json!([]),
            Auth::User => {}
            Auth::Admin => op["x-crabbox-admin"] = json!(true),
        }
        if let Some(body) = body {
            op["requestBody"] =
                json!({"required": false, "content": {"application/json": {"schema": body}}});
        }
        paths.entry(path.to_owned()).or_insert_with(|| json!({}))[method] = op;
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
