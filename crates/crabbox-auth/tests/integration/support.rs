//! Shared fixtures: a fake GitHub with one member, settings pointing at it, and helpers to
//! drive a CLI login the way the real CLI and browser would.

use std::net::IpAddr;
use std::sync::Arc;

use crabbox_api::coord::Timestamp;
use crabbox_auth::token::{NewToken, TokenKind};
use crabbox_auth::{
    AuthConfig, AuthError, Authenticator, CallbackOutcome, CallbackQuery, GithubLogin,
    MemoryLoginStore, PollRequest, PollResponse, Principal, Secret, StartRequest,
};
use crabbox_test_support::fake_github::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, FakeGithub, FakeUser,
};
use http::{HeaderMap, HeaderValue, Method};
use sha2::{Digest as _, Sha256};

pub const NOW: Timestamp = Timestamp::from_millis(1_780_000_000_000);
pub const PUBLIC_URL: &str = "http://127.0.0.1:8080";
pub const SHARED_TOKEN: &str = "shared-token-value";
pub const ADMIN_TOKEN: &str = "admin-token-value";
pub const SESSION_SECRET: &str = "session-secret-value";
pub const OCTO: u64 = 1001;
pub const POLL_SECRET: &str = "cli-poll-secret-0123456789";

/// The fake with user `octo` (id 1001), an active member of `OpenClaw`, signed in.
pub async fn fake_github() -> FakeGithub {
    let fake = FakeGithub::start().await;
    fake.add_user(FakeUser::new(OCTO, "octo").with_name("Octo Cat"));
    fake.set_membership(OCTO, "OpenClaw", "active");
    fake.set_logged_in(Some(OCTO));
    fake
}

/// Settings pointing at `fake`, with `extra` overriding the defaults.
pub fn config(fake: &FakeGithub, extra: &[(&str, &str)]) -> AuthConfig {
    let url = fake.url();
    let mut vars: Vec<(String, String)> = [
        ("CRABBOX_SHARED_TOKEN", SHARED_TOKEN),
        ("CRABBOX_ADMIN_TOKEN", ADMIN_TOKEN),
        ("CRABBOX_SESSION_SECRET", SESSION_SECRET),
        ("CRABBOX_GITHUB_CLIENT_ID", DEFAULT_CLIENT_ID),
        ("CRABBOX_GITHUB_CLIENT_SECRET", DEFAULT_CLIENT_SECRET),
        ("CRABBOX_PUBLIC_URL", PUBLIC_URL),
        ("CRABBOX_DEFAULT_ORG", "openclaw"),
        ("CRABBOX_GITHUB_API_URL", url.as_str()),
        ("CRABBOX_GITHUB_URL", url.as_str()),
        ("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "0"),
        ("CRABBOX_GITHUB_ADMIN_OWNERS", "github:1001"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push(((*k).to_owned(), (*v).to_owned()));
    }
    AuthConfig::from_env(vars).expect("test settings are valid")
}

pub fn login_service(auth: &Authenticator) -> (GithubLogin, MemoryLoginStore) {
    let store = MemoryLoginStore::new();
    (GithubLogin::new(auth, Arc::new(store.clone())), store)
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

pub fn loopback() -> String {
    format!("http://127.0.0.1:47011/crabbox/oauth/{}", "c".repeat(64))
}

pub fn start_request() -> StartRequest {
    StartRequest {
        poll_secret_hash: Some(sha256_hex(POLL_SECRET)),
        provider: Some("aws".into()),
        loopback_redirect_uri: Some(loopback()),
    }
}

pub fn poll_request(login_id: &str, confirmation: Option<&str>) -> PollRequest {
    PollRequest {
        login_id: Some(login_id.into()),
        poll_secret: Some(POLL_SECRET.into()),
        browser_confirmation: confirmation.map(str::to_owned),
    }
}

/// Plays the browser on GitHub: opens the authorize URL and returns where GitHub sends it.
pub async fn follow_authorize(url: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 302, "GitHub redirects back");
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The callback query of a redirect back to the coordinator.
pub fn callback_query(location: &str) -> CallbackQuery {
    let url = url::Url::parse(location).unwrap();
    assert_eq!(url.path(), "/v1/auth/github/callback");
    let get = |k: &str| {
        url.query_pairs()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.into_owned())
    };
    CallbackQuery {
        code: get("code"),
        state: get("state"),
        error: get("error"),
    }
}

/// The `confirmation` of a 303 back to the CLI's loopback listener.
pub fn confirmation(outcome: &CallbackOutcome) -> String {
    assert_eq!(outcome.status(), 303, "{outcome:?}");
    let location = outcome.location().unwrap();
    assert!(location.starts_with(&loopback()), "{location}");
    let url = url::Url::parse(location).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "confirmation")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// A whole CLI login; returns the token.
pub async fn cli_login(login: &GithubLogin) -> Secret {
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let location = follow_authorize(&started.url).await;
    let outcome = login
        .callback(
            &callback_query(&location),
            PUBLIC_URL,
            &HeaderMap::new(),
            NOW,
        )
        .await;
    let confirm = confirmation(&outcome);
    match login
        .poll(&poll_request(&started.login_id, Some(&confirm)), NOW)
        .await
        .unwrap()
    {
        PollResponse::Complete { token, .. } => token,
        other => panic!("login did not complete: {other:?}"),
    }
}

/// A user token minted directly for `user_id` with a fresh GitHub token from the fake.
pub fn mint(auth: &Authenticator, fake: &FakeGithub, user_id: u64, org: &str) -> String {
    let github = Secret::new(fake.issue_token(user_id));
    auth.signer()
        .unwrap()
        .issue(
            TokenKind::User,
            &NewToken {
                owner: &format!("github:{user_id}"),
                org,
                login: "octo",
                name: None,
                github_access_token: &github,
                ttl_seconds: 3600,
            },
            NOW,
        )
        .unwrap()
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

pub fn bearer(token: &str) -> HeaderMap {
    headers(&[("authorization", &format!("Bearer {token}"))])
}

pub async fn authenticate(
    auth: &Authenticator,
    path: &str,
    headers: &HeaderMap,
    peer: Option<&str>,
    now: Timestamp,
) -> Result<Principal, AuthError> {
    let peer: Option<IpAddr> = peer.map(|p| p.parse().unwrap());
    auth.authenticate(&Method::GET, path, headers, peer, now)
        .await
}
