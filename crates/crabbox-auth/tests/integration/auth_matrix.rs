//! Credential precedence and refusal rules (spec coordinator §5.2).

use base64::Engine as _;
use crabbox_auth::org::{MISSING_ORG_KEY, key_for_label};
use crabbox_auth::token::{NewToken, TokenKind, TokenSigner};
use crabbox_auth::{AuthError, AuthKind, Authenticator, Secret};
use http::StatusCode;

use crate::support::{
    ADMIN_TOKEN, NOW, OCTO, SHARED_TOKEN, authenticate, bearer, config, fake_github, headers, mint,
};

#[tokio::test]
async fn shared_token_ignores_caller_identity_headers() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(
        &fake,
        &[("CRABBOX_SHARED_OWNER", " team@example.com ")],
    ));
    let h = headers(&[
        ("authorization", &format!("Bearer {SHARED_TOKEN}")),
        ("x-crabbox-owner", "mallory@example.com"),
        ("x-crabbox-org", "evil-corp"),
    ]);
    let p = authenticate(&auth, "/v1/leases", &h, None, NOW)
        .await
        .unwrap();
    assert_eq!(p.auth, AuthKind::Bearer);
    assert!(!p.admin);
    assert_eq!(p.owner, "team@example.com");
    assert_eq!(p.org_key, key_for_label("openclaw").unwrap());
    assert_eq!(p.org_label, "openclaw");

    // No shared owner and no default org: `unknown` owner, the *missing* org (not a literal
    // org called "unknown").
    let bare = Authenticator::new(config(&fake, &[("CRABBOX_DEFAULT_ORG", "")]));
    let p = authenticate(&bare, "/v1/leases", &bearer(SHARED_TOKEN), None, NOW)
        .await
        .unwrap();
    assert_eq!(p.owner, "unknown");
    assert_eq!(p.org_key, MISSING_ORG_KEY);
    assert_eq!(p.org_label, "unknown");
    assert_eq!(p.org_header_label(), "");
}

#[tokio::test]
async fn admin_token_honors_caller_identity_headers() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let h = headers(&[
        ("authorization", &format!("bearer {ADMIN_TOKEN}")),
        ("x-crabbox-owner", "peter@example.com"),
        ("x-crabbox-org", "Acme Corp"),
    ]);
    let p = authenticate(&auth, "/v1/admin/leases", &h, None, NOW)
        .await
        .unwrap();
    assert!(p.admin);
    assert_eq!(p.auth, AuthKind::Bearer);
    assert_eq!(p.owner, "peter@example.com");
    assert_eq!(p.org_label, "Acme Corp");

    let p = authenticate(&auth, "/v1/pool", &bearer(ADMIN_TOKEN), None, NOW)
        .await
        .unwrap();
    assert_eq!(
        (p.owner.as_str(), p.org_label.as_str()),
        ("unknown", "openclaw")
    );

    // An empty org header means "no org"; an unencodable one is the caller's error, a 400.
    let empty = headers(&[
        ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
        ("x-crabbox-org", ""),
    ]);
    let p = authenticate(&auth, "/v1/pool", &empty, None, NOW)
        .await
        .unwrap();
    assert_eq!(p.org_key, MISSING_ORG_KEY);
    let bad = headers(&[
        ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
        ("x-crabbox-org", " padded"),
    ]);
    let err = authenticate(&auth, "/v1/pool", &bad, None, NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidOrg(_)));
    let (status, body) = err.response();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_org_identity");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("x-crabbox-org must be 1-63")
    );
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_401() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    for h in [
        headers(&[]),
        bearer("nope"),
        bearer(&format!("{SHARED_TOKEN}x")),
        bearer(&SHARED_TOKEN[..SHARED_TOKEN.len() - 1]),
        headers(&[("authorization", &format!("Basic {SHARED_TOKEN}"))]),
        headers(&[("authorization", &format!("Bearer  {SHARED_TOKEN}"))]),
        headers(&[("x-crabbox-owner", "peter"), ("x-crabbox-admin", "true")]),
    ] {
        let err = authenticate(&auth, "/v1/leases", &h, None, NOW)
            .await
            .unwrap_err();
        assert_eq!(err.response().0, StatusCode::UNAUTHORIZED, "{h:?}");
        assert_eq!(
            err.response().1,
            serde_json::json!({"error": "unauthorized"})
        );
    }
}

