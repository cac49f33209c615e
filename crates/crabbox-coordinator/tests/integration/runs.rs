//! Runs: records, events, telemetry, bounded logs and read/write access.

use serde_json::json;

use crate::harness::{ALICE, BOB, Coord, Who};

#[tokio::test]
async fn a_run_records_events_telemetry_and_its_log() {
    let c = Coord::start().await;
    let (_, lease) = c.create(ALICE, json!({})).await;
    let lease_id = lease["lease"]["id"].as_str().unwrap().to_owned();
    let (status, run) = c
        .call("POST", "/v1/runs", ALICE, Some(json!({"leaseID": lease_id, "command": ["cargo", "test"], "label": "  nightly \n run "})))
        .await;
    assert_eq!(status, 201, "{run}");
    let run = &run["run"];
    let id = run["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("run_"));
    assert_eq!(run["state"], "running");
    assert_eq!(run["phase"], "starting");
    assert_eq!(run["eventCount"], 1);
    assert_eq!(run["label"], "nightly run");
    assert_eq!(run["provider"], "local");
    assert_eq!(run["slug"], lease["lease"]["slug"]);

    let (status, ev) = c
        .call(
            "POST",
            &format!("/v1/runs/{id}/events"),
            ALICE,
            Some(json!({"type": "sync.started"})),
        )
        .await;
    assert_eq!(status, 201, "{ev}");
    assert_eq!(ev["event"]["seq"], 2);
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/runs/{id}/events"),
            ALICE,
            Some(json!({"type": "stdout", "stream": "stdout", "message": "hello"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, got) = c.call("GET", &format!("/v1/runs/{id}"), ALICE, None).await;
    assert_eq!(got["run"]["phase"], "command");
    assert_eq!(got["run"]["eventCount"], 3);

    let (status, b) = c
        .call(
            "POST",
            &format!("/v1/runs/{id}/telemetry"),
            ALICE,
            Some(json!({"telemetry": {"nothing": 1}})),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_telemetry"))
    );
    let (status, t) = c
        .call(
            "POST",
            &format!("/v1/runs/{id}/telemetry"),
            ALICE,
            Some(json!({"telemetry": {"load1": 1.5, "capturedAt": "2026-01-01T00:00:00Z"}})),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["run"]["telemetry"]["start"]["load1"], 1.5);

    // A log over 64 KiB (stored in chunks) with multi-byte characters round-trips exactly.
    let log: String = (0..20_000).fold(String::new(), |mut acc, i| {
        use std::fmt::Write as _;
        let _ = writeln!(acc, "line {i} ✓ ünïcode");
        acc
    });
    assert!(log.len() > 300_000);
    c.clock.advance_secs(4);
    let (status, fin) = c.finish(ALICE, &id, json!({"exitCode": 3, "syncMs": 12, "commandMs": 34, "logChunks": [&log[..100_000], &log[100_000..]], "log": "ignored", "blockedStage": "Bad Stage", "retryLikely": "network"})).await;
    assert_eq!(status, 200, "{fin}");
    let fin = &fin["run"];
    assert_eq!(fin["state"], "failed");
    assert_eq!(fin["exitCode"], 3);
    assert_eq!(fin["durationMs"], 4000);
    assert_eq!(fin["logBytes"], log.len());
    assert_eq!(fin["logTruncated"], false);
    assert!(
        fin.get("blockedStage").is_none(),
        "invalid classification kept: {fin}"
    );
    assert_eq!(fin["retryLikely"], "network");
    let text = c
        .request(reqwest::Method::GET, &format!("/v1/runs/{id}/logs"), ALICE)
        .send()
        .await
        .unwrap();
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(text.text().await.unwrap(), log);

    let (_, events) = c
        .call(
            "GET",
            &format!("/v1/runs/{id}/events?after=1&limit=2"),
            ALICE,
            None,
        )
        .await;
    let seqs: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3]);
    let (_, events) = c
        .call("GET", &format!("/v1/runs/{id}/events?after=3"), ALICE, None)
        .await;
    assert_eq!(events["events"][0]["type"], "command.finished");
    assert_eq!(events["events"][0]["exitCode"], 3);

    let (_, list) = c
        .call("GET", &format!("/v1/runs?leaseID={lease_id}"), ALICE, None)
        .await;
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);

    // Bob sees nothing and cannot write; the admin can read.
    let (status, _) = c.call("GET", &format!("/v1/runs/{id}"), BOB, None).await;
    assert_eq!(status, 404);
    let (status, _) = c
        .call("GET", &format!("/v1/runs/{id}/logs"), BOB, None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = c.finish(BOB, &id, json!({"exitCode": 0})).await;
    assert_eq!(status, 404);
    let (_, bob_list) = c.call("GET", "/v1/runs", BOB, None).await;
    assert!(bob_list["runs"].as_array().unwrap().is_empty());
    let (status, _) = c
        .call("GET", &format!("/v1/runs/{id}"), Who::Admin, None)
        .await;
    assert_eq!(status, 200);
    c.stop().await;
}

#[tokio::test]
async fn logs_keep_the_last_eight_mebibytes() {
    let c = Coord::start().await;
    let (_, run) = c
        .call(
            "POST",
            "/v1/runs",
            ALICE,
            Some(json!({"command": ["true"]})),
        )
        .await;
    let id = run["run"]["id"].as_str().unwrap().to_owned();
    let mut log = "A".repeat(1024 * 1024);
    log.push_str(&"B".repeat(8 * 1024 * 1024));
    let (status, fin) = c
        .finish(ALICE, &id, json!({"exitCode": 0, "log": log}))
        .await;
    assert_eq!(status, 200, "{fin}");
    assert_eq!(fin["run"]["state"], "succeeded");
    assert_eq!(fin["run"]["logBytes"], 8 * 1024 * 1024);
    assert_eq!(fin["run"]["logTruncated"], true);
    let text = c
        .request(reqwest::Method::GET, &format!("/v1/runs/{id}/logs"), ALICE)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text.len(), 8 * 1024 * 1024);
    assert!(text.bytes().all(|b| b == b'B'));
    c.stop().await;
}

