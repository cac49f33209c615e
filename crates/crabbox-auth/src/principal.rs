//! Who a request is from, and why it was refused.

use crabbox_api::coord::Timestamp;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::org::{self, InvalidOrgLabel};

/// How the caller proved who they are (`x-crabbox-auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// The shared or the admin token.
    Bearer,
    /// A signed user token backed by a live GitHub membership.
    Github,
    /// A trusted reverse proxy's identity header.
    Proxy,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Github => "github",
            Self::Proxy => "proxy",
        }
    }
}

/// The GitHub grant behind a user token, forwarded so long-lived bridges can be revalidated
/// and revoked when it lapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubGrant {
    /// The token's `jti`.
    pub token_id: String,
    /// The sealed GitHub access token (safe to forward: only the session secret opens it).
    pub sealed_credential: String,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub owner: String,
    /// The org key records are stored and compared under (`~1.…` or `~0`).
    pub org_key: String,
    /// The org as shown to people: the label, or `unknown` for a caller without an org.
    pub org_label: String,
    pub auth: AuthKind,
    pub admin: bool,
    /// The GitHub login, for GitHub principals.
    pub login: Option<String>,
    /// When the user token expires, for GitHub principals.
    pub token_expires_at: Option<Timestamp>,
    /// Authenticated by the portal session cookie.
    pub portal_session: bool,
    pub github_grant: Option<GithubGrant>,
}

/// The trusted identity headers of spec §0, set by the entry after authentication.
pub const TRUSTED_HEADERS: &[&str] = &[
    "x-crabbox-auth",
    "x-crabbox-admin",
    "x-crabbox-owner",
    "x-crabbox-org",
    "x-crabbox-github-login",
    "x-crabbox-token-expires-at",
    "x-crabbox-portal-session",
    "x-crabbox-github-token-id",
    "x-crabbox-github-sealed-credential",
    "x-crabbox-admin-grant-version",
    "x-crabbox-internal",
    "x-crabbox-proxy-secret",
    "cf-access-authenticated-user-email",
    "cf-access-jwt-assertion",
];

/// Removes every header a client could use to impersonate the entry's trusted identity.
pub fn strip_trusted_headers(headers: &mut HeaderMap) {
    for name in TRUSTED_HEADERS {
        headers.remove(*name);
    }
}

impl Principal {
    /// The org label as carried in `x-crabbox-org`: empty for a caller without an org.
    pub fn org_header_label(&self) -> String {
        org::auth_label_for_key(&self.org_key).unwrap_or_default()
    }

    /// Replaces any client-supplied identity headers with this principal's (spec §5.1 step
    /// 10), for handlers that read identity from headers.
    pub fn write_headers(&self, headers: &mut HeaderMap, admin_grant_version: &str) {
        strip_trusted_headers(headers);
        let mut set = |name: &'static str, value: &str| {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        set("x-crabbox-auth", self.auth.as_str());
        set("x-crabbox-admin", if self.admin { "true" } else { "false" });
        set("x-crabbox-owner", &self.owner);
        set("x-crabbox-org", &self.org_header_label());
        if let Some(login) = &self.login {
            set("x-crabbox-github-login", login);
        }
        if self.portal_session {
            set("x-crabbox-portal-session", "true");
        }
        if let Some(at) = self.token_expires_at {
            set("x-crabbox-token-expires-at", &at.to_string());
        }
        if let Some(grant) = &self.github_grant {
            set("x-crabbox-github-token-id", &grant.token_id);
            set(
                "x-crabbox-github-sealed-credential",
                &grant.sealed_credential,
            );
        }
        set("x-crabbox-admin-grant-version", admin_grant_version);
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No acceptable credential. `reason` is for logs only and never sent to the client.
    #[error("unauthorized: {reason}")]
    Unauthorized { reason: String },
    /// The caller authenticated but their org label cannot be encoded. The configured labels
    /// are checked when the coordinator starts, so this is a label the caller sent (the
    /// `x-crabbox-org` header of an admin-token request): a 400, since no retry can fix it.
    /// (The old coordinator answered 503, which clients and proxies retry.)
    #[error("invalid org identity: {0}")]
    InvalidOrg(#[from] InvalidOrgLabel),
    /// A cookie-authenticated portal mutation from another origin.
    #[error("portal request from a foreign origin")]
    PortalOriginForbidden,
}

impl AuthError {
    pub(crate) fn unauthorized(reason: impl Into<String>) -> Self {
        Self::Unauthorized {
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::InvalidOrg(_) => StatusCode::BAD_REQUEST,
            Self::PortalOriginForbidden => StatusCode::FORBIDDEN,
        }
    }

    /// The `error` field of the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::InvalidOrg(_) => "invalid_org_identity",
            Self::PortalOriginForbidden => "portal_request_origin_forbidden",
        }
    }

