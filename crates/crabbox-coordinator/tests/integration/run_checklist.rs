//! The old coordinator's run, usage and identity checklist (spec §10.1 "Runs" and "Usage &
//! identity") where `runs.rs`, `leases.rs` and `service.rs` leave gaps.

use crabbox_api::coord::{Run, RunEvent, RunState, Timestamp};
use serde_json::{Value, json};

use crate::harness::{ALICE, BOB, Coord, Who, public_key};

const CAROL: Who<'static> = Who::User("carol@example.com");

async fn new_run(c: &Coord, who: Who<'_>, body: Value) -> String {
    let (status, run) = c.call("POST", "/v1/runs", who, Some(body)).await;
    assert_eq!(status, 201, "{run}");
    run["run"]["id"].as_str().unwrap().to_owned()
}

async fn lease_id(c: &Coord, who: Who<'_>) -> String {
    let (status, lease) = c.create(who, json!({})).await;
    assert_eq!(status, 201, "{lease}");
    lease["lease"]["id"].as_str().unwrap().to_owned()
}

/// A lease created with the admin token on behalf of `owner` in `org`.
async fn lease_for(c: &Coord, owner: &str, org: &str) -> String {
    let resp = c
        .request(reqwest::Method::POST, "/v1/leases", Who::Admin)
        .header("x-crabbox-owner", owner)
        .header("x-crabbox-org", org)
        .json(&json!({"provider": "local", "sshPublicKey": public_key(), "ttlSeconds": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["lease"]["owner"], owner, "{body}");
    body["lease"]["id"].as_str().unwrap().to_owned()
}

fn org_key(label: &str) -> String {
    crabbox_auth::org::key_for_label(label).unwrap()
}

#[tokio::test]
async fn run_checklist_live_telemetry_samples_survive_finish() {
    let c = Coord::start().await;
    let id = new_run(&c, ALICE, json!({"command": ["make"]})).await;
    for (at, load) in [("2026-05-01T00:00:10Z", 1.0), ("2026-05-01T00:00:20Z", 2.0)] {
        let (status, body) = c
            .call(
                "POST",
                &format!("/v1/runs/{id}/telemetry"),
                ALICE,
                Some(
                    json!({"telemetry": {"capturedAt": at, "source": "ssh-linux", "load1": load}}),
                ),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, fin) = c
        .finish(
            ALICE,
            &id,
            json!({"exitCode": 0, "log": "ok\n", "telemetry": {
                "end": {"capturedAt": "2026-05-01T00:00:40Z", "load1": 4.0},
                "samples": [
                    {"capturedAt": "2026-05-01T00:00:30Z", "load1": 3.0},
                    {"capturedAt": "2026-05-01T00:00:20Z", "load1": 2.5}
                ]
            }}),
        )
        .await;
    assert_eq!(status, 200, "{fin}");
    let t = &fin["run"]["telemetry"];
    // The live samples stay, the finish's samples join them (last wins per capturedAt), the
    // start recorded by the first live sample is kept and the end is the finish's.
    let loads: Vec<f64> = t["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["load1"].as_f64().unwrap())
        .collect();
    assert_eq!(loads, [1.0, 2.5, 3.0], "{t}");
    assert_eq!(t["start"]["load1"], 1.0, "{t}");
    assert_eq!(t["end"]["load1"], 4.0, "{t}");
    let (_, got) = c.call("GET", &format!("/v1/runs/{id}"), ALICE, None).await;
    assert_eq!(&got["run"]["telemetry"], t);
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_go_nil_slices_in_results_read_back_as_empty_lists() {
    let c = Coord::start().await;
    let id = new_run(&c, ALICE, json!({"command": ["go", "test", "./..."]})).await;
    let (status, fin) = c
        .finish(
            ALICE,
            &id,
            json!({"exitCode": 0, "log": "ok\n", "results": {
                "format": "junit", "files": null, "suites": 1, "tests": 1, "failures": 0,
                "errors": 0, "skipped": 0, "timeSeconds": 0.001, "failed": null
            }}),
        )
        .await;
    assert_eq!(status, 200, "{fin}");
    let results = &fin["run"]["results"];
    assert_eq!(results["files"], json!([]), "{results}");
    assert_eq!(results["failed"], json!([]), "{results}");
    assert_eq!(results["tests"], 1);
    assert_eq!(results["format"], "junit");
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_result_summaries_are_bounded() {
    let c = Coord::start().await;
    let id = new_run(&c, ALICE, json!({"command": ["go", "test", "./..."]})).await;
    let failed: Vec<Value> = (0..150)
        .map(|i| json!({"suite": "pkg", "name": format!("fails-{i}"), "kind": "failure", "message": "x".repeat(5000)}))
        .collect();
    let files: Vec<String> = (0..80).map(|i| format!("junit-{i}.xml")).collect();
    let (status, fin) = c
        .finish(
            ALICE,
            &id,
            json!({"exitCode": 1, "log": "", "results": {
                "format": "junit", "files": files, "suites": 1, "tests": 150, "failures": 150,
                "errors": 0, "skipped": 0, "timeSeconds": 1.2, "failed": failed
            }}),
        )
        .await;
    assert_eq!(status, 200, "{fin}");
    let results = &fin["run"]["results"];
    let files = results["files"].as_array().unwrap();
    assert_eq!(files.len(), 50);
    assert_eq!(files[49], "junit-49.xml");
    let failed = results["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 100);
    assert_eq!(failed[99]["name"], "fails-99");
    assert_eq!(failed[0]["message"].as_str().unwrap().len(), 4096);
    assert_eq!(results["failures"], 150, "counts are kept as sent");
    let (_, got) = c.call("GET", &format!("/v1/runs/{id}"), ALICE, None).await;
    assert_eq!(&got["run"]["results"], results);
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_run_data_is_hidden_from_other_non_admin_users() {
    let c = Coord::start().await;
    let id = new_run(&c, ALICE, json!({"command": ["true"]})).await;
    for (method, path, body) in [
        ("GET", format!("/v1/runs/{id}"), None),
        ("GET", format!("/v1/runs/{id}/events"), None),
        ("GET", format!("/v1/runs/{id}/logs"), None),
        (
            "POST",
            format!("/v1/runs/{id}/events"),
            Some(json!({"type": "stdout", "stream": "stdout", "message": "forged"})),
        ),
        (
            "POST",
            format!("/v1/runs/{id}/telemetry"),
            Some(json!({"telemetry": {"load1": 1}})),
        ),
        (
            "POST",
            format!("/v1/runs/{id}/finish"),
            Some(json!({"exitCode": 0, "log": "forged"})),
        ),
    ] {
        let (status, body) = c.call(method, &path, BOB, body).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("not_found")),
            "{method} {path}: {body}"
        );
    }
    let (_, listed) = c
        .call("GET", "/v1/runs?owner=alice@example.com", BOB, None)
        .await;
    assert_eq!(listed, json!({"runs": []}));
    // Nothing Bob tried reached the run.
    let (_, run) = c.call("GET", &format!("/v1/runs/{id}"), ALICE, None).await;
    assert_eq!(run["run"]["state"], "running");
    assert_eq!(run["run"]["eventCount"], 1);
    c.stop().await;
}

fn legacy_run(id: &str, lease_id: &str, owner: &str, now: Timestamp) -> Run {
    Run {
        id: id.to_owned(),
        lease_id: lease_id.to_owned(),
        owner: owner.to_owned(),
        org: org_key("example-org"),
        provider: "local".into(),
        target: "linux".into(),
        state: RunState::Succeeded,
        phase: "succeeded".into(),
        started_at: now,
        ended_at: Some(now),
        ..Run::default()
    }
}

fn lease_event(run_id: &str, seq: u64, lease_id: &str, now: Timestamp) -> RunEvent {
    RunEvent {
        run_id: run_id.to_owned(),
        seq,
        kind: "lease.created".into(),
        phase: None,
        stream: None,
        message: None,
        data: None,
        lease_id: Some(lease_id.to_owned()),
        slug: None,
        provider: None,
        target: None,
        windows_mode: None,
        class: None,
        server_type: None,
        exit_code: None,
        created_at: now,
    }
}

#[tokio::test]
async fn run_checklist_legacy_runs_get_attribution_rebuilt_from_events() {
    let c = Coord::start().await;
    let alice_lease = lease_id(&c, ALICE).await;
    let bob_lease = lease_id(&c, BOB).await;
    let now = c.state().now();
    // Bob's run from before `leaseOwners` existed: it moved from Alice's lease to his own.
    let mut moved = legacy_run("run_00000000001a", &bob_lease, "bob@example.com", now);
    moved.event_count = 2;
    let store = &c.state().store;
    store
        .insert_run(
            &moved,
            &[
                lease_event(&moved.id, 1, &alice_lease, now),
                lease_event(&moved.id, 2, &bob_lease, now),
            ],
        )
        .await
        .unwrap();
    // And one that stayed on Alice's lease.
    let stayed = legacy_run("run_00000000002b", &alice_lease, "bob@example.com", now);
    store.insert_run(&stayed, &[]).await.unwrap();

    let (status, got) = c
        .call("GET", &format!("/v1/runs/{}", moved.id), ALICE, None)
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["run"]["leaseIDs"],
        json!([alice_lease, bob_lease]),
        "{got}"
    );
    assert_eq!(
        got["run"]["leaseOwners"],
        json!([
            {"owner": "alice@example.com", "org": "example-org"},
            {"owner": "bob@example.com", "org": "example-org"}
        ])
    );
    let (status, _) = c
        .call("GET", &format!("/v1/runs/{}/events", moved.id), ALICE, None)
        .await;
    assert_eq!(status, 200);
    // The attribution was stored, not only computed for the answer.
    let stored = store.get_run(&moved.id).await.unwrap().unwrap().value;
    assert_eq!(stored.lease_ids, [alice_lease.clone(), bob_lease.clone()]);
    assert_eq!(stored.lease_owners.len(), 2);

    let (_, listed) = c
        .call(
            "GET",
            &format!("/v1/runs?leaseID={alice_lease}"),
            ALICE,
            None,
        )
        .await;
    let ids: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    // Both ran on Alice's lease: the moved run is listed under it too, by its rebuilt leases.
    assert_eq!(ids, [stayed.id.as_str(), moved.id.as_str()], "{listed}");

    // Read-only: the audit grants no writes, and strangers still see nothing.
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/runs/{}/finish", moved.id),
            ALICE,
            Some(json!({"exitCode": 0})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .call("GET", &format!("/v1/runs/{}", moved.id), CAROL, None)
        .await;
    assert_eq!(status, 404);
    let (_, listed) = c
        .call(
            "GET",
            &format!("/v1/runs?leaseID={alice_lease}"),
            CAROL,
            None,
        )
        .await;
    assert_eq!(listed, json!({"runs": []}));
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_admins_may_attach_a_replacement_lease() {
    let c = Coord::start().await;
    let alice_lease = lease_id(&c, ALICE).await;
    let id = new_run(&c, BOB, json!({"command": ["true"]})).await;
    // Bob cannot attach Alice's lease to his run...
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/runs/{id}/events"),
            BOB,
            Some(json!({"type": "lease.created", "leaseID": alice_lease})),
        )
        .await;
    assert_eq!(status, 404);
    // ...but an admin can, outside its own owner scope.
    let (status, ev) = c
        .call(
            "POST",
            &format!("/v1/runs/{id}/events"),
            Who::Admin,
            Some(json!({"type": "lease.created", "leaseID": alice_lease})),
        )
        .await;
    assert_eq!(status, 201, "{ev}");
    assert_eq!(ev["event"]["leaseID"], alice_lease.as_str());
    let (_, run) = c.call("GET", &format!("/v1/runs/{id}"), BOB, None).await;
    assert_eq!(run["run"]["leaseID"], alice_lease.as_str());
    assert_eq!(run["run"]["leaseIDs"], json!([alice_lease]));
    assert_eq!(
        run["run"]["leaseOwners"],
        json!([{"owner": "alice@example.com", "org": "example-org"}])
    );
    assert_eq!(run["run"]["phase"], "leased");
    // Alice now audits the run on her lease.
    let (status, _) = c.call("GET", &format!("/v1/runs/{id}"), ALICE, None).await;
    assert_eq!(status, 200);
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_run_history_pages_newest_first_past_one_scan_batch() {
    let c = Coord::start().await;
    let mut ids = Vec::new();
    for i in 0..130 {
        ids.push(
            new_run(
                &c,
                ALICE,
                json!({"command": ["true"], "label": format!("run {i}")}),
            )
            .await,
        );
        c.clock.advance_secs(1);
    }
    new_run(&c, BOB, json!({"command": ["true"]})).await;
    ids.reverse();
    let listed_ids = |v: &Value| -> Vec<String> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, five) = c.call("GET", "/v1/runs?limit=5", ALICE, None).await;
    assert_eq!(listed_ids(&five), ids[..5]);
    let (_, default) = c.call("GET", "/v1/runs", ALICE, None).await;
    assert_eq!(listed_ids(&default), ids[..50]);
    let (_, all) = c.call("GET", "/v1/runs?limit=500", ALICE, None).await;
    assert_eq!(listed_ids(&all), ids, "every run of Alice's, newest first");
    let (_, admin) = c.call("GET", "/v1/runs?limit=500", Who::Admin, None).await;
    assert_eq!(admin["runs"].as_array().unwrap().len(), 131);
    c.stop().await;
}

async fn prune_pass(c: &Coord) -> u64 {
    crabbox_coordinator::reconciler::pass(c.state(), true)
        .await
        .unwrap()
        .0
        .pruned_runs
}

async fn gone(c: &Coord, id: &str) -> bool {
    c.call("GET", &format!("/v1/runs/{id}"), Who::Admin, None)
        .await
        .0
        == 404
}

#[tokio::test]
async fn run_checklist_expired_terminal_runs_are_pruned_in_resumable_batches() {
    let c = Coord::start().await;
    let mut old = Vec::new();
    for _ in 0..20 {
        let id = new_run(&c, ALICE, json!({"command": ["true"]})).await;
        let (status, _) = c
            .finish(ALICE, &id, json!({"exitCode": 0, "log": "old log\n"}))
            .await;
        assert_eq!(status, 200);
        old.push(id);
    }
    let running = new_run(&c, ALICE, json!({"command": ["sleep", "inf"]})).await;
    c.clock.advance_secs(31 * 86_400);
    let recent = new_run(&c, ALICE, json!({"command": ["true"]})).await;
    let (status, _) = c
        .finish(ALICE, &recent, json!({"exitCode": 0, "log": "recent\n"}))
        .await;
    assert_eq!(status, 200);

    assert_eq!(prune_pass(&c).await, 16, "one bounded batch per pass");
    let mut remaining = 0;
    for id in &old {
        if !gone(&c, id).await {
            remaining += 1;
        }
    }
    assert_eq!(remaining, 4);
    assert_eq!(prune_pass(&c).await, 4, "the next pass resumes");
    assert_eq!(prune_pass(&c).await, 0);
    let store = &c.state().store;
    for id in &old {
        assert!(gone(&c, id).await, "{id} pruned");
        assert_eq!(store.run_log(id).await.unwrap(), "", "{id} log pruned");
        assert!(store.run_events(id, 0, 10).await.unwrap().is_empty());
    }
    let (status, _) = c
        .call("GET", &format!("/v1/runs/{running}"), ALICE, None)
        .await;
    assert_eq!(status, 200, "a running run is never pruned");
    let logs = c
        .request(
            reqwest::Method::GET,
            &format!("/v1/runs/{recent}/logs"),
            ALICE,
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(logs, "recent\n");
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_usage_is_the_callers_own_unless_admin() {
    let c = Coord::start().await;
    lease_id(&c, ALICE).await;
    lease_id(&c, BOB).await;
    lease_for(&c, "alice@example.com", "other-org").await;

    // A non-admin asking for everything, or for someone else, gets their own owner and org.
    let (status, usage) = c
        .call(
            "GET",
            "/v1/usage?scope=all&owner=bob@example.com&org=other-org",
            ALICE,
            None,
        )
        .await;
    assert_eq!(status, 200, "{usage}");
    let u = &usage["usage"];
    assert_eq!(u["scope"], "user");
    assert_eq!(u["owner"], "alice@example.com");
    assert_eq!(u["org"], "example-org");
    assert_eq!(u["leases"], 1, "{u}");
    assert_eq!(u["byOrg"][0]["key"], "example-org");
    assert_eq!(u["byOrg"].as_array().unwrap().len(), 1);

    // An admin's user scope spans orgs unless an org is given.
    let (_, usage) = c
        .call(
            "GET",
            "/v1/usage?scope=user&owner=alice@example.com",
            Who::Admin,
            None,
        )
        .await;
    let u = &usage["usage"];
    assert_eq!(u["owner"], "alice@example.com");
    assert_eq!(u["leases"], 2, "{u}");
    assert!(u.get("org").is_none(), "{u}");
    let mut orgs: Vec<&str> = u["byOrg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["key"].as_str().unwrap())
        .collect();
    orgs.sort_unstable();
    assert_eq!(orgs, ["example-org", "other-org"]);
    let (_, usage) = c
        .call(
            "GET",
            "/v1/usage?scope=user&owner=alice@example.com&org=other-org",
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(usage["usage"]["leases"], 1, "{usage}");
    assert_eq!(usage["usage"]["org"], "other-org");
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_admin_routes_refuse_non_admins_with_403() {
    let c = Coord::start().await;
    let lease = lease_id(&c, ALICE).await;
    for who in [ALICE, Who::Shared] {
        for (method, path) in [
            ("GET", "/v1/pool".to_owned()),
            ("GET", "/v1/admin/leases".to_owned()),
            ("POST", format!("/v1/admin/leases/{lease}/release")),
            ("POST", format!("/v1/admin/leases/{lease}/delete")),
            (
                "POST",
                "/v1/admin/leases/cbx_000000000000/delete".to_owned(),
            ),
        ] {
            let (status, body) = c.call(method, &path, who, Some(json!({}))).await;
            assert_eq!(
                (status, body),
                (
                    403,
                    json!({"error": "forbidden", "message": "admin token required"})
                ),
                "{who:?} {method} {path}"
            );
        }
    }
    // The lease Alice's owner routes would have touched is untouched.
    let (_, got) = c
        .call("GET", &format!("/v1/leases/{lease}"), ALICE, None)
        .await;
    assert_eq!(got["lease"]["state"], "active");
    let (status, _) = c.call("GET", "/v1/pool", Who::Admin, None).await;
    assert_eq!(status, 200);
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_capacity_admins_get_their_cap_and_registered_leases_count_for_nothing() {
    let mut env = crate::harness::base_env();
    env.insert("CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER".into(), "1".into());
    env.insert(
        "CRABBOX_CAPACITY_ADMIN_OWNERS".into(),
        "alice@example.com".into(),
    );
    env.insert(
        "CRABBOX_MAX_ACTIVE_LEASES_PER_CAPACITY_ADMIN".into(),
        "2".into(),
    );
    let c = Coord::start_with(env, &[]).await;
    lease_id(&c, ALICE).await;
    lease_id(&c, ALICE).await;
    let (status, refused) = c.create(ALICE, json!({})).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (429, Some("cost_limit_exceeded")),
        "{refused}"
    );
    // Bob keeps the ordinary cap; his registered inventory does not use it up.
    let (status, registered) = c
        .call(
            "PUT",
            "/v1/leases/bobs-box/registration",
            BOB,
            Some(json!({"provider": "ssh", "target": "linux", "host": "10.0.0.7"})),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    lease_id(&c, BOB).await;
    let (status, _) = c.create(BOB, json!({})).await;
    assert_eq!(status, 429);
    let (_, usage) = c.call("GET", "/v1/usage", BOB, None).await;
    assert_eq!(
        usage["usage"]["leases"], 1,
        "registered leases are not usage: {usage}"
    );
    assert_eq!(
        usage["limits"]["capacityAdminOwners"],
        json!(["alice@example.com"])
    );
    c.stop().await;
}

#[tokio::test]
async fn run_checklist_log_chunks_win_only_when_they_hold_text() {
    let c = Coord::start().await;
    for (chunks, log, expected) in [
        (json!(["a", "", "b"]), json!("ignored"), "ab"),
        (json!([]), json!("from log"), "from log"),
        (json!(["", ""]), json!("from log"), "from log"),
        (json!(null), json!("from log"), "from log"),
    ] {
        let id = new_run(&c, ALICE, json!({"command": ["true"]})).await;
        let (status, fin) = c
            .finish(
                ALICE,
                &id,
                json!({"exitCode": 0, "logChunks": chunks, "log": log}),
            )
            .await;
        assert_eq!(status, 200, "{fin}");
        assert_eq!(fin["run"]["logBytes"], expected.len(), "{chunks}");
        let text = c
            .request(reqwest::Method::GET, &format!("/v1/runs/{id}/logs"), ALICE)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(text, expected, "logChunks {chunks}");
    }
    c.stop().await;
}

/// The reconciler loop drains a backlog of expired runs a batch a second, not a batch a
/// minute (spec §4.10: the old coordinator re-armed its alarm 1 s out while a cursor was left).
#[tokio::test]
async fn run_checklist_a_backlog_of_expired_runs_drains_a_batch_a_second() {
    let c = Coord::start().await;
    let mut old = Vec::new();
    for _ in 0..40 {
        let id = new_run(&c, ALICE, json!({"command": ["true"]})).await;
        let (status, _) = c.finish(ALICE, &id, json!({"exitCode": 0})).await;
        assert_eq!(status, 200);
        old.push(id);
    }
    c.clock.advance_secs(31 * 86_400);
    let stop = tokio_util::sync::CancellationToken::new();
    let reconciler = tokio::spawn(crabbox_coordinator::reconciler::run(
        c.state().clone(),
        stop.clone(),
    ));
    // Three batches of 16: within seconds, where one batch a minute would take three minutes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut left = 0;
        for id in &old {
            if !gone(&c, id).await {
                left += 1;
            }
        }
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} of 40 expired runs still stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    stop.cancel();
    reconciler.await.unwrap();
    c.stop().await;
}