#[tokio::test]
async fn proxy_identity_only_from_trusted_peers_with_the_secret() {
    let fake = fake_github().await;
    let proxied = |secret: Option<&'static str>| {
        let mut extra = vec![
            ("CRABBOX_TRUSTED_PROXY_CIDRS", "10.0.0.0/8,::1"),
            ("CRABBOX_TRUSTED_USER_HEADER", "X-Auth-Request-Email"),
            ("CRABBOX_TRUSTED_USER_ORG", "platform"),
        ];
        if let Some(secret) = secret {
            extra.push(("CRABBOX_TRUSTED_PROXY_SECRET", secret));
        }
        Authenticator::new(config(&fake, &extra))
    };
    let with_secret = proxied(Some("proxy-psst"));
    let user = |secret: &str| {
        headers(&[
            ("x-auth-request-email", " ada@example.com "),
            ("x-crabbox-proxy-secret", secret),
        ])
    };

    let p = authenticate(
        &with_secret,
        "/v1/leases",
        &user("proxy-psst"),
        Some("10.1.2.3"),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(p.auth, AuthKind::Proxy);
    assert_eq!(p.owner, "ada@example.com");
    assert_eq!(p.org_label, "platform");
    assert!(!p.admin);
    assert!(
        authenticate(
            &with_secret,
            "/v1/leases",
            &user("proxy-psst"),
            Some("::1"),
            NOW
        )
        .await
        .is_ok()
    );
    assert!(
        authenticate(
            &with_secret,
            "/v1/leases",
            &user("proxy-psst"),
            Some("::ffff:10.0.0.9"),
            NOW
        )
        .await
        .is_ok(),
        "IPv4-mapped peers match IPv4 ranges"
    );

    // Untrusted peer, wrong or missing secret, no peer at all.
    for (h, peer) in [
        (user("proxy-psst"), Some("192.0.2.1")),
        (user("proxy-psst"), None),
        (user("wrong"), Some("10.1.2.3")),
        (
            headers(&[("x-auth-request-email", "ada@example.com")]),
            Some("10.1.2.3"),
        ),
    ] {
        let r = authenticate(&with_secret, "/v1/leases", &h, peer, NOW).await;
        assert!(r.is_err(), "{h:?} from {peer:?}");
    }

    // A defined-but-empty secret refuses every proxy identity.
    let closed = proxied(Some(""));
    assert!(
        authenticate(&closed, "/v1/leases", &user(""), Some("10.1.2.3"), NOW)
            .await
            .is_err()
    );

    // Without a secret the trusted peer is enough; the identity must be sane.
    let open = proxied(None);
    let ok = headers(&[("x-auth-request-email", "ada@example.com")]);
    assert!(
        authenticate(&open, "/v1/leases", &ok, Some("10.1.2.3"), NOW)
            .await
            .is_ok()
    );
    let long = "a".repeat(321);
    let max = "a".repeat(320);
    for (value, accepted) in [
        (long.as_str(), false),
        (max.as_str(), true),
        ("ada\tx", false),
        ("   ", false),
    ] {
        let h = headers(&[("x-auth-request-email", value)]);
        let r = authenticate(&open, "/v1/leases", &h, Some("10.1.2.3"), NOW).await;
        assert_eq!(r.is_ok(), accepted, "{value:?}");
    }

    // The proxy identity names the owner of shared- and admin-token requests too.
    let h = headers(&[
        ("authorization", &format!("Bearer {SHARED_TOKEN}")),
        ("x-auth-request-email", "ada@example.com"),
    ]);
    let p = authenticate(&open, "/v1/leases", &h, Some("10.1.2.3"), NOW)
        .await
        .unwrap();
    assert_eq!(
        (p.auth, p.owner.as_str(), p.org_label.as_str()),
        (AuthKind::Bearer, "ada@example.com", "openclaw")
    );
    let p = authenticate(&open, "/v1/leases", &h, Some("192.0.2.1"), NOW)
        .await
        .unwrap();
    assert_eq!(p.owner, "unknown", "but only from a trusted peer");

    // Source addresses: rightmost untrusted X-Forwarded-For hop behind a trusted proxy.
    let xff = headers(&[
        ("x-forwarded-for", "6.6.6.6, 203.0.113.9"),
        ("x-forwarded-for", "10.0.0.7"),
    ]);
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(open.source_ip(ip("10.0.0.2"), &xff), ip("203.0.113.9"));
    assert_eq!(open.source_ip(ip("192.0.2.1"), &xff), ip("192.0.2.1"));
}

