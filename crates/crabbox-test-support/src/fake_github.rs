//! A stateful fake of the GitHub endpoints the coordinator's login and revalidation use,
//! served over real HTTP on 127.0.0.1. Paths, status codes and JSON shapes follow GitHub's
//! public REST and OAuth documentation:
//!
//! - `GET /login/oauth/authorize` — the browser step. With a "logged-in" user set, it
//!   redirects straight back to `redirect_uri` with `code` and `state`, so tests need no
//!   browser; with none, it shows a sign-in page.
//! - `POST /login/oauth/access_token` — form or JSON body; answers JSON when asked with
//!   `Accept: application/json`, else form-encoded. Bad codes and credentials answer `200` with
//!   an `error` field, as GitHub does.
//! - `GET /user`, `GET /user/emails`, `GET /user/memberships/orgs/{org}`, `GET /user/teams`
//!   with `Authorization: Bearer <token>` (or `token <token>`); unknown tokens get `401 Bad
//!   credentials`.
//!
//! Tests configure users, org memberships, teams and tokens, can make the next N API calls
//! fail with a status, and read per-route request counters to assert caching and retries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// A GitHub account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeUser {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    pub emails: Vec<FakeEmail>,
}

/// One address of a GitHub account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeEmail {
    pub email: String,
    pub verified: bool,
    pub primary: bool,
}

impl FakeUser {
    /// A user with one verified primary address `<login>@example.com`.
    pub fn new(id: u64, login: &str) -> Self {
        Self {
            id,
            login: login.to_owned(),
            name: None,
            emails: vec![FakeEmail {
                email: format!("{login}@example.com"),
                verified: true,
                primary: true,
            }],
        }
    }

    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// The same user with every address unverified.
    #[must_use]
    pub fn unverified(mut self) -> Self {
        for email in &mut self.emails {
            email.verified = false;
        }
        self
    }
}

#[derive(Debug, Clone)]
struct Membership {
    org_login: String,
    state: String,
}

#[derive(Debug, Clone)]
struct PendingCode {
    user: u64,
    redirect_uri: String,
}

#[derive(Debug, Default)]
struct State {
    client_id: String,
    client_secret: String,
    users: BTreeMap<u64, FakeUser>,
    tokens: HashMap<String, u64>,
    codes: HashMap<String, PendingCode>,
    /// (user id, lowercase org) → membership.
    memberships: HashMap<(u64, String), Membership>,
    /// user id → (org login, team slug).
    teams: HashMap<u64, Vec<(String, String)>>,
    logged_in: Option<u64>,
    deny_authorization: bool,
    failures: VecDeque<u16>,
    route_failures: HashMap<String, VecDeque<u16>>,
    hits: HashMap<String, u64>,
    last_authorize: Option<BTreeMap<String, String>>,
    counter: u64,
}

impl State {
    fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
}

type Shared = Arc<Mutex<State>>;

/// The running fake. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeGithub {
    addr: SocketAddr,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The OAuth app the fake accepts until [`FakeGithub::set_oauth_app`] changes it.
pub const DEFAULT_CLIENT_ID: &str = "Iv1.fakeclient";
pub const DEFAULT_CLIENT_SECRET: &str = "fake-client-secret";

