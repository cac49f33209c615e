//! `/v1/runs`: run records with events, bounded logs and telemetry (spec §2.3, §3.4, §3.5).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use crabbox_api::RunId;
use crabbox_api::coord::{
    LeaseOwner, Run, RunCreateRequest, RunEvent, RunEventRequest, RunFinishRequest, RunState,
    RunTelemetry, Telemetry, Timestamp,
};
use crabbox_store::{RunQuery, StoreError, Versioned};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::{self, Caller};
use crate::error::{Failure, Result};
use crate::leases::{OrgFilter, clamp_limit};
use crate::request::parse_json;
use crate::state::AppState;

/// Logs keep their last 8 MiB.
pub const LOG_TAIL_BYTES: usize = 8 * 1024 * 1024;
const FIELD_LIMIT: usize = 16 * 1024;
const SHORT_LIMIT: usize = 128;
const CAS_ATTEMPTS: usize = 16;
const COORDINATOR_PROVIDERS: &[&str] =
    &["hetzner", "aws", "azure", "gcp", "daytona", "local", "ssh"];

fn run_body(status: StatusCode, run: Run) -> Response {
    /// `{"run": …}`, serialized straight from the record (no intermediate `Value` tree).
    #[derive(serde::Serialize)]
    struct Body {
        run: Run,
    }
    (status, Json(Body { run: shape(run) })).into_response()
}

fn shape(mut run: Run) -> Run {
    run.org = crabbox_auth::org::label_for_key(&run.org);
    for o in &mut run.lease_owners {
        o.org = crabbox_auth::org::label_for_key(&o.org);
    }
    run
}

/// Truncates to at most `max` bytes on a character boundary.
fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The last `max` bytes of `s`, starting on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn normalize_label(raw: &str) -> String {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.chars().take(120).collect()
}

async fn load(state: &AppState, id: &str) -> Result<Versioned<Run>> {
    state
        .store
        .get_run(id)
        .await?
        .ok_or_else(Failure::not_found)
}

/// Re-reads, changes and compare-and-swaps a run with its new events and log.
async fn modify<F>(state: &AppState, id: &str, mut change: F) -> Result<(Run, Vec<RunEvent>)>
where
    F: FnMut(&mut Run) -> Result<(Vec<RunEvent>, Option<String>)>,
{
    for _ in 0..CAS_ATTEMPTS {
        let current = load(state, id).await?;
        let mut run = current.value;
        let (events, log) = change(&mut run)?;
        match state
            .store
            .update_run(&run, current.version, &events, log.as_deref())
            .await
        {
            Ok(_) => return Ok((run, events)),
            Err(StoreError::Conflict(_)) => state.metrics.cas_retry(),
            Err(e) => return Err(e.into()),
        }
    }
    Err(Failure::conflict(
        "run_state_changed",
        "the run kept changing; retry",
    ))
}

