//! Resource Manager's front door: every request is recorded, then checked the way ARM checks
//! it (`api-version`, bearer token, subscription), then faulted if a test asked, then routed
//! to its resource type. Also the answer type and ARM's error bodies.

use serde_json::{Value, json};

use super::faults::{AzureError, Call, Effect, ErrorContext};
use super::routes::{self, Collection, Target};
use super::state::{Kind, State, resource_id};
use super::{SUBSCRIPTION_ID, compute, groups, identity, interfaces, lro, resources, skus, vnets};

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// ARM's error body: `{"error": {"code", "message"}}`.
pub(super) fn error(status: u16, code: &str, message: impl Into<String>) -> Answer {
    Answer::json(
        status,
        json!({"error": {"code": code, "message": message.into()}}),
    )
}

/// ARM's error body with the parameter it is about.
pub(super) fn error_at(
    status: u16,
    code: &str,
    message: impl Into<String>,
    target: &str,
) -> Answer {
    Answer::json(
        status,
        json!({"error": {"code": code, "message": message.into(), "target": target}}),
    )
}

/// An error a fault or an operation reports: status, code and the message for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Failure {
    pub fn answer(&self) -> Answer {
        error(self.status, &self.code, self.message.clone())
    }
}

/// A request past the front door.
#[derive(Debug)]
pub(super) struct Req {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Value,
    pub api_version: String,
    /// Set by an injected [`Effect::FailOperation`]: the operation this request starts fails.
    pub failure: Option<Failure>,
}

