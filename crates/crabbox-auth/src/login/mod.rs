//! GitHub login (spec coordinator §2.7, §5.4).
//!
//! CLI mode: the CLI picks a poll secret and a loopback listener, calls `start` with the
//! secret's hash, opens the returned GitHub URL, and polls. GitHub sends the browser to
//! `callback`, which exchanges the code, checks identity and org membership, mints a `cbxu_`
//! token and redirects the browser to the CLI's loopback listener with a one-time confirmation.
//! `poll` hands the token over only to a caller holding both the poll secret (never stored,
//! only its hash) and that confirmation, so a login link opened by someone else cannot deliver
//! the token to an attacker. Portal mode is the same dance ending in a session cookie.

mod callback;
mod page;
mod record;
mod store;

use std::fmt;
use std::sync::Arc;

use crabbox_api::coord::Timestamp;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use callback::CallbackQuery;
pub use page::CallbackOutcome;
pub use store::{LoginStore, LoginStoreError, MemoryLoginStore, StoreLoginStore};

use crate::authenticator::Authenticator;
use crate::config::AuthConfig;
use crate::github::MembershipVerifier;
use crate::secret::{Secret, constant_time_eq};
use crate::token::TokenSigner;
use record::{Mode, PendingLogin};

/// At most this many logins may be pending at once.
pub const MAX_PENDING_LOGINS: usize = 100;
/// At most this many from one source address.
pub const MAX_PENDING_LOGINS_PER_SOURCE: usize = 10;

/// `POST /v1/auth/github/start` body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    /// SHA-256 hex of the CLI's poll secret.
    #[serde(default)]
    pub poll_secret_hash: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(rename = "loopbackRedirectURI", default)]
    pub loopback_redirect_uri: Option<String>,
}

/// `POST /v1/auth/github/start` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartResponse {
    #[serde(rename = "loginID")]
    pub login_id: String,
    pub url: String,
    #[serde(rename = "expiresAt")]
    pub expires_at: Timestamp,
}

/// `POST /v1/auth/github/poll` body.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollRequest {
    #[serde(rename = "loginID", default)]
    pub login_id: Option<String>,
    #[serde(default)]
    pub poll_secret: Option<String>,
    #[serde(default)]
    pub browser_confirmation: Option<String>,
}

impl fmt::Debug for PollRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PollRequest")
            .field("login_id", &self.login_id)
            .field(
                "poll_secret",
                &self.poll_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "browser_confirmation",
                &self.browser_confirmation.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The answers of `poll`.
#[derive(Debug, Clone)]
pub enum PollResponse {
    /// The browser has not come back yet.
    Pending { expires_at: Timestamp },
    /// The token is ready; ask again with the browser confirmation.
    ConfirmationRequired { expires_at: Timestamp },
    Complete {
        token: Secret,
        owner: String,
        org: String,
        login: String,
        provider: Option<String>,
        token_expires_at: Option<Timestamp>,
    },
    /// `410`: no such login, or it timed out.
    Expired,
    /// `400`: the login ended in an error.
    Failed { error: String },
    /// `403`: wrong poll secret or confirmation, or a portal login.
    Forbidden,
    /// `400`: the body lacks `loginID` or `pollSecret`.
    Invalid,
}

impl PollResponse {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Pending { .. } | Self::ConfirmationRequired { .. } | Self::Complete { .. } => {
                StatusCode::OK
            }
            Self::Expired => StatusCode::GONE,
            Self::Failed { .. } | Self::Invalid => StatusCode::BAD_REQUEST,
            Self::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        match self {
            Self::Pending { expires_at } => json!({"status": "pending", "expiresAt": expires_at}),
            Self::ConfirmationRequired { expires_at } => {
                json!({"status": "confirmation_required", "expiresAt": expires_at})
            }
            Self::Complete {
                token,
                owner,
                org,
                login,
                provider,
                token_expires_at,
            } => {
                let mut body = json!({
                    "status": "complete", "token": token.expose(), "owner": owner, "org": org,
                    "login": login,
                });
                if let Some(provider) = provider {
                    body["provider"] = provider.as_str().into();
                }
                if let Some(at) = token_expires_at {
                    body["tokenExpiresAt"] = at.to_string().into();
                }
                body
            }
            Self::Expired => json!({"status": "expired"}),
            Self::Failed { error } => json!({"status": "failed", "error": error}),
            Self::Forbidden => json!({"error": "forbidden"}),
            Self::Invalid => json!({"error": "invalid_poll"}),
        }
    }
}

