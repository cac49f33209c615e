//! The old coordinator's GitHub login checklist (spec §10.1 "Usage & identity") where
//! `login_flow.rs` leaves gaps: no code exchange on a foreign origin, no login without the
//! email lookup, the configured token TTL, and ownership by numeric id.

use crabbox_auth::{Authenticator, PollResponse};
use crabbox_test_support::fake_github::{FakeEmail, FakeUser};
use http::{HeaderMap, StatusCode};

use crate::support::{
    NOW, OCTO, POLL_SECRET, PUBLIC_URL, authenticate, bearer, callback_query, cli_login, config,
    confirmation, fake_github, follow_authorize, login_service, poll_request, sha256_hex,
    start_request,
};

#[tokio::test]
async fn login_checklist_poll_secret_and_its_hash_never_leave_the_server() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, _) = login_service(&auth);
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let hash = sha256_hex(POLL_SECRET);
    let answer = serde_json::to_string(&started).unwrap();
    assert!(
        !answer.contains(&hash) && !answer.contains(POLL_SECRET),
        "{answer}"
    );
    let location = follow_authorize(&started.url).await;
    let outcome = login
        .callback(
            &callback_query(&location),
            PUBLIC_URL,
            &HeaderMap::new(),
            NOW,
        )
        .await;
    let back = outcome.location().unwrap().to_owned();
    assert!(
        !back.contains(&hash) && !back.contains(POLL_SECRET),
        "{back}"
    );
    let (_, _, page) = outcome.into_response_parts();
    assert!(!page.contains(&hash) && !page.contains(POLL_SECRET));
}

#[tokio::test]
async fn login_checklist_foreign_origin_callbacks_spend_no_code() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, _) = login_service(&auth);
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    fake.reset_hits();
    let foreign = login
        .callback(&query, "https://evil.example", &HeaderMap::new(), NOW)
        .await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(fake.hits("POST /login/oauth/access_token"), 0);
    assert_eq!(fake.api_hits(), 0, "GitHub was not asked anything");
    // The login was not claimed: the real callback still completes it.
    let outcome = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    let confirm = confirmation(&outcome);
    let done = login
        .poll(&poll_request(&started.login_id, Some(&confirm)), NOW)
        .await
        .unwrap();
    assert!(matches!(done, PollResponse::Complete { .. }), "{done:?}");
}

#[tokio::test]
async fn login_checklist_no_token_without_the_verified_email_lookup() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, _) = login_service(&auth);
    for status in [404, 403] {
        let started = login
            .start(&start_request(), "198.51.100.7", NOW)
            .await
            .unwrap();
        let query = callback_query(&follow_authorize(&started.url).await);
        fake.fail_route("GET /user/emails", 2, status);
        let refused = login
            .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
            .await;
        assert_ne!(refused.status(), StatusCode::SEE_OTHER, "{refused:?}");
        assert!(refused.location().is_none(), "{refused:?}");
        let polled = login
            .poll(&poll_request(&started.login_id, None), NOW)
            .await
            .unwrap();
        assert!(
            !matches!(
                polled,
                PollResponse::Complete { .. } | PollResponse::ConfirmationRequired { .. }
            ),
            "email lookup answered {status}: {polled:?}"
        );
    }
}

#[tokio::test]
async fn login_checklist_configured_token_ttl_is_honored() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[("CRABBOX_USER_TOKEN_TTL_SECONDS", "7200")]));
    let (login, _) = login_service(&auth);
    let started = login
        .start(&start_request(), "198.51.100.7", NOW)
        .await
        .unwrap();
    let query = callback_query(&follow_authorize(&started.url).await);
    let outcome = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    let confirm = confirmation(&outcome);
    let PollResponse::Complete {
        token,
        token_expires_at,
        ..
    } = login
        .poll(&poll_request(&started.login_id, Some(&confirm)), NOW)
        .await
        .unwrap()
    else {
        panic!("login did not complete");
    };
    assert_eq!(token_expires_at, Some(NOW.plus_secs(7200)));
    let principal = authenticate(&auth, "/v1/whoami", &bearer(token.expose()), None, NOW)
        .await
        .unwrap();
    assert_eq!(principal.token_expires_at, Some(NOW.plus_secs(7200)));
    let just_before = NOW.plus_secs(7199);
    assert!(
        authenticate(
            &auth,
            "/v1/whoami",
            &bearer(token.expose()),
            None,
            just_before
        )
        .await
        .is_ok()
    );
    let at_expiry = NOW.plus_secs(7200);
    assert!(
        authenticate(
            &auth,
            "/v1/whoami",
            &bearer(token.expose()),
            None,
            at_expiry
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn login_checklist_ownership_follows_the_numeric_id_not_the_email() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, _) = login_service(&auth);
    let first = cli_login(&login).await;

    // octo moves to a new address; a new account takes the old one.
    let mut moved = FakeUser::new(OCTO, "octo");
    moved.emails = vec![FakeEmail {
        email: "octo@new.example".into(),
        verified: true,
        primary: true,
    }];
    fake.add_user(moved);
    let mut newcomer = FakeUser::new(2002, "newcomer");
    newcomer.emails[0].email = "octo@example.com".into();
    fake.add_user(newcomer);
    fake.set_membership(2002, "OpenClaw", "active");

    let principal = authenticate(&auth, "/v1/whoami", &bearer(first.expose()), None, NOW)
        .await
        .unwrap();
    assert_eq!(principal.owner, "github:1001");
    let again = cli_login(&login).await;
    let principal = authenticate(&auth, "/v1/whoami", &bearer(again.expose()), None, NOW)
        .await
        .unwrap();
    assert_eq!(
        principal.owner, "github:1001",
        "the same account after the move"
    );

    fake.set_logged_in(Some(2002));
    let newcomer = cli_login(&login).await;
    let principal = authenticate(&auth, "/v1/whoami", &bearer(newcomer.expose()), None, NOW)
        .await
        .unwrap();
    assert_eq!(
        principal.owner, "github:2002",
        "an old address does not carry ownership"
    );
    assert_eq!(principal.login.as_deref(), Some("newcomer"));
}
