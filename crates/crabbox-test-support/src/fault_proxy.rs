//! A fault-injecting HTTP proxy between an AWS client and moto: what emulators never produce.
//!
//! Every request is forwarded unchanged to the upstream (moto) and moto's answer is returned,
//! except where a test has asked for a fault:
//!
//! - **Refusals** the way EC2 refuses: [`Ec2Error`] answers with EC2's XML error body and
//!   HTTP status instead of forwarding (capacity, spot price and count, vCPU quota,
//!   unsupported configuration, throttling).
//! - **A lost reply**: [`Effect::DropReply`] forwards the request, so moto acts on it, then
//!   closes the connection without answering, as a network failure after EC2 acted would.
//!
//! Faults match an action (the query protocol's `Action=` form field, or the `X-Amz-Target`
//! header of JSON-protocol services), optionally one form parameter (`InstanceType=c7a.48xlarge`,
//! `InstanceMarketOptions.MarketType=spot`), and apply to the next N matching calls.
//!
//! **Snapshots.** moto refuses snapshot tags in `CreateImage` and has no fast snapshot restore;
//! the proxy supplies both (`fault_proxy/snapshots.rs`).
//!
//! **Dedicated Hosts.** moto allocates a host on an `AllocateHosts` dry run and knows no EC2
//! quotas; the proxy answers the dry run and the Mac host quotas (`fault_proxy/hosts.rs`).
//!
//! The proxy also counts calls per action (API calls per lease are a performance figure) and
//! keeps each call's parameters, so a test can assert what was sent.
//!
//! **`ClientToken` idempotency.** moto ignores `ClientToken`: every `RunInstances` makes new
//! instances. EC2 does not: a `RunInstances` repeated with the same token and the same
//! parameters returns the original reservation and launches nothing, and the same token with
//! different parameters fails with `IdempotentParameterMismatch`. Crabbox relies on that ("a
//! retried create never makes a second instance"), so the proxy does it in moto's place: it
//! records moto's successful answer per token and answers repeats from the record. It is on
//! by default; [`FaultProxy::set_client_token_idempotency`] turns it off to see moto as is.
//!
//! The proxy runs on a runtime of its own, so a test may block its own thread (running the
//! CLI and waiting for it) while the proxy serves that CLI.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap};
use hyper::{Request, Response};

mod hosts;
pub use hosts::dedicated_host_quota_code;
mod snapshots;

/// An EC2 error the proxy can answer with, with EC2's HTTP status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ec2Error {
    /// No capacity for the instance type (HTTP 500: EC2 lists it among server errors).
    InsufficientInstanceCapacity,
    /// The spot request's maximum price is below the current spot price (400).
    SpotMaxPriceTooLow,
    /// The account's spot instance count limit is reached (400).
    MaxSpotInstanceCountExceeded,
    /// The account's vCPU quota for the instance family is reached (400).
    VcpuLimitExceeded,
    /// The configuration (type, market, zone) is not supported (400).
    Unsupported,
    /// Throttled (HTTP 503).
    RequestLimitExceeded,
    /// The snapshot is still used by an image (400): what EC2 answers to a `DeleteSnapshot`
    /// for a moment after the image was deregistered.
    InvalidSnapshotInUse,
    /// A `ClientToken` reused with different parameters (400).
    IdempotentParameterMismatch,
    /// A dry run that would have succeeded (HTTP 412).
    DryRunOperation,
    /// The caller's IAM policy does not allow the action (403).
    UnauthorizedOperation,
    /// No Dedicated Host capacity for the type in the zone (500, a server error like
    /// `InsufficientInstanceCapacity`).
    InsufficientHostCapacity,
    /// The account's Dedicated Host quota for the family is reached (400).
    HostLimitExceeded,
}

