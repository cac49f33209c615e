//! Health, whoami, metrics and the OpenAPI document.

use serde_json::{Value, json};

use crate::harness::{ALICE, BOB, Coord, Who, public_key};

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

/// Problems with `value` against `schema` (a JSON Schema subset: `$ref`, `type`, `required`,
/// `properties`, `items`, `anyOf`/`oneOf`/`allOf`, `enum`, `const`), `at` naming the place.
fn schema_problems(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return vec![format!("{at}: dangling {reference}")];
        }
        return schema_problems(doc, target, value, at);
    }
    let mut problems = Vec::new();
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let fits = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        };
        if !types.iter().any(|t| fits(t)) {
            return vec![format!("{at}: {value} is not {types:?}")];
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(options) = schema[key].as_array()
            && !options
                .iter()
                .any(|o| schema_problems(doc, o, value, at).is_empty())
        {
            problems.push(format!("{at}: {value} matches none of {key}"));
        }
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        problems.extend(schema_problems(doc, part, value, at));
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        problems.push(format!("{at}: {value} is not {constant}"));
    }
    if let Some(object) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            let required = required.as_str().unwrap();
            if !object.contains_key(required) {
                problems.push(format!("{at}: required field {required} is missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (key, field) in object {
                if let Some(field_schema) = properties.get(key) {
                    problems.extend(schema_problems(
                        doc,
                        field_schema,
                        field,
                        &format!("{at}.{key}"),
                    ));
                }
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            problems.extend(schema_problems(doc, items, item, &format!("{at}[{i}]")));
        }
    }
    problems
}

/// Checks one real response against the document: the operation lists the status, and the
/// body has a documented media type (JSON bodies valid against its schema).
fn response_problems(
    doc: &Value,
    (method, template): (&str, &str),
    status: u16,
    content_type: &str,
    body: &str,
) -> Vec<String> {
    let at = format!("{} {template} {status}", method.to_uppercase());
    let mut operation = &doc["paths"][template][method];
    if operation.is_null() && status == 405 {
        // A method the path does not serve: the path's operations document the 405.
        let operations = doc["paths"][template].as_object().into_iter().flatten();
        if let Some((_, op)) = operations
            .into_iter()
            .find(|(_, op)| !op["responses"]["405"].is_null())
        {
            operation = op;
        }
    }
    if operation.is_null() {
        return vec![format!("{at}: operation not documented")];
    }
    let documented = &operation["responses"][status.to_string()];
    if documented.is_null() {
        let listed: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
        return vec![format!(
            "{at}: status not documented (listed: {listed:?}): {body}"
        )];
    }
    let media = content_type.split(';').next().unwrap_or("").trim();
    if body.is_empty() && method != "head" {
        return if documented.get("content").is_none() {
            Vec::new()
        } else {
            vec![format!("{at}: empty body where content is documented")]
        };
    }
    if method == "head" {
        return Vec::new();
    }
    let Some(schema) = documented["content"].get(media).map(|c| &c["schema"]) else {
        return vec![format!(
            "{at}: {media} body not documented: {}",
            documented["content"]
        )];
    };
    if media != "application/json" {
        return Vec::new();
    }
    let value: Value = serde_json::from_str(body).unwrap();
    schema_problems(doc, schema, &value, &at)
}

