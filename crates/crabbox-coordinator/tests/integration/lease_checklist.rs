//! The "Leases & lifecycle" checklist of the old coordinator's test suite (spec coordinator
//! §10.1) items that `leases.rs` does not already cover.

use std::collections::HashMap;

use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_coordinator::Clock as _;
use serde_json::{Value, json};

use crate::harness::{ALICE, BOB, Coord, Gate, Pass, SHARED_TOKEN, SshPool, base_env, public_key};

/// A coordinator whose only `ssh` pool host sits behind `gate`, logging in as `user`.
async fn gated(env: HashMap<String, String>, user: Option<&str>) -> (SshPool, Gate, Coord) {
    let pool = SshPool::start().await;
    let gate = Gate::start(pool.sshd_port).await;
    let entry = match user {
        Some(user) => format!("{user}@127.0.0.1:{}", gate.port),
        None => pool.entry(gate.port),
    };
    let flags = pool.flags(&[entry]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = Coord::start_with(env, &flags).await;
    (pool, gate, c)
}

fn cap_one() -> HashMap<String, String> {
    let mut env = base_env();
    env.insert("CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER".into(), "1".into());
    env
}

async fn get(c: &Coord, id: &str) -> (u16, Value) {
    c.call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await
}

async fn heartbeat(c: &Coord, id: &str, body: Value) -> (u16, Value) {
    c.call(
        "POST",
        &format!("/v1/leases/{id}/heartbeat"),
        ALICE,
        Some(body),
    )
    .await
}

async fn release(c: &Coord, id: &str, body: Value) -> (u16, Value) {
    c.call(
        "POST",
        &format!("/v1/leases/{id}/release"),
        ALICE,
        Some(body),
    )
    .await
}

/// Rewrites the stored record of `id` with `change`, as another process would have left it.
async fn rewrite(c: &Coord, id: &str, change: impl FnOnce(&mut Lease)) {
    let store = &c.state().store;
    let found = store.get_lease(id).await.unwrap().unwrap();
    let mut lease = found.value;
    change(&mut lease);
    let index = crabbox_coordinator::lifecycle::index(&lease, c.state().settings.settle_secs);
    store
        .update_lease(&lease, &index, found.version)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_create_echoes_its_normalised_slug_pond_lifetimes_and_ports() {
    let c = Coord::start().await;
    let (status, body) = c
        .create(
            ALICE,
            json!({"slug": "Blue Lobster", "pond": " Alpha  Pond! ", "ttlSeconds": 1200,
                   "idleTimeoutSeconds": 360, "exposedPorts": [" 8080", "9090", ""]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, by_slug) = c
        .call("GET", "/v1/leases/Blue%20Lobster", ALICE, None)
        .await;
    assert_eq!(status, 200, "{by_slug}");
    for lease in [&body["lease"], &by_slug["lease"]] {
        assert_eq!(lease["slug"], "blue-lobster", "{lease}");
        assert_eq!(lease["pond"], "alpha-pond", "{lease}");
        assert_eq!(lease["ttlSeconds"], 1200, "{lease}");
        assert_eq!(lease["idleTimeoutSeconds"], 360, "{lease}");
        assert_eq!(lease["exposedPorts"], json!(["8080", "9090"]), "{lease}");
        let created = Timestamp::parse(lease["createdAt"].as_str().unwrap()).unwrap();
        let expires = Timestamp::parse(lease["expiresAt"].as_str().unwrap()).unwrap();
        assert_eq!(
            expires,
            created.plus_secs(360),
            "the idle deadline comes first"
        );
    }
    assert_eq!(by_slug["lease"]["id"], body["lease"]["id"]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_is_stored_as_provisioning_first_and_a_provider_failure_fails_it_redacted() {
    // The pool host's login name is a configured secret, so the provider's error names it.
    let (pool, mut gate, c) = gated(base_env(), Some(SHARED_TOKEN)).await;
    let id = "cbx_00000000e101";
    let create = c.create(ALICE, json!({"provider": "ssh", "leaseID": id}));
    let meanwhile = async {
        gate.arrival().await; // the provider is reaching the host
        let (status, got) = get(&c, id).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["lease"]["state"], "provisioning", "{got}");
        assert_eq!(got["lease"]["cloudID"], "", "{got}");
        let (_, listed) = c
            .call("GET", "/v1/leases?state=provisioning", ALICE, None)
            .await;
        assert_eq!(listed["leases"][0]["id"], id, "{listed}");
        gate.pass(Pass::Slam);
    };
    let ((status, body), ()) = futures_util::future::join(create, meanwhile).await;
    // The port answers a failed provider call with its typed status (503 for an unreachable
    // host) where the old coordinator answered 500; the stored outcome is the same.
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("provider_unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("127.0.0.1"), "{message}");
    assert!(!message.contains(SHARED_TOKEN), "{message}");
    let (_, got) = get(&c, id).await;
    let lease = &got["lease"];
    assert_eq!(lease["state"], "failed", "{lease}");
    assert!(lease["endedAt"].is_string(), "{lease}");
    let failure = lease["failureError"].as_str().unwrap();
    assert!(failure.contains("127.0.0.1"), "{failure}");
    assert!(!failure.contains(SHARED_TOKEN), "{failure}");
    assert!(!got.to_string().contains(SHARED_TOKEN), "{got}");
    c.stop().await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tokenless_creates_of_one_id_get_one_lease_and_409s() {
    let c = Coord::start().await;
    let body = json!({"leaseID": "cbx_00000000e201"});
    let results =
        futures_util::future::join_all((0..4).map(|_| c.create(ALICE, body.clone()))).await;
    let created: Vec<_> = results.iter().filter(|(s, _)| *s == 201).collect();
    assert_eq!(created.len(), 1, "{results:?}");
    for (status, b) in results.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*status, b["error"].as_str()),
            (409, Some("lease_id_conflict")),
            "{b}"
        );
    }
    assert_eq!(c.runner_dirs(), 1, "one id, one runner");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_id_put_while_the_first_is_provisioning_joins_it() {
    let (pool, mut gate, c) = gated(base_env(), None).await;
    let id = "cbx_00000000e301";
    let body = json!({"provider": "ssh", "sshPublicKey": public_key(), "slug": "fixed-join"});
    let path = format!("/v1/leases/{id}");
    let first = c.call("PUT", &path, ALICE, Some(body.clone()));
    let second = async {
        gate.arrival().await;
        let joined = c.call("PUT", &path, ALICE, Some(body.clone())).await;
        gate.pass(Pass::Open);
        joined
    };
    let ((s1, b1), (s2, b2)) = futures_util::future::join(first, second).await;
    assert_eq!(s1, 201, "{b1}");
    assert_eq!(s2, 202, "{b2}");
    assert_eq!(b2["lease"]["id"], id);
    assert_eq!(b2["lease"]["state"], "provisioning", "{b2}");
    let (s3, b3) = c.call("PUT", &path, ALICE, Some(body)).await;
    assert_eq!(s3, 200, "{b3}");
    assert_eq!(b3["lease"]["sshPort"], b1["lease"]["sshPort"]);
    let keys = std::fs::read_to_string(pool.keys_file()).unwrap();
    assert_eq!(keys.matches("crabbox-lease:").count(), 1, "{keys}");
    c.stop().await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_after_the_reservation_deletes_the_late_runner() {
    let (pool, mut gate, c) = gated(base_env(), None).await;
    let id = "cbx_00000000e401";
    let token = format!("cat_{}", "e4".repeat(16));
    let create = c.create(
        ALICE,
        json!({"provider": "ssh", "leaseID": id, "createAttemptID": token}),
    );
    let cancel = async {
        gate.arrival().await;
        let canceled = c
            .call(
                "POST",
                &format!("/v1/leases/{id}/cancel-create"),
                ALICE,
                Some(json!({"createAttemptID": token})),
            )
            .await;
        gate.pass(Pass::Open); // the runner is made after all…
        gate.arrival().await;
        gate.pass(Pass::Open); // …and deleted again
        canceled
    };
    let ((cs, cb), (xs, xb)) = futures_util::future::join(create, cancel).await;
    assert_eq!(xs, 200, "{xb}");
    assert_eq!(xb["canceledCreate"]["state"], "canceled", "{xb}");
    assert_eq!(xb["lease"]["state"], "released", "{xb}");
    assert_eq!(
        (cs, cb["error"].as_str()),
        (409, Some("lease_state_changed")),
        "{cb}"
    );
    let keys = std::fs::read_to_string(pool.keys_file()).unwrap();
    assert!(!keys.contains(&format!("crabbox-lease:{id}")), "{keys}");
    let (_, got) = get(&c, id).await;
    assert_eq!(got["lease"]["state"], "released", "{got}");
    assert!(got["lease"].get("cleanupError").is_none(), "{got}");
    // A retry of the canceled attempt stays canceled.
    let (status, again) = c
        .create(
            ALICE,
            json!({"provider": "ssh", "leaseID": id, "createAttemptID": token}),
        )
        .await;
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("create_canceled")),
        "{again}"
    );
    c.stop().await;
    pool.stop().await;
}

#[tokio::test]
async fn an_unbound_canceled_attempt_blocks_only_its_own_owner() {
    let c = Coord::start().await;
    let id = "cbx_00000000e501";
    let token = format!("cat_{}", "e5".repeat(16));
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/cancel-create"),
            ALICE,
            Some(json!({"createAttemptID": token})),
        )
        .await;
    assert_eq!(status, 200);
    // Another tenant cannot see, cancel or inspect alice's tombstone…
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/cancel-create"),
            BOB,
            Some(json!({"createAttemptID": token})),
        )
        .await;
    assert_eq!(status, 404);
    let body = json!({"leaseID": id, "createAttemptID": token});
    let (status, b) = c.create(ALICE, body.clone()).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("create_canceled")),
        "{b}"
    );
    // …and is not blocked by it, even with the same token.
    let (status, b) = c.create(BOB, body).await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["lease"]["owner"], "bob@example.com");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_while_provisioning_survives_finalisation() {
    let (pool, mut gate, c) = gated(base_env(), None).await;
    let id = "cbx_00000000e601";
    let create = c.create(ALICE, json!({"provider": "ssh", "leaseID": id}));
    let beat = async {
        gate.arrival().await;
        c.clock.advance_secs(30);
        let beat = heartbeat(
            &c,
            id,
            json!({"idleTimeoutSeconds": 900, "telemetry": {"load1": 1.25}}),
        )
        .await;
        gate.pass(Pass::Open);
        beat
    };
    let ((cs, created), (hs, hb)) = futures_util::future::join(create, beat).await;
    assert_eq!(hs, 200, "{hb}");
    assert_eq!(hb["lease"]["state"], "provisioning", "{hb}");
    assert_eq!(cs, 201, "{created}");
    for lease in [&created["lease"], &get(&c, id).await.1["lease"]] {
        assert_eq!(lease["state"], "active", "{lease}");
        assert_eq!(lease["idleTimeoutSeconds"], 900, "{lease}");
        assert_eq!(lease["telemetry"]["load1"], 1.25, "{lease}");
        assert_eq!(
            lease["lastTouchedAt"], hb["lease"]["lastTouchedAt"],
            "{lease}"
        );
        assert_eq!(lease["expiresAt"], hb["lease"]["expiresAt"], "{lease}");
        assert!(
            lease["lastTouchedAt"].as_str().unwrap() > lease["createdAt"].as_str().unwrap(),
            "{lease}"
        );
    }
    c.stop().await;
    pool.stop().await;
}

