//! Portal login and the session cookie rules.

use crabbox_auth::{AuthKind, Authenticator, PollResponse};
use http::{HeaderMap, Method, StatusCode};

use crate::support::{
    NOW, OCTO, PUBLIC_URL, authenticate, bearer, callback_query, cli_login, config, fake_github,
    follow_authorize, headers, login_service, poll_request,
};

fn cookie_pair(set_cookie: &str) -> (String, String) {
    let pair = set_cookie.split(';').next().unwrap();
    let (name, value) = pair.split_once('=').unwrap();
    (name.to_owned(), value.to_owned())
}

#[tokio::test]
async fn portal_login_sets_a_session_cookie_bound_to_the_browser() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, store) = login_service(&auth);

    let start = login
        .portal_login(Some("/portal/leases?state=active"), "198.51.100.7", NOW)
        .await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let authorize_url = start.location().unwrap().to_owned();
    let (_, start_headers, _) = start.into_response_parts();
    let cookies: Vec<String> = start_headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        cookies[0],
        "crabbox_session=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"
    );
    let (binding_name, binding_value) = cookie_pair(&cookies[1]);
    assert!(binding_name.starts_with("__Host-crabbox_oauth_state_"));
    assert!(cookies[1].ends_with("Max-Age=600"));

    let query = callback_query(&follow_authorize(&authorize_url).await);

    // The callback from a browser without the binding cookie is refused (and ends the login).
    let stolen = login
        .callback(&query, PUBLIC_URL, &HeaderMap::new(), NOW)
        .await;
    assert_eq!(stolen.status(), StatusCode::FORBIDDEN);
    assert!(store.is_empty());

    // Again, from the browser that started it.
    let start = login
        .portal_login(Some("//evil.example/portal"), "198.51.100.7", NOW)
        .await;
    let authorize_url = start.location().unwrap().to_owned();
    let (_, start_headers, _) = start.into_response_parts();
    let binding = start_headers
        .get_all("set-cookie")
        .iter()
        .nth(1)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (binding_name, binding_value_2) = cookie_pair(&binding);
    assert_ne!(binding_value, binding_value_2);
    let query = callback_query(&follow_authorize(&authorize_url).await);
    let browser = headers(&[(
        "cookie",
        &format!("theme=dark; {binding_name}={binding_value_2}"),
    )]);
    let done = login.callback(&query, PUBLIC_URL, &browser, NOW).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    assert_eq!(
        done.location(),
        Some("/portal"),
        "unsafe returnTo falls back to /portal"
    );
    let (_, done_headers, _) = done.into_response_parts();
    let set: Vec<String> = done_headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("__Host-crabbox_session="))
        .unwrap();
    assert!(session.ends_with("Max-Age=15552000"), "{session}");
    assert!(set.iter().any(
        |c| c == &format!("{binding_name}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
    ));
    let (_, token) = cookie_pair(session);
    assert!(token.starts_with("cbwp_"));
    assert!(
        store.is_empty(),
        "portal logins are removed once the cookie is set"
    );

    // The cookie authenticates portal pages, as a portal session.
    let cookie = headers(&[("cookie", &format!("__Host-crabbox_session={token}"))]);
    let p = authenticate(&auth, "/portal/leases", &cookie, None, NOW)
        .await
        .unwrap();
    assert_eq!(p.auth, AuthKind::Github);
    assert!(p.portal_session);
    assert_eq!(p.owner, "github:1001");

    // ...but never the API, neither as a cookie nor as a bearer token.
    assert!(
        authenticate(&auth, "/v1/leases", &cookie, None, NOW)
            .await
            .is_err()
    );
    assert!(
        authenticate(&auth, "/v1/leases", &bearer(&token), None, NOW)
            .await
            .is_err()
    );

    // A duplicated cookie counts as no cookie.
    let doubled = headers(&[(
        "cookie",
        &format!("__Host-crabbox_session={token}; __Host-crabbox_session={token}"),
    )]);
    assert!(
        authenticate(&auth, "/portal/leases", &doubled, None, NOW)
            .await
            .is_err()
    );

    // Logout works even when GitHub no longer vouches for the user.
    fake.remove_membership(OCTO, "OpenClaw");
    assert!(
        authenticate(&auth, "/portal/leases", &cookie, None, NOW)
            .await
            .is_err()
    );
    let logout = auth
        .authenticate(&Method::POST, "/portal/logout", &cookie, None, NOW)
        .await
        .unwrap();
    assert!(logout.portal_session);

    // Portal logins cannot be collected by polling.
    let start = login.portal_login(None, "198.51.100.7", NOW).await;
    assert_eq!(start.status(), StatusCode::FOUND);
    let login_doc = store
        .dump()
        .into_iter()
        .find(|(k, _)| k.starts_with("oauth:"))
        .unwrap();
    let id = login_doc.1["id"].as_str().unwrap().to_owned();
    let polled = login.poll(&poll_request(&id, None), NOW).await.unwrap();
    assert!(matches!(polled, PollResponse::Forbidden), "{polled:?}");
}

#[tokio::test]
async fn cli_tokens_work_in_the_portal_cookie_but_portal_cookies_not_in_the_api() {
    let fake = fake_github().await;
    let auth = Authenticator::new(config(&fake, &[]));
    let (login, _) = login_service(&auth);
    let token = cli_login(&login).await;
    let cookie = headers(&[(
        "cookie",
        &format!("__Host-crabbox_session={}", token.expose()),
    )]);
    let p = authenticate(&auth, "/portal", &cookie, None, NOW)
        .await
        .unwrap();
    assert!(!p.portal_session, "a CLI token is not a portal session");
    // On API paths the cookie is not even looked at.
    assert!(
        authenticate(&auth, "/v1/whoami", &cookie, None, NOW)
            .await
            .is_err()
    );
    // An Authorization header wins over the cookie on portal paths.
    let mut both = cookie.clone();
    both.insert("authorization", "Bearer nope".parse().unwrap());
    assert!(
        authenticate(&auth, "/portal", &both, None, NOW)
            .await
            .is_err()
    );
}
