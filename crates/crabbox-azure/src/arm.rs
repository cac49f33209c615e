//! Azure Resource Manager over HTTPS: a bearer token from the [`Credential`], `api-version` on
//! every call, ARM's error body (`{"error": {"code", "message"}}`) kept whole, listings
//! followed through `nextLink`, and long-running operations followed to their end as the
//! "Track asynchronous Azure operations" reference describes: a `PUT`/`PATCH` answered with an
//! `Azure-AsyncOperation` URL is polled until `Succeeded` (then the resource is read once), a
//! `DELETE` answered 202 is polled the same way (or through its `Location`) and the deleted
//! resource is never read again. `Retry-After` is honoured, capped; throttling (429) is waited
//! out and repeated.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crabbox_providers::ProviderError;
use crabbox_providers::cloud::azure::errors;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::credential::Credential;

/// The longest one long-running operation is followed.
const OPERATION_LIMIT: Duration = Duration::from_mins(20);
/// The longest wait between two polls, whatever `Retry-After` says.
const MAX_POLL: Duration = Duration::from_secs(10);
/// Tries of a throttled request.
const TRIES: u32 = 4;

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// ARM answered with an error, or an operation ended `Failed` (status 0: the error came
    /// from the operation, not from an HTTP answer).
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer came: a write may or may not have happened.
    NoAnswer { what: String, detail: String },
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status, code, .. } if errors::is_not_found(*status, code))
    }

    pub fn code(&self) -> &str {
        match self {
            Self::Api { code, .. } => code,
            Self::NoAnswer { .. } => "",
        }
    }
}

impl From<CallError> for ProviderError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Api {
                what,
                status,
                code,
                message,
            } => errors::provider_error(&what, status, &code, &message),
            CallError::NoAnswer { what, detail } => {
                ProviderError::Transient(format!("Azure {what} got no answer: {detail}"))
            }
        }
    }
}

/// An answer: status, the headers a caller follows, the body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    async_operation: Option<String>,
    location: Option<String>,
    retry_after: Option<Duration>,
    body: Value,
}

/// A client of one subscription's resources.
#[derive(Debug, Clone)]
pub struct Arm {
    http: reqwest::Client,
    /// The resource manager endpoint without a trailing slash (`https://management.azure.com`).
    endpoint: String,
    subscription: String,
    credential: Credential,
}

impl Arm {
    pub fn new(
        http: reqwest::Client,
        endpoint: &str,
        subscription: &str,
        credential: Credential,
    ) -> Self {
        Self {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            subscription: subscription.to_owned(),
            credential,
        }
    }

