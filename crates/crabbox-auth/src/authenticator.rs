//! Credential precedence (spec coordinator §5.2): admin token, shared token, signed GitHub user
//! token, trusted proxy identity; the portal session cookie on `/portal*` only.
//!
//! Cloudflare Access JWTs (`cf-access-jwt-assertion`) are not verified: this coordinator does
//! not run behind Cloudflare Access, so rows 1–2 take their owner from the trusted proxy
//! identity or the configured/claimed owner instead.

use std::net::IpAddr;
use std::sync::Arc;

use crabbox_api::coord::Timestamp;
use http::{HeaderMap, Method, header};
use sha2::{Digest as _, Sha256};

use crate::config::{AuthConfig, PROXY_SECRET_HEADER, ProxySecret};
use crate::github::{GithubClient, MembershipIdentity, MembershipVerifier};
use crate::org;
use crate::principal::{AuthError, AuthKind, GithubGrant, Principal};
use crate::proxy;
use crate::token::{TokenClaims, TokenKind, TokenSigner};

/// The portal session cookie.
pub const PORTAL_SESSION_COOKIE: &str = "__Host-crabbox_session";
const WEBVNC_SESSION_COOKIE: &str = "crabbox_webvnc_session";
/// Longest accepted trusted-proxy identity.
pub const PROXY_IDENTITY_MAX_CHARS: usize = 320;

/// An identity before its org has been validated.
struct Claimed {
    auth: AuthKind,
    admin: bool,
    owner: String,
    /// The org label, empty for "no org".
    org: String,
    org_source: &'static str,
    login: Option<String>,
    token_expires_at: Option<Timestamp>,
    portal_session: bool,
    grant: Option<GithubGrant>,
}

/// Authenticates requests. Cheap to clone; clones share the membership cache.
#[derive(Debug, Clone)]
pub struct Authenticator {
    config: Arc<AuthConfig>,
    signer: Option<TokenSigner>,
    membership: MembershipVerifier,
}

impl Authenticator {
    pub fn new(config: AuthConfig) -> Self {
        let config = Arc::new(config);
        let signer = config.session_secret.clone().map(TokenSigner::new);
        let client = GithubClient::new(&config.github);
        let membership = MembershipVerifier::new(client, Arc::clone(&config));
        Self {
            config,
            signer,
            membership,
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    pub(crate) fn shared_config(&self) -> Arc<AuthConfig> {
        Arc::clone(&self.config)
    }

    /// The token signer, when `CRABBOX_SESSION_SECRET` is set.
    pub fn signer(&self) -> Option<&TokenSigner> {
        self.signer.as_ref()
    }

    pub fn membership(&self) -> &MembershipVerifier {
        &self.membership
    }

    /// Whether `peer` is a configured trusted proxy.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        proxy::is_trusted(peer, &self.config.trusted_proxy.cidrs)
    }

    /// The client address: the rightmost untrusted `X-Forwarded-For` hop behind a trusted
    /// proxy, else the TCP peer.
    pub fn source_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let forwarded = joined(headers, "x-forwarded-for");
        proxy::source_ip(peer, forwarded.as_deref(), &self.config.trusted_proxy.cidrs)
    }

    /// `x-crabbox-admin-grant-version`: changes whenever the admin token or the GitHub admin
    /// owners change, so admin-granted bridges can be revoked on rotation.
    pub fn admin_grant_version(&self) -> String {
        let token_hash = self
            .config
            .admin_token
            .as_ref()
            .map(|t| hex::encode(Sha256::digest(t.expose().as_bytes())))
            .unwrap_or_default();
        let mut owners = self.config.github.admin_owners.clone();
        owners.sort();
        owners.dedup();
        let json = format!(
            r#"{{"tokenHash":{},"owners":{}}}"#,
            serde_json::Value::from(token_hash),
            serde_json::Value::from(owners)
        );
        hex::encode(Sha256::digest(json.as_bytes()))
    }