impl FakeGithub {
    /// Starts the fake on an ephemeral 127.0.0.1 port. Must be called inside a Tokio runtime.
    pub async fn start() -> Self {
        let state: Shared = Arc::new(Mutex::new(State {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            ..State::default()
        }));
        let app = Router::new()
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/user", get(user))
            .route("/user/emails", get(emails))
            .route("/user/memberships/orgs/{org}", get(org_membership))
            .route("/user/teams", get(teams))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("fake GitHub serves");
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`: both the web and the API base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake GitHub state")
    }

    pub fn set_oauth_app(&self, client_id: &str, client_secret: &str) {
        let mut s = self.lock();
        client_id.clone_into(&mut s.client_id);
        client_secret.clone_into(&mut s.client_secret);
    }

    /// Adds or replaces a user.
    pub fn add_user(&self, user: FakeUser) {
        self.lock().users.insert(user.id, user);
    }

    /// The user the authorize page acts for (`None`: nobody is signed in).
    pub fn set_logged_in(&self, user_id: Option<u64>) {
        self.lock().logged_in = user_id;
    }

    /// Makes the next authorizations answer `error=access_denied`.
    pub fn set_deny_authorization(&self, deny: bool) {
        self.lock().deny_authorization = deny;
    }

    /// Sets the user's membership of `org` (`state` is `active` or `pending`).
    pub fn set_membership(&self, user_id: u64, org: &str, state: &str) {
        self.lock().memberships.insert(
            (user_id, org.to_ascii_lowercase()),
            Membership {
                org_login: org.to_owned(),
                state: state.to_owned(),
            },
        );
    }

    pub fn remove_membership(&self, user_id: u64, org: &str) {
        self.lock()
            .memberships
            .remove(&(user_id, org.to_ascii_lowercase()));
    }

    pub fn add_team(&self, user_id: u64, org: &str, slug: &str) {
        self.lock()
            .teams
            .entry(user_id)
            .or_default()
            .push((org.to_owned(), slug.to_owned()));
    }

    pub fn remove_teams(&self, user_id: u64) {
        self.lock().teams.remove(&user_id);
    }

    /// A token for `user_id`, as if it had completed OAuth.
    pub fn issue_token(&self, user_id: u64) -> String {
        let mut s = self.lock();
        let n = s.next_id();
        let token = format!("gho_fake{n:032x}");
        s.tokens.insert(token.clone(), user_id);
        token
    }

    pub fn revoke_token(&self, token: &str) {
        self.lock().tokens.remove(token);
    }

    /// Revokes every token of `user_id`.
    pub fn revoke_user_tokens(&self, user_id: u64) {
        self.lock().tokens.retain(|_, u| *u != user_id);
    }

    /// The next `n` requests to the token endpoint or the API answer `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut s = self.lock();
        s.failures.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` requests to `route` (as named for [`FakeGithub::hits`]) answer `status`;
    /// these are used before the ones of [`FakeGithub::fail_next`].
    pub fn fail_route(&self, route: &str, n: usize, status: u16) {
        let mut s = self.lock();
        s.route_failures
            .entry(route.to_owned())
            .or_default()
            .extend(std::iter::repeat_n(status, n));
    }

    /// Requests served by `route`, e.g. `"GET /user"`, `"GET /user/memberships/orgs"`,
    /// `"POST /login/oauth/access_token"`, failed ones included.
    pub fn hits(&self, route: &str) -> u64 {
        self.lock().hits.get(route).copied().unwrap_or(0)
    }

    /// Requests to the API and token endpoints, all routes together.
    pub fn api_hits(&self) -> u64 {
        let s = self.lock();
        s.hits
            .iter()
            .filter(|(route, _)| !route.ends_with("/authorize"))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn reset_hits(&self) {
        self.lock().hits.clear();
    }

    /// The query string of the last authorize request.
    pub fn last_authorize_query(&self) -> Option<BTreeMap<String, String>> {
        self.lock().last_authorize.clone()
    }
}

/// Counts the hit and pops a configured failure, if any.
fn enter(state: &Shared, route: &str) -> Option<Response> {
    let mut s = state.lock().expect("fake GitHub state");
    *s.hits.entry(route.to_owned()).or_default() += 1;
    if route.ends_with("/authorize") {
        return None;
    }
    let routed = s
        .route_failures
        .get_mut(route)
        .and_then(VecDeque::pop_front);
    let status = routed.or_else(|| s.failures.pop_front())?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (
        status,
        axum::Json(json!({
            "message": status.canonical_reason().unwrap_or("error"),
            "documentation_url": "https://docs.github.com/rest",
        })),
    )
        .into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", header::HeaderValue::from_static("1"));
    }
    Some(response)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, axum::Json(body.clone())).into_response()
}

fn bad_credentials() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({
            "message": "Bad credentials",
            "documentation_url": "https://docs.github.com/rest",
            "status": "401",
        }),
    )
}

fn not_found(doc: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"message": "Not Found", "documentation_url": doc, "status": "404"}),
    )
}

/// The user behind the request's token.
fn authed(state: &Shared, headers: &HeaderMap) -> Option<FakeUser> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("token") {
        return None;
    }
    let s = state.lock().expect("fake GitHub state");
    let id = s.tokens.get(token.trim())?;
    s.users.get(id).cloned()
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(base).expect("redirect_uri is a URL");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    url.into()
}

async fn authorize(
    AxumState(state): AxumState<Shared>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    enter(&state, "GET /login/oauth/authorize");
    let mut s = state.lock().expect("fake GitHub state");
    s.last_authorize = Some(query.clone());
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let (client_id, redirect_uri, oauth_state) =
        (get("client_id"), get("redirect_uri"), get("state"));
    if client_id != s.client_id || url::Url::parse(&redirect_uri).is_err() {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    let location = if s.deny_authorization {
        with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                ("state", &oauth_state),
            ],
        )
    } else {
        let Some(user) = s.logged_in else {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<html><body><h1>Sign in to GitHub</h1></body></html>",
            )
                .into_response();
        };
        let n = s.next_id();
        let code = format!("{n:020x}");
        s.codes.insert(
            code.clone(),
            PendingCode {
                user,
                redirect_uri: redirect_uri.clone(),
            },
        );
        with_query(&redirect_uri, &[("code", &code), ("state", &oauth_state)])
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

async fn access_token(
    AxumState(state): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(failure) = enter(&state, "POST /login/oauth/access_token") {
        return failure;
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let mut params: HashMap<String, String> = query;
    if is_json {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) {
            for (k, v) in map {
                if let Some(v) = v.as_str() {
                    params.insert(k, v.to_owned());
                }
            }
        }
    } else {
        for (k, v) in url::form_urlencoded::parse(&body) {
            params.insert(k.into_owned(), v.into_owned());
        }
    }
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let reply = |fields: Vec<(&str, String)>| -> Response {
        if wants_json {
            let map: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect();
            json_response(StatusCode::OK, &Value::Object(map))
        } else {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
                body,
            )
                .into_response()
        }
    };
    let error = |code: &str, description: &str| {
        vec![
            ("error", code.to_owned()),
            ("error_description", description.to_owned()),
            (
                "error_uri",
                format!(
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#{}",
                    code.replace('_', "-")
                ),
            ),
        ]
    };
    let mut s = state.lock().expect("fake GitHub state");
    if get("client_id") != s.client_id || get("client_secret") != s.client_secret {
        return reply(error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        ));
    }
    let code = get("code");
    let Some(pending) = s.codes.get(&code).cloned() else {
        return reply(error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        ));
    };
    let redirect_uri = get("redirect_uri");
    if !redirect_uri.is_empty() && redirect_uri != pending.redirect_uri {
        return reply(error(
            "redirect_uri_mismatch",
            "The redirect_uri MUST match the registered callback URL for this application.",
        ));
    }
    s.codes.remove(&code);
    let n = s.next_id();
    let token = format!("gho_fake{n:032x}");
    s.tokens.insert(token.clone(), pending.user);
    drop(s);
    reply(vec![
        ("access_token", token),
        ("token_type", "bearer".to_owned()),
        ("scope", "read:org,read:user,user:email".to_owned()),
    ])
}

async fn user(AxumState(state): AxumState<Shared>, headers: HeaderMap) -> Response {
    if let Some(failure) = enter(&state, "GET /user") {
        return failure;
    }
    let Some(u) = authed(&state, &headers) else {
        return bad_credentials();
    };
    json_response(
        StatusCode::OK,
        &json!({
            "login": u.login, "id": u.id, "node_id": format!("U_fake{}", u.id),
            "avatar_url": "", "type": "User", "site_admin": false,
            "name": u.name, "email": Value::Null,
        }),
    )
}

async fn emails(AxumState(state): AxumState<Shared>, headers: HeaderMap) -> Response {
    if let Some(failure) = enter(&state, "GET /user/emails") {
        return failure;
    }
    let Some(u) = authed(&state, &headers) else {
        return bad_credentials();
    };
    let list: Vec<Value> = u
        .emails
        .iter()
        .map(|e| {
            json!({
                "email": e.email, "primary": e.primary, "verified": e.verified,
                "visibility": if e.primary { Value::from("private") } else { Value::Null },
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

async fn org_membership(
    AxumState(state): AxumState<Shared>,
    Path(org): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(failure) = enter(&state, "GET /user/memberships/orgs") {
        return failure;
    }
    let Some(u) = authed(&state, &headers) else {
        return bad_credentials();
    };
    let found = {
        let s = state.lock().expect("fake GitHub state");
        s.memberships
            .get(&(u.id, org.to_ascii_lowercase()))
            .cloned()
    };
    let Some(m) = found else {
        return not_found(
            "https://docs.github.com/rest/orgs/members#get-an-organization-membership-for-the-authenticated-user",
        );
    };
    json_response(
        StatusCode::OK,
        &json!({
            "url": format!("https://api.github.com/orgs/{}/memberships/{}", m.org_login, u.login),
            "state": m.state,
            "role": "member",
            "organization_url": format!("https://api.github.com/orgs/{}", m.org_login),
            "organization": {"login": m.org_login, "id": 1, "url": format!("https://api.github.com/orgs/{}", m.org_login)},
            "user": {"login": u.login, "id": u.id},
        }),
    )
}

async fn teams(
    AxumState(state): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(failure) = enter(&state, "GET /user/teams") {
        return failure;
    }
    let Some(u) = authed(&state, &headers) else {
        return bad_credentials();
    };
    let per_page: usize = query
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .clamp(1, 100);
    let page: usize = query
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let all = {
        let s = state.lock().expect("fake GitHub state");
        s.teams.get(&u.id).cloned().unwrap_or_default()
    };
    let list: Vec<Value> = all
        .iter()
        .enumerate()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(i, (org, slug))| {
            json!({
                "id": i + 1, "node_id": format!("T_fake{i}"), "slug": slug, "name": slug,
                "organization": {"login": org, "id": 1},
            })
        })
        .collect();
    json_response(StatusCode::OK, &Value::Array(list))
}
