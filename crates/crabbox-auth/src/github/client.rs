//! The few GitHub endpoints login and revalidation need, against configurable base URLs so tests
//! can point them at a fake server.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::GithubConfig;
use crate::secret::Secret;

/// How long to wait before the one retry of a rate-limited or failed GitHub call.
pub const RETRY_DELAY: Duration = Duration::from_millis(200);
/// The OAuth scopes login asks for.
pub const OAUTH_SCOPES: &str = "read:user user:email read:org";
const USER_AGENT: &str = "crabbox-coordinator";
const API_VERSION: &str = "2022-11-28";

/// A failed GitHub call, classified by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubError {
    /// 429, 5xx or a network failure: try again later.
    #[error("{0}")]
    Transient(String),
    /// The credential itself is bad (401, SSO enforcement, revoked or expired token): the user
    /// must log in again.
    #[error("{0}")]
    Credential(String),
    /// GitHub answered and the answer is "no" (not a member, wrong account, ...).
    #[error("{0}")]
    Denied(String),
    /// GitHub answered something this client does not understand, or OAuth refused the code.
    #[error("{0}")]
    Protocol(String),
}

impl GithubError {
    /// The same kind of error with a message that says what was being checked.
    #[must_use]
    pub fn with_message(self, message: impl Into<String>) -> Self {
        let message = message.into();
        match self {
            Self::Transient(_) => Self::Transient(message),
            Self::Credential(_) => Self::Credential(message),
            Self::Denied(_) => Self::Denied(message),
            Self::Protocol(_) => Self::Protocol(message),
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Credential(m) | Self::Denied(m) | Self::Protocol(m) => m,
        }
    }
}

/// `GET /user`, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubUser {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
}

/// One entry of `GET /user/emails`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct GithubEmail {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub verified: bool,
}

/// `GET /user/memberships/orgs/{org}`, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgMembership {
    pub state: String,
    pub org_login: String,
}

/// One entry of `GET /user/teams`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubTeam {
    pub slug: String,
    pub org_login: String,
}

/// A GitHub REST and OAuth client.
#[derive(Debug, Clone)]
pub struct GithubClient {
    http: reqwest::Client,
    api: String,
    web: String,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    retry_delay: Duration,
}

impl GithubClient {
    pub fn new(config: &GithubConfig) -> Self {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds with static settings");
        Self {
            http,
            api: config.api_url.as_str().trim_end_matches('/').to_owned(),
            web: config.web_url.as_str().trim_end_matches('/').to_owned(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            retry_delay: RETRY_DELAY,
        }
    }

    /// The browser URL that starts an OAuth authorization.
    pub fn authorize_url(&self, state: &str, redirect_uri: &str) -> String {
        let mut url = url::Url::parse(&format!("{}/login/oauth/authorize", self.web))
            .expect("the web base URL was validated");
        url.query_pairs_mut()
            .append_pair("client_id", self.client_id.as_deref().unwrap_or(""))
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", OAUTH_SCOPES)
            .append_pair("state", state);
        url.into()
    }

    /// `GET /user`.
    pub async fn user(&self, token: &Secret) -> Result<GithubUser, GithubError> {
        let value: Value = self.get_json(token, "/user").await?;
        let id = value
            .get("id")
            .and_then(Value::as_u64)
            .filter(|id| *id > 0 && *id < (1 << 53))
            .ok_or_else(|| {
                GithubError::Denied(
                    "GitHub account did not provide a stable numeric identity.".into(),
                )
            })?;
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Ok(GithubUser {
            id,
            login: text("login").unwrap_or_else(|| "unknown".into()),
            name: text("name"),
        })
    }

    /// `GET /user/emails`.
    pub async fn emails(&self, token: &Secret) -> Result<Vec<GithubEmail>, GithubError> {
        self.get_json(token, "/user/emails").await
    }

    /// `GET /user/memberships/orgs/{org}`.
    pub async fn org_membership(
        &self,
        token: &Secret,
        org: &str,
    ) -> Result<OrgMembership, GithubError> {
        let path = format!("/user/memberships/orgs/{}", path_segment(org));
        let value: Value = self.get_json(token, &path).await?;
        let state = value.get("state").and_then(Value::as_str).unwrap_or("");
        let org_login = value
            .pointer("/organization/login")
            .and_then(Value::as_str)
            .unwrap_or("");
        Ok(OrgMembership {
            state: state.to_owned(),
            org_login: org_login.to_owned(),
        })
    }

    /// `GET /user/teams?per_page=100&page={page}` (pages start at 1).
    pub async fn teams(&self, token: &Secret, page: u32) -> Result<Vec<GithubTeam>, GithubError> {
        let path = format!("/user/teams?per_page=100&page={page}");
        let value: Vec<Value> = self.get_json(token, &path).await?;
        Ok(value
            .iter()
            .map(|team| GithubTeam {
                slug: team
                    .get("slug")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                org_login: team
                    .pointer("/organization/login")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            })
            .collect())
    }

    /// `POST /login/oauth/access_token`: trades a one-time code for an access token. Not
    /// retried, because a code may already be spent when GitHub fails.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<Secret, GithubError> {
        let secret = self.client_secret.as_ref().map_or("", |s| s.expose());
        let form = [
            ("client_id", self.client_id.as_deref().unwrap_or("")),
            ("client_secret", secret),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(format!("{}/login/oauth/access_token", self.web))
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| network_error("github token exchange", &e))?;
        let status = response.status();
        let data: Value = response.json().await.unwrap_or(Value::Null);
        let error = data.get("error").and_then(Value::as_str).unwrap_or("");
        if !status.is_success() {
            let message = if error.is_empty() {
                format!("github token exchange failed: {}", status.as_u16())
            } else {
                format!("github token exchange failed: {error}")
            };
            return Err(if is_transient_status(status) {
                GithubError::Transient(message)
            } else {
                GithubError::Protocol(message)
            });
        }
        match data.get("access_token").and_then(Value::as_str) {
            Some(token) if !token.is_empty() => Ok(Secret::new(token)),
            _ if !error.is_empty() => Err(GithubError::Protocol(format!(
                "github token exchange failed: {error}"
            ))),
            _ => Err(GithubError::Protocol(
                "github token exchange failed: missing access token".into(),
            )),
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        token: &Secret,
        path: &str,
    ) -> Result<T, GithubError> {
        match self.get_once(token, path).await {
            Err(e) if e.is_transient() => {
                tokio::time::sleep(self.retry_delay).await;
                self.get_once(token, path).await
            }
            other => other,
        }
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        token: &Secret,
        path: &str,
    ) -> Result<T, GithubError> {
        let what = path.split('?').next().unwrap_or(path);
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            )
            .header("x-github-api-version", API_VERSION)
            .send()
            .await
            .map_err(|e| network_error(what, &e))?;
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            return Err(classify(status, &headers, &body, what));
        }
        response.json::<T>().await.map_err(|_| {
            GithubError::Protocol(format!("GitHub returned an unexpected body for {what}"))
        })
    }
}

