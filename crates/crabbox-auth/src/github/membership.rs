//! GitHub membership checks (spec coordinator §5.3 "Per-request revalidation"): a signed token is
//! only as good as the GitHub account behind it, so each use re-checks that the sealed access
//! token still belongs to the same numeric account, that the account is still an active member
//! of the token's org and, when teams are configured, of an allowed team. Successes are cached
//! briefly per (token, identity, policy).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crabbox_api::coord::Timestamp;

use super::client::{GithubClient, GithubError};
use crate::config::{AuthConfig, github_account_id};
use crate::secret::Secret;

/// At most this many cached successes are kept.
pub const MEMBERSHIP_CACHE_MAX_ENTRIES: usize = 1024;
/// `/user/teams` pages read before giving up (100 teams each).
pub const MAX_TEAM_PAGES: u32 = 10;

/// Who a token claims to be.
#[derive(Debug, Clone, Copy)]
pub struct MembershipIdentity<'a> {
    pub access_token: &'a Secret,
    /// The token's `jti`.
    pub token_id: &'a str,
    /// `github:<id>`.
    pub owner: &'a str,
    pub org: &'a str,
    pub login: &'a str,
}

/// What membership a given identity must prove under the current settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipPolicy {
    /// Lowercase org login.
    pub org: String,
    /// Lowercase `org/slug` keys within `org`; empty when teams are not restricted.
    pub allowed_teams: Vec<String>,
    cache_key: String,
}

impl MembershipPolicy {
    /// The policy for a user bound to `org`, or a denial when the user is revoked, the org is no
    /// longer allowed, or teams are configured but none of them is in this org.
    pub fn for_identity(
        config: &AuthConfig,
        owner: &str,
        login: &str,
        org: &str,
    ) -> Result<Self, GithubError> {
        if config.is_revoked(owner) {
            return Err(GithubError::Denied(format!(
                "GitHub user {login} has been revoked."
            )));
        }
        let org = org.trim().to_ascii_lowercase();
        if !config.github.allowed_orgs.contains(&org) {
            return Err(GithubError::Denied(format!(
                "GitHub organization {org} is no longer allowed."
            )));
        }
        let mut teams: Vec<String> = config
            .github
            .allowed_teams
            .iter()
            .map(|t| format!("{}/{}", t.org.as_deref().unwrap_or(&org), t.slug))
            .collect();
        teams.sort();
        teams.dedup();
        let prefix = format!("{org}/");
        let allowed_teams: Vec<String> = teams
            .iter()
            .filter(|t| t.starts_with(&prefix))
            .cloned()
            .collect();
        if !teams.is_empty() && allowed_teams.is_empty() {
            return Err(GithubError::Denied(format!(
                "GitHub organization {org} has no allowed team configured."
            )));
        }
        let mut orgs = config.github.allowed_orgs.clone();
        orgs.sort();
        orgs.dedup();
        let cache_key = serde_json::json!([orgs, teams]).to_string();
        Ok(Self {
            org,
            allowed_teams,
            cache_key,
        })
    }
}

/// Runs membership checks against GitHub and caches the successes.
#[derive(Debug, Clone)]
pub struct MembershipVerifier {
    client: GithubClient,
    config: Arc<AuthConfig>,
    /// Cache key → expiry (Unix ms).
    cache: Arc<Mutex<HashMap<String, i64>>>,
}

impl MembershipVerifier {
    pub fn new(client: GithubClient, config: Arc<AuthConfig>) -> Self {
        Self {
            client,
            config,
            cache: Arc::default(),
        }
    }

    pub fn client(&self) -> &GithubClient {
        &self.client
    }