/// A refused `start` (or a storage failure): status plus `{"error", "message"?}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}")]
pub struct LoginError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: Option<String>,
}

impl LoginError {
    fn new(status: StatusCode, code: &'static str, message: Option<&str>) -> Self {
        Self {
            status,
            code,
            message: message.map(str::to_owned),
        }
    }

    fn storage(error: &LoginStoreError) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error",
            message: Some(error.to_string()),
        }
    }

    pub fn body(&self) -> Value {
        let mut body = json!({ "error": self.code });
        if let Some(message) = &self.message {
            body["message"] = message.as_str().into();
        }
        body
    }
}

/// The GitHub login service.
#[derive(Debug, Clone)]
pub struct GithubLogin {
    config: Arc<AuthConfig>,
    signer: Option<TokenSigner>,
    membership: MembershipVerifier,
    store: Arc<dyn LoginStore>,
    /// Serializes admission so the pending-login caps hold within one process.
    admission: Arc<tokio::sync::Mutex<()>>,
}

impl GithubLogin {
    /// A login service sharing `auth`'s settings, signer and GitHub client.
    pub fn new(auth: &Authenticator, store: Arc<dyn LoginStore>) -> Self {
        Self {
            config: auth.shared_config(),
            signer: auth.signer().cloned(),
            membership: auth.membership().clone(),
            store,
            admission: Arc::default(),
        }
    }

