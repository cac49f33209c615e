//! The GitHub client against the fake, and the fake's own wire shapes.

use crabbox_auth::Secret;
use crabbox_auth::github::{GithubClient, GithubError};
use crabbox_test_support::fake_github::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};

use crate::support::{OCTO, config, fake_github};

#[tokio::test]
async fn client_reads_user_emails_membership_and_teams() {
    let fake = fake_github().await;
    let client = GithubClient::new(&config(&fake, &[]).github);
    let token = Secret::new(fake.issue_token(OCTO));

    let user = client.user(&token).await.unwrap();
    assert_eq!((user.id, user.login.as_str()), (OCTO, "octo"));
    assert_eq!(user.name.as_deref(), Some("Octo Cat"));
    let emails = client.emails(&token).await.unwrap();
    assert!(emails[0].verified && emails[0].primary);
    let membership = client.org_membership(&token, "openclaw").await.unwrap();
    assert_eq!(
        (membership.state.as_str(), membership.org_login.as_str()),
        ("active", "OpenClaw")
    );
    assert!(matches!(
        client.org_membership(&token, "acme").await,
        Err(GithubError::Denied(_))
    ));

    for i in 0..150 {
        fake.add_team(OCTO, "OpenClaw", &format!("t{i}"));
    }
    assert_eq!(client.teams(&token, 1).await.unwrap().len(), 100);
    let page2 = client.teams(&token, 2).await.unwrap();
    assert_eq!(page2.len(), 50);
    assert_eq!(
        (page2[0].org_login.as_str(), page2[0].slug.as_str()),
        ("OpenClaw", "t100")
    );

    // Bad or revoked tokens are credential errors (log in again), not denials.
    fake.revoke_token(token.expose());
    assert!(matches!(
        client.user(&token).await,
        Err(GithubError::Credential(_))
    ));

    // Persistent 5xx: one retry, then a transient error.
    fake.reset_hits();
    fake.fail_next(2, 500);
    let other = Secret::new(fake.issue_token(OCTO));
    assert!(matches!(
        client.user(&other).await,
        Err(GithubError::Transient(_))
    ));
    assert_eq!(fake.hits("GET /user"), 2);
}

#[tokio::test]
async fn code_exchange_errors_follow_github() {
    let fake = fake_github().await;
    let client = GithubClient::new(&config(&fake, &[]).github);
    let err = client
        .exchange_code(
            "not-a-code",
            "http://127.0.0.1:8080/v1/auth/github/callback",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        GithubError::Protocol("github token exchange failed: bad_verification_code".into())
    );

    // The fake answers like GitHub: 200 with an error field, form-encoded unless JSON is asked.
    // The fake is on 127.0.0.1: a proxy set up on the machine must not be asked.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let form = http
        .post(format!("{}/login/oauth/access_token", fake.url()))
        .form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            ("code", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    assert_eq!(
        form.headers()["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert!(
        form.text()
            .await
            .unwrap()
            .starts_with("error=bad_verification_code&")
    );
    let json: serde_json::Value = http
        .post(format!("{}/login/oauth/access_token", fake.url()))
        .header("accept", "application/json")
        .json(&serde_json::json!({
            "client_id": DEFAULT_CLIENT_ID, "client_secret": "wrong", "code": "nope"
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["error"], "incorrect_client_credentials");
}