/// Appends one event to `run` (seq = eventCount + 1) and applies its side effects.
fn append_event(run: &mut Run, req: &RunEventRequest, now: Timestamp) -> RunEvent {
    let kind = req
        .kind
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map_or_else(|| "event".to_owned(), |s| bounded(s, SHORT_LIMIT));
    let short = |v: &Option<String>| {
        v.as_deref()
            .map(|s| bounded(s.trim(), SHORT_LIMIT))
            .filter(|s| !s.is_empty())
    };
    let lease_id = req
        .lease_id
        .clone()
        .filter(|id| crabbox_api::LeaseId::is_canonical(id));
    let provider = req
        .provider
        .clone()
        .filter(|p| COORDINATOR_PROVIDERS.contains(&p.as_str()));
    let data = req.data.as_ref().map(|d| match d {
        Value::String(s) => Value::String(bounded(s, FIELD_LIMIT)),
        other => {
            let text = other.to_string();
            if text.len() <= FIELD_LIMIT {
                other.clone()
            } else {
                Value::String(bounded(&text, FIELD_LIMIT))
            }
        }
    });
    let event = RunEvent {
        run_id: run.id.clone(),
        seq: run.event_count + 1,
        phase: short(&req.phase),
        stream: req
            .stream
            .clone()
            .filter(|s| s == "stdout" || s == "stderr"),
        message: req.message.as_deref().map(|m| bounded(m, FIELD_LIMIT)),
        data,
        lease_id: lease_id.clone(),
        slug: short(&req.slug),
        provider: provider.clone(),
        target: short(&req.target),
        windows_mode: short(&req.windows_mode),
        class: short(&req.class),
        server_type: short(&req.server_type),
        exit_code: req.exit_code.filter(|c| c.is_finite()).map(|c| c as i64),
        created_at: now,
        kind,
    };
    if let Some(phase) = event
        .phase
        .clone()
        .or_else(|| crabbox_api::coord::derived_phase(&event.kind).map(str::to_owned))
    {
        run.phase = phase;
    }
    if let Some(id) = &lease_id {
        run.lease_id.clone_from(id);
        if !run.lease_ids.contains(id) {
            run.lease_ids.push(id.clone());
        }
    }
    if let Some(v) = &event.slug {
        run.slug.clone_from(v);
    }
    if let Some(v) = &provider {
        run.provider.clone_from(v);
    }
    if let Some(v) = &event.target {
        run.target.clone_from(v);
    }
    if let Some(v) = &event.windows_mode {
        run.windows_mode.clone_from(v);
    }
    if let Some(v) = &event.class {
        run.class.clone_from(v);
    }
    if let Some(v) = &event.server_type {
        run.server_type.clone_from(v);
    }
    if event.kind == "run.failed" {
        run.state = RunState::Failed;
        run.phase = "failed".into();
        run.ended_at = Some(now);
    }
    run.event_count = event.seq;
    run.last_event_at = Some(now);
    event
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: RunCreateRequest = parse_json(&body)?;
    let now = state.now();
    let mut run = Run {
        id: RunId::generate().as_str().to_owned(),
        owner: caller.owner.clone(),
        org: caller.org_key.clone(),
        provider: req.provider.clone().unwrap_or_else(|| "hetzner".into()),
        target: req.target.clone().unwrap_or_else(|| "linux".into()),
        windows_mode: req.windows_mode.clone().unwrap_or_default(),
        class: req.class.clone().unwrap_or_default(),
        server_type: req.server_type.clone().unwrap_or_default(),
        command: req.command.clone().unwrap_or_default(),
        label: req
            .label
            .as_deref()
            .map(normalize_label)
            .unwrap_or_default(),
        state: RunState::Running,
        phase: "starting".into(),
        started_at: now,
        ..Run::default()
    };
    if let Some(lease_id) = req.lease_id.as_deref().filter(|s| !s.is_empty()) {
        if lease_id.len() > 128
            || lease_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Failure::bad_request(
                "invalid_lease_id",
                "leaseID is not a lease id",
            ));
        }
        if let Some(found) = state.store.get_lease(lease_id).await? {
            let lease = found.value;
            // Visibility uses non-admin rules even for admins (spec §2.3, §12): an admin
            // records runs only on leases it could see without its admin rights.
            if !access::can_see_lease(&caller.without_admin(), &lease) {
                return Err(Failure::not_found());
            }
            run.provider.clone_from(&lease.provider);
            run.target.clone_from(&lease.target);
            run.class.clone_from(&lease.class);
            run.server_type.clone_from(&lease.server_type);
            run.windows_mode.clone_from(&lease.windows_mode);
            run.slug.clone_from(&lease.slug);
            run.lease_owners.push(LeaseOwner {
                owner: lease.owner.clone(),
                org: lease.org.clone(),
            });
        }
        run.lease_id = lease_id.to_owned();
        run.lease_ids.push(lease_id.to_owned());
    }
    let started = append_event(
        &mut run,
        &RunEventRequest {
            kind: Some("run.started".into()),
            phase: Some("starting".into()),
            ..RunEventRequest::default()
        },
        now,
    );
    state.store.insert_run(&run, &[started]).await?;
    state.metrics.run_created();
    Ok(run_body(StatusCode::CREATED, run))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunListQuery {
    #[serde(rename = "leaseID")]
    lease_id: Option<String>,
    owner: Option<String>,
    org: Option<String>,
    org_kind: Option<String>,
    state: Option<String>,
    limit: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<RunListQuery>,
) -> Result<Response> {
    let mut query = RunQuery {
        lease: q.lease_id.filter(|s| !s.is_empty()),
        owner: q.owner.filter(|s| !s.is_empty()),
        limit: clamp_limit(q.limit.as_deref(), 50),
        ..RunQuery::default()
    };
    if let Some(s) = q.state.as_deref().filter(|s| !s.is_empty()) {
        query.state = Some(RunState::parse(s).ok_or_else(|| {
            Failure::bad_request(
                "invalid_state",
                "state must be running, succeeded or failed",
            )
        })?);
    }
    match OrgFilter::parse(q.org.as_deref(), q.org_kind.as_deref()) {
        OrgFilter::Any => {}
        OrgFilter::Key(key) => query.org = Some(key),
        OrgFilter::Nothing => return Ok(Json(json!({"runs": []})).into_response()),
    }
    if !caller.admin && query.lease.is_none() {
        // Non-admins only ever see their own runs or runs on their leases; narrowing the
        // query to the caller keeps the limit meaningful.
        query.owner = Some(caller.owner.clone());
        query.org = Some(caller.org_key.clone());
    }
    let mut runs = Vec::new();
    for run in state.store.list_runs(&query).await? {
        let run = attributed(&state, &caller, run).await?;
        if access::can_read_run(&caller, &run, None) {
            runs.push(shape(run));
        }
    }
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// Events to read per page while rebuilding a legacy run's lease attribution.
const ATTRIBUTION_PAGE: usize = 500;

/// A run as `caller` may read it: a legacy run (recorded before `leaseOwners` existed) that the
/// caller cannot write first gets its attribution rebuilt, so the owners of the leases it ran on
/// keep their read-only audit access (spec §2.3).
async fn attributed(state: &AppState, caller: &Caller, run: Run) -> Result<Run> {
    if run.lease_owners.is_empty() && !access::can_write_run(caller, &run) {
        attribute_legacy(state, run).await
    } else {
        Ok(run)
    }
}

/// Rebuilds `leaseIDs` and `leaseOwners` of a legacy run from the lease IDs its events name (in
/// event order), then its `leaseID`, and stores them. A run whose leases are all gone stays as
/// it is.
async fn attribute_legacy(state: &AppState, run: Run) -> Result<Run> {
    let mut ids: Vec<String> = Vec::new();
    let mut after = 0;
    loop {
        let page = state
            .store
            .run_events(&run.id, after, ATTRIBUTION_PAGE)
            .await?;
        for id in page.iter().filter_map(|e| e.lease_id.as_ref()) {
            if crabbox_api::LeaseId::is_canonical(id) && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        match page.last() {
            Some(last) if page.len() == ATTRIBUTION_PAGE => after = last.seq,
            _ => break,
        }
    }
    if crabbox_api::LeaseId::is_canonical(&run.lease_id) && !ids.contains(&run.lease_id) {
        ids.push(run.lease_id.clone());
    }
    let mut owners: Vec<LeaseOwner> = Vec::new();
    for id in &ids {
        if let Some(lease) = state.store.get_lease(id).await? {
            let owner = LeaseOwner {
                owner: lease.value.owner,
                org: lease.value.org,
            };
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
    }
    if owners.is_empty() {
        return Ok(run);
    }
    let (run, _) = modify(state, &run.id, |r| {
        if r.lease_owners.is_empty() {
            for id in &ids {
                if !r.lease_ids.contains(id) {
                    r.lease_ids.push(id.clone());
                }
            }
            r.lease_owners.clone_from(&owners);
        }
        Ok((Vec::new(), None))
    })
    .await?;
    Ok(run)
}

async fn readable(state: &AppState, caller: &Caller, id: &str) -> Result<Run> {
    let run = attributed(state, caller, load(state, id).await?.value).await?;
    if access::can_read_run(caller, &run, None) {
        Ok(run)
    } else {
        Err(Failure::not_found())
    }
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    Ok(run_body(
        StatusCode::OK,
        readable(&state, &caller, &id).await?,
    ))
}

pub async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    readable(&state, &caller, &id).await?;
    let text = state.store.run_log(&id).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

#[derive(Debug, Deserialize, Default)]
pub struct EventsQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response> {
    readable(&state, &caller, &id).await?;
    let after = q
        .after
        .and_then(|a| a.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let events = state
        .store
        .run_events(&id, after, clamp_limit(q.limit.as_deref(), 500))
        .await?;
    Ok(Json(json!({ "events": events })).into_response())
}

fn check_writer(caller: &Caller, run: &Run) -> Result<()> {
    if access::can_write_run(caller, run) {
        Ok(())
    } else {
        Err(Failure::not_found())
    }
}

pub async fn post_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: RunEventRequest = parse_json(&body)?;
    // Attaching another lease needs manage access to it.
    let mut extra_owner = None;
    if let Some(lease_id) = req
        .lease_id
        .as_deref()
        .filter(|l| crabbox_api::LeaseId::is_canonical(l))
    {
        let run = load(&state, &id).await?.value;
        check_writer(&caller, &run)?;
        if run.lease_id != lease_id {
            let lease = state
                .store
                .get_lease(lease_id)
                .await?
                .ok_or_else(Failure::not_found)?;
            if !access::can_manage_lease(&caller, &lease.value) {
                return Err(Failure::not_found());
            }
            extra_owner = Some(LeaseOwner {
                owner: lease.value.owner,
                org: lease.value.org,
            });
        }
    }
    let now = state.now();
    let (_, events) = modify(&state, &id, |run| {
        check_writer(&caller, run)?;
        if let Some(o) = &extra_owner
            && !run.lease_owners.contains(o)
        {
            run.lease_owners.push(o.clone());
        }
        Ok((vec![append_event(run, &req, now)], None))
    })
    .await?;
    let event = events.into_iter().next();
    Ok((StatusCode::CREATED, Json(json!({ "event": event }))).into_response())
}

#[derive(Debug, Deserialize)]
struct TelemetryBody {
    telemetry: Option<Value>,
}

pub async fn post_telemetry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: TelemetryBody = parse_json(&body)?;
    let now = state.now();
    let sample = req
        .telemetry
        .as_ref()
        .and_then(|raw| Telemetry::sanitize(raw, now))
        .ok_or_else(|| {
            Failure::bad_request("invalid_telemetry", "telemetry has no usable metric")
        })?;
    let (run, _) = modify(&state, &id, |run| {
        check_writer(&caller, run)?;
        let t = run.telemetry.get_or_insert_with(RunTelemetry::default);
        if t.start.is_none() {
            t.start = Some(sample.clone());
        }
        Telemetry::merge_history(&mut t.samples, [sample.clone()]);
        Ok((Vec::new(), None))
    })
    .await?;
    Ok(run_body(StatusCode::OK, run))
}

fn classification(v: Option<&str>) -> Option<String> {
    let v = v?.trim();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !v.as_bytes()[0].is_ascii_uppercase();
    ok.then(|| v.to_owned())
}

const RESULT_FILES: usize = 50;
const RESULT_FAILURES: usize = 100;
const RESULT_STRING_BYTES: usize = 4096;
const FAILURE_FIELDS: &[&str] = &[
    "suite",
    "name",
    "kind",
    "classname",
    "file",
    "message",
    "type",
];

/// Bounds a `JUnit` results summary (spec §2.3): at most 50 `files` and 100 `failed` entries,
/// 4 KiB per string. A Go client sends `null` for an empty slice; `files` and `failed` are
/// always lists afterwards, so readers never see `null` there.
fn bound_results(v: &Value) -> Value {
    fn walk(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(bounded(s, RESULT_STRING_BYTES)),
            Value::Array(items) => Value::Array(items.iter().map(walk).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), walk(v))).collect())
            }
            other => other.clone(),
        }
    }
    fn list<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> &'a [Value] {
        map.get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
    let Value::Object(map) = v else {
        return walk(v);
    };
    let files = list(map, "files")
        .iter()
        .filter(|f| f.is_string())
        .take(RESULT_FILES)
        .map(walk)
        .collect();
    let failed = list(map, "failed")
        .iter()
        .filter_map(Value::as_object)
        .take(RESULT_FAILURES)
        .map(|failure| {
            Value::Object(
                failure
                    .iter()
                    .filter(|(k, v)| FAILURE_FIELDS.contains(&k.as_str()) && v.is_string())
                    .map(|(k, v)| (k.clone(), walk(v)))
                    .collect(),
            )
        })
        .collect();
    let mut out: serde_json::Map<String, Value> =
        map.iter().map(|(k, v)| (k.clone(), walk(v))).collect();
    out.insert("files".into(), Value::Array(files));
    out.insert("failed".into(), Value::Array(failed));
    Value::Object(out)
}

