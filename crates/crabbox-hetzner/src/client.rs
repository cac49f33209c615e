//! The Hetzner Cloud API over HTTPS: a bearer token, JSON in and out, the API's error body
//! (`{"error": {"code", "message"}}`) kept whole, pagination followed to the last page, and
//! pacing by the `RateLimit-Limit` / `RateLimit-Remaining` headers: when the budget is spent
//! the next request waits for one refill instead of drawing a 429. A 429 that comes anyway is
//! waited out and retried, as are API failures of reads; a lost answer to a write is returned
//! as such (the caller knows whether the write may be repeated).

use std::time::Duration;

use crabbox_core::config::Secret;
use crabbox_providers::ProviderError;
use crabbox_providers::cloud::hetzner::errors;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_mins(1);
/// Tries of one request that was throttled, or of a read that failed transiently.
const TRIES: u32 = 4;
/// Items per page (the API's maximum).
const PER_PAGE: &str = "50";
/// The longest a request waits for the rate-limit budget.
const MAX_PACE: Duration = Duration::from_secs(30);

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The API answered with an error.
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
    },
    /// No answer came (connection refused, reset, timed out): a write may or may not have
    /// happened.
    NoAnswer { what: String, detail: String },
}

impl CallError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }

    /// The API's error code (empty without an answer).
    pub fn code(&self) -> &str {
        match self {
            Self::Api { code, .. } => code,
            Self::NoAnswer { .. } => "",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::Api { status, .. } => *status,
            Self::NoAnswer { .. } => 0,
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
                ProviderError::Transient(format!("Hetzner {what} got no answer: {detail}"))
            }
        }
    }
}

/// What the last answer said about the rate-limit budget.
#[derive(Debug, Default, Clone, Copy)]
struct Budget {
    limit: Option<u32>,
    remaining: Option<u32>,
}

impl Budget {
    /// How long one request's worth of budget takes to come back: the limit is per hour.
    fn refill(self) -> Duration {
        let limit = self.limit.unwrap_or(3600).max(1);
        Duration::from_millis(3_600_000 / u64::from(limit)).min(MAX_PACE)
    }
}

/// A Hetzner Cloud API client.
#[derive(Debug)]
pub struct Hcloud {
    http: reqwest::Client,
    /// The API base URL without a trailing slash (`https://api.hetzner.cloud/v1`).
    base: String,
    token: Secret,
    budget: Mutex<Budget>,
}

impl Hcloud {
    pub fn new(base: &str, token: Secret) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("crabbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::InvalidSpec(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
            budget: Mutex::new(Budget::default()),
        })
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, CallError> {
        self.send(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, CallError> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CallError> {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Every item under `key` of a listing, page after page.
    pub async fn list(
        &self,
        path: &str,
        query: &[(&str, &str)],
        key: &str,
    ) -> Result<Vec<Value>, CallError> {
        let mut items = Vec::new();
        let mut page = 1u64;
        loop {
            let number = page.to_string();
            let mut paged: Vec<(&str, &str)> = query.to_vec();
            paged.extend([("page", number.as_str()), ("per_page", PER_PAGE)]);
            let answer = self.get(path, &paged).await?;
            if let Some(found) = answer[key].as_array() {
                items.extend(found.iter().cloned());
            }
            match answer["meta"]["pagination"]["next_page"].as_u64() {
                Some(next) if next > page => page = next,
                _ => return Ok(items),
            }
        }
    }

    /// One request, paced and retried: throttling always, transient failures of reads.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let what = format!("{method} {path}");
        let mut tries = 0;
        loop {
            tries += 1;
            self.pace().await;
            let result = self.send_once(&method, &what, path, query, body).await;
            let retry = match &result {
                Err(CallError::Api { status: 429, .. }) => true,
                Err(CallError::Api { status, .. }) if *status >= 500 => method == Method::GET,
                Err(CallError::NoAnswer { .. }) => method == Method::GET,
                _ => false,
            };
            if !retry || tries >= TRIES {
                return result;
            }
            let wait = self.budget.lock().await.refill() * tries;
            tracing::debug!(%what, ?wait, "hetzner call retried");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        tracing::debug!(%what, "hetzner call");
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(self.token.expose())
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let no_answer = |e: reqwest::Error| CallError::NoAnswer {
            what: what.to_owned(),
            detail: e.without_url().to_string(),
        };
        let answer = request.send().await.map_err(no_answer)?;
        self.note_budget(answer.headers()).await;
        let status = answer.status();
        let text = answer.text().await.map_err(no_answer)?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| CallError::Api {
                what: what.to_owned(),
                status: status.as_u16(),
                code: "invalid_answer".into(),
                message: format!("the answer is not JSON: {e}"),
            });
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = &body["error"];
        let mut message = error["message"].as_str().unwrap_or_default().to_owned();
        if message.is_empty() {
            message = text.chars().take(500).collect();
        }
        Err(CallError::Api {
            what: what.to_owned(),
            status: status.as_u16(),
            code: error["code"].as_str().unwrap_or_default().to_owned(),
            message,
        })
    }

    /// Waits for one refill when the last answer said the budget is spent.
    async fn pace(&self) {
        let budget = *self.budget.lock().await;
        if budget.remaining == Some(0) {
            let wait = budget.refill();
            tracing::debug!(
                ?wait,
                "hetzner rate limit budget spent; waiting for a refill"
            );
            tokio::time::sleep(wait).await;
            self.budget.lock().await.remaining = None;
        }
    }

    async fn note_budget(&self, headers: &reqwest::header::HeaderMap) {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let mut budget = self.budget.lock().await;
        if let Some(limit) = number("ratelimit-limit") {
            budget.limit = Some(limit);
        }
        budget.remaining = number("ratelimit-remaining");
    }
}
