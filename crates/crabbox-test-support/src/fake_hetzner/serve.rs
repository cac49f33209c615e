//! The HTTP side: hyper serves each connection (so that a reply can be dropped, which a router
//! framework does not offer), and every request goes through [`serve`] under the state's lock.

use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response};
use serde_json::Value;

use super::listing::Query;
use super::state::{self, State};
use super::{
    Answer, ApiError, Call, Effect, FakeHetzner, Shared, catalog, images, lock, servers, ssh_keys,
};

/// The routes served, as [`FakeHetzner::count`] names them.
const ROUTES: &[&str] = &[
    "GET /ssh_keys",
    "POST /ssh_keys",
    "GET /ssh_keys/{id}",
    "PUT /ssh_keys/{id}",
    "DELETE /ssh_keys/{id}",
    "GET /servers",
    "POST /servers",
    "GET /servers/{id}",
    "PUT /servers/{id}",
    "DELETE /servers/{id}",
    "GET /servers/{id}/actions/{action_id}",
    "POST /servers/{id}/actions/create_image",
    "GET /actions",
    "GET /actions/{id}",
    "GET /images",
    "GET /images/{id}",
    "PUT /images/{id}",
    "DELETE /images/{id}",
    "GET /server_types",
    "GET /server_types/{id}",
    "GET /locations",
    "GET /locations/{id}",
];

/// A request as the fake reads it.
struct Asked<'a> {
    method: &'a str,
    path: &'a str,
    query: Vec<(String, String)>,
    token: Option<&'a str>,
    body: &'a [u8],
}

/// What becomes of a request: an answer, or a connection closed without one.
struct Served {
    status: u16,
    body: Value,
    rate_headers: [(&'static str, String); 3],
    dropped: bool,
}

pub(super) async fn handle(
    shared: Shared,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let asked = Asked {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        token: bearer(&parts.headers),
        body: &body,
    };
    let served = serve(&mut lock(&shared), &asked);
    if served.dropped {
        // hyper closes the connection without an answer when the service fails.
        return Err(std::io::Error::other("reply dropped by the fake"));
    }
    let mut response = Response::builder().status(served.status).header(
        "x-correlation-id",
        uuid::Uuid::new_v4().simple().to_string(),
    );
    for (name, value) in &served.rate_headers {
        response = response.header(*name, value);
    }
    let bytes = if served.body.is_null() {
        Bytes::new()
    } else {
        response = response.header(header::CONTENT_TYPE, "application/json");
        Bytes::from(served.body.to_string())
    };
    response
        .body(Full::new(bytes))
        .map_err(std::io::Error::other)
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::to_str)?;
    let (scheme, token) = value.ok()?.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The route template `path` (without `/v1`) matches for `method`, and its parameters.
fn route(method: &str, path: &str) -> Option<(&'static str, Vec<String>)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES.iter().find_map(|template| {
        let (m, t) = template.split_once(' ')?;
        let parts: Vec<&str> = t.split('/').collect();
        if m != method || parts.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (part, segment) in parts.iter().zip(&segments) {
            if part.starts_with('{') {
                params.push((*segment).to_owned());
            } else if part != segment {
                return None;
            }
        }
        Some((*template, params))
    })
}

