//! `GET /v1/auth/github/callback` and `GET /portal/login`.

use crabbox_api::coord::Timestamp;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::page::{
    CallbackOutcome, LEGACY_PORTAL_SESSION_COOKIE, binding_cookie_name, safe_return_to,
    session_cookie,
};
use super::record::{self, Completion, Mode, PendingLogin};
use super::{GithubLogin, LoginStoreError};
use crate::authenticator::{PORTAL_SESSION_COOKIE, cookie_value};
use crate::github::GithubError;
use crate::org::MISSING_ORG_LABEL;
use crate::secret::{Secret, constant_time_eq, redact};
use crate::token::{NewToken, TokenKind, TokenSigner};

/// The callback's query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The verified GitHub identity a token is minted for.
struct Identity {
    owner: String,
    login: String,
    name: Option<String>,
    org: String,
}

impl GithubLogin {
    /// `GET /portal/login?returnTo=…`: starts a portal login and sends the browser to GitHub,
    /// binding the login to this browser with a `__Host-crabbox_oauth_<state>` cookie.
    pub async fn portal_login(
        &self,
        return_to: Option<&str>,
        source: &str,
        now: Timestamp,
    ) -> CallbackOutcome {
        let unavailable = |message: &str| {
            CallbackOutcome::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Crabbox login unavailable",
                message,
            )
        };
        let redirect_uri = match self.start_preconditions() {
            Ok((redirect_uri, _)) => redirect_uri,
            Err(e) => return unavailable(e.message.as_deref().unwrap_or(e.code)),
        };
        let binding = record::random_id("bind");
        let mut pending = self.new_pending(Mode::Portal, redirect_uri, source, now);
        pending.return_to = Some(safe_return_to(return_to));
        pending.portal_binding_hash = Some(record::sha256_hex(&binding));
        match self.admit(&pending, now).await {
            Ok(true) => {}
            Ok(false) => {
                return CallbackOutcome::page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Crabbox login busy",
                    "Too many pending GitHub logins. Try again shortly.",
                );
            }
            Err(_) => return CallbackOutcome::internal(),
        }
        CallbackOutcome::Redirect {
            status: StatusCode::FOUND,
            location: self
                .membership
                .client()
                .authorize_url(&pending.state, &pending.redirect_uri),
            set_cookies: vec![
                session_cookie(LEGACY_PORTAL_SESSION_COOKIE, "", 0),
                session_cookie(
                    &binding_cookie_name(&pending.state),
                    &binding,
                    record::PENDING_TTL_SECONDS.unsigned_abs(),
                ),
            ],
        }
    }

    /// `GET /v1/auth/github/callback?code&state`. `request_origin` is the origin the request
    /// arrived on; `headers` are the request's (the portal binding cookie is read from them).
    pub async fn callback(
        &self,
        query: &CallbackQuery,
        request_origin: &str,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> CallbackOutcome {
        let (origin, redirect_uri) = match (
            self.config.public_origin(),
            self.config.github_redirect_uri(),
        ) {
            (Ok(origin), Ok(uri)) => (origin, uri),
            (Err(e), _) | (_, Err(e)) => {
                return CallbackOutcome::page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Crabbox login unavailable",
                    e.message,
                );
            }
        };
        let arrived = url::Url::parse(request_origin)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        if arrived != origin {
            return CallbackOutcome::page(
                StatusCode::FORBIDDEN,
                "Crabbox login denied",
                "The GitHub OAuth callback did not arrive on the configured public origin.",
            );
        }
        let state = query.state.as_deref().unwrap_or("");
        let (pending, claim) = match self.claim(state, now).await {
            Ok(Ok(claimed)) => claimed,
            Ok(Err(outcome)) => return outcome,
            Err(_) => return CallbackOutcome::internal(),
        };
        let terminal = terminal_cookies(&pending);
        match self
            .complete(
                &pending,
                &claim,
                query,
                &redirect_uri,
                request_origin,
                headers,
                now,
            )
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => CallbackOutcome::internal().with_cookies(terminal),
        }
    }

    /// Claims the pending login for `state` once; a second callback gets 409.
    async fn claim(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<Result<(PendingLogin, String), CallbackOutcome>, LoginStoreError> {
        let store = self.store.as_ref();
        if state.is_empty() {
            return Ok(Err(CallbackOutcome::expired()));
        }
        let Some((mut pending, version)) = record::load_by_state(store, state).await? else {
            return Ok(Err(CallbackOutcome::expired()));
        };
        if pending.is_expired(now) {
            return Ok(Err(CallbackOutcome::expired()));
        }
        let already_used = || {
            CallbackOutcome::page(
                StatusCode::CONFLICT,
                "Crabbox login already used",
                "This GitHub login callback is already being processed or completed.",
            )
            .with_cookies(terminal_cookies(&pending))
        };
        if pending.callback_claim.is_some() || pending.error.is_some() || pending.token.is_some() {
            return Ok(Err(already_used()));
        }
        let claim = record::random_id("callback");
        let mut claimed = pending.clone();
        claimed.callback_claim = Some(claim.clone());
        match record::replace(store, &claimed, version).await {
            Ok(_) => {
                pending = claimed;
                Ok(Ok((pending, claim)))
            }
            Err(LoginStoreError::Conflict(_)) => Ok(Err(already_used())),
            Err(LoginStoreError::NotFound(_)) => Ok(Err(CallbackOutcome::expired())),
            Err(e) => Err(e),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the request parts are all distinct"
    )]
    async fn complete(
        &self,
        pending: &PendingLogin,
        claim: &str,
        query: &CallbackQuery,
        redirect_uri: &str,
        request_origin: &str,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<CallbackOutcome, LoginStoreError> {
        let store = self.store.as_ref();
        let terminal = terminal_cookies(pending);
        let fail = |message: &str| Completion {
            error: Some(redact(message, &self.config.secrets())),
            ..Completion::default()
        };
        if pending.redirect_uri != redirect_uri {
            let message = "The GitHub OAuth public origin changed. Start a new login.";
            record::finish(store, &pending.id, claim, now, fail(message)).await?;
            return Ok(CallbackOutcome::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Crabbox login unavailable",
                message,
            )
            .with_cookies(terminal));
        }
        if pending.mode == Mode::Portal && !binding_matches(pending, headers) {
            record::remove(store, pending).await?;
            return Ok(CallbackOutcome::page(
                StatusCode::FORBIDDEN,
                "Crabbox login denied",
                "This GitHub login was not started in this browser.",
            )
            .with_cookies(clear_binding(pending)));
        }
        let code = query.code.as_deref().unwrap_or("");
        let denied_by_user = query.error.as_deref().filter(|e| !e.is_empty());
        if denied_by_user.is_some() || code.is_empty() {
            let error = denied_by_user.unwrap_or("missing_code");
            record::finish(store, &pending.id, claim, now, fail(error)).await?;
            return Ok(CallbackOutcome::page(
                StatusCode::BAD_REQUEST,
                "Crabbox login failed",
                "GitHub did not authorize the login.",
            )
            .with_cookies(terminal));
        }
        let Some(signer) = self.signer.as_ref() else {
            let message = "CRABBOX_SESSION_SECRET is required for signed user tokens";
            record::finish(store, &pending.id, claim, now, fail(message)).await?;
            return Ok(CallbackOutcome::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Crabbox login unavailable",
                message,
            )
            .with_cookies(terminal));
        };

        let result = self.verified_token(pending, claim, code, signer, now).await;
        let (token, identity, token_expires_at) = match result {
            Ok(Some(minted)) => minted,
            Ok(None) => return Ok(CallbackOutcome::expired().with_cookies(terminal)),
            Err(error) if error.is_transient() => {
                let released = record::update_claimed(store, &pending.id, claim, now, |p| {
                    p.callback_claim = None;
                })
                .await?;
                if released.is_none() {
                    return Ok(CallbackOutcome::expired().with_cookies(terminal));
                }
                return Ok(retry_page(pending, query, request_origin));
            }
            Err(error) => {
                record::finish(store, &pending.id, claim, now, fail(error.message())).await?;
                return Ok(match error {
                    GithubError::Denied(message) | GithubError::Credential(message) => {
                        CallbackOutcome::page(
                            StatusCode::FORBIDDEN,
                            "Crabbox login denied",
                            message,
                        )
                    }
                    GithubError::Transient(_) | GithubError::Protocol(_) => {
                        CallbackOutcome::internal()
                    }
                }
                .with_cookies(terminal));
            }
        };

        let confirmation = record::random_id("confirm");
        let completion = Completion {
            token: Some(token.expose().to_owned()),
            token_expires_at: Some(token_expires_at),
            owner: Some(identity.owner),
            org: Some(identity.org),
            login: Some(identity.login),
            error: None,
            browser_confirmation_hash: Some(record::sha256_hex(&confirmation)),
        };
        let Some(completed) = record::finish(store, &pending.id, claim, now, completion).await?
        else {
            return Ok(CallbackOutcome::expired().with_cookies(terminal));
        };
        if completed.mode == Mode::Portal {
            record::remove(store, &completed).await?;
            let mut cookies = vec![
                session_cookie(LEGACY_PORTAL_SESSION_COOKIE, "", 0),
                session_cookie(
                    PORTAL_SESSION_COOKIE,
                    token.expose(),
                    self.config.user_token_ttl_seconds,
                ),
            ];
            cookies.extend(clear_binding(&completed));
            return Ok(CallbackOutcome::Redirect {
                status: StatusCode::FOUND,
                location: completed.return_to.unwrap_or_else(|| "/portal".into()),
                set_cookies: cookies,
            });
        }
        let Some(loopback) = completed
            .loopback_redirect_uri
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
        else {
            record::remove(store, &completed).await?;
            return Ok(CallbackOutcome::page(
                StatusCode::BAD_REQUEST,
                "Crabbox login unavailable",
                "This login was started by an outdated client. Upgrade Crabbox and try again.",
            ));
        };
        let mut loopback = loopback;
        loopback
            .query_pairs_mut()
            .append_pair("confirmation", &confirmation);
        Ok(CallbackOutcome::Redirect {
            status: StatusCode::SEE_OTHER,
            location: loopback.into(),
            set_cookies: Vec::new(),
        })
    }

    /// Exchanges the code (or reopens the credential a previous attempt stored), checks the
    /// GitHub identity and membership, and mints the token. `Ok(None)` when the claim was lost.
    async fn verified_token(
        &self,
        pending: &PendingLogin,
        claim: &str,
        code: &str,
        signer: &TokenSigner,
        now: Timestamp,
    ) -> Result<Option<(Secret, Identity, Timestamp)>, GithubError> {
        let store = self.store.as_ref();
        let internal = |e: LoginStoreError| GithubError::Protocol(e.to_string());
        let access_token = if let Some(sealed) = &pending.github_credential {
            signer.unseal(sealed).ok_or_else(|| {
                GithubError::Protocol("Stored GitHub credential is invalid".into())
            })?
        } else {
            let client = self.membership.client();
            let access_token = client.exchange_code(code, &pending.redirect_uri).await?;
            // The code is one-use, so keep the (sealed) credential for callback retries.
            let sealed = signer
                .seal(&access_token)
                .map_err(|e| GithubError::Protocol(e.to_string()))?;
            let stored = record::update_claimed(store, &pending.id, claim, now, |p| {
                p.github_credential = Some(sealed);
            })
            .await
            .map_err(internal)?;
            if stored.is_none() {
                return Ok(None);
            }
            access_token
        };
        let identity = self.identity(&access_token).await?;
        let kind = if pending.mode == Mode::Portal {
            TokenKind::Portal
        } else {
            TokenKind::User
        };
        let ttl = self.config.user_token_ttl_seconds;
        let token = signer
            .issue(
                kind,
                &NewToken {
                    owner: &identity.owner,
                    org: &identity.org,
                    login: &identity.login,
                    name: identity.name.as_deref(),
                    github_access_token: &access_token,
                    ttl_seconds: ttl,
                },
                now,
            )
            .map_err(|e| GithubError::Protocol(e.to_string()))?;
        let iat_secs = now.millis().div_euclid(1000);
        let expires_at = Timestamp::from_millis(
            iat_secs
                .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))
                .saturating_mul(1000),
        );
        Ok(Some((Secret::new(token), identity, expires_at)))
    }

    /// `GET /user` (numeric id) + `GET /user/emails` (a verified address is required) + the
    /// membership check for the org to bind.
    async fn identity(&self, access_token: &Secret) -> Result<Identity, GithubError> {
        let client = self.membership.client();
        let user = client.user(access_token).await?;
        let emails = client.emails(access_token).await?;
        let verified = emails
            .iter()
            .any(|e| e.verified && e.email.as_deref().is_some_and(|a| !a.trim().is_empty()));
        if !verified {
            return Err(GithubError::Denied(
                "GitHub account must have a verified email to use Crabbox.".into(),
            ));
        }
        let owner = format!("github:{}", user.id);
        // The org to bind comes from settings, never from the callback request itself.
        let requested = self
            .config
            .default_org
            .clone()
            .unwrap_or_else(|| MISSING_ORG_LABEL.to_owned());
        let org = self
            .membership
            .require_login_membership(access_token, &owner, &user.login, &requested)
            .await?;
        Ok(Identity {
            owner,
            login: user.login,
            name: user.name,
            org,
        })
    }
}