#[tokio::test]
async fn a_release_without_delete_keeps_the_runner() {
    let c = Coord::start().await;
    let (_, body) = c.create(ALICE, json!({})).await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    let port: u16 = body["lease"]["sshPort"].as_str().unwrap().parse().unwrap();
    let (status, rel) = release(&c, &id, json!({"delete": false})).await;
    assert_eq!(status, 200, "{rel}");
    assert_eq!(rel["lease"]["state"], "released", "{rel}");
    assert_eq!(rel["lease"]["releaseDeletesServer"], false, "{rel}");
    assert!(rel["lease"].get("cleanupStartedAt").is_none(), "{rel}");
    c.clock.advance_secs(7200);
    let report = c.reconcile().await;
    assert_eq!(
        (report.deleted, report.orphans_deleted),
        (0, 0),
        "{report:?}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "the retained runner was deleted"
    );
    assert_eq!(c.runner_dirs(), 1);
    let (_, got) = get(&c, &id).await;
    assert_eq!(got["lease"]["state"], "released", "{got}");
    assert_eq!(got["lease"]["releaseDeletesServer"], false, "{got}");
    // Releasing it again with delete asks for nothing more: it is over.
    let (status, _) = release(&c, &id, json!({"delete": true})).await;
    assert_eq!(status, 200);
    c.stop().await;
}