#[tokio::test]
async fn signed_tokens_are_refused_when_forged_tampered_or_expired() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let good = mint(&auth, &fake, OCTO, "openclaw");
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&good), None, NOW)
            .await
            .is_ok()
    );

    // Signed with the shared token instead of the session secret.
    let github = Secret::new(fake.issue_token(OCTO));
    let forged = TokenSigner::new(Secret::new(SHARED_TOKEN))
        .issue(
            TokenKind::User,
            &NewToken {
                owner: "github:1001",
                org: "openclaw",
                login: "octo",
                name: None,
                github_access_token: &github,
                ttl_seconds: 3600,
            },
            NOW,
        )
        .unwrap();
    let err = authenticate(&auth, "/v1/leases", &bearer(&forged), None, NOW)
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("signature mismatch"), "{err}");

    // Tampered payload: same signature, different owner.
    let (payload, signature) = good.strip_prefix("cbxu_").unwrap().split_once('.').unwrap();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value =
        serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap();
    claims["owner"] = "github:1".into();
    let tampered = format!("cbxu_{}.{signature}", engine.encode(claims.to_string()));
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&tampered), None, NOW)
            .await
            .is_err()
    );

    // Validly signed but carrying an admin claim.
    let mut admin_claims = claims.clone();
    admin_claims["owner"] = "github:1001".into();
    admin_claims["admin"] = true.into();
    let signer = auth.signer().unwrap();
    let with_admin = signer.sign_payload(TokenKind::User, admin_claims.to_string().as_bytes());
    let err = authenticate(&auth, "/v1/leases", &bearer(&with_admin), None, NOW)
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("admin claim"), "{err}");

    // Expired (an hour-long token, an hour later) and not yet valid.
    let later = NOW.plus_secs(3600);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&good), None, later)
            .await
            .is_err()
    );
    let earlier = NOW.plus_secs(-61);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&good), None, earlier)
            .await
            .is_err()
    );

    // A token whose GitHub grant was revoked on GitHub.
    fake.revoke_user_tokens(OCTO);
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&good), None, NOW)
            .await
            .is_err()
    );

    // A token for another account than its GitHub credential.
    let other = mint(&auth, &fake, OCTO, "openclaw");
    fake.add_user(crabbox_test_support::fake_github::FakeUser::new(
        4004, "twin",
    ));
    let twin_github = Secret::new(fake.issue_token(4004));
    let impostor = signer
        .issue(
            TokenKind::User,
            &NewToken {
                owner: "github:1001",
                org: "openclaw",
                login: "octo",
                name: None,
                github_access_token: &twin_github,
                ttl_seconds: 3600,
            },
            NOW,
        )
        .unwrap();
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&other), None, NOW)
            .await
            .is_ok()
    );
    let err = authenticate(&auth, "/v1/leases", &bearer(&impostor), None, NOW)
        .await
        .unwrap_err();
    assert!(format!("{err}").contains("no longer matches"), "{err}");

    // Tokens bound to an org that is no longer allowed.
    let acme = mint(&auth, &fake, OCTO, "acme");
    fake.set_membership(OCTO, "acme", "active");
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&acme), None, NOW)
            .await
            .is_err()
    );
}