    /// `/subscriptions/{sub}/resourceGroups/{group}`, the prefix of a lease's resources.
    pub fn group_path(&self, group: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}",
            self.subscription
        )
    }

    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    /// `GET`; `None` when the resource does not exist.
    pub async fn get(&self, path: &str, api_version: &str) -> Result<Option<Value>, CallError> {
        match self
            .send(Method::GET, &self.url(path, api_version), None)
            .await
        {
            Ok(answer) => Ok(Some(answer.body)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT` (create or replace), followed to the end; the resource as it is then.
    pub async fn put(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        self.write(Method::PUT, path, api_version, body).await
    }

    /// `PATCH` (tags), followed to the end.
    pub async fn patch(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        self.write(Method::PATCH, path, api_version, body).await
    }

    /// `DELETE`, followed to the end; a resource that is already gone is fine. Whether there
    /// was one to delete (ARM answers 204 for none).
    pub async fn delete(&self, path: &str, api_version: &str) -> Result<bool, CallError> {
        let what = format!("DELETE {}", describe(path));
        let answer = match self
            .send(Method::DELETE, &self.url(path, api_version), None)
            .await
        {
            Ok(answer) => answer,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        if answer.status == StatusCode::ACCEPTED {
            self.follow(&what, &answer).await?;
        }
        Ok(answer.status != StatusCode::NO_CONTENT)
    }

    /// Every item of a listing, through `nextLink`.
    pub async fn list(
        &self,
        path: &str,
        api_version: &str,
        filter: Option<&str>,
    ) -> Result<Vec<Value>, CallError> {
        let mut url = self.url(path, api_version);
        if let Some(filter) = filter {
            url = format!("{url}&$filter={}", encode(filter));
        }
        let mut items = Vec::new();
        loop {
            let answer = self.send(Method::GET, &url, None).await?;
            if let Some(found) = answer.body["value"].as_array() {
                items.extend(found.iter().cloned());
            }
            match answer.body["nextLink"].as_str() {
                Some(next) if !next.is_empty() => next.clone_into(&mut url),
                _ => return Ok(items),
            }
        }
    }

    fn url(&self, path: &str, api_version: &str) -> String {
        format!("{}{path}?api-version={api_version}", self.endpoint)
    }

    async fn write(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, CallError> {
        let what = format!("{method} {}", describe(path));
        let url = self.url(path, api_version);
        let answer = self.send(method, &url, Some(body)).await?;
        let state = answer.body["properties"]["provisioningState"]
            .as_str()
            .unwrap_or("Succeeded");
        if answer.async_operation.is_none() && state == "Succeeded" {
            return Ok(answer.body);
        }
        self.follow(&what, &answer).await?;
        Ok(self.send(Method::GET, &url, None).await?.body)
    }

    /// Polls an operation until it ends: its `Azure-AsyncOperation` status (`InProgress`,
    /// `Succeeded`, `Failed`, `Canceled`), else its `Location` (202 until done).
    async fn follow(&self, what: &str, started: &Answer) -> Result<(), CallError> {
        let deadline = Instant::now() + OPERATION_LIMIT;
        let mut wait = started.retry_after.unwrap_or(Duration::from_secs(1));
        loop {
            if Instant::now() >= deadline {
                return Err(CallError::NoAnswer {
                    what: what.to_owned(),
                    detail: format!("the operation did not end within {OPERATION_LIMIT:?}"),
                });
            }
            tokio::time::sleep(wait.min(MAX_POLL)).await;
            if let Some(status_url) = &started.async_operation {
                let answer = self.send(Method::GET, status_url, None).await?;
                match answer.body["status"].as_str().unwrap_or("InProgress") {
                    "Succeeded" => return Ok(()),
                    "Failed" | "Canceled" => {
                        let error = &answer.body["error"];
                        return Err(CallError::Api {
                            what: what.to_owned(),
                            status: 0,
                            code: error["code"]
                                .as_str()
                                .unwrap_or("OperationFailed")
                                .to_owned(),
                            message: error["message"].as_str().unwrap_or_default().to_owned(),
                        });
                    }
                    _ => wait = answer.retry_after.unwrap_or(Duration::from_secs(2)),
                }
            } else if let Some(location) = &started.location {
                let answer = self.send(Method::GET, location, None).await?;
                if answer.status != StatusCode::ACCEPTED {
                    return Ok(());
                }
                wait = answer.retry_after.unwrap_or(Duration::from_secs(2));
            } else {
                return Ok(());
            }
        }
    }

    /// One request with the bearer token; throttling waited out and repeated.
    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CallError> {
        let what = format!("{method} {}", describe(url));
        let mut tries = 0;
        loop {
            tries += 1;
            let token = self
                .credential
                .arm_token()
                .await
                .map_err(|e| CallError::Api {
                    what: what.clone(),
                    status: 401,
                    code: "AuthenticationFailed".into(),
                    message: e.message(),
                })?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            let answer = request.send().await.map_err(|e| CallError::NoAnswer {
                what: what.clone(),
                detail: e.without_url().to_string(),
            })?;
            let header = |name: &str| {
                answer
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let retry_after = header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let status = answer.status();
            let async_operation = header("azure-asyncoperation");
            let location = header("location");
            let text = answer.text().await.map_err(|e| CallError::NoAnswer {
                what: what.clone(),
                detail: e.without_url().to_string(),
            })?;
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(Answer {
                    status,
                    async_operation,
                    location,
                    retry_after,
                    body,
                });
            }
            if status == StatusCode::TOO_MANY_REQUESTS && tries < TRIES {
                tokio::time::sleep(retry_after.unwrap_or(Duration::from_secs(2)).min(MAX_POLL))
                    .await;
                continue;
            }
            let error = &body["error"];
            let mut message = error["message"].as_str().unwrap_or_default().to_owned();
            if message.is_empty() {
                message = text.chars().take(500).collect();
            }
            return Err(CallError::Api {
                what,
                status: status.as_u16(),
                code: error["code"].as_str().unwrap_or_default().to_owned(),
                message,
            });
        }
    }
}

/// A path or URL as errors name it: the resource's type and name, without the subscription
/// and the query (`virtualMachines/crabbox-blue-lobster-c80c2195`).
fn describe(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(2).collect();
    match parts.as_slice() {
        [name, kind] => format!("{kind}/{name}"),
        [name] => (*name).to_owned(),
        _ => path.to_owned(),
    }
}

/// Percent-encodes a query value (an `OData` `$filter`).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_resource_not_the_subscription() {
        assert_eq!(
            describe(
                "https://management.azure.com/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm1?api-version=1"
            ),
            "virtualMachines/vm1"
        );
        assert_eq!(
            encode("location eq 'eastus'"),
            "location%20eq%20%27eastus%27"
        );
    }
}
