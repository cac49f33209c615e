//! Health, whoami, metrics and the OpenAPI document.

use serde_json::json;

use crate::harness::{ALICE, Coord, Who};

#[tokio::test]
async fn health_ready_and_whoami_answer_per_principal() {
    let c = Coord::start().await;
    let (status, b) = c.call("GET", "/v1/health", Who::Anonymous, None).await;
    assert_eq!(
        (status, b["service"].as_str()),
        (200, Some("crabbox-coordinator"))
    );
    let (status, b) = c.call("GET", "/v1/ready", Who::Anonymous, None).await;
    assert_eq!((status, b["ok"].as_bool()), (200, Some(true)));
    let (_, me) = c.call("GET", "/v1/whoami", ALICE, None).await;
    assert_eq!(me["owner"], "alice@example.com");
    assert_eq!(me["auth"], "proxy");
    assert_eq!(me["admin"], false);
    let (_, shared) = c.call("GET", "/v1/whoami", Who::Shared, None).await;
    assert_eq!(shared["owner"], "team@example.com");
    assert_eq!(shared["org"], "example-org");
    let (_, admin) = c.call("GET", "/v1/whoami", Who::Admin, None).await;
    assert_eq!(admin["admin"], true);
    c.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_and_leases_by_state() {
    let c = Coord::start().await;
    let (status, _) = c.create(ALICE, serde_json::json!({})).await;
    assert_eq!(status, 201);
    let text = c
        .request(reqwest::Method::GET, "/metrics", Who::Anonymous)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("crabbox_leases{state=\"active\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "crabbox_http_requests_total{method=\"POST\",route=\"/v1/leases\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("crabbox_leases_created_total{provider=\"local\"} 1"),
        "{text}"
    );
    c.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routed_paths() {
    let c = Coord::start().await;
    let (status, doc) = c
        .call("GET", "/v1/openapi.json", Who::Anonymous, None)
        .await;
    assert_eq!(status, 200);
    let documented: std::collections::BTreeSet<String> =
        doc["paths"].as_object().unwrap().keys().cloned().collect();
    // Every route registered in the router source is documented, and vice versa.
    let source = include_str!("../../src/router.rs");
    let routed: std::collections::BTreeSet<String> = source
        .match_indices(".route(")
        .map(|(i, _)| {
            let rest = source[i + 7..].trim_start().strip_prefix('"').unwrap();
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .filter(|p| p != "/")
        .collect();
    assert_eq!(routed, documented);
    // And every documented operation is answered by a handler, not the fallback.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "cbx_000000000000");
            let resp = c
                .request(
                    reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &concrete,
                    Who::Admin,
                )
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert!(
                !body.contains("no route for"),
                "{method} {path} is documented but not routed ({status} {body})"
            );
        }
    }
    c.stop().await;
}

#[tokio::test]
async fn the_openapi_schemas_describe_every_field_the_server_returns() {
    let c = Coord::start().await;
    let (_, doc) = c
        .call("GET", "/v1/openapi.json", Who::Anonymous, None)
        .await;
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> std::collections::BTreeSet<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {name}: {schemas}"))
            .keys()
            .cloned()
            .collect()
    };
    let (_, lease) = c
        .create(ALICE, serde_json::json!({"slug": "doc-check"}))
        .await;
    let id = lease["lease"]["id"].as_str().unwrap().to_owned();
    let (_, hb) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/heartbeat"),
            ALICE,
            Some(serde_json::json!({"telemetry": {"load1": 1.0}})),
        )
        .await;
    let lease_props = props("Lease");
    for key in hb["lease"].as_object().unwrap().keys() {
        assert!(
            lease_props.contains(key),
            "lease field {key} is not documented"
        );
    }
    let (_, run) = c
        .call(
            "POST",
            "/v1/runs",
            ALICE,
            Some(serde_json::json!({"leaseID": id, "command": ["x"]})),
        )
        .await;
    let run_id = run["run"]["id"].as_str().unwrap().to_owned();
    let (_, fin) = c
        .call(
            "POST",
            &format!("/v1/runs/{run_id}/finish"),
            ALICE,
            Some(serde_json::json!({"exitCode": 0, "log": "x"})),
        )
        .await;
    let run_props = props("Run");
    for key in fin["run"].as_object().unwrap().keys() {
        assert!(run_props.contains(key), "run field {key} is not documented");
    }
    // The request schema of a create names sshPublicKey; error bodies have `error`.
    let create = &doc["paths"]["/v1/leases"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/LeaseRequest"
    );
    assert!(props("LeaseRequest").contains("sshPublicKey"));
    assert!(props("ApiError").contains("error"));
    c.stop().await;
}

#[tokio::test]
async fn the_root_redirects_to_the_portal_with_302() {
    let c = Coord::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(format!("{}/", c.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    assert_eq!(resp.headers()["location"], "/portal");
    c.stop().await;
}

/// Rewrites a stored record's org to a plain pre-key label, as records written before org
/// keys existed still hold.
async fn make_legacy(c: &Coord, lease_id: &str, run_id: &str, label: &str) {
    let store = &c.state().store;
    let found = store.get_lease(lease_id).await.unwrap().unwrap();
    let mut lease = found.value;
    lease.org = label.to_owned();
    let index = crabbox_coordinator::lifecycle::index(&lease, 60);
    store
        .update_lease(&lease, &index, found.version)
        .await
        .unwrap();
    let found = store.get_run(run_id).await.unwrap().unwrap();
    let mut run = found.value;
    run.org = label.to_owned();
    store
        .update_run(&run, found.version, &[], None)
        .await
        .unwrap();
}

#[tokio::test]
async fn list_filters_select_legacy_and_missing_orgs_by_org_kind() {
    let c = Coord::start().await;
    let ids = async |who| {
        let (_, lease) = c.create(who, json!({})).await;
        let lease_id = lease["lease"]["id"].as_str().unwrap().to_owned();
        let (_, run) = c
            .call("POST", "/v1/runs", who, Some(json!({"leaseID": lease_id})))
            .await;
        (lease_id, run["run"]["id"].as_str().unwrap().to_owned())
    };
    let (legacy_lease, legacy_run) = ids(ALICE).await;
    let (current_lease, current_run) = ids(ALICE).await;
    make_legacy(&c, &legacy_lease, &legacy_run, "legacy-team").await;
    let leases = async |query: &str| -> Vec<String> {
        let (status, body) = c
            .call("GET", &format!("/v1/leases{query}"), Who::Admin, None)
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        body["leases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let runs = async |query: &str| -> Vec<String> {
        let (status, body) = c
            .call("GET", &format!("/v1/runs{query}"), Who::Admin, None)
            .await;
        assert_eq!(status, 200, "{query}: {body}");
        body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(leases("").await.len(), 2);
    // `legacy` selects the records still holding that exact plain label...
    let q = "?orgKind=legacy&org=legacy-team";
    assert_eq!(leases(q).await, vec![legacy_lease.clone()]);
    assert_eq!(runs(q).await, vec![legacy_run.clone()]);
    // ...while the same label without orgKind means the current org key of that label.
    assert!(leases("?org=legacy-team").await.is_empty());
    assert_eq!(
        leases("?org=example-org").await,
        vec![current_lease.clone()]
    );
    assert_eq!(runs("?org=example-org").await, vec![current_run]);
    // `legacy` needs a legacy label; unknown kinds and `missing` with an org match nothing.
    for q in [
        "?orgKind=legacy",
        "?orgKind=legacy&org=not%20legacy",
        "?orgKind=current&org=example-org",
        "?orgKind=missing&org=example-org",
    ] {
        assert!(leases(q).await.is_empty(), "{q}");
        assert!(runs(q).await.is_empty(), "{q}");
    }
    assert!(leases("?orgKind=missing").await.is_empty());
    // Legacy orgs never authorize a non-admin, not even the record's owner.
    let (_, mine) = c
        .call(
            "GET",
            "/v1/leases?orgKind=legacy&org=legacy-team",
            ALICE,
            None,
        )
        .await;
    assert!(mine["leases"].as_array().unwrap().is_empty(), "{mine}");
    c.stop().await;
}

#[tokio::test]
async fn every_json_response_declares_utf8() {
    let c = Coord::start().await;
    let (_, lease) = c.create(ALICE, json!({})).await;
    let id = lease["lease"]["id"].as_str().unwrap().to_owned();
    let json_calls = [
        ("GET", "/v1/health".to_owned(), Who::Anonymous, None),
        ("GET", "/v1/ready".to_owned(), Who::Anonymous, None),
        ("GET", "/v1/openapi.json".to_owned(), Who::Anonymous, None),
        ("GET", "/v1/whoami".to_owned(), ALICE, None),
        ("GET", "/v1/leases".to_owned(), ALICE, None),
        ("GET", format!("/v1/leases/{id}"), ALICE, None),
        ("POST", "/v1/leases".to_owned(), ALICE, Some("{")),
        ("GET", "/v1/whoami".to_owned(), Who::Anonymous, None),
        ("GET", format!("/v1/leases/{id}"), crate::harness::BOB, None),
        ("GET", "/v1/pool".to_owned(), ALICE, None),
        ("GET", "/v1/nothing-here".to_owned(), ALICE, None),
    ];
    for (method, path, who, body) in json_calls {
        let mut req = c.request(method.parse().unwrap(), &path, who);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        assert_eq!(
            resp.headers()["content-type"],
            "application/json; charset=utf-8",
            "{method} {path} ({status})"
        );
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body.is_object(), "{method} {path}: {body}");
    }
    // Text stays text.
    let resp = c
        .request(reqwest::Method::GET, "/metrics", Who::Anonymous)
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
    );
    c.stop().await;
}

#[tokio::test]
async fn unknown_routes_authenticate_first() {
    let c = Coord::start().await;
    let cases = [
        // Anonymous callers learn nothing about which paths exist.
        (
            "GET",
            "/v1/nothing-here",
            Who::Anonymous,
            401,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/leases/cbx_000000000000/nothing",
            Who::Anonymous,
            401,
            "unauthorized",
        ),
        ("GET", "/portal", Who::Anonymous, 401, "unauthorized"),
        ("GET", "/v1/nothing-here", ALICE, 404, "not_found"),
        ("GET", "/v1/nothing-here", Who::Admin, 404, "not_found"),
        // Internal routes are never served from outside; login routes need no credential.
        (
            "POST",
            "/v1/internal/scheduled",
            Who::Anonymous,
            404,
            "not_found",
        ),
        (
            "GET",
            "/v1/auth/github/nothing",
            Who::Anonymous,
            404,
            "not_found",
        ),
    ];
    for (method, path, who, status, code) in cases {
        let (got, body) = c.call(method, path, who, None).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{method} {path}: {body}"
        );
    }
    // The public routes stay public.
    for path in ["/v1/health", "/v1/ready", "/v1/openapi.json", "/metrics"] {
        let (status, _) = c.call("GET", path, Who::Anonymous, None).await;
        assert_eq!(status, 200, "{path}");
    }
    c.stop().await;
}

/// Sends a raw request and returns status, headers and the parsed JSON body (asserting the
/// body is JSON in the stable error shape when the status is an error).
async fn raw(
    c: &Coord,
    method: &str,
    path: &str,
    who: Who<'_>,
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = c.request(method.parse().unwrap(), path, who);
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let text = resp.text().await.unwrap();
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().unwrap()),
        Some("application/json; charset=utf-8"),
        "{method} {path} ({status}): {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path} ({status}) is not JSON ({e}): {text}"));
    if status >= 400 {
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
    (status, headers, body)
}