impl Req {
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one request; the flag says whether to drop the reply instead of sending it.
pub(super) fn dispatch(
    state: &mut State,
    method: &str,
    path: &str,
    raw_query: Option<&str>,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> (Answer, bool) {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let monitor = query.iter().any(|(k, v)| k == "monitor" && v == "true");
    let (subscription, target) = routes::parse(path, monitor);
    let identity = target.is_identity();
    let json_body = if identity || body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    };
    let call = Call {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.clone(),
        route: routes::route(method, &target),
        body: json_body.clone(),
    };
    state.calls.push(call.clone());
    if identity {
        let effect = take_fault(state, &call);
        return match effect {
            Some(Effect::Refuse(e) | Effect::FailOperation(e)) => (identity::refusal(&e), false),
            Some(Effect::DropReply) => {
                (identity::serve(state, &target, &query, headers, body), true)
            }
            None => (
                identity::serve(state, &target, &query, headers, body),
                false,
            ),
        };
    }
    let answer = front_door(
        state,
        &query,
        subscription.as_deref(),
        method,
        headers,
        body,
    );
    let (answer, drop) = if let Some(refused) = answer {
        (refused, false)
    } else {
        let req = Req {
            method: method.to_owned(),
            path: path.to_owned(),
            api_version: query
                .iter()
                .find(|(k, _)| k == "api-version")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            query,
            body: json_body,
            failure: None,
        };
        faulted(state, req, &call, &target)
    };
    (with_arm_headers(state, method, answer), drop)
}

/// Applies the fault matching the call, if any, then serves it.
fn faulted(state: &mut State, mut req: Req, call: &Call, target: &Target) -> (Answer, bool) {
    match take_fault(state, call) {
        Some(Effect::Refuse(e)) => return (refusal(state, &req, target, &e), false),
        Some(Effect::FailOperation(e)) if matches!(req.method.as_str(), "GET" | "HEAD") => {
            return (refusal(state, &req, target, &e), false);
        }
        Some(Effect::FailOperation(e)) => {
            let ctx = error_context(state, &req, target);
            req.failure = Some(Failure {
                status: e.status(),
                code: e.code().to_owned(),
                message: e.message(&ctx),
            });
        }
        Some(Effect::DropReply) => return (serve(state, &req, target), true),
        None => {}
    }
    (serve(state, &req, target), false)
}

/// The checks ARM makes before a resource provider sees the request, in ARM's order: the
/// `api-version` (ARM asks for it even before a token), the token, the subscription, the body.
fn front_door(
    state: &State,
    query: &[(String, String)],
    subscription: Option<&str>,
    method: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Option<Answer> {
    let api_version = query
        .iter()
        .find(|(k, _)| k == "api-version")
        .map_or("", |(_, v)| v.as_str());
    if api_version.is_empty() {
        return Some(error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    if !is_api_version(api_version) {
        return Some(error(
            400,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{api_version}' is invalid. The supported versions are \
                 'yyyy-mm-dd' dates, optionally with a '-preview' suffix."
            ),
        ));
    }
    if let Err(refused) = identity::authenticate(state, headers) {
        return Some(refused);
    }
    if let Some(sub) = subscription.filter(|s| !s.eq_ignore_ascii_case(SUBSCRIPTION_ID)) {
        return Some(error(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    }
    let malformed = matches!(method, "PUT" | "PATCH")
        && !body.is_empty()
        && serde_json::from_slice::<Value>(body).is_err();
    malformed.then(|| {
        error(
            400,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized.",
        )
    })
}

/// `yyyy-mm-dd`, optionally followed by `-preview` (or another `-suffix`).
fn is_api_version(v: &str) -> bool {
    let date = v.split_once('-').map_or(v, |_| v.get(..10).unwrap_or(v));
    let digits = |r: std::ops::Range<usize>| {
        date.get(r)
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
    };
    date.len() == 10
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && &date[4..5] == "-"
        && &date[7..8] == "-"
        && (v.len() == 10 || v.as_bytes()[10] == b'-')
}

fn take_fault(state: &mut State, call: &Call) -> Option<Effect> {
    state.faults.iter_mut().find_map(|f| f.take(call))
}

fn refusal(state: &State, req: &Req, target: &Target, e: &AzureError) -> Answer {
    let ctx = error_context(state, req, target);
    let answer = error(e.status(), e.code(), e.message(&ctx));
    if e.status() == 429 {
        answer.header("Retry-After", "1")
    } else {
        answer
    }
}

/// What an error message about this request is filled in from.
pub(super) fn error_context(state: &State, req: &Req, target: &Target) -> ErrorContext {
    let existing = state.get(&req.path);
    let location = req.body["location"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| existing.map(|r| r.location.clone()))
        .unwrap_or_default();
    let vm_size = req.body["properties"]["hardwareProfile"]["vmSize"]
        .as_str()
        .or_else(|| existing?.prop("hardwareProfile")["vmSize"].as_str())
        .unwrap_or_default()
        .to_owned();
    let resource_id = match target {
        Target::Resource { group, kind, name } => resource_id(group, *kind, name),
        _ => req.path.clone(),
    };
    ErrorContext {
        method: req.method.clone(),
        resource_id,
        location,
        family: skus::family(&vm_size),
        vm_size,
    }
}

fn serve(state: &mut State, req: &Req, target: &Target) -> Answer {
    let method = req.method.as_str();
    match (method, target) {
        ("GET", Target::Subscription) => groups::subscription(),
        (_, Target::Group { group }) => groups::resource_group(state, req, group),
        ("GET", Target::Resource { group, kind, name }) => {
            resources::get(state, req, group, *kind, name)
        }
        ("DELETE", Target::Resource { group, kind, name }) => {
            resources::delete(state, req, group, &resource_id(group, *kind, name))
        }
        ("PUT", Target::Resource { group, kind, name }) => match kind {
            Kind::VirtualNetwork => vnets::put_vnet(state, req, group, name),
            Kind::NetworkSecurityGroup => vnets::put_nsg(state, req, group, name),
            Kind::PublicIpAddress => interfaces::put_public_ip(state, req, group, name),
            Kind::NetworkInterface => interfaces::put_nic(state, req, group, name),
            Kind::VirtualMachine => compute::put_vm(state, req, group, name),
            _ => method_not_allowed(method),
        },
        ("PATCH", Target::Resource { group, kind, name }) => match kind {
            Kind::VirtualMachine => compute::patch_vm(state, req, group, name),
            _ => resources::patch_tags(state, req, group, *kind, name),
        },
        (
            _,
            Target::Child {
                group,
                kind,
                name,
                collection,
                child,
            },
        ) => match collection {
            Collection::Extensions => compute::extension(state, req, group, name, child),
            _ => vnets::child(state, req, group, *kind, name, *collection, child),
        },
        ("GET", Target::InstanceView { group, name }) => compute::instance_view(state, group, name),
        ("GET", Target::List { group, kind }) => {
            resources::list(state, req, group.as_deref(), *kind)
        }
        ("GET", Target::Skus) => skus::list(state, req),
        ("GET", Target::Operation { id }) => lro::poll_status(state, id),
        ("GET", Target::OperationResult { id }) => lro::poll_result(state, req, id),
        (_, Target::UnknownType { namespace, ty }) => error(
            404,
            "InvalidResourceType",
            format!(
                "The resource type '{ty}' could not be found in the namespace '{namespace}' for \
                 api version '{}'.",
                req.api_version
            ),
        ),
        (_, Target::Unknown) => error(404, "NotFound", "The requested resource was not found."),
        _ => method_not_allowed(method),
    }
}

pub(super) fn method_not_allowed(method: &str) -> Answer {
    error(
        405,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

/// Request ids and the remaining-requests headers ARM puts on every answer.
fn with_arm_headers(state: &mut State, method: &str, answer: Answer) -> Answer {
    let (slot, name) = match method {
        "GET" | "HEAD" => (0, "x-ms-ratelimit-remaining-subscription-reads"),
        "DELETE" => (2, "x-ms-ratelimit-remaining-subscription-deletes"),
        _ => (1, "x-ms-ratelimit-remaining-subscription-writes"),
    };
    state.remaining[slot] = state.remaining[slot].saturating_sub(1);
    let remaining = if answer.status == 429 {
        0
    } else {
        state.remaining[slot]
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    answer
        .header(name, remaining.to_string())
        .header("x-ms-request-id", request_id.clone())
        .header("x-ms-correlation-request-id", request_id)
}

pub(super) fn group_not_found(group: &str) -> Answer {
    error(
        404,
        "ResourceGroupNotFound",
        format!("Resource group '{group}' could not be found."),
    )
}

pub(super) fn not_found(kind: Kind, name: &str, group: &str) -> Answer {
    error(
        404,
        "ResourceNotFound",
        format!(
            "The Resource '{}/{name}' under resource group '{group}' was not found. For more \
             details please go to https://aka.ms/ARMResourceNotFoundFix",
            kind.resource_type()
        ),
    )
}

pub(super) fn location_required() -> Answer {
    error(
        400,
        "LocationRequired",
        "The location property is required for this definition.",
    )
}