    /// Spec §5.1 step 7: a portal/browser mutation authenticated only by a session cookie must
    /// come from the public origin. `request_origin` is the origin the request arrived on
    /// (`https://host`), as the server sees it.
    pub fn check_portal_origin(
        &self,
        method: &Method,
        headers: &HeaderMap,
        request_origin: &str,
    ) -> Result<(), AuthError> {
        if headers.contains_key(header::AUTHORIZATION) {
            return Ok(());
        }
        let has_session = cookie_value(headers, PORTAL_SESSION_COOKIE).is_some()
            || cookie_value(headers, WEBVNC_SESSION_COOKIE).is_some();
        if !has_session {
            return Ok(());
        }
        let websocket = *method == Method::GET
            && headers
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        if !websocket && matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let trusted = self
            .config
            .public_origin()
            .unwrap_or_else(|_| request_origin.to_owned());
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| url::Url::parse(v.trim()).ok())
            .map(|u| u.origin().ascii_serialization());
        if request_origin == trusted && origin.as_deref() == Some(trusted.as_str()) {
            Ok(())
        } else {
            Err(AuthError::PortalOriginForbidden)
        }
    }

    /// Authenticates one request.
    ///
    /// `path` is the request path (no query); `peer` the TCP peer address, which alone decides
    /// whether proxy headers are believed.
    pub async fn authenticate(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<Principal, AuthError> {
        let portal = path.starts_with("/portal");
        let has_authorization = headers.contains_key(header::AUTHORIZATION);
        let cookie = if portal && !has_authorization {
            cookie_value(headers, PORTAL_SESSION_COOKIE)
        } else {
            None
        };
        let proxy_identity = match peer {
            Some(peer) if self.is_trusted_proxy(peer) => self.proxy_identity(headers),
            _ => None,
        };

        let claimed = if let Some(cookie) = cookie.as_deref() {
            if *method == Method::POST && path == "/portal/logout" {
                // Logging out must work even while GitHub is unreachable or the membership is
                // gone, so the session is only verified, not revalidated.
                self.revocation_identity(cookie, now)
                    .ok_or_else(|| AuthError::unauthorized("invalid session cookie"))?
            } else {
                match self
                    .user_token_identity(TokenKind::Portal, cookie, now)
                    .await
                {
                    Ok(identity) => identity,
                    Err(_) => {
                        // A cookie can also carry any credential a bearer header could.
                        self.credential_identity(Some(cookie), proxy_identity, headers, now)
                            .await?
                    }
                }
            }
        } else {
            let bearer = bearer_token(headers);
            self.credential_identity(bearer.as_deref(), proxy_identity, headers, now)
                .await?
        };
        finish(claimed)
    }

    /// Rows 1–4 of the precedence table.
    async fn credential_identity(
        &self,
        token: Option<&str>,
        proxy_identity: Option<Claimed>,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<Claimed, AuthError> {
        let token = token.unwrap_or("");
        if let Some(admin) = &self.config.admin_token
            && admin.matches(token)
        {
            let owner = proxy_identity
                .map(|p| p.owner)
                .or_else(|| header_text(headers, "x-crabbox-owner"))
                .unwrap_or_else(|| "unknown".into());
            let (org, org_source) = match headers.get("x-crabbox-org") {
                // A header that is not visible ASCII can never be a valid label; NUL makes
                // sure the org check below refuses it rather than treating it as missing.
                Some(value) => (
                    value
                        .to_str()
                        .map_or_else(|_| "\u{0}".into(), str::to_owned),
                    "x-crabbox-org",
                ),
                None => self.default_org(),
            };
            return Ok(bearer(true, owner, org, org_source));
        }
        if let Some(shared) = &self.config.shared_token
            && shared.matches(token)
        {
            let owner = proxy_identity
                .map(|p| p.owner)
                .or_else(|| self.config.shared_owner.clone())
                .unwrap_or_else(|| "unknown".into());
            let (org, org_source) = self.default_org();
            return Ok(bearer(false, owner, org, org_source));
        }
        let mut failure = "no credential";
        if !token.is_empty() {
            match self.user_token_identity(TokenKind::User, token, now).await {
                Ok(identity) => return Ok(identity),
                Err(reason) => {
                    if proxy_identity.is_none() {
                        return Err(reason);
                    }
                }
            }
            failure = "unknown bearer token";
        }
        proxy_identity.ok_or_else(|| AuthError::unauthorized(failure))
    }

    fn default_org(&self) -> (String, &'static str) {
        (
            self.config.default_org.clone().unwrap_or_default(),
            "CRABBOX_DEFAULT_ORG",
        )
    }

    /// Row 3 (and the portal cookie): a signed token whose GitHub grant is still current.
    async fn user_token_identity(
        &self,
        kind: TokenKind,
        token: &str,
        now: Timestamp,
    ) -> Result<Claimed, AuthError> {
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| AuthError::unauthorized("signed tokens are not configured"))?;
        let claims = signer
            .verify(kind, token, now)
            .map_err(|r| AuthError::unauthorized(format!("user token refused: {r}")))?;
        let access_token = signer
            .unseal(&claims.github_credential)
            .ok_or_else(|| AuthError::unauthorized("user token credential does not open"))?;
        self.membership
            .require_current(
                MembershipIdentity {
                    access_token: &access_token,
                    token_id: &claims.jti,
                    owner: &claims.owner,
                    org: &claims.org,
                    login: &claims.login,
                },
                now,
            )
            .await
            .map_err(|e| AuthError::unauthorized(format!("GitHub revalidation failed: {e}")))?;
        Ok(self.github_identity(&claims, kind == TokenKind::Portal))
    }

    fn github_identity(&self, claims: &TokenClaims, portal_session: bool) -> Claimed {
        Claimed {
            auth: AuthKind::Github,
            admin: self.config.is_github_admin(&claims.owner),
            owner: claims.owner.clone(),
            org: claims.org.clone(),
            org_source: "organization",
            login: Some(claims.login.clone()),
            token_expires_at: Some(claims.expires_at()),
            portal_session,
            grant: Some(GithubGrant {
                token_id: claims.jti.clone(),
                sealed_credential: claims.github_credential.clone(),
            }),
        }
    }

    /// A portal or user token that verifies, without GitHub revalidation (logout only).
    fn revocation_identity(&self, token: &str, now: Timestamp) -> Option<Claimed> {
        let signer = self.signer.as_ref()?;
        if let Ok(claims) = signer.verify(TokenKind::Portal, token, now) {
            return Some(self.github_identity(&claims, true));
        }
        let claims = signer.verify(TokenKind::User, token, now).ok()?;
        Some(self.github_identity(&claims, false))
    }

    /// Row 4: the identity a trusted proxy asserts (the caller checked the peer).
    fn proxy_identity(&self, headers: &HeaderMap) -> Option<Claimed> {
        let settings = &self.config.trusted_proxy;
        match &settings.secret {
            ProxySecret::NotRequired => {}
            ProxySecret::RejectAll => return None,
            ProxySecret::Required(secret) => {
                let presented = headers
                    .get(PROXY_SECRET_HEADER)
                    .map_or(&b""[..], |v| v.as_bytes());
                if !crate::secret::constant_time_eq(presented, secret.expose().as_bytes()) {
                    return None;
                }
            }
        }
        let name = settings.user_header.as_ref()?;
        let owner = headers.get(name)?.to_str().ok()?.trim();
        if owner.is_empty()
            || owner.chars().count() > PROXY_IDENTITY_MAX_CHARS
            || owner.chars().any(|c| c.is_ascii_control())
        {
            return None;
        }
        Some(Claimed {
            auth: AuthKind::Proxy,
            admin: false,
            owner: owner.to_owned(),
            org: settings.user_org.clone().unwrap_or_default(),
            org_source: "CRABBOX_TRUSTED_USER_ORG",
            login: None,
            token_expires_at: None,
            portal_session: false,
            grant: None,
        })
    }
}

