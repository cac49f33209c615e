//! The pending-login document (`oauth:<loginID>`, plus `oauth_state:<state>` → loginID) and the
//! compare-and-swap steps that move it along. Field names are the original coordinator's, so a
//! store shared during an upgrade keeps working.

use crabbox_api::coord::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::store::{LoginStore, LoginStoreError};
use crate::secret::constant_time_eq;

pub(crate) const PENDING_TTL_SECONDS: i64 = 10 * 60;

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Cli,
    Portal,
}

/// A pending login. Holds the minted token until the CLI collects it, so it is never logged.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PendingLogin {
    pub id: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_secret_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_confirmation_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal_binding_hash: Option<String>,
    #[serde(default = "cli_mode")]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_to: Option<String>,
    #[serde(
        rename = "loopbackRedirectURI",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub loopback_redirect_uri: Option<String>,
    #[serde(rename = "redirectURI")]
    pub redirect_uri: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_claim: Option<String>,
    /// The sealed GitHub token, kept between code exchange and completion so a callback retry
    /// can resume (the OAuth code is one-use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_credential: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_hash: Option<String>,
}

fn cli_mode() -> Mode {
    Mode::Cli
}

/// What a finished callback writes into the record.
#[derive(Default)]
pub(crate) struct Completion {
    pub token: Option<String>,
    pub token_expires_at: Option<Timestamp>,
    pub owner: Option<String>,
    pub org: Option<String>,
    pub login: Option<String>,
    pub error: Option<String>,
    pub browser_confirmation_hash: Option<String>,
}

pub(crate) fn login_key(id: &str) -> String {
    format!("oauth:{id}")
}

pub(crate) fn state_key(state: &str) -> String {
    format!("oauth_state:{state}")
}

/// `prefix_` + 32 random lowercase hex digits.
pub(crate) fn random_id(prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is unavailable");
    format!("{prefix}_{}", hex::encode(bytes))
}

pub(crate) fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether `value` is `prefix_` followed by 32 lowercase hex digits.
pub(crate) fn is_random_id(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

impl PendingLogin {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("pending logins serialize")
    }
}

/// Reads a pending login with its version; undecodable documents read as absent.
pub(crate) async fn load(
    store: &dyn LoginStore,
    id: &str,
) -> Result<Option<(PendingLogin, i64)>, LoginStoreError> {
    let Some((value, version)) = store.get(&login_key(id)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(value).ok().map(|p| (p, version)))
}

/// Reads the pending login a callback `state` belongs to.
pub(crate) async fn load_by_state(
    store: &dyn LoginStore,
    state: &str,
) -> Result<Option<(PendingLogin, i64)>, LoginStoreError> {
    let Some((value, _)) = store.get(&state_key(state)).await? else {
        return Ok(None);
    };
    let Some(id) = value.as_str() else {
        return Ok(None);
    };
    let found = load(store, id).await?;
    Ok(found.filter(|(p, _)| p.state == state))
}

pub(crate) async fn insert(
    store: &dyn LoginStore,
    pending: &PendingLogin,
) -> Result<(), LoginStoreError> {
    store
        .put(&login_key(&pending.id), &pending.to_value(), None)
        .await?;
    store
        .put(
            &state_key(&pending.state),
            &Value::from(pending.id.clone()),
            None,
        )
        .await?;
    Ok(())
}

pub(crate) async fn replace(
    store: &dyn LoginStore,
    pending: &PendingLogin,
    version: i64,
) -> Result<i64, LoginStoreError> {
    store
        .put(&login_key(&pending.id), &pending.to_value(), Some(version))
        .await
}

pub(crate) async fn remove(
    store: &dyn LoginStore,
    pending: &PendingLogin,
) -> Result<(), LoginStoreError> {
    store.delete(&login_key(&pending.id)).await?;
    store.delete(&state_key(&pending.state)).await?;
    Ok(())
}