/// Everything the fake does with one request, under the state's lock: it records the call,
/// spends rate budget, checks the token, applies a fault, and answers.
fn serve(state: &mut State, asked: &Asked<'_>) -> Served {
    let path = asked
        .path
        .strip_prefix("/v1")
        .filter(|p| p.is_empty() || p.starts_with('/'));
    let found = path.and_then(|p| route(asked.method, p));
    let parsed: Result<Value, ()> = if asked.body.is_empty() {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(asked.body).map_err(|_| ())
    };
    state.calls.push(Call {
        method: asked.method.to_owned(),
        path: asked.path.to_owned(),
        route: found.as_ref().map_or_else(
            || format!("{} {}", asked.method, path.unwrap_or(asked.path)),
            |(template, _)| (*template).to_owned(),
        ),
        query: asked.query.clone(),
        body: parsed
            .clone()
            .unwrap_or_else(|()| Value::String(String::from_utf8_lossy(asked.body).into_owned())),
    });
    let now = Instant::now();
    let allowed = state.budget.take(now);
    let rate_headers = state.budget.headers(now);
    let mut dropped = false;
    let answer = if !allowed {
        let limit = state.budget.limit();
        Err(ApiError::new(
            429,
            "rate_limit_exceeded",
            &format!("limit of {limit} requests per hour reached"),
        ))
    } else if asked.token != Some(FakeHetzner::TOKEN) {
        Err(ApiError::new(401, "unauthorized", "unable to authenticate"))
    } else {
        match (found, parsed) {
            (None, _) => Err(ApiError::new(404, "not_found", "not found")),
            (Some(_), Err(())) => Err(ApiError::new(
                400,
                "json_error",
                "invalid JSON in request body",
            )),
            (Some((template, params)), Ok(body)) => {
                let fault = state.faults.iter_mut().find(|f| f.matches(template, &body));
                let effect = fault.map(|f| {
                    f.times -= 1;
                    f.effect.clone()
                });
                match effect {
                    Some(Effect::Refuse(error)) => Err(error),
                    other => {
                        dropped = other == Some(Effect::DropReply);
                        dispatch(state, template, &params, Query(&asked.query), &body)
                    }
                }
            }
        }
    };
    let (status, body) = answer.unwrap_or_else(|e| (e.status, e.body()));
    Served {
        status,
        body,
        rate_headers,
        dropped,
    }
}

fn dispatch(
    state: &mut State,
    template: &str,
    params: &[String],
    query: Query<'_>,
    body: &Value,
) -> Answer {
    let id = |i: usize| -> Result<u64, ApiError> {
        params[i]
            .parse()
            .map_err(|_| ApiError::invalid_field("id", "must be an integer"))
    };
    match template {
        "GET /ssh_keys" => ssh_keys::list(state, query),
        "POST /ssh_keys" => ssh_keys::create(state, body),
        "GET /ssh_keys/{id}" => ssh_keys::get(state, id(0)?),
        "PUT /ssh_keys/{id}" => ssh_keys::update(state, id(0)?, body),
        "DELETE /ssh_keys/{id}" => ssh_keys::delete(state, id(0)?),
        "GET /servers" => servers::list(state, query),
        "POST /servers" => servers::create(state, body),
        "GET /servers/{id}" => servers::get(state, id(0)?),
        "PUT /servers/{id}" => servers::update(state, id(0)?, body),
        "DELETE /servers/{id}" => servers::delete(state, id(0)?),
        "GET /servers/{id}/actions/{action_id}" => servers::action(state, id(0)?, id(1)?),
        "POST /servers/{id}/actions/create_image" => servers::create_image(state, id(0)?, body),
        "GET /actions" => state::list_actions(state, query),
        "GET /actions/{id}" => state::get_action(state, id(0)?),
        "GET /images" => images::list(state, query),
        "GET /images/{id}" => images::get(state, id(0)?),
        "PUT /images/{id}" => images::update(state, id(0)?, body),
        "DELETE /images/{id}" => images::delete(state, id(0)?),
        "GET /server_types" => catalog::list_server_types(query),
        "GET /server_types/{id}" => catalog::get_server_type(id(0)?),
        "GET /locations" => catalog::list_locations(query),
        "GET /locations/{id}" => catalog::get_location(id(0)?),
        other => unreachable!("route {other} has no handler"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_a_handler_and_paths_find_their_route() {
        assert_eq!(
            route("GET", "/servers/42/actions/7"),
            Some((
                "GET /servers/{id}/actions/{action_id}",
                vec!["42".to_owned(), "7".to_owned()]
            ))
        );
        assert_eq!(
            route("POST", "/servers/42/actions/create_image").map(|r| r.0),
            Some("POST /servers/{id}/actions/create_image")
        );
        assert_eq!(route("GET", "/servers/").map(|r| r.0), Some("GET /servers"));
        assert_eq!(route("PATCH", "/servers/1"), None);
        assert_eq!(route("GET", "/volumes"), None);
        let mut state = State::new();
        for template in ROUTES {
            let params = vec!["1".to_owned(), "1".to_owned()];
            // Any answer will do: what matters is that no route reaches `unreachable!`.
            let _ = dispatch(&mut state, template, &params, Query(&[]), &Value::Null);
        }
    }
}