impl Ec2Error {
    pub fn code(self) -> &'static str {
        match self {
            Self::InsufficientInstanceCapacity => "InsufficientInstanceCapacity",
            Self::SpotMaxPriceTooLow => "SpotMaxPriceTooLow",
            Self::MaxSpotInstanceCountExceeded => "MaxSpotInstanceCountExceeded",
            Self::VcpuLimitExceeded => "VcpuLimitExceeded",
            Self::Unsupported => "Unsupported",
            Self::RequestLimitExceeded => "RequestLimitExceeded",
            Self::InvalidSnapshotInUse => "InvalidSnapshot.InUse",
            Self::IdempotentParameterMismatch => "IdempotentParameterMismatch",
            Self::DryRunOperation => "DryRunOperation",
            Self::UnauthorizedOperation => "UnauthorizedOperation",
            Self::InsufficientHostCapacity => "InsufficientHostCapacity",
            Self::HostLimitExceeded => "HostLimitExceeded",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Self::InsufficientInstanceCapacity | Self::InsufficientHostCapacity => 500,
            Self::RequestLimitExceeded => 503,
            Self::DryRunOperation => 412,
            Self::UnauthorizedOperation => 403,
            _ => 400,
        }
    }

    /// EC2's message for this error, filled in from the refused call's parameters.
    fn message(self, params: &[(String, String)]) -> String {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str())
        };
        match self {
            Self::InsufficientInstanceCapacity
                if param("InstanceMarketOptions.MarketType") == "spot" =>
            {
                "There is no Spot capacity available that matches your request.".to_owned()
            }
            Self::InsufficientInstanceCapacity => format!(
                "We currently do not have sufficient {} capacity in the Availability Zone you \
                 requested. Our system will be working on provisioning additional capacity.",
                param("InstanceType")
            ),
            Self::SpotMaxPriceTooLow => "Your Spot request price of 0.001 is lower than the \
                minimum required Spot request fulfillment price of 0.0125."
                .to_owned(),
            Self::MaxSpotInstanceCountExceeded => "Max spot instance count exceeded".to_owned(),
            Self::VcpuLimitExceeded => "You have requested more vCPU capacity than your current \
                vCPU limit of 32 allows for the instance bucket that the specified instance type \
                belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request \
                an adjustment to this limit."
                .to_owned(),
            Self::Unsupported => "The requested configuration is currently not supported. \
                Please check the documentation for supported configurations."
                .to_owned(),
            Self::RequestLimitExceeded => "Request limit exceeded.".to_owned(),
            Self::InvalidSnapshotInUse => format!(
                "The snapshot {} is currently in use by an AMI",
                param("SnapshotId")
            ),
            Self::IdempotentParameterMismatch => "Arguments on this idempotent request are \
                inconsistent with arguments used in previous request(s)."
                .to_owned(),
            Self::DryRunOperation => {
                "Request would have succeeded, but DryRun flag is set.".to_owned()
            }
            Self::UnauthorizedOperation => {
                "You are not authorized to perform this operation.".to_owned()
            }
            Self::InsufficientHostCapacity => format!(
                "Insufficient capacity for {} Dedicated Hosts in {}.",
                param("InstanceType"),
                param("AvailabilityZone")
            ),
            Self::HostLimitExceeded => format!(
                "You have reached the maximum number of Dedicated Hosts of type {} allowed \
                 for your account.",
                param("InstanceType")
            ),
        }
    }

    /// EC2's error body: `<Response><Errors><Error><Code>…` with a request id.
    pub fn xml(self, params: &[(String, String)]) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
             <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
            self.code(),
            xml_escape(&self.message(params)),
            uuid::Uuid::new_v4()
        )
    }
}

/// What a fault does to a matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Answer with this error; moto never sees the call.
    Refuse(Ec2Error),
    /// Forward the call, then close the connection without answering.
    DropReply,
}

/// A fault for the next `times` calls of `action` (with `param` when set).
#[derive(Debug, Clone)]
pub struct Fault {
    action: String,
    param: Option<(String, String)>,
    times: usize,
    effect: Effect,
}