fn binding_matches(pending: &PendingLogin, headers: &HeaderMap) -> bool {
    let presented = cookie_value(headers, &binding_cookie_name(&pending.state))
        .map(|b| record::sha256_hex(&b))
        .unwrap_or_default();
    let expected = pending.portal_binding_hash.as_deref().unwrap_or("");
    !expected.is_empty() && constant_time_eq(presented.as_bytes(), expected.as_bytes())
}

fn clear_binding(pending: &PendingLogin) -> Vec<String> {
    vec![session_cookie(&binding_cookie_name(&pending.state), "", 0)]
}

/// Cookies to send with any final answer: portal logins clear their binding cookie.
fn terminal_cookies(pending: &PendingLogin) -> Vec<String> {
    if pending.mode == Mode::Portal {
        clear_binding(pending)
    } else {
        Vec::new()
    }
}

fn retry_page(
    pending: &PendingLogin,
    query: &CallbackQuery,
    request_origin: &str,
) -> CallbackOutcome {
    let waiting = if pending.mode == Mode::Portal {
        "Your Crabbox portal login is still waiting. Click the link below to retry."
    } else {
        "The Crabbox CLI is still waiting for this login. Click the link below to retry."
    };
    let mut url = url::Url::parse(&format!("{request_origin}/v1/auth/github/callback"))
        .expect("the public origin parses");
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(code) = &query.code {
            pairs.append_pair("code", code);
        }
        if let Some(state) = &query.state {
            pairs.append_pair("state", state);
        }
    }
    CallbackOutcome::Page {
        status: StatusCode::SERVICE_UNAVAILABLE,
        title: "Crabbox login delayed".into(),
        message: format!("GitHub is temporarily unavailable. {waiting}"),
        retry_url: Some(url.into()),
        set_cookies: Vec::new(),
    }
}
