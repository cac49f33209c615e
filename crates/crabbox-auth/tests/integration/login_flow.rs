//! The CLI GitHub login flow end to end, then the token it yields at work.

use crabbox_auth::{AuthError, AuthKind, Authenticator, PollResponse, StartRequest};
use http::{HeaderMap, StatusCode};

use crate::support::{
    NOW, OCTO, POLL_SECRET, PUBLIC_URL, authenticate, bearer, callback_query, cli_login, config,
    confirmation, fake_github, follow_authorize, login_service, poll_request, start_request,
};

#[tokio::test]
async fn cli_login_then_requests_until_membership_is_revoked() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, store) = login_service(&auth);

    // start
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    assert!(started.login_id.starts_with("login_") && started.login_id.len() == 38);
    assert_eq!(started.expires_at, NOW.plus_secs(600));
    assert!(
        started
            .url
            .starts_with(&format!("{}/login/oauth/authorize?", fake.url()))
    );

    // Nothing to collect yet.
    let pending = login
        .poll(&poll_request(&started.login_id, None), NOW)
        .await
        .unwrap();
    assert!(
        matches!(pending, PollResponse::Pending { .. }),
        "{pending:?}"
    );

    // The browser goes to GitHub, which sends it back to the coordinator's callback.
    let location = follow_authorize(&started.url).await;
    let authorize = fake.last_authorize_query().unwrap();
    assert_eq!(authorize["scope"], "read:user user:email read:org");
    assert_eq!(
        authorize["redirect_uri"],
        format!("{PUBLIC_URL}/v1/auth/github/callback")
    );
    assert!(location.starts_with(&format!("{PUBLIC_URL}/v1/auth/github/callback?code=")));
    let query = callback_query(&location);
    let outcome = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    let confirm = confirmation(&outcome);
    assert!(confirm.starts_with("confirm_") && confirm.len() == 40);
    let (_, response_headers, _) = outcome.clone().into_response_parts();
    assert_eq!(response_headers["cache-control"], "no-store");
    assert_eq!(response_headers["referrer-policy"], "no-referrer");

    // The callback cannot be replayed.
    let replay = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(replay.status(), StatusCode::CONFLICT);

    // The poll secret itself never reaches storage; its hash does.
    let stored = serde_json::to_string(&store.dump()).unwrap();
    assert!(!stored.contains(POLL_SECRET));
    assert!(
        !stored.contains(&confirm),
        "only the confirmation's hash is stored"
    );

    // Without the confirmation, or with a wrong one or a wrong secret, no token.
    let needs = login
        .poll(&poll_request(&started.login_id, None), NOW)
        .await
        .unwrap();
    assert!(
        matches!(needs, PollResponse::ConfirmationRequired { .. }),
        "{needs:?}"
    );
    let wrong_confirm = format!("confirm_{}", "0".repeat(32));
    let refused = login
        .poll(&poll_request(&started.login_id, Some(&wrong_confirm)), NOW)
        .await
        .unwrap();
    assert!(matches!(refused, PollResponse::Forbidden), "{refused:?}");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let mut wrong_secret = poll_request(&started.login_id, Some(&confirm));
    wrong_secret.poll_secret = Some("not-the-secret".into());
    let refused = login.poll(&wrong_secret, NOW).await.unwrap();
    assert!(matches!(refused, PollResponse::Forbidden), "{refused:?}");

    // With both, the token — once.
    let complete = login
        .poll(&poll_request(&started.login_id, Some(&confirm)), NOW)
        .await
        .unwrap();
    let body = complete.body();
    let PollResponse::Complete {
        token,
        owner,
        org,
        login: github_login,
        provider,
        token_expires_at,
    } = complete
    else {
        panic!("not complete: {body}");
    };
    assert!(token.expose().starts_with("cbxu_"));
    assert_eq!(owner, "github:1001");
    assert_eq!(org, "OpenClaw", "GitHub's spelling of the org login");
    assert_eq!(github_login, "octo");
    assert_eq!(provider.as_deref(), Some("aws"));
    assert_eq!(token_expires_at, Some(NOW.plus_secs(15_552_000)));
    assert_eq!(body["status"], "complete");
    let again = login
        .poll(&poll_request(&started.login_id, Some(&confirm)), NOW)
        .await
        .unwrap();
    assert!(matches!(again, PollResponse::Expired), "{again:?}");
    assert!(store.is_empty(), "completed logins leave nothing behind");

    // The token authenticates: a GitHub principal, admin because github:1001 is listed.
    let principal = authenticate(&auth, "/v1/whoami", &bearer(token.expose()), None, NOW)
        .await
        .unwrap();
    assert_eq!(principal.auth, AuthKind::Github);
    assert_eq!(principal.owner, "github:1001");
    assert_eq!(principal.org_label, "OpenClaw");
    assert_eq!(principal.login.as_deref(), Some("octo"));
    assert!(principal.admin);
    assert_eq!(principal.token_expires_at, Some(NOW.plus_secs(15_552_000)));
    assert!(!principal.portal_session);

    // Not an admin where github:1001 is not an admin owner (same session secret).
    let plain = Authenticator::new(config(
        &fake,
        &[("CRABBOX_GITHUB_ADMIN_OWNERS", "github:7")],
    ));
    let principal = authenticate(&plain, "/v1/whoami", &bearer(token.expose()), None, NOW)
        .await
        .unwrap();
    assert!(!principal.admin);

    // Membership revoked on GitHub: with the cache off, the next request is refused.
    fake.remove_membership(OCTO, "OpenClaw");
    let refused = authenticate(&auth, "/v1/whoami", &bearer(token.expose()), None, NOW).await;
    assert!(
        matches!(refused, Err(AuthError::Unauthorized { .. })),
        "{refused:?}"
    );
    fake.set_membership(OCTO, "OpenClaw", "pending");
    let refused = authenticate(&auth, "/v1/whoami", &bearer(token.expose()), None, NOW).await;
    assert!(refused.is_err(), "a pending invitation is not membership");
    fake.set_membership(OCTO, "OpenClaw", "active");
    assert!(
        authenticate(&auth, "/v1/whoami", &bearer(token.expose()), None, NOW)
            .await
            .is_ok()
    );

    // The revoked-users list denies at once, without asking GitHub.
    let revoking = Authenticator::new(config(
        &fake,
        &[("CRABBOX_GITHUB_REVOKED_USERS", "owner:github:1001")],
    ));
    let before = fake.api_hits();
    let refused = authenticate(&revoking, "/v1/whoami", &bearer(token.expose()), None, NOW).await;
    assert!(refused.is_err());
    assert_eq!(fake.api_hits(), before);

    // Expired tokens stop working.
    let later = NOW.plus_secs(15_552_000);
    assert!(
        authenticate(&auth, "/v1/whoami", &bearer(token.expose()), None, later)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn membership_cache_serves_until_expiry() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(
        &fake,
        &[("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "300")],
    ));
    let (login, _) = login_service(&auth);
    let token = cli_login(&login).await;
    fake.reset_hits();

    for _ in 0..3 {
        authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, NOW)
            .await
            .unwrap();
    }
    assert_eq!(
        fake.hits("GET /user"),
        1,
        "one revalidation for three requests"
    );
    assert_eq!(fake.hits("GET /user/memberships/orgs"), 1);

    fake.remove_membership(OCTO, "OpenClaw");
    let within = NOW.plus_secs(299);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, within)
            .await
            .is_ok()
    );
    let after = NOW.plus_secs(300);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, after)
            .await
            .is_err()
    );
    assert_eq!(fake.hits("GET /user"), 2);

    // Settings changes apply to cached identities immediately.
    fake.set_membership(OCTO, "OpenClaw", "active");
    authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, after)
        .await
        .unwrap();
    let moved = Authenticator::new(config(
        &fake,
        &[
            ("CRABBOX_GITHUB_MEMBERSHIP_CACHE_SECONDS", "300"),
            ("CRABBOX_GITHUB_ALLOWED_ORGS", "acme"),
        ],
    ));
    assert!(
        authenticate(&moved, "/v1/leases", &bearer(token.expose()), None, after)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn transient_github_failures_are_retried_once_then_resumable() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, _) = login_service(&auth);

    // One 502 on a lookup: retried after 200 ms and the login completes.
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    fake.reset_hits();
    fake.fail_route("GET /user", 1, 502);
    let outcome = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    confirmation(&outcome);
    assert_eq!(fake.hits("GET /user"), 2);

    // A 429 on the code exchange (never retried: a code may be spent): the callback asks the
    // browser to retry, and the retry link resumes the same login.
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    fake.reset_hits();
    fake.fail_route("POST /login/oauth/access_token", 1, 429);
    let delayed = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(delayed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (_, headers, body) = delayed.into_response_parts();
    assert_eq!(headers["retry-after"], "2");
    assert!(body.contains("Retry GitHub login"), "{body}");
    assert!(
        body.contains(&format!("{PUBLIC_URL}/v1/auth/github/callback?code=")),
        "{body}"
    );
    let pending = login
        .poll(&poll_request(&started.login_id, None), NOW)
        .await
        .unwrap();
    assert!(matches!(pending, PollResponse::Pending { .. }));
    let outcome = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    let confirm = confirmation(&outcome);
    let done = login
        .poll(&poll_request(&started.login_id, Some(&confirm)), NOW)
        .await
        .unwrap();
    assert!(matches!(done, PollResponse::Complete { .. }), "{done:?}");
    assert_eq!(fake.hits("POST /login/oauth/access_token"), 2);

    // After a successful exchange, lookups failing twice make the callback retryable, and the
    // retry resumes from the stored credential without spending the code again.
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    fake.reset_hits();
    fake.fail_route("GET /user", 2, 503);
    let delayed = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(
        delayed.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "{delayed:?}"
    );
    let outcome = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    confirmation(&outcome);
    assert_eq!(
        fake.hits("POST /login/oauth/access_token"),
        1,
        "the code is spent once"
    );

    // Per-request revalidation retries a transient failure once too, then fails closed.
    let token = crate::support::cli_login(&login).await;
    fake.fail_route("GET /user/memberships/orgs", 1, 500);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, NOW)
            .await
            .is_ok()
    );
    fake.fail_route("GET /user/memberships/orgs", 2, 500);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, NOW)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn refused_logins_explain_themselves() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, store) = login_service(&auth);

    // A user without a verified address.
    fake.add_user(crabbox_test_support::fake_github::FakeUser::new(2002, "ghost").unverified());
    fake.set_membership(2002, "OpenClaw", "active");
    fake.set_logged_in(Some(2002));
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    let denied = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let failed = login
        .poll(&poll_request(&started.login_id, None), NOW)
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        failed.body(),
        serde_json::json!({"status": "failed",
            "error": "GitHub account must have a verified email to use Crabbox."})
    );

    // A user outside the org.
    fake.add_user(crabbox_test_support::fake_github::FakeUser::new(
        3003, "stranger",
    ));
    fake.set_logged_in(Some(3003));
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    let denied = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let (_, _, body) = denied.into_response_parts();
    assert!(
        body.contains("stranger is not an active member of openclaw"),
        "{body}"
    );
    let failed = login
        .poll(&poll_request(&started.login_id, None), NOW)
        .await
        .unwrap();
    assert_eq!(
        failed.body()["error"],
        "GitHub user stranger is not an active member of openclaw."
    );

    // The user declines on GitHub.
    fake.set_logged_in(Some(OCTO));
    fake.set_deny_authorization(true);
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    assert_eq!(query.error.as_deref(), Some("access_denied"));
    let declined = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(declined.status(), StatusCode::BAD_REQUEST);
    let failed = login
        .poll(&poll_request(&started.login_id, None), NOW)
        .await
        .unwrap();
    assert_eq!(failed.body()["error"], "access_denied");
    fake.set_deny_authorization(false);

    // A callback on another origin is refused before anything is claimed.
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    let foreign = login
        .callback(&query, "https://evil.example", &HeaderMap::new(), NOW)
        .await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    // Unknown state, and a login that expired before the browser came back.
    let mut unknown = query.clone();
    unknown.state = Some("state_nope".into());
    let expired = login
        .callback(&unknown, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST);
    let late = NOW.plus_secs(601);
    let expired = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), late)
        .await;
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST);
    let gone = login
        .poll(&poll_request(&started.login_id, None), late)
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::GONE);

    // Failed polls clean up; only the unfinished ones remain.
    assert_eq!(
        store.dump().len(),
        2,
        "the foreign-origin login and its state key"
    );
}

