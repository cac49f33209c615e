//! Typed HTTP client for the Crabbox coordinator's `/v1` API. Errors keep the coordinator's
//! stable error body so callers can map codes (`cost_limit_exceeded`, `not_found`, …) to exit
//! codes and hints without parsing messages. The bearer token is never logged or formatted.
//! Credentials can be looked up per request through [`Credentials`] (a token command, the
//! caller's e-mail); the caller implements that, so this crate never spawns processes.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crabbox_api::coord::{
    ApiError, CostLimits, HeartbeatRequest, Lease, LeaseRequest, ReleaseRequest, Run,
    RunCreateRequest, RunEvent, RunEventRequest, RunFinishRequest, UsageSummary, Whoami,
};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator answered with an error status and body.
    #[error("coordinator refused the request ({status}): {body}")]
    Api { status: u16, body: ApiError },
    /// No answer: connection refused, timeout, TLS failure. `connect` says that no
    /// connection was made at all (so the request never reached the coordinator).
    #[error("could not reach the coordinator at {url}: {message}")]
    Transport {
        url: String,
        message: String,
        connect: bool,
    },
    /// An answer that is not the expected JSON.
    #[error("unexpected answer from the coordinator: {0}")]
    Decode(String),
    /// The credentials for the request could not be had (a token command failed); nothing
    /// was sent.
    #[error("could not get the coordinator credentials: {0}")]
    Credentials(String),
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { body, .. } => Some(&body.error),
            _ => None,
        }
    }

    /// Whether the request failed before any connection was made (refused, no route, DNS):
    /// the coordinator never saw it.
    pub fn never_connected(&self) -> bool {
        matches!(self, Self::Transport { connect: true, .. })
    }

    /// Whether repeating the same idempotent request may succeed.
    pub fn is_uncertain(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status >= 500,
            Self::Decode(_) | Self::Credentials(_) => false,
        }
    }
}

/// What one request carries to say who sends it (spec coordinator §5.2).
#[derive(Clone, Default)]
pub struct AuthHeaders {
    /// `Authorization: Bearer …`.
    pub bearer: Option<String>,
    /// `X-Crabbox-Owner`: honoured by the coordinator for its admin token only.
    pub owner: Option<String>,
    /// `X-Crabbox-Org`: likewise.
    pub org: Option<String>,
}

impl std::fmt::Debug for AuthHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthHeaders")
            .field("bearer", &self.bearer.as_ref().map(|_| "[redacted]"))
            .field("owner", &self.owner)
            .field("org", &self.org)
            .finish()
    }
}

/// The future [`Credentials::headers`] returns.
pub type CredentialsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AuthHeaders, String>> + Send + 'a>>;

/// Supplies each request's [`AuthHeaders`]. The error is a message for the user that must not
/// contain the credential.
pub trait Credentials: Send + Sync + std::fmt::Debug {
    fn headers(&self) -> CredentialsFuture<'_>;
}

/// Headers fixed when the client is built.
#[derive(Debug)]
struct Fixed(AuthHeaders);

impl Credentials for Fixed {
    fn headers(&self) -> CredentialsFuture<'_> {
        let headers = self.0.clone();
        Box::pin(async move { Ok(headers) })
    }
}

/// A coordinator endpoint plus credentials.
#[derive(Clone)]
pub struct Client {
    base: String,
    /// `base` without userinfo, query or fragment: the only form that is ever shown.
    display: String,
    credentials: Arc<dyn Credentials>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.display)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct LeaseBody {
    lease: Lease,
}

#[derive(Debug, Deserialize)]
struct LeasesBody {
    leases: Vec<Lease>,
}

#[derive(Debug, Deserialize)]
struct RunBody {
    run: Run,
}

#[derive(Debug, Deserialize)]
struct RunsBody {
    runs: Vec<Run>,
}

#[derive(Debug, Deserialize)]
struct EventsBody {
    events: Vec<RunEvent>,
}

/// `GET /v1/usage` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Usage {
    pub usage: UsageSummary,
    pub limits: CostLimits,
}