#[tokio::test]
async fn heartbeats_keep_the_newest_60_samples_and_ignore_non_positive_idle() {
    let c = Coord::start().await;
    let (_, body) = c.create(ALICE, json!({"idleTimeoutSeconds": 600})).await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    let start = c.clock.now();
    for i in 0..62 {
        let at = start.plus_secs(i).to_string();
        let (status, hb) = heartbeat(
            &c,
            &id,
            json!({"telemetry": {"capturedAt": at, "load1": i}}),
        )
        .await;
        assert_eq!(status, 200, "{hb}");
    }
    // A repeated capture time replaces its sample instead of adding one.
    let last = start.plus_secs(61).to_string();
    let (_, hb) = heartbeat(
        &c,
        &id,
        json!({"telemetry": {"capturedAt": last, "load1": 99}}),
    )
    .await;
    let history = hb["lease"]["telemetryHistory"].as_array().unwrap();
    assert_eq!(history.len(), 60, "{hb}");
    assert_eq!(history[0]["load1"], 2.0, "the oldest two were dropped");
    assert_eq!(history[0]["capturedAt"], start.plus_secs(2).to_string());
    assert_eq!(history[59]["load1"], 99.0);
    assert_eq!(hb["lease"]["telemetry"]["load1"], 99.0);

    for idle in [json!(0), json!(-30), json!(null)] {
        let (status, hb) = heartbeat(&c, &id, json!({"idleTimeoutSeconds": idle})).await;
        assert_eq!(status, 200, "{hb}");
        assert_eq!(hb["lease"]["idleTimeoutSeconds"], 600, "{idle}: {hb}");
    }
    let (_, hb) = heartbeat(&c, &id, json!({"idleTimeoutSeconds": 45.9})).await;
    assert_eq!(hb["lease"]["idleTimeoutSeconds"], 45, "{hb}");
    c.stop().await;
}