#[tokio::test]
async fn framework_refusals_get_the_stable_error_body() {
    let c = Coord::start().await;
    let id = "cbx_000000000000";
    // A known path with a method it does not serve is an unknown route: 404 not_found after
    // authentication, with the allow header naming what the path serves.
    let (status, headers, body) = raw(&c, "DELETE", &format!("/v1/leases/{id}"), ALICE, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let allow = headers["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
    let (status, headers, body) = raw(&c, "GET", "/v1/runs/x/finish", ALICE, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    assert_eq!(headers["allow"], "POST");
    let (status, _, body) = raw(
        &c,
        "DELETE",
        &format!("/v1/leases/{id}"),
        Who::Anonymous,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let (status, _, body) = raw(&c, "GET", "/v1/auth/github/start", Who::Anonymous, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    // /v1/ready is the one path the spec answers 405, unauthenticated.
    let (status, headers, body) = raw(&c, "POST", "/v1/ready", Who::Anonymous, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (405, Some("method_not_allowed")),
        "{body}"
    );
    assert_eq!(headers["allow"], "GET, HEAD");

    // Path and query rejections name the part of the request that was wrong.
    let (status, _, body) = raw(&c, "GET", "/v1/leases/%FF", ALICE, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_path")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("UTF-8"),
        "{body}"
    );
    for path in [
        "/v1/leases?limit=1&limit=2",
        "/v1/usage?month=a&month=b",
        "/v1/runs?state=a&state=b",
    ] {
        let (status, _, body) = raw(&c, "GET", path, ALICE, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_query")),
            "{path}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("duplicate field"), "{path}: {message}");
    }

    // Bodies over the limit: the declared length on login routes, the read body elsewhere.
    let (status, headers, body) = raw(
        &c,
        "POST",
        "/v1/auth/github/poll",
        Who::Anonymous,
        Some(vec![b' '; 2 * 1024 * 1024]),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("request_too_large")),
        "{body}"
    );
    assert_eq!(headers["connection"], "close");
    let mut big = b"{\"label\":\"".to_vec();
    big.resize(17 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"}");
    let (status, _, body) = raw(&c, "POST", "/v1/runs", ALICE, Some(big)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("request_too_large")),
        "{body}"
    );
    c.stop().await;
}
