//! The authenticated caller of a request, and the authorization rules applied to it
//! (spec §5.5; the rules themselves live in `crabbox_auth::access`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use crabbox_api::coord::{Lease, Run, Whoami};
use crabbox_auth::Principal;

use crate::error::Failure;
use crate::state::AppState;

use crabbox_auth::access::Identity;
pub use crabbox_auth::access::Role;

/// Who is calling, after authentication.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    pub owner: String,
    pub org_key: String,
    pub admin: bool,
}

impl Caller {
    pub fn from_principal(principal: Principal) -> Self {
        Self {
            owner: principal.owner.clone(),
            org_key: principal.org_key.clone(),
            admin: principal.admin,
            principal,
        }
    }

    /// The coordinator itself (cancel-create releasing the lease it bound): admin rights.
    pub fn system() -> Self {
        Self::from_principal(Principal {
            owner: "crabbox-coordinator".into(),
            org_key: crabbox_auth::org::MISSING_ORG_KEY.into(),
            org_label: crabbox_auth::org::MISSING_ORG_LABEL.into(),
            auth: crabbox_auth::AuthKind::Bearer,
            admin: true,
            login: None,
            token_expires_at: None,
            portal_session: false,
            github_grant: None,
        })
    }

    #[must_use]
    pub fn without_admin(&self) -> Self {
        let mut p = self.principal.clone();
        p.admin = false;
        Self::from_principal(p)
    }

    pub fn require_admin(&self) -> Result<(), Failure> {
        if self.admin {
            Ok(())
        } else {
            Err(Failure::forbidden("admin token required"))
        }
    }

    pub fn whoami(&self) -> Whoami {
        Whoami {
            owner: self.owner.clone(),
            org: self.principal.org_label.clone(),
            auth: self.principal.auth.as_str().to_owned(),
            admin: self.admin,
            token_expires_at: self.principal.token_expires_at.map(|t| t.to_string()),
        }
    }
}

fn identity(caller: &Caller) -> Identity<'_> {
    Identity {
        owner: &caller.owner,
        org_key: &caller.org_key,
        admin: caller.admin,
    }
}

pub fn lease_role(caller: &Caller, lease: &Lease) -> Option<Role> {
    crabbox_auth::access::lease_role(identity(caller), lease)
}

pub fn can_see_lease(caller: &Caller, lease: &Lease) -> bool {
    crabbox_auth::access::can_see_lease(identity(caller), lease)
}

pub fn can_manage_lease(caller: &Caller, lease: &Lease) -> bool {
    crabbox_auth::access::can_manage_lease(identity(caller), lease)
}

/// Reader rules; `lease` is the run's lease when the caller looked it up (legacy runs).
pub fn can_read_run(caller: &Caller, run: &Run, lease: Option<&Lease>) -> bool {
    crabbox_auth::access::can_read_run(identity(caller), run, lease)
}

pub fn can_write_run(caller: &Caller, run: &Run) -> bool {
    crabbox_auth::access::can_write_run(identity(caller), run)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let now = state.now();
        match state
            .auth
            .authenticate(&parts.method, parts.uri.path(), &parts.headers, peer, now)
            .await
        {
            Ok(principal) => Ok(Self::from_principal(principal)),
            Err(e) => {
                if let crabbox_auth::AuthError::Unauthorized { reason } = &e {
                    tracing::debug!(%reason, path = parts.uri.path(), "unauthenticated request");
                }
                let mut failure = Failure::new(e.status(), e.code());
                if let Some(m) = e.message() {
                    failure = failure.message(m);
                }
                Err(failure.into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crabbox_api::coord::Timestamp;
    use crabbox_auth::AuthKind;
    use serde_json::json;

    use super::*;

    fn caller(auth: AuthKind, admin: bool, token_expires_at: Option<Timestamp>) -> Caller {
        Caller::from_principal(Principal {
            owner: "friend@example.com".into(),
            org_key: crabbox_auth::org::key_for_label("openclaw").unwrap(),
            org_label: "openclaw".into(),
            auth,
            admin,
            login: None,
            token_expires_at,
            portal_session: false,
            github_grant: None,
        })
    }

    #[test]
    fn whoami_echoes_the_principal_and_the_token_expiry_only_when_known() {
        let plain = serde_json::to_value(caller(AuthKind::Bearer, false, None).whoami()).unwrap();
        assert_eq!(
            plain,
            json!({"owner": "friend@example.com", "org": "openclaw", "auth": "bearer", "admin": false})
        );
        let expires = Timestamp::from_millis(1_796_428_800_000);
        let github =
            serde_json::to_value(caller(AuthKind::Github, true, Some(expires)).whoami()).unwrap();
        assert_eq!(
            github,
            json!({"owner": "friend@example.com", "org": "openclaw", "auth": "github",
                "admin": true, "tokenExpiresAt": "2026-12-05T00:00:00.000Z"})
        );
    }
}