#[tokio::test]
async fn an_expired_lease_not_yet_reconciled_still_counts_and_is_not_revived() {
    let c = Coord::start_with(cap_one(), &[]).await;
    let (_, body) = c.create(ALICE, json!({"idleTimeoutSeconds": 60})).await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    c.clock.advance_secs(61);
    let (status, b) = heartbeat(&c, &id, json!({})).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("lease_expired")),
        "{b}"
    );
    let (_, got) = get(&c, &id).await;
    assert_eq!(got["lease"]["state"], "active", "{got}");
    assert_eq!(
        got["lease"]["expiresAt"], body["lease"]["expiresAt"],
        "{got}"
    );
    let (status, b) = c.create(ALICE, json!({})).await;
    assert_eq!(
        (status, b["error"].as_str(), b["message"].as_str()),
        (
            429,
            Some("cost_limit_exceeded"),
            Some("active lease limit for owner exceeded: 2/1")
        ),
        "{b}"
    );
    assert_eq!(c.reconcile().await.expired, 1);
    let (status, b) = c.create(ALICE, json!({})).await;
    assert_eq!(status, 201, "{b}");
    c.stop().await;
}

#[tokio::test]
async fn expected_provider_binds_heartbeat_and_release() {
    let c = Coord::start().await;
    let (_, body) = c.create(ALICE, json!({})).await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    let (status, b) = heartbeat(&c, &id, json!({"expectedProvider": " Local "})).await;
    assert_eq!(status, 200, "{b}");
    for (expected, code) in [
        ("hetzner", (409, "provider_identity_mismatch")),
        ("google", (409, "provider_identity_mismatch")),
        ("not a provider!", (400, "invalid_expected_provider")),
        ("", (400, "invalid_expected_provider")),
    ] {
        let body = json!({"expectedProvider": expected});
        let (status, b) = heartbeat(&c, &id, body.clone()).await;
        assert_eq!((status, b["error"].as_str()), (code.0, Some(code.1)), "{b}");
        let (status, b) = release(&c, &id, body).await;
        assert_eq!((status, b["error"].as_str()), (code.0, Some(code.1)), "{b}");
    }
    let (_, got) = get(&c, &id).await;
    assert_eq!(
        got["lease"]["state"], "active",
        "a refused release released: {got}"
    );

    // Aliases name the canonical provider.
    let reg = json!({"provider": "gcp", "target": "linux", "host": "10.0.0.5"});
    let (status, _) = c
        .call("PUT", "/v1/leases/box-g/registration", ALICE, Some(reg))
        .await;
    assert_eq!(status, 201);
    let (status, b) = heartbeat(&c, "box-g", json!({"expectedProvider": "google"})).await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = release(&c, "box-g", json!({"expectedProvider": "GOOGLE"})).await;
    assert_eq!(
        (status, b["lease"]["state"].as_str()),
        (200, Some("released")),
        "{b}"
    );
    c.stop().await;
}