    /// Revalidates a token's identity, answering from the cache while a previous success is
    /// fresh. Revocation and org/team policy are re-read every time, so a settings change applies
    /// at once even to cached identities.
    pub async fn require_current(
        &self,
        identity: MembershipIdentity<'_>,
        now: Timestamp,
    ) -> Result<(), GithubError> {
        let policy = MembershipPolicy::for_identity(
            &self.config,
            identity.owner,
            identity.login,
            identity.org,
        )?;
        let key = serde_json::json!([
            identity.token_id,
            identity.owner.to_ascii_lowercase(),
            identity.org.to_ascii_lowercase(),
            policy.cache_key,
        ])
        .to_string();
        if self.cached_until(&key) > now.millis() {
            return Ok(());
        }
        self.require_fresh_with(identity, &policy).await?;
        let ttl = self.config.github.membership_cache_seconds;
        if ttl > 0 {
            let expires = now
                .plus_secs(i64::try_from(ttl).unwrap_or(i64::MAX))
                .millis();
            self.remember(key, expires, now.millis());
        }
        Ok(())
    }

    /// Revalidates without the cache.
    pub async fn require_fresh(&self, identity: MembershipIdentity<'_>) -> Result<(), GithubError> {
        let policy = MembershipPolicy::for_identity(
            &self.config,
            identity.owner,
            identity.login,
            identity.org,
        )?;
        self.require_fresh_with(identity, &policy).await
    }

    async fn require_fresh_with(
        &self,
        identity: MembershipIdentity<'_>,
        policy: &MembershipPolicy,
    ) -> Result<(), GithubError> {
        self.require_exact_account(identity.access_token, identity.owner, identity.login)
            .await?;
        self.require_exact_membership(identity.access_token, identity.login, policy)
            .await?;
        Ok(())
    }

    /// The membership check at login: binds the user to `requested_org` when it is allowed,
    /// else to the first allowed org, and returns that org's login as GitHub spells it.
    pub async fn require_login_membership(
        &self,
        access_token: &Secret,
        owner: &str,
        login: &str,
        requested_org: &str,
    ) -> Result<String, GithubError> {
        if self.config.is_revoked(owner) {
            return Err(GithubError::Denied(format!(
                "GitHub user {login} has been revoked."
            )));
        }
        let allowed = &self.config.github.allowed_orgs;
        let requested = requested_org.to_ascii_lowercase();
        let org = if allowed.contains(&requested) {
            requested
        } else {
            allowed.first().cloned().ok_or_else(|| {
                GithubError::Denied("GitHub login is not configured with an allowed org.".into())
            })?
        };
        let policy = MembershipPolicy::for_identity(&self.config, owner, login, &org)?;
        self.require_exact_membership(access_token, login, &policy)
            .await
    }

    async fn require_exact_account(
        &self,
        token: &Secret,
        owner: &str,
        login: &str,
    ) -> Result<(), GithubError> {
        let Some(account_id) = github_account_id(owner) else {
            return Err(GithubError::Denied(
                "This GitHub session uses a legacy mutable identity. Log in again.".into(),
            ));
        };
        let user = self.client.user(token).await.map_err(|e| {
            let detail = e.message().to_owned();
            e.with_message(format!("Could not verify GitHub user {login}: {detail}."))
        })?;
        if user.id != account_id {
            return Err(GithubError::Denied(
                "The GitHub credential no longer matches this session.".into(),
            ));
        }
        Ok(())
    }

    async fn require_exact_membership(
        &self,
        token: &Secret,
        login: &str,
        policy: &MembershipPolicy,
    ) -> Result<String, GithubError> {
        let org = &policy.org;
        let not_member = || format!("GitHub user {login} is not an active member of {org}.");
        let membership = self
            .client
            .org_membership(token, org)
            .await
            .map_err(|e| e.with_message(not_member()))?;
        if membership.state != "active" || membership.org_login.to_ascii_lowercase() != *org {
            return Err(GithubError::Denied(not_member()));
        }
        self.require_allowed_team(token, login, policy).await?;
        Ok(if membership.org_login.is_empty() {
            org.clone()
        } else {
            membership.org_login
        })
    }

