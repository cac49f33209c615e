//! Long-running operations, as "Track asynchronous Azure operations" describes them. A `PUT`
//! answers 201 (200 for an update) with `Azure-AsyncOperation`; a `DELETE` answers 202 with
//! `Location` and `Azure-AsyncOperation` (a resource group's only with `Location`). Each
//! carries a small `Retry-After`.
//!
//! Time does not pass in the fake; observations do. An operation is `InProgress` for
//! [`State::lro_polls`] observations and completes at the next one. An observation is a poll
//! of either URL, or any request addressed to the resource itself (its `GET`, a repeated
//! `PUT`), as a client that re-reads the resource also sees it finish on Azure.

use serde_json::json;

use super::SUBSCRIPTION_ID;
use super::arm::{Answer, Req, error};
use super::state::{Action, Kind, Operation, Provisioning, State, Status, key, timestamp};

/// Starts an operation on the resource `id`, which must exist. An operation still in
/// progress on it is canceled: a delete preempts a create, as on Azure.
pub(super) fn start(
    state: &mut State,
    id: &str,
    action: Action,
    failure: Option<super::arm::Failure>,
) -> String {
    let key = key(id);
    let key = key.as_str();
    let resource = &state.resources[key];
    let namespace = match resource.kind {
        Kind::ResourceGroup => "Microsoft.Resources",
        kind => kind.namespace(),
    };
    let location = resource.location.clone();
    if let Some(old) = resource.operation.clone()
        && let Some(op) = state.operations.get_mut(&old)
        && op.status == Status::InProgress
    {
        op.status = Status::Canceled;
        op.end = Some(timestamp());
    }
    let op = uuid::Uuid::new_v4().to_string();
    state.operations.insert(
        op.clone(),
        Operation {
            id: op.clone(),
            resource: key.to_owned(),
            namespace,
            location,
            action,
            failure,
            seen: 0,
            polls: state.lro_polls,
            status: Status::InProgress,
            start: timestamp(),
            end: None,
        },
    );
    if let Some(r) = state.resources.get_mut(key) {
        r.operation = Some(op.clone());
    }
    op
}

/// One observation of operation `id`: its status afterwards, `None` for an unknown one.
pub(super) fn observe(state: &mut State, id: &str) -> Option<Status> {
    let op = state.operations.get_mut(id)?;
    if op.status != Status::InProgress {
        return Some(op.status);
    }
    if op.seen < op.polls {
        op.seen += 1;
        return Some(Status::InProgress);
    }
    complete(state, id);
    Some(state.operations[id].status)
}

/// An observation of the operation in progress on the resource `id`, if any.
pub(super) fn observe_resource(state: &mut State, id: &str) {
    if let Some(op) = state.get(id).and_then(|r| r.operation.clone()) {
        observe(state, &op);
    }
}

fn complete(state: &mut State, id: &str) {
    let op = state.operations.get_mut(id).expect("the operation");
    op.end = Some(timestamp());
    op.status = if op.failure.is_some() {
        Status::Failed
    } else {
        Status::Succeeded
    };
    let (key, action, failed) = (op.resource.clone(), op.action, op.failure.is_some());
    let Some(resource) = state.resources.get_mut(&key) else {
        return;
    };
    if resource.operation.as_deref() != Some(id) {
        return;
    }
    resource.operation = None;
    match action {
        _ if failed => {
            resource.state = Provisioning::Failed;
            resource.running = false;
        }
        Action::Put => {
            resource.state = Provisioning::Succeeded;
            resource.running = resource.kind == Kind::VirtualMachine;
            let needs_address = resource.kind == Kind::PublicIpAddress
                && !resource.properties.contains_key("ipAddress");
            if needs_address {
                let ip = state.next_public_ip();
                if let Some(pip) = state.resources.get_mut(&key) {
                    pip.properties
                        .insert("ipAddress".into(), json!(ip.to_string()));
                }
            }
        }
        Action::Patch(prior) => resource.state = prior,
        Action::Delete => {
            state.remove(&key);
        }
    }
}

/// The operation's status URL (`Azure-AsyncOperation`).
fn status_url(state: &State, op: &Operation, api_version: &str) -> String {
    match op.namespace {
        "Microsoft.Resources" => result_url(state, op, api_version),
        namespace => format!(
            "{}/subscriptions/{SUBSCRIPTION_ID}/providers/{namespace}/locations/{}/operations/{}?api-version={api_version}",
            state.base, op.location, op.id
        ),
    }
}