    /// The checks shared by CLI and portal starts, in the original order.
    fn start_preconditions(&self) -> Result<(String, &TokenSigner), LoginError> {
        if !self.config.github_oauth_configured() {
            return Err(LoginError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "github_oauth_not_configured",
                Some("GitHub OAuth is not configured"),
            ));
        }
        let redirect_uri = self.config.github_redirect_uri().map_err(|e| {
            LoginError::new(StatusCode::SERVICE_UNAVAILABLE, e.code, Some(e.message))
        })?;
        let signer = self.signer.as_ref().ok_or_else(|| {
            LoginError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "github_session_secret_invalid",
                Some("CRABBOX_SESSION_SECRET is required for signed user tokens"),
            )
        })?;
        Ok((redirect_uri, signer))
    }

    /// `POST /v1/auth/github/start`. `source` is the caller's address (see
    /// [`Authenticator::source_ip`]); it only feeds the per-source admission cap.
    pub async fn start(
        &self,
        body: &StartRequest,
        source: &str,
        now: Timestamp,
    ) -> Result<StartResponse, LoginError> {
        let (redirect_uri, _) = self.start_preconditions()?;
        let hash = body.poll_secret_hash.as_deref().unwrap_or("");
        if hash.len() != 64
            || !hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(LoginError::new(
                StatusCode::BAD_REQUEST,
                "invalid_poll_secret_hash",
                None,
            ));
        }
        let Some(loopback) = body
            .loopback_redirect_uri
            .as_deref()
            .and_then(valid_loopback_redirect_uri)
        else {
            return Err(LoginError::new(
                StatusCode::BAD_REQUEST,
                "loopback_redirect_required",
                Some("Upgrade the Crabbox CLI to complete GitHub login on this device."),
            ));
        };
        let mut pending = self.new_pending(Mode::Cli, redirect_uri, source, now);
        pending.poll_secret_hash = Some(hash.to_owned());
        pending.loopback_redirect_uri = Some(loopback);
        pending.provider = body
            .provider
            .as_deref()
            .filter(|p| matches!(*p, "aws" | "hetzner" | "gcp"))
            .map(str::to_owned);
        if !self.admit(&pending, now).await? {
            return Err(LoginError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "login_rate_limited",
                Some("Too many pending GitHub logins. Try again shortly."),
            ));
        }
        Ok(StartResponse {
            url: self
                .membership
                .client()
                .authorize_url(&pending.state, &pending.redirect_uri),
            login_id: pending.id,
            expires_at: pending.expires_at,
        })
    }

    fn new_pending(
        &self,
        mode: Mode,
        redirect_uri: String,
        source: &str,
        now: Timestamp,
    ) -> PendingLogin {
        let secret = self
            .config
            .session_secret
            .as_ref()
            .map_or("", |s| s.expose());
        let source = source.trim();
        let source = if source.is_empty() { "unknown" } else { source };
        PendingLogin {
            id: record::random_id("login"),
            state: record::random_id("state"),
            poll_secret_hash: None,
            browser_confirmation_hash: None,
            portal_binding_hash: None,
            mode,
            provider: None,
            return_to: None,
            loopback_redirect_uri: None,
            redirect_uri,
            created_at: now,
            expires_at: now.plus_secs(record::PENDING_TTL_SECONDS),
            token: None,
            token_expires_at: None,
            owner: None,
            org: None,
            login: None,
            error: None,
            callback_claim: None,
            github_credential: None,
            source_hash: Some(record::sha256_hex(&format!(
                "crabbox-oauth-source-v1\0{secret}\0{source}"
            ))),
        }
    }

    /// Stores `pending` unless the global or per-source cap is reached (expired logins are
    /// purged first).
    async fn admit(&self, pending: &PendingLogin, now: Timestamp) -> Result<bool, LoginError> {
        let _guard = self.admission.lock().await;
        let store = self.store.as_ref();
        let source = pending.source_hash.as_deref().unwrap_or("");
        let (total, for_source) = record::purge_and_count(store, source, now)
            .await
            .map_err(|e| LoginError::storage(&e))?;
        if total >= MAX_PENDING_LOGINS || for_source >= MAX_PENDING_LOGINS_PER_SOURCE {
            return Ok(false);
        }
        record::insert(store, pending)
            .await
            .map_err(|e| LoginError::storage(&e))?;
        Ok(true)
    }

    /// `POST /v1/auth/github/poll`.
    pub async fn poll(
        &self,
        body: &PollRequest,
        now: Timestamp,
    ) -> Result<PollResponse, LoginError> {
        let store = self.store.as_ref();
        let storage = |e: LoginStoreError| LoginError::storage(&e);
        let (Some(login_id), Some(poll_secret)) = (
            body.login_id.as_deref().filter(|s| !s.is_empty()),
            body.poll_secret.as_deref().filter(|s| !s.is_empty()),
        ) else {
            return Ok(PollResponse::Invalid);
        };
        if !record::is_random_id(login_id, "login") {
            return Ok(PollResponse::Expired);
        }
        let Some((pending, _)) = record::load(store, login_id).await.map_err(storage)? else {
            return Ok(PollResponse::Expired);
        };
        if pending.is_expired(now) {
            return Ok(PollResponse::Expired);
        }
        if pending.mode == Mode::Portal {
            return Ok(PollResponse::Forbidden);
        }
        let Some(expected) = pending.poll_secret_hash.as_deref() else {
            return Ok(PollResponse::Invalid);
        };
        let presented = record::sha256_hex(poll_secret);
        if !constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
            return Ok(PollResponse::Forbidden);
        }
        if let Some(error) = &pending.error {
            record::remove(store, &pending).await.map_err(storage)?;
            return Ok(PollResponse::Failed {
                error: error.clone(),
            });
        }
        if pending.token.is_none() {
            return Ok(PollResponse::Pending {
                expires_at: pending.expires_at,
            });
        }
        let Some(confirmation_hash) = pending
            .browser_confirmation_hash
            .as_deref()
            .filter(|_| pending.loopback_redirect_uri.is_some())
        else {
            record::remove(store, &pending).await.map_err(storage)?;
            return Ok(PollResponse::Failed {
                error: "This login was started by an outdated client.".into(),
            });
        };
        let Some(confirmation) = body
            .browser_confirmation
            .as_deref()
            .filter(|c| !c.is_empty())
        else {
            return Ok(PollResponse::ConfirmationRequired {
                expires_at: pending.expires_at,
            });
        };
        let presented = record::sha256_hex(confirmation);
        if !record::is_random_id(confirmation, "confirm")
            || !constant_time_eq(presented.as_bytes(), confirmation_hash.as_bytes())
        {
            return Ok(PollResponse::Forbidden);
        }
        // Take the record atomically so two pollers can never both receive the token.
        let taken = store
            .take(&record::login_key(&pending.id))
            .await
            .map_err(storage)?;
        store
            .delete(&record::state_key(&pending.state))
            .await
            .map_err(storage)?;
        let Some(taken) = taken.and_then(|v| serde_json::from_value::<PendingLogin>(v).ok()) else {
            return Ok(PollResponse::Expired);
        };
        let Some(minted) = taken.token else {
            return Ok(PollResponse::Expired);
        };
        Ok(PollResponse::Complete {
            token: Secret::new(minted),
            owner: taken.owner.unwrap_or_default(),
            org: taken.org.unwrap_or_default(),
            login: taken.login.unwrap_or_default(),
            provider: taken.provider,
            token_expires_at: taken.token_expires_at,
        })
    }
}