impl Fault {
    /// Refuse the next call of `action` with `error`.
    pub fn refuse(action: &str, error: Ec2Error) -> Self {
        Self::new(action, Effect::Refuse(error))
    }

    /// Forward the next call of `action`, then drop moto's reply.
    pub fn drop_reply(action: &str) -> Self {
        Self::new(action, Effect::DropReply)
    }

    fn new(action: &str, effect: Effect) -> Self {
        Self {
            action: action.to_owned(),
            param: None,
            times: 1,
            effect,
        }
    }

    /// Only calls whose form parameter `name` is `value`.
    #[must_use]
    pub fn when(mut self, name: &str, value: &str) -> Self {
        self.param = Some((name.to_owned(), value.to_owned()));
        self
    }

    /// The next `n` matching calls instead of one.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }

    fn matches(&self, call: &Call) -> bool {
        self.times > 0
            && self.action == call.action
            && self
                .param
                .as_ref()
                .is_none_or(|(k, v)| call.param(k) == Some(v.as_str()))
    }
}

/// One call that reached the proxy, faulted or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The query `Action`, or the JSON protocol's `X-Amz-Target` (`Service.Operation`).
    pub action: String,
    /// The form and query-string parameters, in the order sent (empty for JSON bodies).
    pub params: Vec<(String, String)>,
}

impl Call {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct State {
    calls: Vec<Call>,
    faults: Vec<Fault>,
    idempotent: bool,
    /// Applied EC2 quotas by quota code, answered in moto's place.
    quotas: HashMap<String, f64>,
    /// Spot placement scores by region, answered in moto's place when set.
    placement_scores: Option<Vec<(String, i32)>>,
    /// Fast snapshot restores, kept in moto's place.
    restores: snapshots::Restores,
    /// Dedicated Host quotas by Mac family, answered in moto's place.
    host_quotas: hosts::HostQuotas,
}

/// moto's successful answer to a `RunInstances` with a `ClientToken`, and what was asked.
#[derive(Debug)]
struct Recorded {
    params: Vec<(String, String)>,
    body: Bytes,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    state: Mutex<State>,
    /// Held across the forward, so two calls with one token cannot both launch.
    tokens: tokio::sync::Mutex<HashMap<String, Recorded>>,
}

/// The running proxy. Dropping it stops it.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl FaultProxy {
    /// Starts the proxy on a free 127.0.0.1 port, forwarding to `upstream` (moto's URL).
    pub fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
            state: Mutex::new(State {
                calls: Vec::new(),
                faults: Vec::new(),
                idempotent: true,
                quotas: HashMap::new(),
                placement_scores: None,
                restores: snapshots::Restores::default(),
                host_quotas: hosts::HostQuotas::default(),
            }),
            tokens: tokio::sync::Mutex::new(HashMap::new()),
        });
        let runtime = crate::background_runtime("fault-proxy");
        let (listener, addr) = crate::loopback_listener("proxy");
        let served = Arc::clone(&shared);
        crate::serve_http(&runtime, listener, move |req| {
            handle(Arc::clone(&served), req)
        });
        Self {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// The proxy's base URL, for `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes Service Quotas report `value` for the EC2 quota `code` (`L-34B43A08`, spot
    /// vCPUs; `L-1216C47A`, on-demand vCPUs). moto's Service Quotas knows no EC2 quotas
    /// (it answers `NoSuchResourceException`), so the proxy answers `GetServiceQuota` for
    /// the codes set here itself, in the shape of the Service Quotas API reference
    /// (`GetServiceQuota`: `{"Quota": {ServiceCode, QuotaCode, QuotaName, Value, Unit,
    /// Adjustable, GlobalQuota}}`); other calls still go to moto.
    pub fn set_service_quota(&self, code: &str, value: f64) {
        let mut state = self.shared.state.lock().expect("proxy state");
        state.quotas.insert(code.to_owned(), value);
    }

    /// Adds a fault; faults are tried in the order added, the first that matches applies.
    /// Makes `GetSpotPlacementScores` answer these region scores (1–10). moto does not
    /// implement the action (it answers an error, which the product must treat as a
    /// warning); the proxy answers it itself in the shape of EC2's API reference
    /// (`GetSpotPlacementScores`: `spotPlacementScoreSet` of `{region, score}` items, only for
    /// the regions asked for in `RegionNames.N`).
    pub fn set_spot_placement_scores(&self, scores: &[(&str, i32)]) {
        let scores = scores.iter().map(|(r, s)| ((*r).to_owned(), *s)).collect();
        self.state().placement_scores = Some(scores);
    }

    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Whether every injected fault has been used up.
    pub fn faults_spent(&self) -> bool {
        self.state().faults.iter().all(|f| f.times == 0)
    }

    /// Turns `ClientToken` idempotency for `RunInstances` on (the default) or off.
    pub fn set_client_token_idempotency(&self, on: bool) {
        self.state().idempotent = on;
    }

    /// How many calls of `action` reached the proxy (refused and dropped ones included).
    pub fn count(&self, action: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.action == action)
            .count()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Forgets the calls so far (to count one phase of a test alone).
    pub fn reset_calls(&self) {
        self.state().calls.clear();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().expect("proxy state")
    }
}