    /// The `message` field of the JSON body, when there is one.
    pub fn message(&self) -> Option<String> {
        match self {
            Self::InvalidOrg(e) => Some(e.to_string()),
            Self::Unauthorized { .. } | Self::PortalOriginForbidden => None,
        }
    }

    /// `(status, {"error", "message"?})`.
    pub fn response(&self) -> (StatusCode, serde_json::Value) {
        let mut body = serde_json::json!({ "error": self.code() });
        if let Some(message) = self.message() {
            body["message"] = message.into();
        }
        (self.status(), body)
    }
}

/// Where an unauthenticated portal page GET is sent: `/portal/login?returnTo=<path+query>`.
pub fn portal_login_location(path_and_query: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    format!("/portal/login?returnTo={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            owner: "github:42".into(),
            org_key: org::key_for_label("openclaw").unwrap(),
            org_label: "openclaw".into(),
            auth: AuthKind::Github,
            admin: false,
            login: Some("octo".into()),
            token_expires_at: Some(Timestamp::from_millis(1_000)),
            portal_session: false,
            github_grant: Some(GithubGrant {
                token_id: "jti".into(),
                sealed_credential: "iv.ct".into(),
            }),
        }
    }

    #[test]
    fn error_mapping() {
        let (status, body) = AuthError::unauthorized("nope").response();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, serde_json::json!({"error": "unauthorized"}));
        let err = AuthError::InvalidOrg(InvalidOrgLabel {
            source_name: "x-crabbox-org",
        });
        let (status, body) = err.response();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_org_identity");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("x-crabbox-org must be")
        );
        assert_eq!(
            AuthError::PortalOriginForbidden.status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn writes_trusted_headers_over_client_ones() {
        let mut headers = HeaderMap::new();
        headers.insert("x-crabbox-admin", "true".parse().unwrap());
        headers.insert("x-crabbox-portal-session", "true".parse().unwrap());
        headers.insert("x-crabbox-internal", "scheduled".parse().unwrap());
        principal().write_headers(&mut headers, "v1");
        assert_eq!(headers["x-crabbox-admin"], "false");
        assert_eq!(headers["x-crabbox-auth"], "github");
        assert_eq!(headers["x-crabbox-org"], "openclaw");
        assert_eq!(
            headers["x-crabbox-token-expires-at"],
            "1970-01-01T00:00:01.000Z"
        );
        assert_eq!(headers["x-crabbox-github-token-id"], "jti");
        assert!(!headers.contains_key("x-crabbox-portal-session"));
        assert!(!headers.contains_key("x-crabbox-internal"));
        let mut missing = principal();
        missing.org_key = org::MISSING_ORG_KEY.into();
        missing.write_headers(&mut headers, "v1");
        assert_eq!(headers["x-crabbox-org"], "");
    }

    #[test]
    fn login_location() {
        assert_eq!(
            portal_login_location("/portal/leases?x=1&y=2"),
            "/portal/login?returnTo=%2Fportal%2Fleases%3Fx%3D1%26y%3D2"
        );
    }
}