    async fn require_allowed_team(
        &self,
        token: &Secret,
        login: &str,
        policy: &MembershipPolicy,
    ) -> Result<(), GithubError> {
        if policy.allowed_teams.is_empty() {
            return Ok(());
        }
        for page in 1..=MAX_TEAM_PAGES {
            let teams = self.client.teams(token, page).await.map_err(|e| {
                let detail = e.message().to_owned();
                e.with_message(format!(
                    "Could not verify GitHub team membership: {detail}."
                ))
            })?;
            let found = teams.iter().any(|t| {
                !t.org_login.is_empty()
                    && !t.slug.is_empty()
                    && policy.allowed_teams.contains(&format!(
                        "{}/{}",
                        t.org_login.to_ascii_lowercase(),
                        t.slug.to_ascii_lowercase()
                    ))
            });
            if found {
                return Ok(());
            }
            if teams.len() < 100 {
                break;
            }
        }
        Err(GithubError::Denied(format!(
            "GitHub user {login} is not a member of an allowed team in {}.",
            policy.org
        )))
    }

    fn cached_until(&self, key: &str) -> i64 {
        let cache = self.cache.lock().expect("membership cache lock");
        cache.get(key).copied().unwrap_or(0)
    }

    fn remember(&self, key: String, expires: i64, now: i64) {
        let mut cache = self.cache.lock().expect("membership cache lock");
        cache.insert(key, expires);
        cache.retain(|_, until| *until > now);
        while cache.len() > MEMBERSHIP_CACHE_MAX_ENTRIES {
            // Every entry has the same TTL, so the soonest expiry is the oldest entry.
            let oldest = cache
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => cache.remove(&k),
                None => break,
            };
        }
    }

    /// How many successes are cached (for tests and metrics).
    pub fn cached_entries(&self) -> usize {
        self.cache.lock().expect("membership cache lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> AuthConfig {
        AuthConfig::from_env(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn policy_rules() {
        let c = config(&[
            ("CRABBOX_GITHUB_ALLOWED_ORGS", "openclaw,acme"),
            ("CRABBOX_GITHUB_ALLOWED_TEAMS", "core,acme/ops"),
            ("CRABBOX_GITHUB_REVOKED_USERS", "github:13"),
        ]);
        let p = MembershipPolicy::for_identity(&c, "github:1", "octo", "OpenClaw").unwrap();
        assert_eq!(p.org, "openclaw");
        assert_eq!(p.allowed_teams, ["openclaw/core"]);
        let p = MembershipPolicy::for_identity(&c, "github:1", "octo", "acme").unwrap();
        assert_eq!(p.allowed_teams, ["acme/core", "acme/ops"]);
        let revoked = MembershipPolicy::for_identity(&c, "GitHub:13", "bad", "openclaw");
        assert_eq!(
            revoked.unwrap_err(),
            GithubError::Denied("GitHub user bad has been revoked.".into())
        );
        assert!(MembershipPolicy::for_identity(&c, "github:1", "octo", "other").is_err());

        let only_acme_team = config(&[
            ("CRABBOX_GITHUB_ALLOWED_ORGS", "openclaw,acme"),
            ("CRABBOX_GITHUB_ALLOWED_TEAMS", "acme/ops"),
        ]);
        let err = MembershipPolicy::for_identity(&only_acme_team, "github:1", "o", "openclaw");
        assert_eq!(
            err.unwrap_err(),
            GithubError::Denied(
                "GitHub organization openclaw has no allowed team configured.".into()
            )
        );
    }

    #[test]
    fn cache_is_bounded_and_drops_expired_entries() {
        let c = Arc::new(config(&[]));
        let v = MembershipVerifier::new(GithubClient::new(&c.github), c);
        v.remember("expired".into(), 5, 0);
        for i in 0..MEMBERSHIP_CACHE_MAX_ENTRIES + 10 {
            v.remember(format!("k{i}"), 1000 + i64::try_from(i).unwrap(), 10);
        }
        assert_eq!(v.cached_entries(), MEMBERSHIP_CACHE_MAX_ENTRIES);
        assert_eq!(v.cached_until("expired"), 0);
        assert_eq!(v.cached_until("k0"), 0, "oldest evicted");
        assert_eq!(v.cached_until("k1033"), 2033);
    }
}