#[tokio::test]
async fn the_openapi_schemas_describe_every_field_the_server_returns() {
    let c = Coord::start().await;
    let (_, doc) = c
        .call("GET", "/v1/openapi.json", Who::Anonymous, None)
        .await;
    let mut problems = Vec::new();
    // Sends a request and checks its response against the documented operation.
    let mut check = async |method: &str,
                           template: &str,
                           path: &str,
                           who: Who<'_>,
                           body: Option<Vec<u8>>|
           -> (u16, Value) {
        let mut req = c.request(method.parse().unwrap(), path, who);
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map_or("", |v| v.to_str().unwrap())
            .to_owned();
        let text = resp.text().await.unwrap();
        problems.extend(response_problems(
            &doc,
            (&method.to_lowercase(), template),
            status,
            &content_type,
            &text,
        ));
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    };
    let j = |v: Value| Some(serde_json::to_vec(&v).unwrap());
    let create = |extra: Value| {
        let mut body =
            json!({"provider": "local", "sshPublicKey": public_key(), "ttlSeconds": 3600});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        j(body)
    };

    // Service routes.
    check("GET", "/v1/health", "/v1/health", Who::Anonymous, None).await;
    check("GET", "/v1/ready", "/v1/ready", Who::Anonymous, None).await;
    check("HEAD", "/v1/ready", "/v1/ready", Who::Anonymous, None).await;
    check("POST", "/v1/ready", "/v1/ready", Who::Anonymous, None).await;
    check(
        "GET",
        "/v1/openapi.json",
        "/v1/openapi.json",
        Who::Anonymous,
        None,
    )
    .await;
    check("GET", "/metrics", "/metrics", Who::Anonymous, None).await;
    check("GET", "/v1/whoami", "/v1/whoami", ALICE, None).await;
    check("GET", "/v1/whoami", "/v1/whoami", Who::Anonymous, None).await;
    check("GET", "/v1/pool", "/v1/pool", Who::Admin, None).await;
    check("GET", "/v1/pool", "/v1/pool", ALICE, None).await;

    // Leases: create, replay, alias, list, get.
    let (attempt_id, token) = ("cbx_0123456789ab", format!("cat_{}", "a".repeat(32)));
    let attempt = json!({"leaseID": attempt_id, "createAttemptID": token});
    let (status, lease) = check(
        "POST",
        "/v1/leases",
        "/v1/leases",
        ALICE,
        create(attempt.clone()),
    )
    .await;
    assert_eq!(status, 201, "{lease}");
    let (status, _) = check("POST", "/v1/leases", "/v1/leases", ALICE, create(attempt)).await;
    assert_eq!(status, 200, "a create-attempt replay answers 200");
    let id = lease["lease"]["id"].as_str().unwrap().to_owned();
    check(
        "POST",
        "/v1/leases",
        "/v1/leases",
        ALICE,
        Some(b"{".to_vec()),
    )
    .await;
    let mut big = b"{\"slug\":\"".to_vec();
    big.resize(17 * 1024 * 1024, b'x');
    big.extend_from_slice(b"\"}");
    let (status, _) = check("POST", "/v1/leases", "/v1/leases", ALICE, Some(big)).await;
    assert_eq!(status, 413);
    let alias = "/v1/leases/capability-aware";
    let (status, _) = check("POST", alias, alias, ALICE, create(json!({}))).await;
    assert_eq!(status, 201);
    check("GET", "/v1/leases", "/v1/leases", ALICE, None).await;
    check("GET", "/v1/leases", "/v1/leases?state=bogus", ALICE, None).await;
    check(
        "GET",
        "/v1/leases",
        "/v1/leases?limit=1&limit=2",
        ALICE,
        None,
    )
    .await;
    let one = "/v1/leases/{id}";
    check("GET", one, &format!("/v1/leases/{id}"), ALICE, None).await;
    check("GET", one, &format!("/v1/leases/{id}"), BOB, None).await;
    check("GET", one, "/v1/leases/%FF", ALICE, None).await;

    // Fixed-id PUT: create, identical replay, drift.
    let fixed = "cbx_00000000f1ed";
    let fixed_body = || create(json!({"leaseID": fixed, "slug": "fixed-doc"}));
    let (status, _) = check(
        "PUT",
        one,
        &format!("/v1/leases/{fixed}"),
        ALICE,
        fixed_body(),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = check(
        "PUT",
        one,
        &format!("/v1/leases/{fixed}"),
        ALICE,
        fixed_body(),
    )
    .await;
    assert_eq!(
        status, 200,
        "an identical fixed-id PUT of an active lease answers 200"
    );
    let drift = create(json!({"leaseID": fixed, "slug": "other-slug"}));
    let (status, _) = check("PUT", one, &format!("/v1/leases/{fixed}"), ALICE, drift).await;
    assert_eq!(status, 409);

    // Cancel-create, before any create arrived.
    let cancel = "/v1/leases/{id}/cancel-create";
    let cancel_path = "/v1/leases/cbx_0000000000cc/cancel-create";
    let token2 = j(json!({"createAttemptID": format!("cat_{}", "b".repeat(32))}));
    let (status, canceled) = check("POST", cancel, cancel_path, ALICE, token2).await;
    assert_eq!(status, 200, "{canceled}");

    // Registration: new, refresh, invalid.
    let registration = "/v1/leases/{id}/registration";
    let reg_path = "/v1/leases/my-box-1/registration";
    let reg = || j(json!({"provider": "static", "target": "linux", "host": "192.0.2.7"}));
    let (status, _) = check("PUT", registration, reg_path, ALICE, reg()).await;
    assert_eq!(status, 201);
    let (status, _) = check("PUT", registration, reg_path, ALICE, reg()).await;
    assert_eq!(status, 200);
    check(
        "PUT",
        registration,
        reg_path,
        ALICE,
        j(json!({"provider": "static"})),
    )
    .await;

    // Heartbeat and release.
    let heartbeat = "/v1/leases/{id}/heartbeat";
    let hb_path = format!("/v1/leases/{id}/heartbeat");
    let telemetry = j(json!({"telemetry": {"load1": 1.0}}));
    let (_, hb) = check("POST", heartbeat, &hb_path, ALICE, telemetry).await;
    check("POST", heartbeat, &hb_path, BOB, j(json!({}))).await;

    // Runs.
    let (status, run) = check(
        "POST",
        "/v1/runs",
        "/v1/runs",
        ALICE,
        j(json!({"leaseID": id, "command": ["x"]})),
    )
    .await;
    assert_eq!(status, 201);
    let run_id = run["run"]["id"].as_str().unwrap().to_owned();
    check("GET", "/v1/runs", "/v1/runs", ALICE, None).await;
    check(
        "GET",
        "/v1/runs/{id}",
        &format!("/v1/runs/{run_id}"),
        ALICE,
        None,
    )
    .await;
    check(
        "GET",
        "/v1/runs/{id}",
        "/v1/runs/run_000000000000",
        ALICE,
        None,
    )
    .await;
    let events = "/v1/runs/{id}/events";
    let events_path = format!("/v1/runs/{run_id}/events");
    check(
        "POST",
        events,
        &events_path,
        ALICE,
        j(json!({"type": "sync.started"})),
    )
    .await;
    check("GET", events, &events_path, ALICE, None).await;
    let telemetry_path = format!("/v1/runs/{run_id}/telemetry");
    check(
        "POST",
        "/v1/runs/{id}/telemetry",
        &telemetry_path,
        ALICE,
        j(json!({"telemetry": {"load1": 1.0}})),
    )
    .await;
    check(
        "POST",
        "/v1/runs/{id}/telemetry",
        &telemetry_path,
        ALICE,
        j(json!({})),
    )
    .await;
    let finish_path = format!("/v1/runs/{run_id}/finish");
    let (_, fin) = check(
        "POST",
        "/v1/runs/{id}/finish",
        &finish_path,
        ALICE,
        j(json!({"exitCode": 0, "log": "x"})),
    )
    .await;
    check(
        "GET",
        "/v1/runs/{id}/logs",
        &format!("/v1/runs/{run_id}/logs"),
        ALICE,
        None,
    )
    .await;
    check("GET", "/v1/usage", "/v1/usage", ALICE, None).await;

    // Admin routes.
    check(
        "GET",
        "/v1/admin/leases",
        "/v1/admin/leases",
        Who::Admin,
        None,
    )
    .await;
    check("GET", "/v1/admin/leases", "/v1/admin/leases", ALICE, None).await;
    let admin_release = "/v1/admin/leases/{id}/release";
    check(
        "POST",
        admin_release,
        &format!("/v1/admin/leases/{fixed}/release"),
        Who::Admin,
        None,
    )
    .await;
    let admin_delete = "/v1/admin/leases/{id}/delete";
    check(
        "POST",
        admin_delete,
        &format!("/v1/admin/leases/{fixed}/delete"),
        Who::Admin,
        None,
    )
    .await;
    let release = "/v1/leases/{id}/release";
    check(
        "POST",
        release,
        &format!("/v1/leases/{id}/release"),
        ALICE,
        None,
    )
    .await;
    check(
        "POST",
        release,
        &format!("/v1/leases/{id}/release"),
        BOB,
        None,
    )
    .await;

    // Login routes (GitHub login is not configured here).
    let start = "/v1/auth/github/start";
    check("POST", start, start, Who::Anonymous, j(json!({}))).await;
    let poll = "/v1/auth/github/poll";
    check(
        "POST",
        poll,
        poll,
        Who::Anonymous,
        Some(vec![b' '; 2 * 1024 * 1024]),
    )
    .await;
    let callback = "/v1/auth/github/callback";
    check(
        "GET",
        callback,
        "/v1/auth/github/callback?code=x&state=y",
        Who::Anonymous,
        None,
    )
    .await;
    assert!(
        problems.is_empty(),
        "responses the document does not describe:\n{}",
        problems.join("\n")
    );

    // Every field the server returns is documented by name too.
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> std::collections::BTreeSet<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("no schema {name}: {schemas}"))
            .keys()
            .cloned()
            .collect()
    };
    let lease_props = props("Lease");
    for key in hb["lease"].as_object().unwrap().keys() {
        assert!(
            lease_props.contains(key),
            "lease field {key} is not documented"
        );
    }
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
    // A fixed-id PUT of a lease still provisioning answers 202 with the lease.
    let accepted = &doc["paths"]["/v1/leases/{id}"]["put"]["responses"]["202"];
    assert_eq!(
        accepted["content"]["application/json"]["schema"]["required"],
        json!(["lease"])
    );
    c.stop().await;
}

#[tokio::test]
async fn the_root_redirects_to_the_portal_with_302() {
    let c = Coord::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
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
    // Usage takes the same filters (admin, scope=all): the legacy lease alone, or a 400.
    let (status, usage) = c
        .call(
            "GET",
            "/v1/usage?scope=all&orgKind=legacy&org=legacy-team",
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["usage"]["leases"], 1, "{usage}");
    assert_eq!(usage["usage"]["org"], "legacy-team", "{usage}");
    let (_, all) = c.call("GET", "/v1/usage?scope=all", Who::Admin, None).await;
    assert_eq!(all["usage"]["leases"], 2, "{all}");
    for q in [
        "orgKind=legacy",
        "orgKind=bogus&org=example-org",
        "org=%20bad",
    ] {
        let (status, body) = c
            .call("GET", &format!("/v1/usage?scope=all&{q}"), Who::Admin, None)
            .await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"], "invalid_org_identity", "{q}: {body}");
    }
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