/// `http://127.0.0.1:<port>/crabbox/oauth/<64 hex>`, nothing else.
fn valid_loopback_redirect_uri(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    let path_ok = url
        .path()
        .strip_prefix("/crabbox/oauth/")
        .is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    let ok = url.scheme() == "http"
        && url.host_str() == Some("127.0.0.1")
        && url.port().is_some_and(|p| p >= 1)
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none()
        && path_ok;
    ok.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_uris() {
        let hex = "a".repeat(64);
        let good = format!("http://127.0.0.1:4711/crabbox/oauth/{hex}");
        assert_eq!(
            valid_loopback_redirect_uri(&good).as_deref(),
            Some(good.as_str())
        );
        for bad in [
            format!("https://127.0.0.1:4711/crabbox/oauth/{hex}"),
            format!("http://localhost:4711/crabbox/oauth/{hex}"),
            format!("http://127.0.0.1/crabbox/oauth/{hex}"),
            format!("http://u@127.0.0.1:4711/crabbox/oauth/{hex}"),
            format!("http://127.0.0.1:4711/crabbox/oauth/{hex}?x=1"),
            format!("http://127.0.0.1:4711/crabbox/oauth/{hex}#f"),
            format!("http://127.0.0.1:4711/crabbox/oauth/{}", "A".repeat(64)),
            "http://127.0.0.1:4711/crabbox/oauth/abc".to_owned(),
            "not a url".to_owned(),
        ] {
            assert_eq!(valid_loopback_redirect_uri(&bad), None, "{bad}");
        }
    }

    #[test]
    fn poll_bodies() {
        let at = Timestamp::from_millis(0);
        assert_eq!(
            PollResponse::Pending { expires_at: at }.body(),
            json!({"status": "pending", "expiresAt": "1970-01-01T00:00:00.000Z"})
        );
        let complete = PollResponse::Complete {
            token: Secret::new("cbxu_x"),
            owner: "github:1".into(),
            org: "openclaw".into(),
            login: "octo".into(),
            provider: None,
            token_expires_at: Some(at),
        };
        assert_eq!(
            complete.body(),
            json!({"status": "complete", "token": "cbxu_x", "owner": "github:1",
                   "org": "openclaw", "login": "octo", "tokenExpiresAt": "1970-01-01T00:00:00.000Z"})
        );
        assert_eq!(PollResponse::Expired.status(), StatusCode::GONE);
        assert_eq!(
            PollResponse::Forbidden.body(),
            json!({"error": "forbidden"})
        );
        assert!(!format!("{complete:?}").contains("cbxu_x"));
        let req = PollRequest {
            poll_secret: Some("hunter2".into()),
            ..PollRequest::default()
        };
        assert!(!format!("{req:?}").contains("hunter2"));
    }
}