pub async fn finish(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let req: RunFinishRequest = parse_json(&body)?;
    let now = state.now();
    // The chunks win when they hold any text; empty ones (`[]`, `[""]`) fall back to `log`.
    let raw_log = req
        .log_chunks
        .as_deref()
        .map(<[String]>::concat)
        .filter(|joined| !joined.is_empty())
        .or_else(|| req.log.clone())
        .unwrap_or_default();
    let raw_bytes = raw_log.len();
    let kept = tail(&raw_log, LOG_TAIL_BYTES).to_owned();
    let exit_code = req
        .exit_code
        .filter(|c| c.is_finite())
        .map_or(1, |c| c as i64);
    let telemetry = req.telemetry.as_ref().and_then(Value::as_object).map(|t| {
        let one = |k: &str| t.get(k).and_then(|v| Telemetry::sanitize(v, now));
        let samples: Vec<Telemetry> = t
            .get("samples")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| Telemetry::sanitize(v, now))
                    .collect()
            })
            .unwrap_or_default();
        (one("start"), one("end"), samples)
    });
    let (run, _) = modify(&state, &id, |run| {
        check_writer(&caller, run)?;
        run.exit_code = Some(exit_code);
        run.state = if exit_code == 0 {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        run.state.as_str().clone_into(&mut run.phase);
        run.ended_at = Some(now);
        run.duration_ms = Some(u64::try_from(now.millis() - run.started_at.millis()).unwrap_or(0));
        run.sync_ms = req
            .sync_ms
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64);
        run.command_ms = req
            .command_ms
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64);
        run.blocked_stage = classification(req.blocked_stage.as_deref());
        run.retry_likely = classification(req.retry_likely.as_deref());
        if let Some(results) = &req.results {
            run.results = Some(bound_results(results));
        }
        if let Some((start, end, samples)) = &telemetry {
            let t = run.telemetry.get_or_insert_with(RunTelemetry::default);
            if start.is_some() {
                t.start.clone_from(start);
            }
            if end.is_some() {
                t.end.clone_from(end);
            }
            Telemetry::merge_history(&mut t.samples, samples.iter().cloned());
        }
        run.log_bytes = kept.len() as u64;
        run.log_truncated = req.log_truncated.unwrap_or(false) || raw_bytes > LOG_TAIL_BYTES;
        let finished = append_event(
            run,
            &RunEventRequest {
                kind: Some("command.finished".into()),
                phase: Some(run.state.as_str().to_owned()),
                exit_code: Some(exit_code as f64),
                ..RunEventRequest::default()
            },
            now,
        );
        Ok((vec![finished], Some(kept.clone())))
    })
    .await?;
    state.metrics.run_finished();
    Ok(run_body(StatusCode::OK, run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_bounds_respect_char_boundaries() {
        assert_eq!(tail("abc", 5), "abc");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
        assert_eq!(bounded("éé", 3), "é");
    }

    #[test]
    fn labels_collapse_whitespace_and_cap_length() {
        assert_eq!(normalize_label("  a \n b\t c "), "a b c");
        assert_eq!(normalize_label(&"x".repeat(300)).len(), 120);
    }

    #[test]
    fn classification_fields_follow_the_pattern() {
        assert_eq!(classification(Some("sync")), Some("sync".into()));
        assert_eq!(classification(Some("Bad Value")), None);
        assert_eq!(classification(Some("-x")), None);
    }
}