fn bearer(admin: bool, owner: String, org: String, org_source: &'static str) -> Claimed {
    Claimed {
        auth: AuthKind::Bearer,
        admin,
        owner,
        org,
        org_source,
        login: None,
        token_expires_at: None,
        portal_session: false,
        grant: None,
    }
}

/// Spec §5.1 step 9: the org label must be encodable.
fn finish(claimed: Claimed) -> Result<Principal, AuthError> {
    let org_key = org::key_for_auth_label(&claimed.org, claimed.org_source)?;
    Ok(Principal {
        org_label: org::label_for_key(&org_key),
        org_key,
        owner: claimed.owner,
        auth: claimed.auth,
        admin: claimed.admin,
        login: claimed.login,
        token_expires_at: claimed.token_expires_at,
        portal_session: claimed.portal_session,
        github_grant: claimed.grant,
    })
}

/// `Authorization: Bearer <token>`, scheme case-insensitive; the token is the second
/// space-separated word.
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split(' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// A header's value as text, `None` when absent, empty or not visible ASCII.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    (!value.trim().is_empty()).then(|| value.to_owned())
}

/// All values of a header joined with `, ` (HTTP list semantics).
fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// A cookie's percent-decoded value. A cookie sent twice is treated as absent, so a cookie
/// planted on a parent domain cannot shadow the real one; undecodable or empty values are
/// absent too.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found: Option<&str> = None;
    for header in headers.get_all(header::COOKIE) {
        let Ok(text) = header.to_str() else {
            continue;
        };
        for part in text.split(';') {
            let part = part.trim();
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            if key == name {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
    }
    percent_decode(found?).filter(|v| !v.is_empty())
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_parsing() {
        let t = |v: &str| bearer_token(&headers(&[("authorization", v)]));
        assert_eq!(t("Bearer abc").as_deref(), Some("abc"));
        assert_eq!(t("bEaReR abc def").as_deref(), Some("abc"));
        assert_eq!(t("Bearer  abc"), None, "the second word is empty");
        assert_eq!(t("Basic abc"), None);
        assert_eq!(t("Bearer"), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn cookies() {
        let h = headers(&[("cookie", "a=1; __Host-crabbox_session=cbwp_x%2Ey; b=2")]);
        assert_eq!(
            cookie_value(&h, PORTAL_SESSION_COOKIE).as_deref(),
            Some("cbwp_x.y")
        );
        let dup = headers(&[
            ("cookie", "__Host-crabbox_session=one"),
            ("cookie", "__Host-crabbox_session=two"),
        ]);
        assert_eq!(cookie_value(&dup, PORTAL_SESSION_COOKIE), None);
        let bad = headers(&[("cookie", "__Host-crabbox_session=%zz")]);
        assert_eq!(cookie_value(&bad, PORTAL_SESSION_COOKIE), None);
        assert_eq!(cookie_value(&h, "missing"), None);
        let eq = headers(&[("cookie", "k=a=b")]);
        assert_eq!(cookie_value(&eq, "k").as_deref(), Some("a=b"));
    }

    #[test]
    fn admin_grant_version_tracks_rotation() {
        let a = Authenticator::new(
            AuthConfig::from_env([
                ("CRABBOX_ADMIN_TOKEN", "adm"),
                ("CRABBOX_GITHUB_ADMIN_OWNERS", "github:2,github:1,github:1"),
            ])
            .unwrap(),
        );
        let same = Authenticator::new(
            AuthConfig::from_env([
                ("CRABBOX_ADMIN_TOKEN", "adm"),
                ("CRABBOX_GITHUB_ADMIN_OWNERS", "github:1,github:2"),
            ])
            .unwrap(),
        );
        let rotated = Authenticator::new(
            AuthConfig::from_env([
                ("CRABBOX_ADMIN_TOKEN", "adm2"),
                ("CRABBOX_GITHUB_ADMIN_OWNERS", "github:1,github:2"),
            ])
            .unwrap(),
        );
        assert_eq!(a.admin_grant_version(), same.admin_grant_version());
        assert_ne!(a.admin_grant_version(), rotated.admin_grant_version());
        // The digest of the exact JSON the original coordinator hashes.
        let token_hash = hex::encode(Sha256::digest(b"adm"));
        let json = format!(r#"{{"tokenHash":"{token_hash}","owners":["github:1","github:2"]}}"#);
        assert_eq!(
            a.admin_grant_version(),
            hex::encode(Sha256::digest(json.as_bytes()))
        );
    }

    #[test]
    fn portal_origin_rule() {
        let a = Authenticator::new(
            AuthConfig::from_env([("CRABBOX_PUBLIC_URL", "https://crabbox.example.com")]).unwrap(),
        );
        let origin = "https://crabbox.example.com";
        let cookie = ("cookie", "__Host-crabbox_session=cbwp_x");
        let check = |m: Method, h: &[(&'static str, &str)], req: &str| {
            a.check_portal_origin(&m, &headers(h), req)
        };
        assert!(check(Method::POST, &[], origin).is_ok(), "no cookie");
        assert!(check(Method::GET, &[cookie], origin).is_ok());
        assert!(
            check(
                Method::POST,
                &[cookie, ("authorization", "Bearer x")],
                origin
            )
            .is_ok()
        );
        assert!(check(Method::POST, &[cookie, ("origin", origin)], origin).is_ok());
        assert_eq!(
            check(Method::POST, &[cookie], origin),
            Err(AuthError::PortalOriginForbidden)
        );
        assert_eq!(
            check(
                Method::POST,
                &[cookie, ("origin", "https://evil.example")],
                origin
            ),
            Err(AuthError::PortalOriginForbidden)
        );
        assert_eq!(
            check(
                Method::POST,
                &[cookie, ("origin", origin)],
                "http://internal:8080"
            ),
            Err(AuthError::PortalOriginForbidden)
        );
        assert_eq!(
            check(
                Method::GET,
                &[
                    cookie,
                    ("upgrade", "websocket"),
                    ("origin", "https://evil.example")
                ],
                origin
            ),
            Err(AuthError::PortalOriginForbidden)
        );
    }
}