type Answer = crate::HttpAnswer;

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Answer {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let call = read_call(&parts.headers, parts.uri.query(), &body);
    let (effect, idempotent) = {
        let mut state = shared.state.lock().expect("proxy state");
        state.calls.push(call.clone());
        let fault = state.faults.iter_mut().find(|f| f.matches(&call));
        let effect = fault.map(|f| {
            f.times -= 1;
            f.effect
        });
        (effect, state.idempotent)
    };
    if let Some(Effect::Refuse(error)) = effect {
        return Ok(xml_answer(error.status(), error.xml(&call.params)));
    }
    if let Some(answer) = service_quota(&shared, &call, &body) {
        return Ok(answer);
    }
    if let Some(answer) = placement_scores(&shared, &call) {
        return Ok(answer);
    }
    if let Some(answer) = hosts::answer(&shared, &call, &body) {
        return Ok(answer);
    }
    let token = call.param("ClientToken").map(str::to_owned);
    let answer = if let Some(answer) = snapshots::answer(&shared, &parts, &body, &call).await? {
        answer
    } else {
        match token {
            Some(token) if idempotent && call.action == "RunInstances" => {
                idempotent_run(&shared, &parts, &body, &call, token).await?
            }
            _ => forward(&shared, &parts, body).await?,
        }
    };
    if effect == Some(Effect::DropReply) {
        // hyper closes the connection without an answer when the service fails.
        return Err(std::io::Error::other("reply dropped by the fault proxy"));
    }
    Ok(answer)
}

/// `RunInstances` with a `ClientToken`, answered as EC2 would: a repeat with the same parameters
/// gets the recorded answer, a repeat with others `IdempotentParameterMismatch`.
async fn idempotent_run(
    shared: &Shared,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    call: &Call,
    token: String,
) -> Answer {
    let mut params: Vec<(String, String)> = call
        .params
        .iter()
        .filter(|(k, _)| k != "ClientToken")
        .cloned()
        .collect();
    params.sort();
    let mut tokens = shared.tokens.lock().await;
    if let Some(recorded) = tokens.get(&token) {
        if recorded.params == params {
            return Ok(xml_answer(200, recorded.body.clone()));
        }
        let error = Ec2Error::IdempotentParameterMismatch;
        return Ok(xml_answer(error.status(), error.xml(&call.params)));
    }
    let answer = forward(shared, parts, body.clone()).await?;
    if answer.status() == hyper::StatusCode::OK {
        let recorded = answer.body().clone().collect().await;
        let body = recorded.map_err(std::io::Error::other)?.to_bytes();
        tokens.insert(token, Recorded { params, body });
    }
    Ok(answer)
}