/// The operation's result URL (`Location`): compute's `operations/{id}?monitor=true`,
/// network's `operationResults/{id}`, the subscription's `operationresults/{id}`.
fn result_url(state: &State, op: &Operation, api_version: &str) -> String {
    let base = &state.base;
    let (namespace, location, id) = (op.namespace, &op.location, &op.id);
    match namespace {
        "Microsoft.Compute" => format!(
            "{base}/subscriptions/{SUBSCRIPTION_ID}/providers/{namespace}/locations/{location}/operations/{id}?monitor=true&api-version={api_version}"
        ),
        "Microsoft.Network" => format!(
            "{base}/subscriptions/{SUBSCRIPTION_ID}/providers/{namespace}/locations/{location}/operationResults/{id}?api-version={api_version}"
        ),
        _ => format!(
            "{base}/subscriptions/{SUBSCRIPTION_ID}/operationresults/{id}?api-version={api_version}"
        ),
    }
}

/// A `PUT`'s or `PATCH`'s answer: `status` with the resource and `Azure-AsyncOperation`.
pub(super) fn accepted_put(
    state: &State,
    req: &Req,
    op: &str,
    status: u16,
    body: serde_json::Value,
) -> Answer {
    let op = &state.operations[op];
    Answer::json(status, body)
        .header(
            "Azure-AsyncOperation",
            status_url(state, op, &req.api_version),
        )
        .header("Retry-After", state.retry_after.to_string())
}

/// A `DELETE`'s answer: 202 with `Location` and (but for resource groups)
/// `Azure-AsyncOperation`.
pub(super) fn accepted_delete(state: &State, req: &Req, op: &str) -> Answer {
    let op = &state.operations[op];
    let answer = Answer::empty(202)
        .header("Location", result_url(state, op, &req.api_version))
        .header("Retry-After", state.retry_after.to_string());
    if op.namespace == "Microsoft.Resources" {
        answer
    } else {
        answer.header(
            "Azure-AsyncOperation",
            status_url(state, op, &req.api_version),
        )
    }
}

/// The refusal of a change while operation `op` is in progress on the resource.
pub(super) fn another_in_progress(state: &State, req: &Req, op: &str) -> Answer {
    let url = status_url(state, &state.operations[op], &req.api_version);
    error(
        409,
        "AnotherOperationInProgress",
        format!(
            "Another operation on this or dependent resource is in progress. To retrieve status \
             of the operation use uri: {url}."
        ),
    )
}

fn unknown_operation(id: &str) -> Answer {
    error(
        404,
        "NotFound",
        format!("The operation '{id}' could not be found."),
    )
}

/// `GET` of an `Azure-AsyncOperation` URL: always 200, with the status (and the error once
/// `Failed` or `Canceled`).
pub(super) fn poll_status(state: &mut State, id: &str) -> Answer {
    let Some(status) = observe(state, id) else {
        return unknown_operation(id);
    };
    let op = &state.operations[id];
    let mut body = json!({"name": op.id, "status": status.as_str(), "startTime": op.start});
    if let Some(end) = &op.end {
        body["endTime"] = json!(end);
    }
    match (status, &op.failure) {
        (Status::Failed, Some(f)) => body["error"] = json!({"code": f.code, "message": f.message}),
        (Status::Canceled, _) => body["error"] = canceled(),
        _ => {}
    }
    let answer = Answer::json(200, body);
    if status == Status::InProgress {
        answer.header("Retry-After", state.retry_after.to_string())
    } else {
        answer
    }
}

fn canceled() -> serde_json::Value {
    json!({"code": "OperationPreempted", "message": "The operation was preempted by a later operation on the resource."})
}

/// `GET` of a `Location` URL: 202 (with `Location` and `Retry-After`) while in progress;
/// then 204 (network) or 200 (compute, resource groups) on success, or the error.
pub(super) fn poll_result(state: &mut State, req: &Req, id: &str) -> Answer {
    let Some(status) = observe(state, id) else {
        return unknown_operation(id);
    };
    let op = &state.operations[id];
    match status {
        Status::InProgress => Answer::empty(202)
            .header("Location", result_url(state, op, &req.api_version))
            .header("Retry-After", state.retry_after.to_string()),
        Status::Succeeded if op.namespace == "Microsoft.Network" => Answer::empty(204),
        Status::Succeeded => Answer::empty(200),
        Status::Failed => op.failure.as_ref().map_or_else(
            || error(500, "InternalServerError", "The operation failed."),
            super::arm::Failure::answer,
        ),
        Status::Canceled => Answer::json(409, json!({"error": canceled()})),
    }
}
