//! What moto (5.2.6) lacks around EC2 Mac Dedicated Hosts, supplied by the proxy:
//!
//! - **`AllocateHosts` with `DryRun=true`.** moto ignores the parameter and allocates a host.
//!   EC2 checks the request and the caller's permissions, allocates nothing and answers the
//!   error `DryRunOperation` with HTTP 412 when the call would have succeeded (EC2 API
//!   reference, "Error codes for the Amazon EC2 API": `DryRunOperation`, "The user has the
//!   required permissions, so the request would have succeeded, but the `DryRun` parameter was
//!   used"). The proxy answers that itself; an injected fault (`UnauthorizedOperation`,
//!   `InsufficientHostCapacity`, `HostLimitExceeded` with `.when("DryRun", "true")`) still
//!   comes first, as EC2's reasons a dry run would fail do.
//! - **The "Running Dedicated <family> Hosts" quotas.** moto's Service Quotas knows only `vpc`
//!   quotas and has no `ListServiceQuotas`. For the families set with
//!   [`FaultProxy::set_dedicated_host_quota`] the proxy answers `ListServiceQuotas` for `ec2`
//!   in the shape of the Service Quotas API reference (`ListServiceQuotas`: `{"Quotas": [...],
//!   "NextToken"}` of `ServiceQuota` objects), two quotas a page unless `MaxResults` says
//!   otherwise, so a caller must follow `NextToken` as it must with AWS (which picks the page
//!   size when none is asked for).

use std::collections::BTreeMap;

use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use hyper::header;

use super::{Call, Ec2Error, FaultProxy, Shared, xml_answer};
use crate::moto::{ACCOUNT_ID, DEFAULT_REGION};

/// Host quotas by family (`mac2`), answered in moto's place.
#[derive(Debug, Default)]
pub(super) struct HostQuotas(BTreeMap<String, f64>);

/// Quota codes of the Mac families, as the upstream Crabbox worker lists them. The product
/// finds quotas by name; the codes only make the answers look like AWS's.
const CODES: &[(&str, &str)] = &[
    ("mac1", "L-A8448DC5"),
    ("mac2", "L-5D8DADF5"),
    ("mac2-m1ultra", "L-AE4D744C"),
    ("mac2-m2", "L-B90B5B66"),
    ("mac2-m2pro", "L-14F120D1"),
    ("mac-m3ultra", "L-7108A7B5"),
    ("mac-m4", "L-2CBA8B92"),
    ("mac-m4max", "L-D82CB68A"),
    ("mac-m4pro", "L-6919FC30"),
];

impl FaultProxy {
    /// Makes Service Quotas list "Running Dedicated `family` Hosts" (`mac2`, `mac-m4`…) with
    /// the applied `value`.
    pub fn set_dedicated_host_quota(&self, family: &str, value: f64) {
        self.state().host_quotas.0.insert(family.to_owned(), value);
    }
}

/// The code the proxy gives a family's quota.
pub fn dedicated_host_quota_code(family: &str) -> &'static str {
    CODES
        .iter()
        .find(|(f, _)| *f == family)
        .map_or("L-00000000", |(_, code)| code)
}

/// The proxy's own answer to `call`, or `None` to let moto answer it.
pub(super) fn answer(shared: &Shared, call: &Call, body: &[u8]) -> Option<Response<Full<Bytes>>> {
    match call.action.as_str() {
        "AllocateHosts" if call.param("DryRun") == Some("true") => {
            let error = Ec2Error::DryRunOperation;
            Some(xml_answer(error.status(), error.xml(&call.params)))
        }
        "ServiceQuotasV20190624.ListServiceQuotas" => list_quotas(shared, body),
        _ => None,
    }
}

fn list_quotas(shared: &Shared, body: &[u8]) -> Option<Response<Full<Bytes>>> {
    let asked: serde_json::Value = serde_json::from_slice(body).ok()?;
    if asked["ServiceCode"].as_str()? != "ec2" {
        return None;
    }
    let quotas: Vec<(String, f64)> = {
        let state = shared.state.lock().expect("proxy state");
        state
            .host_quotas
            .0
            .iter()
            .map(|(f, v)| (f.clone(), *v))
            .collect()
    };
    if quotas.is_empty() {
        return None;
    }
    let page = asked["MaxResults"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(2)
        .max(1);
    let start: usize = asked["NextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let listed: Vec<serde_json::Value> = quotas
        .iter()
        .skip(start)
        .take(page)
        .map(|(family, value)| {
            let code = dedicated_host_quota_code(family);
            serde_json::json!({
                "ServiceCode": "ec2",
                "ServiceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "QuotaArn": format!("arn:aws:servicequotas:{DEFAULT_REGION}:{ACCOUNT_ID}:ec2/{code}"),
                "QuotaCode": code,
                "QuotaName": format!("Running Dedicated {family} Hosts"),
                "Value": value,
                "Unit": "None",
                "Adjustable": true,
                "GlobalQuota": false
            })
        })
        .collect();
    let mut answer = serde_json::json!({ "Quotas": listed });
    if start + page < quotas.len() {
        answer["NextToken"] = (start + page).to_string().into();
    }
    Some(
        Response::builder()
            .status(200)
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .body(Full::new(Bytes::from(answer.to_string())))
            .expect("a valid answer"),
    )
}