#[tokio::test]
async fn more_than_one_batch_of_due_leases_is_finished_by_further_passes() {
    let c = Coord::start().await;
    let n = crabbox_coordinator::reconciler::BATCH + 1;
    for i in 0..n {
        let body =
            json!({"provider": "ssh", "target": "linux", "host": "10.0.0.1", "ttlSeconds": 60});
        let (status, b) = c
            .call(
                "PUT",
                &format!("/v1/leases/box-{i}/registration"),
                ALICE,
                Some(body),
            )
            .await;
        assert_eq!(status, 201, "{b}");
    }
    c.clock.advance_secs(61);
    let state = c.state();
    let (first, more) = crabbox_coordinator::reconciler::pass(state, false)
        .await
        .unwrap();
    assert_eq!(
        (first.expired, more),
        (crabbox_coordinator::reconciler::BATCH as u64, true)
    );
    let (_, live) = c.call("GET", "/v1/leases?state=active", ALICE, None).await;
    assert_eq!(live["leases"].as_array().unwrap().len(), 1, "{live}");
    let (second, more) = crabbox_coordinator::reconciler::pass(state, false)
        .await
        .unwrap();
    assert_eq!((second.expired, more), (1, false));
    let (_, expired) = c.call("GET", "/v1/leases?state=expired", ALICE, None).await;
    assert_eq!(expired["leases"].as_array().unwrap().len(), n, "{expired}");
    c.stop().await;
}

#[tokio::test]
async fn a_heartbeat_clears_cleanup_retry_metadata() {
    let c = Coord::start().await;
    let (_, body) = c.create(ALICE, json!({})).await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    let now = c.clock.now();
    // As a failed recovery lookup (or an older coordinator's failed delete) leaves a live lease.
    rewrite(&c, &id, |l| {
        l.cleanup_attempts = 2;
        l.cleanup_error = Some(format!("provider said no to {SHARED_TOKEN}"));
        l.cleanup_failed_at = Some(now);
        l.cleanup_retry_at = Some(now.plus_secs(300));
    })
    .await;
    let (_, before) = get(&c, &id).await;
    assert_eq!(before["lease"]["cleanupAttempts"], 2, "{before}");
    // Stored errors are redacted again on the way out.
    let shown = before["lease"]["cleanupError"].as_str().unwrap();
    assert!(shown.starts_with("provider said no to "), "{shown}");
    assert!(!shown.contains(SHARED_TOKEN), "{shown}");
    let (status, hb) = heartbeat(&c, &id, json!({})).await;
    assert_eq!(status, 200, "{hb}");
    for got in [&hb, &get(&c, &id).await.1] {
        let lease = &got["lease"];
        for field in ["cleanupError", "cleanupFailedAt", "cleanupRetryAt"] {
            assert!(lease.get(field).is_none(), "{field}: {lease}");
        }
        assert!(
            lease.get("cleanupAttempts").is_none_or(|v| v == 0),
            "{lease}"
        );
    }
    c.stop().await;
}