/// Applies `change` to the record if `claim` still holds it and it has not expired; returns the
/// updated record, or `None` when the claim was lost.
pub(crate) async fn update_claimed(
    store: &dyn LoginStore,
    id: &str,
    claim: &str,
    now: Timestamp,
    change: impl FnOnce(&mut PendingLogin),
) -> Result<Option<PendingLogin>, LoginStoreError> {
    let Some((mut pending, version)) = load(store, id).await? else {
        return Ok(None);
    };
    if pending.callback_claim.as_deref() != Some(claim) || pending.is_expired(now) {
        return Ok(None);
    }
    change(&mut pending);
    match replace(store, &pending, version).await {
        Ok(_) => Ok(Some(pending)),
        Err(LoginStoreError::Conflict(_) | LoginStoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ends a claimed callback with its result: the claim and the stored GitHub credential go.
pub(crate) async fn finish(
    store: &dyn LoginStore,
    id: &str,
    claim: &str,
    now: Timestamp,
    result: Completion,
) -> Result<Option<PendingLogin>, LoginStoreError> {
    update_claimed(store, id, claim, now, |p| {
        p.token = result.token.or(p.token.take());
        p.token_expires_at = result.token_expires_at.or(p.token_expires_at);
        p.owner = result.owner.or(p.owner.take());
        p.org = result.org.or(p.org.take());
        p.login = result.login.or(p.login.take());
        p.error = result.error.or(p.error.take());
        p.browser_confirmation_hash = result
            .browser_confirmation_hash
            .or(p.browser_confirmation_hash.take());
        p.callback_claim = None;
        p.github_credential = None;
    })
    .await
}

/// Counts live pending logins (total and for `source_hash`) and deletes expired ones.
pub(crate) async fn purge_and_count(
    store: &dyn LoginStore,
    source_hash: &str,
    now: Timestamp,
) -> Result<(usize, usize), LoginStoreError> {
    const SCAN_LIMIT: usize = 10_000;
    let mut total = 0;
    let mut for_source = 0;
    for (key, value) in store.list("oauth:", SCAN_LIMIT).await? {
        match serde_json::from_value::<PendingLogin>(value) {
            Ok(pending) if !pending.is_expired(now) => {
                total += 1;
                if constant_time_eq(
                    pending.source_hash.as_deref().unwrap_or("").as_bytes(),
                    source_hash.as_bytes(),
                ) {
                    for_source += 1;
                }
            }
            Ok(pending) => remove(store, &pending).await?,
            Err(_) => {
                store.delete(&key).await?;
            }
        }
    }
    Ok((total, for_source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = random_id("login");
        assert!(is_random_id(&id, "login"), "{id}");
        assert!(!is_random_id(&id, "confirm"));
        assert!(!is_random_id(
            "login_ABCDEF00000000000000000000000000",
            "login"
        ));
        assert_ne!(random_id("x"), random_id("x"));
    }

    #[test]
    fn record_uses_the_original_field_names() {
        let p = PendingLogin {
            id: "login_1".into(),
            state: "state_1".into(),
            poll_secret_hash: Some("h".into()),
            browser_confirmation_hash: None,
            portal_binding_hash: None,
            mode: Mode::Cli,
            provider: None,
            return_to: None,
            loopback_redirect_uri: Some("http://127.0.0.1:1/x".into()),
            redirect_uri: "https://c/v1/auth/github/callback".into(),
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(600_000),
            token: None,
            token_expires_at: None,
            owner: None,
            org: None,
            login: None,
            error: None,
            callback_claim: None,
            github_credential: None,
            source_hash: Some("s".into()),
        };
        let v = p.to_value();
        assert_eq!(
            v,
            serde_json::json!({
                "id": "login_1", "state": "state_1", "pollSecretHash": "h", "mode": "cli",
                "loopbackRedirectURI": "http://127.0.0.1:1/x",
                "redirectURI": "https://c/v1/auth/github/callback",
                "createdAt": "1970-01-01T00:00:00.000Z", "expiresAt": "1970-01-01T00:10:00.000Z",
                "sourceHash": "s"
            })
        );
    }
}