impl Client {
    /// `base` like `https://crabbox.example.com` (a trailing `/` is fine).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.trim().trim_end_matches('/').to_owned();
        let display = crabbox_core::redact::url(&base);
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Transport {
                url: display,
                message: "the coordinator URL must start with http:// or https://".into(),
                connect: false,
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("crabbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Transport {
                url: display.clone(),
                message: describe(e),
                connect: false,
            })?;
        let fixed = AuthHeaders {
            bearer: token.filter(|t| !t.trim().is_empty()),
            ..AuthHeaders::default()
        };
        Ok(Self {
            base,
            display,
            credentials: Arc::new(Fixed(fixed)),
            http,
        })
    }

    /// The same endpoint with other credentials (replacing the token given to [`Client::new`]).
    #[must_use]
    pub fn with_credentials(mut self, credentials: Arc<dyn Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// The coordinator URL as it may be shown or recorded: without userinfo (a password in
    /// the URL becomes `<redacted>`), query or fragment.
    pub fn base_url(&self) -> &str {
        &self.display
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ClientError> {
        let shown = format!("{}{path}", self.display);
        let transport = |e: reqwest::Error| ClientError::Transport {
            url: shown.clone(),
            connect: e.is_connect(),
            message: describe(e),
        };
        let auth = self
            .credentials
            .headers()
            .await
            .map_err(ClientError::Credentials)?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(timeout);
        if let Some(body) = body {
            req = req.json(body);
        }
        let mut request = req.build().map_err(transport)?;
        let headers = request.headers_mut();
        if let Some(token) = &auth.bearer {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Credentials("the token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            // Insert, not append: the bearer token replaces the basic auth that a user:password
            // URL adds, as in the old tool.
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in [
            ("x-crabbox-owner", &auth.owner),
            ("x-crabbox-org", &auth.org),
        ] {
            let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = HeaderValue::from_str(value).map_err(|_| {
                ClientError::Credentials(format!("{name} {value:?} is not a valid header value"))
            })?;
            headers.insert(name, value);
        }
        let resp = self.http.execute(request).await.map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str::<ApiError>(&text).unwrap_or_else(|_| {
            ApiError::new(match status {
                StatusCode::UNAUTHORIZED => "unauthorized",
                StatusCode::NOT_FOUND => "not_found",
                _ => "http_error",
            })
            .message(text.chars().take(300).collect::<String>())
        });
        Err(ClientError::Api {
            status: status.as_u16(),
            body,
        })
    }

    async fn json<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, body, timeout).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(describe(e)))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    const SHORT: Duration = Duration::from_secs(20);
    /// Creates block while the coordinator provisions.
    const CREATE: Duration = Duration::from_mins(30);

    pub async fn health(&self) -> Result<Value, ClientError> {
        self.json(Method::GET, "/v1/health", None::<&()>, Self::SHORT)
            .await
    }

    pub async fn whoami(&self) -> Result<Whoami, ClientError> {
        self.json(Method::GET, "/v1/whoami", None::<&()>, Self::SHORT)
            .await
    }

    pub async fn create_lease(&self, req: &LeaseRequest) -> Result<Lease, ClientError> {
        let b: LeaseBody = self
            .json(Method::POST, "/v1/leases", Some(req), Self::CREATE)
            .await?;
        Ok(b.lease)
    }

    pub async fn cancel_create(&self, lease_id: &str, attempt: &str) -> Result<Value, ClientError> {
        let body = serde_json::json!({"createAttemptID": attempt});
        self.json(
            Method::POST,
            &format!("/v1/leases/{}/cancel-create", enc(lease_id)),
            Some(&body),
            Self::SHORT,
        )
        .await
    }

    pub async fn get_lease(&self, id_or_slug: &str) -> Result<Lease, ClientError> {
        let b: LeaseBody = self
            .json(
                Method::GET,
                &format!("/v1/leases/{}", enc(id_or_slug)),
                None::<&()>,
                Self::SHORT,
            )
            .await?;
        Ok(b.lease)
    }

    /// `query` like `state=active&limit=50` (already encoded).
    pub async fn list_leases(&self, query: &str) -> Result<Vec<Lease>, ClientError> {
        let b: LeasesBody = self
            .json(
                Method::GET,
                &with_query("/v1/leases", query),
                None::<&()>,
                Self::SHORT,
            )
            .await?;
        Ok(b.leases)
    }

    pub async fn heartbeat(&self, id: &str, req: &HeartbeatRequest) -> Result<Lease, ClientError> {
        let b: LeaseBody = self
            .json(
                Method::POST,
                &format!("/v1/leases/{}/heartbeat", enc(id)),
                Some(req),
                Self::SHORT,
            )
            .await?;
        Ok(b.lease)
    }

    pub async fn release(&self, id: &str, req: &ReleaseRequest) -> Result<Lease, ClientError> {
        let b: LeaseBody = self
            .json(
                Method::POST,
                &format!("/v1/leases/{}/release", enc(id)),
                Some(req),
                Self::SHORT,
            )
            .await?;
        Ok(b.lease)
    }

    pub async fn create_run(&self, req: &RunCreateRequest) -> Result<Run, ClientError> {
        let b: RunBody = self
            .json(Method::POST, "/v1/runs", Some(req), Self::SHORT)
            .await?;
        Ok(b.run)
    }

    pub async fn run_event(&self, run: &str, req: &RunEventRequest) -> Result<(), ClientError> {
        self.send(
            Method::POST,
            &format!("/v1/runs/{}/events", enc(run)),
            Some(req),
            Duration::from_secs(10),
        )
        .await
        .map(drop)
    }

    pub async fn run_telemetry(&self, run: &str, telemetry: &Value) -> Result<(), ClientError> {
        let body = serde_json::json!({ "telemetry": telemetry });
        self.send(
            Method::POST,
            &format!("/v1/runs/{}/telemetry", enc(run)),
            Some(&body),
            Duration::from_secs(10),
        )
        .await
        .map(drop)
    }

    pub async fn finish_run(&self, run: &str, req: &RunFinishRequest) -> Result<Run, ClientError> {
        let b: RunBody = self
            .json(
                Method::POST,
                &format!("/v1/runs/{}/finish", enc(run)),
                Some(req),
                Duration::from_mins(1),
            )
            .await?;
        Ok(b.run)
    }

    pub async fn get_run(&self, run: &str) -> Result<Run, ClientError> {
        let b: RunBody = self
            .json(
                Method::GET,
                &format!("/v1/runs/{}", enc(run)),
                None::<&()>,
                Self::SHORT,
            )
            .await?;
        Ok(b.run)
    }

    pub async fn list_runs(&self, query: &str) -> Result<Vec<Run>, ClientError> {
        let b: RunsBody = self
            .json(
                Method::GET,
                &with_query("/v1/runs", query),
                None::<&()>,
                Self::SHORT,
            )
            .await?;
        Ok(b.runs)
    }

    pub async fn run_log(&self, run: &str) -> Result<String, ClientError> {
        let resp = self
            .send(
                Method::GET,
                &format!("/v1/runs/{}/logs", enc(run)),
                None::<&()>,
                Duration::from_mins(2),
            )
            .await?;
        resp.text()
            .await
            .map_err(|e| ClientError::Decode(describe(e)))
    }

    pub async fn run_events(
        &self,
        run: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, ClientError> {
        let b: EventsBody = self
            .json(
                Method::GET,
                &format!("/v1/runs/{}/events?after={after}&limit={limit}", enc(run)),
                None::<&()>,
                Self::SHORT,
            )
            .await?;
        Ok(b.events)
    }

    pub async fn usage(&self, query: &str) -> Result<Usage, ClientError> {
        self.json(
            Method::GET,
            &with_query("/v1/usage", query),
            None::<&()>,
            Self::SHORT,
        )
        .await
    }

    /// `GET /v1/pool` (admin): the runners behind live leases with their provider health, as
    /// the coordinator reports them (`{"machines": [...]}`).
    pub async fn pool(&self) -> Result<Vec<Value>, ClientError> {
        let b: Value = self
            .json(Method::GET, "/v1/pool", None::<&()>, Self::SHORT)
            .await?;
        Ok(b["machines"].as_array().cloned().unwrap_or_default())
    }

    pub async fn admin_leases(&self, query: &str) -> Result<Vec<Lease>, ClientError> {
        let b: LeasesBody = self
            .json(
                Method::GET,
                &with_query("/v1/admin/leases", query),
                None::<&()>,
                Self::SHORT,
            )
            .await?;
        Ok(b.leases)
    }

    pub async fn admin_release(
        &self,
        id: &str,
        req: &ReleaseRequest,
    ) -> Result<Lease, ClientError> {
        let b: LeaseBody = self
            .json(
                Method::POST,
                &format!("/v1/admin/leases/{}/release", enc(id)),
                Some(req),
                Self::SHORT,
            )
            .await?;
        Ok(b.lease)
    }

    pub async fn admin_delete(&self, id: &str) -> Result<Lease, ClientError> {
        let b: LeaseBody = self
            .json(
                Method::POST,
                &format!("/v1/admin/leases/{}/delete", enc(id)),
                Some(&serde_json::json!({})),
                Duration::from_mins(30),
            )
            .await?;
        Ok(b.lease)
    }

    /// `POST /v1/images` (admin): an image of a lease's runner; `{"image": …}`.
    pub async fn create_image(&self, body: &Value) -> Result<Value, ClientError> {
        self.json(
            Method::POST,
            "/v1/images",
            Some(body),
            Duration::from_mins(5),
        )
        .await
    }

    /// `GET /v1/images` (admin): the promoted image of each scope and Crabbox's images.
    pub async fn list_images(&self, query: &str) -> Result<Value, ClientError> {
        self.json(
            Method::GET,
            &with_query("/v1/images", query),
            None::<&()>,
            Duration::from_mins(2),
        )
        .await
    }

    /// `GET /v1/images/{id}` (admin).
    pub async fn get_image(&self, id: &str, query: &str) -> Result<Value, ClientError> {
        self.json(
            Method::GET,
            &with_query(&format!("/v1/images/{}", enc(id)), query),
            None::<&()>,
            Self::SHORT,
        )
        .await
    }

    /// `POST /v1/images/{id}/promote` (admin), the scope in the body.
    pub async fn promote_image(
        &self,
        id: &str,
        query: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.json(
            Method::POST,
            &with_query(&format!("/v1/images/{}/promote", enc(id)), query),
            Some(body),
            Duration::from_mins(5),
        )
        .await
    }

    /// `GET /v1/images/{id}/fast-snapshot-restore` (admin).
    pub async fn image_fsr(&self, id: &str, query: &str) -> Result<Value, ClientError> {
        self.json(
            Method::GET,
            &with_query(
                &format!("/v1/images/{}/fast-snapshot-restore", enc(id)),
                query,
            ),
            None::<&()>,
            Self::SHORT,
        )
        .await
    }

    /// `DELETE /v1/images/{id}` (admin).
    pub async fn delete_image(&self, id: &str, query: &str) -> Result<Value, ClientError> {
        self.json(
            Method::DELETE,
            &with_query(&format!("/v1/images/{}", enc(id)), query),
            None::<&()>,
            Duration::from_mins(10),
        )
        .await
    }

    /// `POST /v1/auth/github/start`.
    pub async fn github_start(&self, body: &Value) -> Result<Value, ClientError> {
        self.json(
            Method::POST,
            "/v1/auth/github/start",
            Some(body),
            Self::SHORT,
        )
        .await
    }

    /// `POST /v1/auth/github/poll`: returns the status code too (410 = expired).
    pub async fn github_poll(&self, body: &Value) -> Result<Value, ClientError> {
        match self
            .json(
                Method::POST,
                "/v1/auth/github/poll",
                Some(body),
                Self::SHORT,
            )
            .await
        {
            Err(ClientError::Api { status: 410, .. }) => {
                Ok(serde_json::json!({"status": "expired"}))
            }
            other => other,
        }
    }
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Percent-encodes one path segment.
pub fn enc(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Encodes `key=value` pairs for a query string, skipping empty values.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{k}={}", enc(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The error without the request URL, which reqwest would print with any password in it.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return "timed out".into();
    }
    if e.is_connect() {
        return "connection refused or unreachable".into();
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_encoded() {
        assert_eq!(enc("blue lobster/x"), "blue%20lobster%2Fx");
        assert_eq!(
            query(&[
                ("state", Some("active".into())),
                ("owner", None),
                ("org", Some(String::new()))
            ]),
            "state=active"
        );
        assert_eq!(query(&[("owner", Some("a@b.c".into()))]), "owner=a%40b.c");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = Client::new("http://127.0.0.1:1/", Some("cbxu_secret".into())).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("cbxu_secret") && dbg.contains("[redacted]"),
            "{dbg}"
        );
        assert_eq!(c.base_url(), "http://127.0.0.1:1");
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let c = Client::new("http://u:SECRETPW@127.0.0.1:1/", None).unwrap();
        assert_eq!(c.base_url(), "http://<redacted>@127.0.0.1:1");
        assert!(!format!("{c:?}").contains("SECRETPW"));
        let err = Client::new("ftp://u:SECRETPW@host", None)
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("SECRETPW") && err.contains("<redacted>@host"),
            "{err}"
        );
    }
}