#[tokio::test]
async fn registrations_cannot_take_a_managed_lease_and_keep_long_slugs() {
    let c = Coord::start().await;
    let (_, body) = c.create(ALICE, json!({})).await;
    let managed = body["lease"]["id"].as_str().unwrap().to_owned();
    let reg = json!({"provider": "local", "target": "linux", "host": "10.0.0.2"});
    let (status, b) = c
        .call(
            "PUT",
            &format!("/v1/leases/{managed}/registration"),
            ALICE,
            Some(reg),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("lease_id_conflict")),
        "{b}"
    );
    let (_, got) = get(&c, &managed).await;
    assert!(
        got["lease"].get("lifecycle").is_none_or(|l| l == "managed"),
        "{got}"
    );
    assert_eq!(got["lease"]["host"], "127.0.0.1", "{got}");

    // A long slug a managed create refuses is kept as registered.
    let long = "a-very-long-registered-host-name-from-an-older-inventory-system";
    let (status, b) = c.create(ALICE, json!({"slug": long})).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_slug")),
        "{b}"
    );
    let reg = json!({"provider": "ssh", "target": "linux", "host": "10.0.0.3", "slug": long});
    for expected in [201, 200] {
        let (status, b) = c
            .call(
                "PUT",
                "/v1/leases/box-long/registration",
                ALICE,
                Some(reg.clone()),
            )
            .await;
        assert_eq!(status, expected, "{b}");
        assert_eq!(b["lease"]["slug"], long, "{b}");
    }
    let (status, b) = c
        .call("GET", &format!("/v1/leases/{long}"), ALICE, None)
        .await;
    assert_eq!(
        (status, b["lease"]["id"].as_str()),
        (200, Some("box-long")),
        "{b}"
    );
    c.stop().await;
}

/// Makes `id` look like a create an earlier coordinator process started ten minutes ago and
/// never finished.
async fn interrupt(c: &Coord, id: &str) {
    let started = c.clock.now().plus_secs(-600);
    rewrite(c, id, |l| {
        l.state = LeaseState::Provisioning;
        l.cloud_id.clear();
        l.provisioning_request_started_at = Some(started);
        l.provisioning_coordinator_version = Some("an-earlier-process".into());
    })
    .await;
}