#[tokio::test]
async fn allowed_teams_gate_login_and_requests() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(
        &fake,
        &[("CRABBOX_GITHUB_ALLOWED_TEAMS", "crabbox-users")],
    ));
    let (login, _) = login_service(&auth);

    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    let denied = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);

    // Teams are paged 100 at a time; the allowed one is on page 2.
    for i in 0..100 {
        fake.add_team(OCTO, "OpenClaw", &format!("team-{i}"));
    }
    fake.add_team(OCTO, "OpenClaw", "Crabbox-Users");
    let token = crate::support::cli_login(&login).await;
    fake.reset_hits();
    authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, NOW)
        .await
        .unwrap();
    assert_eq!(fake.hits("GET /user/teams"), 2);

    fake.remove_teams(OCTO);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(token.expose()), None, NOW)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn start_refusals() {
    let fake = fake_github().await;
    let status_of = |r: Result<crabbox_auth::StartResponse, crabbox_auth::LoginError>| {
        let e = r.unwrap_err();
        (e.status.as_u16(), e.code)
    };

    let unconfigured = Authenticator::new(config(&fake, &[("CRABBOX_GITHUB_CLIENT_SECRET", "")]));
    let (login, _) = login_service(&unconfigured);
    let r = login.start(&start_request(), "s", NOW).await;
    assert_eq!(status_of(r), (503, "github_oauth_not_configured"));

    let no_url = Authenticator::new(config(&fake, &[("CRABBOX_PUBLIC_URL", "")]));
    let r = login_service(&no_url)
        .0
        .start(&start_request(), "s", NOW)
        .await;
    assert_eq!(status_of(r), (503, "github_public_url_required"));

    let bad_url = Authenticator::new(config(
        &fake,
        &[("CRABBOX_PUBLIC_URL", "http://crabbox.example.com")],
    ));
    let r = login_service(&bad_url)
        .0
        .start(&start_request(), "s", NOW)
        .await;
    assert_eq!(status_of(r), (503, "github_public_url_invalid"));

    let no_secret = Authenticator::new(config(&fake, &[("CRABBOX_SESSION_SECRET", "")]));
    let r = login_service(&no_secret)
        .0
        .start(&start_request(), "s", NOW)
        .await;
    assert_eq!(status_of(r), (503, "github_session_secret_invalid"));

    let auth = Authenticator::new(config(&fake, &[]));
    let (login, store) = login_service(&auth);
    let mut bad_hash = start_request();
    bad_hash.poll_secret_hash = Some("ABC".into());
    assert_eq!(
        status_of(login.start(&bad_hash, "s", NOW).await),
        (400, "invalid_poll_secret_hash")
    );
    let no_loopback = StartRequest {
        loopback_redirect_uri: None,
        ..start_request()
    };
    let e = login.start(&no_loopback, "s", NOW).await.unwrap_err();
    assert_eq!(
        (e.status.as_u16(), e.code),
        (400, "loopback_redirect_required")
    );
    assert_eq!(
        e.body()["message"],
        "Upgrade the Crabbox CLI to complete GitHub login on this device."
    );

    // Ten pending logins per source, a hundred in all; expired ones make room again.
    for _ in 0..10 {
        login
            .start(&start_request(), "203.0.113.1", NOW)
            .await
            .unwrap();
    }
    let r = login.start(&start_request(), "203.0.113.1", NOW).await;
    assert_eq!(status_of(r), (429, "login_rate_limited"));
    for i in 0..90 {
        login
            .start(&start_request(), &format!("203.0.113.{}", 10 + i), NOW)
            .await
            .unwrap();
    }
    let r = login.start(&start_request(), "192.0.2.1", NOW).await;
    assert_eq!(status_of(r), (429, "login_rate_limited"));
    assert_eq!(store.len(), 200, "100 logins plus their state keys");
    let later = NOW.plus_secs(601);
    login
        .start(&start_request(), "203.0.113.1", later)
        .await
        .unwrap();
    assert_eq!(store.len(), 2, "expired logins were purged");
}

#[tokio::test]
async fn poll_refusals() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, _) = login_service(&auth);
    let invalid = login
        .poll(&crabbox_auth::PollRequest::default(), NOW)
        .await
        .unwrap();
    assert_eq!(invalid.body(), serde_json::json!({"error": "invalid_poll"}));
    let unknown = login
        .poll(
            &poll_request(&format!("login_{}", "a".repeat(32)), None),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::GONE);
    assert_eq!(unknown.body(), serde_json::json!({"status": "expired"}));
}