/// Sends the request on to the upstream unchanged and returns its answer.
async fn forward(shared: &Shared, parts: &hyper::http::request::Parts, body: Bytes) -> Answer {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers.clone();
    for hop in [
        header::HOST,
        header::CONNECTION,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(hop);
    }
    let sent = shared
        .http
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await;
    // An unreachable upstream answers 502, so it is never mistaken for an injected lost reply.
    let upstream = match sent {
        Ok(upstream) => upstream,
        Err(e) => {
            return Ok(Response::builder()
                .status(502)
                .body(Full::new(Bytes::from(format!(
                    "fault proxy: upstream unreachable: {e}"
                ))))
                .expect("a valid answer"));
        }
    };
    let mut answer = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        if ![
            header::CONNECTION,
            header::CONTENT_LENGTH,
            header::TRANSFER_ENCODING,
        ]
        .contains(name)
        {
            answer = answer.header(name, value);
        }
    }
    let bytes = upstream.bytes().await.map_err(std::io::Error::other)?;
    answer.body(Full::new(bytes)).map_err(std::io::Error::other)
}

/// The call's action and parameters: query string and form body for the query protocol,
/// the `X-Amz-Target` header for JSON-protocol services.
fn read_call(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Call {
    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if target.is_none() {
        params.extend(url::form_urlencoded::parse(body).into_owned());
    }
    let action = target.unwrap_or_else(|| {
        params
            .iter()
            .find(|(k, _)| k == "Action")
            .map_or_else(String::new, |(_, v)| v.clone())
    });
    Call { action, params }
}

/// `GetServiceQuota` for an EC2 quota set with [`FaultProxy::set_service_quota`].
fn service_quota(shared: &Shared, call: &Call, body: &[u8]) -> Option<Response<Full<Bytes>>> {
    if call.action != "ServiceQuotasV20190624.GetServiceQuota" {
        return None;
    }
    let asked: serde_json::Value = serde_json::from_slice(body).ok()?;
    let (service, code) = (asked["ServiceCode"].as_str()?, asked["QuotaCode"].as_str()?);
    let value = *shared.state.lock().expect("proxy state").quotas.get(code)?;
    if service != "ec2" {
        return None;
    }
    let answer = serde_json::json!({
        "Quota": {
            "ServiceCode": "ec2",
            "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
            "QuotaArn": format!("arn:aws:servicequotas:{}:{}:ec2/{code}", crate::moto::DEFAULT_REGION, crate::moto::ACCOUNT_ID),
            "QuotaCode": code,
            "QuotaName": "Running instances vCPUs",
            "Value": value,
            "Unit": "None",
            "Adjustable": true,
            "GlobalQuota": false
        }
    });
    Some(
        Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(answer.to_string())))
            .expect("a valid answer"),
    )
}

/// `GetSpotPlacementScores` with the scores set by [`FaultProxy::set_spot_placement_scores`].
fn placement_scores(shared: &Shared, call: &Call) -> Option<Response<Full<Bytes>>> {
    if call.action != "GetSpotPlacementScores" {
        return None;
    }
    let scores = shared
        .state
        .lock()
        .expect("proxy state")
        .placement_scores
        .clone()?;
    let asked: Vec<&str> = call
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("RegionName."))
        .map(|(_, v)| v.as_str())
        .collect();
    let mut items = String::new();
    for (region, score) in scores.iter().filter(|(r, _)| asked.contains(&r.as_str())) {
        let region = xml_escape(region);
        let _ = write!(
            items,
            "<item><region>{region}</region><score>{score}</score></item>"
        );
    }
    Some(xml_answer(
        200,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetSpotPlacementScoresResponse \
             xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>{}</requestId>\
             <spotPlacementScoreSet>{items}</spotPlacementScoreSet>\
             </GetSpotPlacementScoresResponse>",
            uuid::Uuid::new_v4()
        ),
    ))
}

fn xml_answer(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml;charset=UTF-8")
        .body(Full::new(body.into()))
        .expect("a valid answer")
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