#[tokio::test]
async fn interrupted_provisioning_waits_the_settle_window_then_fails_and_removes_its_runner() {
    let c = Coord::start().await;
    // One interrupted create got as far as a runner, the other made nothing.
    let (_, made) = c.create(ALICE, json!({})).await;
    let made = made["lease"]["id"].as_str().unwrap().to_owned();
    let (_, nothing) = c.create(ALICE, json!({})).await;
    let nothing = nothing["lease"]["id"].as_str().unwrap().to_owned();
    let nothing_port: u16 = get(&c, &nothing).await.1["lease"]["sshPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/admin/leases/{nothing}/delete"),
            crate::harness::Who::Admin,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(std::net::TcpStream::connect(("127.0.0.1", nothing_port)).is_err());
    interrupt(&c, &made).await;
    interrupt(&c, &nothing).await;
    assert_eq!(c.runner_dirs(), 1);

    // First sighting, then the settle window (60 s in these tests).
    assert_eq!(c.reconcile().await.recovered, 0);
    c.clock.advance_secs(59);
    assert_eq!(c.reconcile().await.recovered, 0);
    for id in [&made, &nothing] {
        assert_eq!(get(&c, id).await.1["lease"]["state"], "provisioning");
    }
    assert_eq!(c.runner_dirs(), 1, "removed before the settle window ended");
    c.clock.advance_secs(2);
    assert_eq!(c.reconcile().await.recovered, 2);
    for id in [&made, &nothing] {
        let (_, got) = get(&c, id).await;
        assert_eq!(got["lease"]["state"], "failed", "{got}");
        assert!(got["lease"]["failureError"].is_string(), "{got}");
        assert!(got["lease"]["endedAt"].is_string(), "{got}");
    }
    assert_eq!(
        c.runner_dirs(),
        0,
        "the interrupted create's runner was left"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_in_flight_counts_toward_the_active_lease_cap() {
    let (pool, mut gate, c) = gated(cap_one(), None).await;
    let create = c.create(ALICE, json!({"provider": "ssh"}));
    let second = async {
        gate.arrival().await;
        let refused = c.create(ALICE, json!({})).await;
        gate.pass(Pass::Open);
        refused
    };
    let ((s1, b1), (s2, b2)) = futures_util::future::join(create, second).await;
    assert_eq!(s1, 201, "{b1}");
    assert_eq!(
        (s2, b2["error"].as_str(), b2["message"].as_str()),
        (
            429,
            Some("cost_limit_exceeded"),
            Some("active lease limit for owner exceeded: 2/1")
        ),
        "{b2}"
    );
    assert_eq!(c.runner_dirs(), 0, "the refused create provisioned");
    c.stop().await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_provisioning_backs_off_when_the_provider_fails_and_then_cleans_up() {
    let (pool, mut gate, c) = gated(base_env(), None).await;
    let create = c.create(ALICE, json!({"provider": "ssh"}));
    let open = async {
        gate.arrival().await;
        gate.pass(Pass::Open);
    };
    let ((status, created), ()) = futures_util::future::join(create, open).await;
    assert_eq!(status, 201, "{created}");
    let id = created["lease"]["id"].as_str().unwrap().to_owned();
    let marker = format!("crabbox-lease:{id}");
    let keys = || std::fs::read_to_string(pool.keys_file()).unwrap();
    assert!(keys().contains(&marker));
    // The process that made it died before recording the host.
    interrupt(&c, &id).await;
    assert_eq!(c.reconcile().await.recovered, 0, "first sighting");
    c.clock.advance_secs(61);

    // The host cannot be reached: the lease stays provisioning with the error on record.
    gate.pass(Pass::Slam);
    assert_eq!(c.reconcile().await.recovered, 1);
    let (_, got) = get(&c, &id).await;
    assert_eq!(got["lease"]["state"], "provisioning", "{got}");
    assert!(
        got["lease"]["cleanupError"]
            .as_str()
            .unwrap()
            .contains("pool host"),
        "{got}"
    );
    assert!(keys().contains(&marker));
    // It backs off for a settle window (a connection now would hang the pass: none is let in)…
    c.clock.advance_secs(59);
    assert_eq!(c.reconcile().await.recovered, 0);
    // …then tries again, removes the lease's key from the host and frees it.
    c.clock.advance_secs(2);
    gate.pass(Pass::Open);
    assert_eq!(c.reconcile().await.recovered, 1);
    let (_, got) = get(&c, &id).await;
    assert_eq!(got["lease"]["state"], "failed", "{got}");
    assert!(!keys().contains(&marker), "{}", keys());
    gate.pass(Pass::Open);
    let (status, again) = c.create(BOB, json!({"provider": "ssh"})).await;
    assert_eq!(status, 201, "the host was not given back: {again}");
    c.stop().await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_while_the_reconciler_deletes_a_runner() {
    let (pool, mut gate, c) = gated(base_env(), None).await;
    let create = c.create(ALICE, json!({"provider": "ssh", "idleTimeoutSeconds": 60}));
    let open = async {
        gate.arrival().await;
        gate.pass(Pass::Open);
    };
    let ((status, expiring), ()) = futures_util::future::join(create, open).await;
    assert_eq!(status, 201, "{expiring}");
    let expiring = expiring["lease"]["id"].as_str().unwrap().to_owned();
    let (_, other) = c.create(ALICE, json!({"idleTimeoutSeconds": 600})).await;
    let other = other["lease"]["id"].as_str().unwrap().to_owned();
    c.clock.advance_secs(61);

    let reconcile = c.reconcile();
    let meanwhile = async {
        gate.arrival().await; // the provider delete is in flight
        let (status, hb) = heartbeat(&c, &other, json!({})).await;
        assert_eq!(status, 200, "{hb}");
        let (status, hb) = heartbeat(&c, &expiring, json!({})).await;
        assert_eq!(
            (status, hb["error"].as_str()),
            (409, Some("cleanup_in_progress")),
            "{hb}"
        );
        let (_, got) = get(&c, &expiring).await;
        assert!(got["lease"]["cleanupStartedAt"].is_string(), "{got}");
        gate.pass(Pass::Open);
    };
    let (report, ()) = futures_util::future::join(reconcile, meanwhile).await;
    assert_eq!((report.expired, report.deleted), (1, 1), "{report:?}");
    let (_, got) = get(&c, &expiring).await;
    assert_eq!(got["lease"]["state"], "expired", "{got}");
    for field in [
        "cleanupStartedAt",
        "cleanupClaimExpiresAt",
        "cleanupError",
        "cleanupRetryAt",
    ] {
        assert!(got["lease"].get(field).is_none(), "{field}: {got}");
    }
    assert_eq!(get(&c, &other).await.1["lease"]["state"], "active");
    c.stop().await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_processs_own_slow_create_is_not_taken_for_an_interrupted_one() {
    let (pool, mut gate, c) = gated(base_env(), None).await;
    let id = "cbx_00000000e701";
    let create = c.create(
        ALICE,
        json!({"provider": "ssh", "leaseID": id, "idleTimeoutSeconds": 3600}),
    );
    let meanwhile = async {
        gate.arrival().await;
        // Far past the settle window, the provider call is still running here.
        for _ in 0..3 {
            c.clock.advance_secs(300);
            assert_eq!(
                c.reconcile().await,
                crabbox_coordinator::reconciler::PassReport::default()
            );
            assert_eq!(get(&c, id).await.1["lease"]["state"], "provisioning");
        }
        gate.pass(Pass::Open);
    };
    let ((status, created), ()) = futures_util::future::join(create, meanwhile).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["lease"]["state"], "active", "{created}");
    c.stop().await;
    pool.stop().await;
}

/// A `provisioning` record of this very process whose create task is gone (it panicked, or
/// its final write failed) is cleaned like one a crash left, after the settle window, instead
/// of counting against caps until it expires.
#[tokio::test]
async fn a_provisioning_record_of_this_process_without_its_create_task_is_cleaned() {
    let c = Coord::start().await;
    let (_, made) = c.create(ALICE, json!({"idleTimeoutSeconds": 3600})).await;
    let id = made["lease"]["id"].as_str().unwrap().to_owned();
    assert_eq!(c.runner_dirs(), 1);
    // Back to provisioning, stamped by this process: the create task that wrote it is gone.
    let generation = c.state().generation.clone();
    let started = c.clock.now().plus_secs(-600);
    rewrite(&c, &id, |l| {
        l.state = LeaseState::Provisioning;
        l.cloud_id.clear();
        l.provisioning_request_started_at = Some(started);
        l.provisioning_coordinator_version = Some(generation.clone());
    })
    .await;
    assert_eq!(c.reconcile().await.recovered, 0, "first sighting");
    c.clock.advance_secs(61);
    assert_eq!(c.reconcile().await.recovered, 1);
    let (_, got) = get(&c, &id).await;
    assert_eq!(got["lease"]["state"], "failed", "{got}");
    assert_eq!(c.runner_dirs(), 0, "its runner was left");
    c.stop().await;
}