#[tokio::test]
async fn run_create_checks_the_lease_with_non_admin_rules_even_for_admins() {
    let c = Coord::start().await;
    let (_, lease) = c.create(ALICE, json!({})).await;
    let lease_id = lease["lease"]["id"].as_str().unwrap().to_owned();
    // The admin can read Alice's lease, but a run on it would be attributed to the admin,
    // so the create sees the lease as a non-admin would: not visible, 404.
    let (status, _) = c
        .call("GET", &format!("/v1/leases/{lease_id}"), Who::Admin, None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = c
        .call(
            "POST",
            "/v1/runs",
            Who::Admin,
            Some(json!({"leaseID": lease_id, "command": ["true"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, _) = c
        .call(
            "POST",
            "/v1/runs",
            BOB,
            Some(json!({"leaseID": lease_id, "command": ["true"]})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, run) = c
        .call(
            "POST",
            "/v1/runs",
            ALICE,
            Some(json!({"leaseID": lease_id, "command": ["true"]})),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    c.stop().await;
}

#[tokio::test]
async fn a_non_numeric_exit_code_is_absent_not_a_bad_request() {
    let c = Coord::start().await;
    let (_, run) = c
        .call(
            "POST",
            "/v1/runs",
            ALICE,
            Some(json!({"command": ["true"]})),
        )
        .await;
    let id = run["run"]["id"].as_str().unwrap().to_owned();
    // An event keeps its exit code only when it is a number.
    let (status, ev) = c
        .call(
            "POST",
            &format!("/v1/runs/{id}/events"),
            ALICE,
            Some(json!({"type": "command.exit", "exitCode": "0"})),
        )
        .await;
    assert_eq!(status, 201, "{ev}");
    assert!(ev["event"].get("exitCode").is_none(), "{ev}");
    // A finish without a numeric exit code records exit code 1 (spec §2.3), like a missing one.
    let (status, fin) = c
        .finish(ALICE, &id, json!({"exitCode": "0", "log": "ok"}))
        .await;
    assert_eq!(status, 200, "{fin}");
    assert_eq!(fin["run"]["exitCode"], 1);
    assert_eq!(fin["run"]["state"], "failed");
    // Other fields keep their JSON types.
    let (status, bad) = c
        .finish(ALICE, &id, json!({"exitCode": 0, "logTruncated": "yes"}))
        .await;
    assert_eq!(
        (status, bad["error"].as_str()),
        (400, Some("invalid_json")),
        "{bad}"
    );
    c.stop().await;
}

/// A run that moved to a replacement lease is listed under every lease it ran on, by id and by
/// slug, also once the first lease has ended; only to callers who may read it.
#[tokio::test]
async fn runs_are_listed_by_every_lease_they_ran_on_by_id_or_slug() {
    let c = Coord::start().await;
    let lease = |slug: &'static str| {
        let c = &c;
        async move {
            let (status, body) = c.create(ALICE, json!({"slug": slug})).await;
            assert_eq!(status, 201, "{body}");
            let lease = &body["lease"];
            (
                lease["id"].as_str().unwrap().to_owned(),
                lease["slug"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (first, first_slug) = lease("first box").await;
    let (second, second_slug) = lease("second box").await;
    assert_eq!(
        (first_slug.as_str(), second_slug.as_str()),
        ("first-box", "second-box")
    );
    let (_, moved) = c
        .call("POST", "/v1/runs", ALICE, Some(json!({"leaseID": first})))
        .await;
    let moved = moved["run"]["id"].as_str().unwrap().to_owned();
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/runs/{moved}/events"),
            ALICE,
            Some(json!({"type": "lease.replace.finished", "leaseID": second, "slug": second_slug})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = c
        .call("POST", &format!("/v1/leases/{first}/release"), ALICE, None)
        .await;
    assert_eq!(status, 200);
    c.clock.advance_secs(1);
    let (_, later) = c
        .call("POST", "/v1/runs", ALICE, Some(json!({"leaseID": second})))
        .await;
    let later = later["run"]["id"].as_str().unwrap().to_owned();

    let listed = |who: Who<'static>, key: String| {
        let c = &c;
        async move {
            let (status, body) = c
                .call("GET", &format!("/v1/runs?leaseID={key}"), who, None)
                .await;
            assert_eq!(status, 200, "{body}");
            body["runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    for key in [&first, &first_slug] {
        assert_eq!(listed(ALICE, key.clone()).await, [moved.as_str()], "{key}");
        assert!(listed(BOB, key.clone()).await.is_empty(), "{key}");
    }
    for key in [&second, &second_slug] {
        assert_eq!(
            listed(ALICE, key.clone()).await,
            [later.as_str(), moved.as_str()],
            "{key}"
        );
    }
    let (_, got) = c
        .call("GET", &format!("/v1/runs/{moved}"), ALICE, None)
        .await;
    assert_eq!(got["run"]["leaseID"], second.as_str());
    assert_eq!(got["run"]["leaseIDs"], json!([first, second]));
    c.stop().await;
}