fn network_error(what: &str, error: &reqwest::Error) -> GithubError {
    let kind = if error.is_timeout() {
        "timed out"
    } else {
        "could not be reached"
    };
    GithubError::Transient(format!("GitHub {kind} ({what})"))
}

fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Sorts a failed response into transient, bad-credential and plain denial.
fn classify(status: StatusCode, headers: &HeaderMap, body: &Value, what: &str) -> GithubError {
    let message = format!("GitHub returned {} for {what}", status.as_u16());
    if is_transient_status(status) {
        return GithubError::Transient(message);
    }
    if status == StatusCode::UNAUTHORIZED {
        return GithubError::Credential(message);
    }
    if status != StatusCode::FORBIDDEN {
        return GithubError::Denied(message);
    }
    let sso = headers
        .get("x-github-sso")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if sso == "required" || sso.starts_with("required;") {
        return GithubError::Credential(message);
    }
    let detail = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    if requires_reauthentication(&detail("message"), &detail("documentation_url")) {
        GithubError::Credential(message)
    } else {
        GithubError::Denied(message)
    }
}

/// Whether a 403 body says the credential (not the user) is the problem.
fn requires_reauthentication(message: &str, documentation_url: &str) -> bool {
    if message == "bad credentials"
        || message.contains("resource protected by organization saml enforcement")
        || message.contains("oauth app access restrictions")
    {
        return true;
    }
    let words: Vec<&str> = message
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let credential_word = |w: &str| matches!(w, "token" | "credential" | "credentials");
    let state_word = |w: &str| matches!(w, "expired" | "revoked" | "invalid");
    let linking = |w: &str| matches!(w, "has" | "have" | "is" | "are");
    for (i, w) in words.iter().enumerate() {
        if credential_word(w) {
            let next = words.get(i + 1).copied().unwrap_or("");
            let after = words.get(i + 2).copied().unwrap_or("");
            if state_word(next) || (linking(next) && state_word(after)) {
                return true;
            }
        }
        if state_word(w) && words.get(i + 1).is_some_and(|n| credential_word(n)) {
            return true;
        }
    }
    documentation_url.starts_with("https://docs.github.com/")
        && (documentation_url.contains("/token-expiration-and-revocation")
            || documentation_url.contains("#saml-sso-authentication"))
}

/// Percent-encodes one URL path segment.
fn path_segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn classifies_failures() {
        let none = HeaderMap::new();
        let c = |status: u16, body: Value| {
            classify(StatusCode::from_u16(status).unwrap(), &none, &body, "/user")
        };
        assert!(c(429, Value::Null).is_transient());
        assert!(c(502, Value::Null).is_transient());
        assert!(matches!(c(401, Value::Null), GithubError::Credential(_)));
        assert!(matches!(c(404, Value::Null), GithubError::Denied(_)));
        assert!(matches!(
            c(403, json!({"message": "Must have admin rights"})),
            GithubError::Denied(_)
        ));
        assert!(matches!(
            c(403, json!({"message": "Bad credentials"})),
            GithubError::Credential(_)
        ));
        assert!(matches!(
            c(403, json!({"message": "This token has expired."})),
            GithubError::Credential(_)
        ));
        assert!(matches!(
            c(
                403,
                json!({"message": "x", "documentation_url": "https://docs.github.com/en/authentication/token-expiration-and-revocation"})
            ),
            GithubError::Credential(_)
        ));
        let mut sso = HeaderMap::new();
        sso.insert(
            "x-github-sso",
            "required; url=https://github.com/orgs/x/sso"
                .parse()
                .unwrap(),
        );
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &sso, &Value::Null, "/user"),
            GithubError::Credential(_)
        ));
    }

    #[test]
    fn authorize_url_carries_the_scopes() {
        let config = crate::AuthConfig::from_env([
            ("CRABBOX_GITHUB_CLIENT_ID", "Iv1.abc"),
            ("CRABBOX_GITHUB_URL", "http://127.0.0.1:9/"),
        ])
        .unwrap();
        let client = GithubClient::new(&config.github);
        assert_eq!(
            client.authorize_url("state_1", "https://c.example.com/v1/auth/github/callback"),
            "http://127.0.0.1:9/login/oauth/authorize?client_id=Iv1.abc&redirect_uri=https%3A%2F%2Fc.example.com%2Fv1%2Fauth%2Fgithub%2Fcallback&scope=read%3Auser+user%3Aemail+read%3Aorg&state=state_1"
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }
}
