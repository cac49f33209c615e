//! Lease lifecycle, idempotency, authorization and expiry.

use serde_json::json;

use crate::harness::{ALICE, BOB, Coord, Gate, Pass, SshPool, Who, public_key};

#[tokio::test]
async fn create_get_heartbeat_release_and_cleanup_a_local_lease() {
    let c = Coord::start().await;
    let (status, body) = c
        .create(ALICE, json!({"slug": "Blue Lobster", "keep": false}))
        .await;
    assert_eq!(status, 201, "{body}");
    let lease = &body["lease"];
    let id = lease["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cbx_") && id.len() == 16, "{id}");
    assert_eq!(lease["state"], "active");
    assert_eq!(lease["slug"], "blue-lobster");
    assert_eq!(lease["provider"], "local");
    assert_eq!(lease["owner"], "alice@example.com");
    assert_eq!(lease["org"], "example-org");
    assert_eq!(lease["host"], "127.0.0.1");
    assert!(lease["sshPort"].as_str().unwrap().parse::<u16>().unwrap() > 0);
    assert!(
        lease["sshHostKey"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    assert!(lease["expiresAt"].as_str().unwrap() > lease["createdAt"].as_str().unwrap());
    // Private provisioning fields never leave the server.
    assert!(
        lease.get("provisioningCoordinatorVersion").is_none(),
        "{lease}"
    );
    assert_eq!(c.runner_dirs(), 1);

    // The runner is a real sshd listening on the port the lease names.
    let port: u16 = lease["sshPort"].as_str().unwrap().parse().unwrap();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());

    let (status, by_slug) = c.call("GET", "/v1/leases/blue-lobster", ALICE, None).await;
    assert_eq!(status, 200);
    assert_eq!(by_slug["lease"]["id"], id.as_str());

    c.clock.advance_secs(60);
    let (status, hb) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/heartbeat"),
            ALICE,
            Some(json!({"idleTimeoutSeconds": 900, "telemetry": {"load1": 0.5, "memoryPercent": 40, "bogus": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{hb}");
    assert_eq!(hb["lease"]["idleTimeoutSeconds"], 900);
    assert_eq!(hb["lease"]["telemetry"]["load1"], 0.5);
    assert!(hb["lease"]["telemetry"].get("bogus").is_none());
    assert_eq!(hb["lease"]["telemetryHistory"].as_array().unwrap().len(), 1);
    assert!(
        hb["lease"]["lastTouchedAt"].as_str().unwrap() > lease["lastTouchedAt"].as_str().unwrap()
    );

    let (status, listed) = c.call("GET", "/v1/leases?state=active", ALICE, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["leases"].as_array().unwrap().len(), 1);

    let (status, rel) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/release"),
            ALICE,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{rel}");
    assert_eq!(rel["lease"]["state"], "released");
    assert_eq!(rel["lease"]["releaseDeletesServer"], true);
    // Releasing again is harmless.
    let (status, again) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/release"),
            ALICE,
            Some(json!({"delete": true})),
        )
        .await;
    assert_eq!(status, 200, "{again}");

    let report = c.reconcile().await;
    assert_eq!(report.deleted, 1, "{report:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "sshd still listening"
    );
    assert_eq!(c.runner_dirs(), 0);
    let (_, after) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    assert!(after["lease"].get("cleanupStartedAt").is_none(), "{after}");
    assert!(
        after["lease"].get("releaseDeletesServer").is_none(),
        "{after}"
    );
    assert_eq!(after["lease"]["state"], "released");
    c.stop().await;
}

#[tokio::test]
async fn other_users_cannot_see_touch_or_release_a_lease_and_admins_can() {
    let c = Coord::start().await;
    let (_, body) = c.create(ALICE, json!({})).await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    let slug = body["lease"]["slug"].as_str().unwrap().to_owned();

    for path in [format!("/v1/leases/{id}"), format!("/v1/leases/{slug}")] {
        let (status, b) = c.call("GET", &path, BOB, None).await;
        assert_eq!(
            (status, b["error"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/heartbeat"),
            BOB,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/release"),
            BOB,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404);
    let (_, listed) = c.call("GET", "/v1/leases", BOB, None).await;
    assert!(listed["leases"].as_array().unwrap().is_empty(), "{listed}");

    // Unauthenticated callers are refused; admin routes refuse users.
    let (status, b) = c.call("GET", "/v1/leases", Who::Anonymous, None).await;
    assert_eq!((status, b["error"].as_str()), (401, Some("unauthorized")));
    let (status, b) = c.call("GET", "/v1/admin/leases", ALICE, None).await;
    assert_eq!((status, b["error"].as_str()), (403, Some("forbidden")));
    let (status, _) = c.call("GET", "/v1/pool", Who::Shared, None).await;
    assert_eq!(status, 403);

    let (status, all) = c.call("GET", "/v1/admin/leases", Who::Admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(all["leases"].as_array().unwrap().len(), 1);
    let (status, pool) = c.call("GET", "/v1/pool", Who::Admin, None).await;
    assert_eq!(status, 200, "{pool}");
    assert_eq!(pool["machines"][0]["status"], "running");

    let (status, rel) = c
        .call(
            "POST",
            &format!("/v1/admin/leases/{id}/delete"),
            Who::Admin,
            None,
        )
        .await;
    assert_eq!(status, 200, "{rel}");
    assert_eq!(rel["lease"]["state"], "released");
    assert_eq!(c.runner_dirs(), 0);
    c.stop().await;
}

#[tokio::test]
async fn bad_requests_are_400_with_a_named_field_not_500() {
    let c = Coord::start().await;
    let (status, b) = c
        .call(
            "POST",
            "/v1/leases",
            ALICE,
            Some(json!({"provider": "local"})),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_request")),
        "{b}"
    );
    assert!(b["message"].as_str().unwrap().contains("sshPublicKey"));

    let resp = c
        .request(reqwest::Method::POST, "/v1/leases", ALICE)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let b: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(b["error"], "invalid_json");

    let (status, b) = c.create(ALICE, json!({"provider": "mars"})).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("unsupported_provider")),
        "{b}"
    );
    let (status, b) = c.create(ALICE, json!({"provider": "hetzner"})).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (424, Some("provider_not_configured")),
        "{b}"
    );
    assert_eq!(b["missing"][0], "HETZNER_TOKEN");
    let (status, b) = c.create(ALICE, json!({"slug": "!!!"})).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_slug")),
        "{b}"
    );
    let (status, b) = c
        .create(
            ALICE,
            json!({"leaseID": "cbx_000000000001", "createAttemptID": "nope"}),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_create_attempt_id")),
        "{b}"
    );
    let (status, b) = c
        .call("GET", "/v1/leases?state=sleeping", ALICE, None)
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_state")),
        "{b}"
    );
    let (status, b) = c.call("GET", "/v1/nowhere", ALICE, None).await;
    assert_eq!((status, b["error"].as_str()), (404, Some("not_found")));
    assert_eq!(c.runner_dirs(), 0, "a refused create must not provision");
    c.stop().await;
}

#[tokio::test]
async fn create_attempt_replay_returns_the_same_lease_without_a_second_runner() {
    let c = Coord::start().await;
    let attempt = format!("cat_{}", "ab".repeat(16));
    let body = json!({"leaseID": "cbx_00000000a001", "createAttemptID": attempt});
    let (s1, first) = c.create(ALICE, body.clone()).await;
    assert_eq!(s1, 201, "{first}");
    let (s2, replay) = c.create(ALICE, body.clone()).await;
    assert_eq!(s2, 200, "{replay}");
    assert_eq!(replay["lease"]["id"], "cbx_00000000a001");
    assert_eq!(replay["lease"]["sshPort"], first["lease"]["sshPort"]);
    assert_eq!(c.runner_dirs(), 1, "replay provisioned a second runner");

    // Another token for the same id conflicts; another owner too.
    let other = json!({"leaseID": "cbx_00000000a001", "createAttemptID": format!("cat_{}", "cd".repeat(16))});
    let (s3, b3) = c.create(ALICE, other).await;
    assert_eq!(
        (s3, b3["error"].as_str()),
        (409, Some("create_attempt_conflict")),
        "{b3}"
    );
    let (s4, _) = c.create(BOB, body).await;
    assert_eq!(s4, 409);

    // Tokenless create of an existing id.
    let (s5, b5) = c
        .create(ALICE, json!({"leaseID": "cbx_00000000a001"}))
        .await;
    assert_eq!(
        (s5, b5["error"].as_str()),
        (409, Some("lease_id_conflict")),
        "{b5}"
    );
    assert_eq!(c.runner_dirs(), 1);
    c.stop().await;
}

#[tokio::test]
async fn cancel_before_create_blocks_the_create_without_provisioning() {
    let c = Coord::start().await;
    let token = format!("cat_{}", "ef".repeat(16));
    let (status, b) = c
        .call(
            "POST",
            "/v1/leases/cbx_00000000b001/cancel-create",
            ALICE,
            Some(json!({"createAttemptID": token})),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["canceledCreate"]["state"], "canceled");
    let (status, b) = c
        .create(
            ALICE,
            json!({"leaseID": "cbx_00000000b001", "createAttemptID": token}),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("create_canceled")),
        "{b}"
    );
    assert_eq!(c.runner_dirs(), 0);
    c.stop().await;
}

#[tokio::test]
async fn fixed_id_put_is_idempotent_and_refuses_drift() {
    let c = Coord::start().await;
    let body = json!({"provider": "local", "sshPublicKey": public_key(), "slug": "fixed-one", "keep": true});
    let (s1, b1) = c
        .call(
            "PUT",
            "/v1/leases/cbx_00000000c001",
            ALICE,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s1, 201, "{b1}");
    let (s2, b2) = c
        .call(
            "PUT",
            "/v1/leases/cbx_00000000c001",
            ALICE,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s2, 200, "{b2}");
    assert_eq!(b2["lease"]["sshPort"], b1["lease"]["sshPort"]);
    let mut drift = body.clone();
    drift["keep"] = json!(false);
    let (s3, b3) = c
        .call("PUT", "/v1/leases/cbx_00000000c001", ALICE, Some(drift))
        .await;
    assert_eq!(
        (s3, b3["error"].as_str()),
        (409, Some("lease_id_conflict")),
        "{b3}"
    );
    let (s4, _) = c
        .call("PUT", "/v1/leases/cbx_00000000c001", BOB, Some(body))
        .await;
    assert_eq!(s4, 409);
    assert_eq!(c.runner_dirs(), 1);
    c.stop().await;
}

#[tokio::test]
async fn the_reconciler_expires_idle_leases_and_heartbeats_after_expiry_are_refused() {
    let c = Coord::start().await;
    let (_, body) = c.create(ALICE, json!({"idleTimeoutSeconds": 120})).await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    let port: u16 = body["lease"]["sshPort"].as_str().unwrap().parse().unwrap();

    c.clock.advance_secs(60);
    assert_eq!(c.reconcile().await.expired, 0, "expired too early");
    let (status, _) = c
        .call("POST", &format!("/v1/leases/{id}/heartbeat"), ALICE, None)
        .await;
    assert_eq!(status, 200);

    c.clock.advance_secs(121);
    let (status, b) = c
        .call("POST", &format!("/v1/leases/{id}/heartbeat"), ALICE, None)
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("lease_expired")),
        "{b}"
    );
    let report = c.reconcile().await;
    assert_eq!((report.expired, report.deleted), (1, 1), "{report:?}");
    let (_, after) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    assert_eq!(after["lease"]["state"], "expired");
    assert!(after["lease"]["endedAt"].is_string());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let (status, b) = c
        .call("POST", &format!("/v1/leases/{id}/heartbeat"), ALICE, None)
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("lease_ended")),
        "{b}"
    );
    // Nothing more to do: the lease left the schedule.
    assert_eq!(
        c.reconcile().await,
        crabbox_coordinator::reconciler::PassReport::default()
    );
    c.stop().await;
}

#[tokio::test]
async fn ttl_is_a_hard_cap_that_heartbeats_cannot_extend() {
    let c = Coord::start().await;
    let (_, body) = c
        .create(ALICE, json!({"ttlSeconds": 300, "idleTimeoutSeconds": 200}))
        .await;
    let id = body["lease"]["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        c.clock.advance_secs(90);
        let (status, hb) = c
            .call("POST", &format!("/v1/leases/{id}/heartbeat"), ALICE, None)
            .await;
        assert_eq!(status, 200, "{hb}");
    }
    let (_, got) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    let created =
        crabbox_api::coord::Timestamp::parse(got["lease"]["createdAt"].as_str().unwrap()).unwrap();
    let expires =
        crabbox_api::coord::Timestamp::parse(got["lease"]["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires, created.plus_secs(300));
    c.clock.advance_secs(40);
    assert_eq!(c.reconcile().await.expired, 1);
    c.stop().await;
}

#[tokio::test]
async fn active_lease_caps_refuse_with_429() {
    let mut env = crate::harness::base_env();
    env.insert("CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER".into(), "1".into());
    let c = Coord::start_with(env, &[]).await;
    let (s1, _) = c.create(ALICE, json!({})).await;
    assert_eq!(s1, 201);
    let (s2, b2) = c.create(ALICE, json!({})).await;
    assert_eq!(
        (s2, b2["error"].as_str()),
        (429, Some("cost_limit_exceeded")),
        "{b2}"
    );
    assert_eq!(b2["message"], "active lease limit for owner exceeded: 2/1");
    let (s3, _) = c.create(BOB, json!({})).await;
    assert_eq!(s3, 201, "caps are per owner");
    assert_eq!(c.runner_dirs(), 2);
    let (_, usage) = c.call("GET", "/v1/usage", ALICE, None).await;
    assert_eq!(usage["usage"]["activeLeases"], 1, "{usage}");
    assert_eq!(usage["usage"]["owner"], "alice@example.com");
    assert_eq!(usage["limits"]["maxActiveLeasesPerOwner"], 1);
    c.stop().await;
}

#[tokio::test]
async fn registered_leases_are_tracked_without_a_provider_and_expire_on_their_own() {
    let c = Coord::start().await;
    let body = json!({"provider": "ssh", "target": "linux", "host": "10.0.0.7", "ttlSeconds": 100});
    let (s1, b1) = c
        .call(
            "PUT",
            "/v1/leases/box-7/registration",
            ALICE,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s1, 201, "{b1}");
    assert_eq!(b1["lease"]["lifecycle"], "registered");
    assert_eq!(b1["lease"]["sshPort"], "22");
    assert_eq!(b1["lease"]["workRoot"], "/workspaces/crabbox");
    let (s2, _) = c
        .call(
            "PUT",
            "/v1/leases/box-7/registration",
            ALICE,
            Some(body.clone()),
        )
        .await;
    assert_eq!(s2, 200);
    let (s3, b3) = c
        .call(
            "PUT",
            "/v1/leases/box-7/registration",
            BOB,
            Some(body.clone()),
        )
        .await;
    assert_eq!((s3, b3["error"].as_str()), (409, Some("lease_id_conflict")));
    let (s4, b4) = c
        .call(
            "PUT",
            "/v1/leases/box-7/registration",
            ALICE,
            Some(json!({"provider": "ssh", "target": "linux"})),
        )
        .await;
    assert_eq!((s4, b4["error"].as_str()), (400, Some("host_required")));
    c.clock.advance_secs(101);
    assert_eq!(c.reconcile().await.expired, 1);
    let (_, got) = c.call("GET", "/v1/leases/box-7", ALICE, None).await;
    assert_eq!(got["lease"]["state"], "expired");
    assert_eq!(c.runner_dirs(), 0);
    c.stop().await;
}

#[tokio::test]
async fn runners_without_a_lease_record_are_deleted_by_the_reconciler() {
    use crabbox_providers::Provider as _;
    let c = Coord::start().await;
    let (status, body) = c.create(ALICE, json!({})).await;
    assert_eq!(status, 201);
    let kept_port: u16 = body["lease"]["sshPort"].as_str().unwrap().parse().unwrap();
    // A runner the store knows nothing about, made directly with the provider.
    let provider = crabbox_providers::local::LocalProvider::new(&c.state_dir());
    let orphan = provider
        .acquire(&crabbox_providers::AcquireRequest {
            lease_id: "cbx_0000000000ff".into(),
            slug: "orphan".into(),
            class: "beast".into(),
            public_key: public_key(),
            ttl_secs: 60,
            idle_timeout_secs: 60,
            keep: false,
            machine: crabbox_providers::MachineChoice::default(),
            capabilities: crabbox_providers::Capabilities::default(),
        })
        .await
        .unwrap();
    assert_eq!(c.runner_dirs(), 2);
    let report = c.reconcile().await;
    assert_eq!(report.orphans_deleted, 1, "{report:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", orphan.ssh_port)).is_err(),
        "orphan sshd still up"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", kept_port)).is_ok(),
        "a leased runner was deleted"
    );
    assert_eq!(c.runner_dirs(), 1);
    c.stop().await;
}

#[tokio::test]
async fn the_ssh_pool_leases_each_host_once_and_revokes_the_lease_key_on_release() {
    let pool = tempfile::Builder::new()
        .prefix("cbx-pool")
        .tempdir()
        .unwrap();
    let user = crabbox_providers::local::current_user();
    let pool_key = crabbox_remote::keys::ensure_ed25519(pool.path(), "pool_key", "pool").unwrap();
    let sshd = crabbox_remote::sshd::start(
        &pool.path().join("host"),
        &user,
        &pool_key.public_key().unwrap(),
    )
    .await
    .unwrap();
    let keys_file = pool
        .path()
        .join("host/authorized_keys")
        .display()
        .to_string();
    let work = pool.path().join("work").display().to_string();
    let entry = format!("{user}@127.0.0.1:{}", sshd.port);
    let key_path = pool.path().join("pool_key").display().to_string();
    let c = Coord::start_with(
        crate::harness::base_env(),
        &[
            "--providers",
            "local,ssh",
            "--ssh-pool",
            &entry,
            "--ssh-pool-key",
            &key_path,
            "--ssh-pool-authorized-keys",
            &keys_file,
            "--ssh-pool-work-root",
            &work,
        ],
    )
    .await;
    let lease_key =
        crabbox_remote::keys::ensure_ed25519(pool.path(), "lease_key", "lease").unwrap();
    let body = json!({"provider": "ssh", "sshPublicKey": lease_key.public_key().unwrap()});
    let (status, created) = c
        .call("POST", "/v1/leases", ALICE, Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["lease"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["lease"]["host"], "127.0.0.1");
    assert_eq!(created["lease"]["workRoot"], work.as_str());
    assert!(
        std::path::Path::new(&work).is_dir(),
        "work root created on the host"
    );

    // The lease's own key now opens the host.
    let target = crabbox_remote::ssh::SshTarget {
        user: user.clone(),
        host: "127.0.0.1".into(),
        port: sshd.port,
        fallback_ports: vec![],
        key: Some(pool.path().join("lease_key")),
        known_hosts: pool.path().join("known_hosts"),
        host_keys: crabbox_remote::ssh::HostKeyPolicy::AcceptNew,
        control_dir: None,
        proxy: None,
    };
    let out = target.capture("echo pool-ok").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pool-ok");

    // One host, one lease: the next create finds no capacity.
    let (status, busy) = c.call("POST", "/v1/leases", BOB, Some(body.clone())).await;
    assert_eq!(
        (status, busy["error"].as_str()),
        (503, Some("provider_capacity")),
        "{busy}"
    );

    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/release"),
            ALICE,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(c.reconcile().await.deleted, 1);
    let out = target.capture("echo pool-ok").await.unwrap();
    assert_ne!(out.code, 0, "the released lease's key still opens the host");
    let keys = std::fs::read_to_string(&keys_file).unwrap();
    assert!(!keys.contains("crabbox-lease:"), "{keys}");
    assert!(
        keys.contains("pool"),
        "the coordinator's own key was removed: {keys}"
    );
    let (status, again) = c.call("POST", "/v1/leases", BOB, Some(body)).await;
    assert_eq!(status, 201, "the freed host is leasable again: {again}");
    c.stop().await;
    crabbox_remote::sshd::stop(&pool.path().join("host")).await;
}

#[tokio::test]
async fn monthly_spend_caps_count_reserved_cost_and_refuse_with_429() {
    let mut env = crate::harness::base_env();
    env.insert(
        "CRABBOX_COST_RATES_JSON".into(),
        r#"{"local:local": 1.5}"#.into(),
    );
    env.insert("CRABBOX_MAX_MONTHLY_USD_PER_OWNER".into(), "2".into());
    let c = Coord::start_with(env, &[]).await;
    let (s1, b1) = c.create(ALICE, json!({"ttlSeconds": 3600})).await;
    assert_eq!(s1, 201, "{b1}");
    assert_eq!(b1["lease"]["estimatedHourlyUSD"], 1.5);
    assert_eq!(b1["lease"]["maxEstimatedUSD"], 1.5);
    let (s2, b2) = c.create(ALICE, json!({"ttlSeconds": 3600})).await;
    assert_eq!(
        (s2, b2["error"].as_str()),
        (429, Some("cost_limit_exceeded")),
        "{b2}"
    );
    assert_eq!(
        b2["message"],
        "monthly budget for owner exceeded: $3.00/$2.00"
    );
    // A released lease still counts: its spend was reserved this month.
    let id = b1["lease"]["id"].as_str().unwrap();
    c.call(
        "POST",
        &format!("/v1/leases/{id}/release"),
        ALICE,
        Some(json!({})),
    )
    .await;
    let (s3, _) = c.create(ALICE, json!({"ttlSeconds": 3600})).await;
    assert_eq!(s3, 429);
    let (s4, _) = c.create(ALICE, json!({"ttlSeconds": 1200})).await;
    assert_eq!(s4, 201, "a cheaper lease still fits the budget");
    c.stop().await;
}

#[tokio::test]
async fn a_failed_runner_delete_is_kept_on_record_and_retried_later() {
    let pool = tempfile::Builder::new()
        .prefix("cbx-pool")
        .tempdir()
        .unwrap();
    let user = crabbox_providers::local::current_user();
    let pool_key = crabbox_remote::keys::ensure_ed25519(pool.path(), "pool_key", "pool").unwrap();
    let sshd = crabbox_remote::sshd::start(
        &pool.path().join("host"),
        &user,
        &pool_key.public_key().unwrap(),
    )
    .await
    .unwrap();
    let keys_file = pool
        .path()
        .join("host/authorized_keys")
        .display()
        .to_string();
    let entry = format!("{user}@127.0.0.1:{}", sshd.port);
    let key_path = pool.path().join("pool_key").display().to_string();
    let work = pool.path().join("work").display().to_string();
    let c = Coord::start_with(
        crate::harness::base_env(),
        &[
            "--providers",
            "ssh",
            "--ssh-pool",
            &entry,
            "--ssh-pool-key",
            &key_path,
            "--ssh-pool-authorized-keys",
            &keys_file,
            "--ssh-pool-work-root",
            &work,
        ],
    )
    .await;
    let (status, created) = c
        .create(ALICE, json!({"provider": "ssh", "idleTimeoutSeconds": 60}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["lease"]["id"].as_str().unwrap().to_owned();
    // The host goes away: the delete cannot reach it.
    crabbox_remote::sshd::stop(&pool.path().join("host")).await;
    c.clock.advance_secs(61);
    let report = c.reconcile().await;
    assert_eq!(
        (report.failed_cleanups, report.expired),
        (1, 0),
        "{report:?}"
    );
    let (_, got) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    let lease = &got["lease"];
    assert_eq!(
        lease["state"], "active",
        "an undeleted runner keeps counting: {lease}"
    );
    assert_eq!(lease["cleanupAttempts"], 1);
    assert!(
        lease["cleanupError"]
            .as_str()
            .unwrap()
            .contains("pool host"),
        "{lease}"
    );
    assert!(lease["cleanupRetryAt"].as_str().unwrap() > lease["expiresAt"].as_str().unwrap());
    // Nothing happens before the retry time; after it, the delete is tried again.
    c.clock.advance_secs(60);
    assert_eq!(c.reconcile().await.failed_cleanups, 0);
    c.clock.advance_secs(241);
    assert_eq!(c.reconcile().await.failed_cleanups, 1);
    let (_, got) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    assert_eq!(got["lease"]["cleanupAttempts"], 2);
    c.stop().await;
}

fn one_lease_each() -> std::collections::HashMap<String, String> {
    let mut env = crate::harness::base_env();
    env.insert("CRABBOX_MAX_ACTIVE_LEASES_PER_OWNER".into(), "1".into());
    env
}

/// Fires `n` identical create requests at once (alternating between `coords`) and returns
/// every answer.
async fn concurrent_creates(
    coords: &[&Coord],
    who: Who<'static>,
    body: &serde_json::Value,
    n: usize,
) -> Vec<(u16, serde_json::Value)> {
    let requests = (0..n).map(|i| coords[i % coords.len()].create(who, body.clone()));
    futures_util::future::join_all(requests).await
}

/// Every retry of one create attempt (same id, token and owner) joins it: one 201, the rest
/// 200 with the same lease, never 409 and never 429 (the coordinators cap alice at one lease,
/// which the joined lease already is), and a single runner.
async fn assert_same_token_retries_join(coords: &[&Coord], id: &str) {
    let token = format!("cat_{}", "5a".repeat(16));
    let body = json!({"leaseID": id, "createAttemptID": token});
    let results = concurrent_creates(coords, ALICE, &body, 60).await;
    let created = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{results:?}");
    for (status, b) in &results {
        assert!(matches!(status, 200 | 201), "{status} {b}");
        assert_eq!(b["lease"]["id"], id, "{b}");
        assert_eq!(b["lease"]["owner"], "alice@example.com", "{b}");
    }
    assert_eq!(coords[0].runner_dirs(), 1, "a lease was provisioned twice");
    let (status, got) = coords[0]
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    assert_eq!(
        (status, got["lease"]["state"].as_str()),
        (200, Some("active"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_create_attempt_join_it_on_sqlite() {
    let c = Coord::start_with(one_lease_each(), &[]).await;
    assert_same_token_retries_join(&[&c], "cbx_00000000d001").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_create_attempt_join_it_across_postgres_replicas() {
    let a = Coord::start_postgres(one_lease_each(), &[]).await;
    let b = a.replica().await;
    assert_same_token_retries_join(&[&a, &b], "cbx_00000000d002").await;
    b.stop().await;
    a.stop().await;
}

/// Creates racing their own cancel-create: each create either finishes first (then the cancel
/// releases it), is refused cleanly (`409 create_canceled` or `lease_state_changed`), and
/// nothing is left live or running afterwards. Never a 500, never an orphaned `provisioning`
/// record.
async fn create_and_cancel(
    c: &Coord,
    id: String,
    i: u32,
) -> (String, (u16, serde_json::Value), (u16, serde_json::Value)) {
    let token = format!("cat_{:032x}", 0xca00 + i);
    let create = c.create(ALICE, json!({"leaseID": id, "createAttemptID": token}));
    let cancel = async {
        // Spread the cancels over the create's phases.
        tokio::time::sleep(std::time::Duration::from_micros(u64::from(i * 397 % 6000))).await;
        c.call(
            "POST",
            &format!("/v1/leases/{id}/cancel-create"),
            ALICE,
            Some(json!({"createAttemptID": token})),
        )
        .await
    };
    let (created, canceled) = futures_util::future::join(create, cancel).await;
    (id, created, canceled)
}

async fn assert_cancel_races_end_cleanly(c: &Coord, prefix: &str) {
    let rounds = (0..24u32).map(|i| create_and_cancel(c, format!("{prefix}{i:04x}"), i));
    for (id, (cs, cb), (xs, xb)) in futures_util::future::join_all(rounds).await {
        assert_eq!(xs, 200, "{id}: cancel {xb}");
        assert!(
            cs == 201
                || (cs == 409
                    && matches!(
                        cb["error"].as_str(),
                        Some("create_canceled" | "lease_state_changed")
                    )),
            "{id}: create {cs} {cb}"
        );
        let (gs, got) = c
            .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
            .await;
        if gs == 200 {
            let lease_state = got["lease"]["state"].as_str().unwrap();
            assert!(matches!(lease_state, "released" | "failed"), "{id}: {got}");
        } else {
            assert_eq!(gs, 404, "{id}: {got}");
        }
    }
    c.reconcile().await;
    assert_eq!(c.runner_dirs(), 0, "a canceled create left a runner behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_racing_its_cancel_ends_cleanly_on_sqlite() {
    let c = Coord::start().await;
    assert_cancel_races_end_cleanly(&c, "cbx_0000000e").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_racing_its_cancel_ends_cleanly_on_postgres() {
    let c = Coord::start_postgres(crate::harness::base_env(), &[]).await;
    assert_cancel_races_end_cleanly(&c, "cbx_0000000f").await;
    c.stop().await;
}

#[tokio::test]
async fn a_pending_create_attempt_reserves_its_lease_id_against_other_creates() {
    let c = Coord::start_with(one_lease_each(), &[]).await;
    let (status, first) = c.create(ALICE, json!({})).await;
    assert_eq!(status, 201, "{first}");
    // Alice's create of X is refused by her cap and leaves its attempt pending.
    let id = "cbx_00000000a0a0";
    let token = format!("cat_{}", "a0".repeat(16));
    let alice_x = json!({"leaseID": id, "createAttemptID": token});
    let (status, refused) = c.create(ALICE, alice_x.clone()).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (429, Some("cost_limit_exceeded"))
    );

    // Nobody else can take X meanwhile: not tokenless, not by fixed id, not with a token.
    let (status, b) = c.create(BOB, json!({"leaseID": id})).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("lease_id_conflict")),
        "{b}"
    );
    assert_eq!(b["message"], "lease id is already reserved");
    let (status, b) = c
        .call(
            "PUT",
            &format!("/v1/leases/{id}"),
            BOB,
            Some(json!({"provider": "local", "sshPublicKey": public_key()})),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("lease_id_conflict")),
        "{b}"
    );
    assert_eq!(b["message"], "lease id is already reserved");
    let (status, b) = c
        .create(
            BOB,
            json!({"leaseID": id, "createAttemptID": format!("cat_{}", "b0".repeat(16))}),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("create_attempt_conflict")),
        "{b}"
    );
    let (status, b) = c.create(ALICE, json!({"leaseID": id})).await;
    assert_eq!(
        (status, b["error"].as_str()),
        (409, Some("lease_id_conflict")),
        "{b}"
    );
    assert_eq!(c.runner_dirs(), 1);

    // Once alice has room, her retry takes the id it reserved.
    let first_id = first["lease"]["id"].as_str().unwrap();
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{first_id}/release"),
            ALICE,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, created) = c.create(ALICE, alice_x).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["lease"]["owner"], "alice@example.com");

    // An unbound canceled tombstone blocks only its own token, not other tenants.
    let other = "cbx_00000000a0a1";
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{other}/cancel-create"),
            ALICE,
            Some(json!({"createAttemptID": token})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, b) = c.create(BOB, json!({"leaseID": other})).await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["lease"]["owner"], "bob@example.com");
    c.stop().await;
}

/// A coordinator whose only `ssh` pool host sits behind `gate`.
async fn gated_pool() -> (SshPool, Gate, Coord) {
    let pool = SshPool::start().await;
    let gate = Gate::start(pool.sshd_port).await;
    let flags = pool.flags(&[pool.entry(gate.port)]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = Coord::start_with(crate::harness::base_env(), &flags).await;
    (pool, gate, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_released_while_its_provider_fails_stays_released() {
    let (pool, mut gate, c) = gated_pool().await;
    let id = "cbx_00000000f401";
    let create = c.create(ALICE, json!({"provider": "ssh", "leaseID": id}));
    let release_meanwhile = async {
        gate.arrival().await; // the provider is reaching the host
        let (status, rel) = c
            .call(
                "POST",
                &format!("/v1/leases/{id}/release"),
                ALICE,
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (status, rel["lease"]["state"].as_str()),
            (200, Some("released")),
            "{rel}"
        );
        gate.pass(Pass::Slam); // and now the host fails it
    };
    let ((status, body), ()) = futures_util::future::join(create, release_meanwhile).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("lease_state_changed")),
        "{body}"
    );
    assert_eq!(body["lease"]["state"], "released", "{body}");
    let (_, got) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    assert_eq!(got["lease"]["state"], "released", "{got}");
    assert!(got["lease"]["releasedAt"].is_string(), "{got}");
    assert!(got["lease"].get("failureError").is_none(), "{got}");
    // The failed attempt gave the host back.
    gate.pass(Pass::Open);
    let (status, again) = c.create(BOB, json!({"provider": "ssh"})).await;
    assert_eq!(status, 201, "{again}");
    c.stop().await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_made_for_a_lease_released_meanwhile_is_deleted_not_activated() {
    let (pool, mut gate, c) = gated_pool().await;
    let id = "cbx_00000000f402";
    let create = c.create(ALICE, json!({"provider": "ssh", "leaseID": id}));
    let release_meanwhile = async {
        gate.arrival().await;
        let (status, _) = c
            .call(
                "POST",
                &format!("/v1/leases/{id}/release"),
                ALICE,
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200);
        gate.pass(Pass::Open); // the runner is made…
        gate.arrival().await;
        gate.pass(Pass::Slam); // …but the first delete of it fails
    };
    let ((status, body), ()) = futures_util::future::join(create, release_meanwhile).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("lease_state_changed")),
        "{body}"
    );
    let (_, got) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    let lease = &got["lease"];
    assert_eq!(lease["state"], "released", "never resurrected: {lease}");
    assert!(
        lease["cleanupError"].is_string(),
        "the failed delete is on record: {lease}"
    );
    let marker = format!("crabbox-lease:{id}");
    assert!(
        std::fs::read_to_string(pool.keys_file())
            .unwrap()
            .contains(&marker)
    );

    // The reconciler retries the delete like any other.
    c.clock.advance_secs(301);
    gate.pass(Pass::Open);
    let report = c.reconcile().await;
    assert_eq!(report.deleted, 1, "{report:?}");
    assert!(
        !std::fs::read_to_string(pool.keys_file())
            .unwrap()
            .contains(&marker)
    );
    let (_, got) = c
        .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
        .await;
    assert_eq!(got["lease"]["state"], "released", "{got}");
    assert!(got["lease"].get("cleanupError").is_none(), "{got}");
    c.stop().await;
    pool.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_client_hangs_up_still_finishes_and_a_retry_gets_the_lease() {
    let (pool, mut gate, c) = gated_pool().await;
    let id = "cbx_00000000f403";
    let body = json!({"provider": "ssh", "leaseID": id, "createAttemptID": format!("cat_{}", "f4".repeat(16)), "sshPublicKey": public_key()});
    let hung_up = tokio::spawn(
        c.request(reqwest::Method::POST, "/v1/leases", ALICE)
            .json(&body)
            .send(),
    );
    gate.arrival().await;
    hung_up.abort();
    let _ = hung_up.await;
    // Let the server see the closed connection before the host answers.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    gate.pass(Pass::Open);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let state = loop {
        let (_, got) = c
            .call("GET", &format!("/v1/leases/{id}"), ALICE, None)
            .await;
        let state = got["lease"]["state"].as_str().unwrap().to_owned();
        if state != "provisioning" || std::time::Instant::now() > deadline {
            break state;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(state, "active");
    let (status, replay) = c.call("POST", "/v1/leases", ALICE, Some(body)).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay["lease"]["state"], "active");
    assert_eq!(replay["lease"]["sshPort"], gate.port.to_string());
    c.stop().await;
    pool.stop().await;
}

#[tokio::test]
async fn a_fixed_id_replay_is_judged_on_the_normalised_intent_not_the_raw_body() {
    let c = Coord::start().await;
    let put = |id: &'static str, body: serde_json::Value| {
        let c = &c;
        async move {
            c.call("PUT", &format!("/v1/leases/{id}"), ALICE, Some(body))
                .await
        }
    };
    let (s1, b1) = put("cbx_00000000c101", json!({"sshPublicKey": public_key()})).await;
    assert_eq!(s1, 201, "{b1}");
    // Spelling out the defaults is the same intent.
    let (s2, b2) = put(
        "cbx_00000000c101",
        json!({"sshPublicKey": public_key(), "ttlSeconds": 5400, "idleTimeoutSeconds": 1800,
               "provider": "local", "class": "beast", "keep": false, "target": "linux"}),
    )
    .await;
    assert_eq!(s2, 200, "{b2}");
    assert_eq!(b2["lease"]["sshPort"], b1["lease"]["sshPort"]);

    // So is the same slug written differently.
    let (s3, b3) = put(
        "cbx_00000000c102",
        json!({"sshPublicKey": public_key(), "slug": "Fixed One"}),
    )
    .await;
    assert_eq!(s3, 201, "{b3}");
    assert_eq!(b3["lease"]["slug"], "fixed-one");
    let (s4, b4) = put(
        "cbx_00000000c102",
        json!({"sshPublicKey": public_key(), "slug": "fixed one"}),
    )
    .await;
    assert_eq!(s4, 200, "{b4}");

    // Real drift still conflicts: another slug, lifetime or key.
    for drift in [
        json!({"sshPublicKey": public_key(), "slug": "fixed two"}),
        json!({"sshPublicKey": public_key(), "slug": "fixed one", "ttlSeconds": 60}),
        json!({"sshPublicKey": format!("{} other", public_key().rsplit_once(' ').unwrap().0), "slug": "fixed one"}),
    ] {
        let (status, b) = put("cbx_00000000c102", drift.clone()).await;
        assert_eq!(
            (status, b["error"].as_str(), b["message"].as_str()),
            (
                409,
                Some("lease_id_conflict"),
                Some("lease id is bound to another create intent")
            ),
            "{drift}: {b}"
        );
    }
    assert_eq!(c.runner_dirs(), 2);
    c.stop().await;
}

#[tokio::test]
async fn a_registration_keeps_its_capabilities_ports_and_runtime_adapter_binding() {
    let c = Coord::start().await;
    let body = json!({
        "provider": "devcontainer", "target": "linux", "host": "10.0.0.8",
        "desktop": true, "desktopEnv": "xfce", "browser": true, "code": true,
        "exposedPorts": ["8080", " 9090 ", ""],
        "runtimeAdapterID": "adapter-1", "runtimeAdapterWorkspaceID": "ws-7",
        "runtimeAdapterRegistrationID": "reg-42",
    });
    let (status, created) = c
        .call(
            "PUT",
            "/v1/leases/box-8/registration",
            ALICE,
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    for got in [
        created,
        c.call("GET", "/v1/leases/box-8", ALICE, None).await.1,
    ] {
        let lease = &got["lease"];
        assert_eq!(lease["desktop"], true, "{lease}");
        assert_eq!(lease["desktopEnv"], "xfce", "{lease}");
        assert_eq!(lease["browser"], true, "{lease}");
        assert_eq!(lease["code"], true, "{lease}");
        assert_eq!(lease["exposedPorts"], json!(["8080", "9090"]), "{lease}");
        assert_eq!(lease["runtimeAdapterID"], "adapter-1", "{lease}");
        assert_eq!(lease["runtimeAdapterWorkspaceID"], "ws-7", "{lease}");
        assert_eq!(lease["runtimeAdapterRegistrationID"], "reg-42", "{lease}");
    }

    // A refresh states the registration anew: what it leaves out is off.
    let (status, refreshed) = c
        .call(
            "PUT",
            "/v1/leases/box-8/registration",
            ALICE,
            Some(json!({"provider": "devcontainer", "target": "linux", "host": "10.0.0.8", "browser": true})),
        )
        .await;
    assert_eq!(status, 200, "{refreshed}");
    let lease = &refreshed["lease"];
    assert_eq!(
        (lease["desktop"].as_bool(), lease["browser"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(lease.get("desktopEnv").is_none(), "{lease}");
    assert!(lease.get("exposedPorts").is_none(), "{lease}");
    assert!(lease.get("runtimeAdapterID").is_none(), "{lease}");

    // A runtime-adapter binding names its adapter.
    let (status, b) = c
        .call(
            "PUT",
            "/v1/leases/box-9/registration",
            ALICE,
            Some(
                json!({"provider": "devcontainer", "target": "linux", "host": "10.0.0.9",
                        "runtimeAdapterWorkspaceID": "ws-7"}),
            ),
        )
        .await;
    assert_eq!(
        (status, b["error"].as_str()),
        (400, Some("invalid_runtime_adapter_binding")),
        "{b}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_pool_host_is_skipped_and_named_when_nothing_else_is_free() {
    let pool = SshPool::start().await;
    // A port nothing listens on: connections are refused.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = pool.entry(dead_port);
    let flags = pool.flags(&[dead.clone(), pool.entry(pool.sshd_port)]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let c = Coord::start_with(crate::harness::base_env(), &flags).await;

    let (status, created) = c.create(ALICE, json!({"provider": "ssh"})).await;
    assert_eq!(status, 201, "the live host serves the create: {created}");
    assert_eq!(
        created["lease"]["sshPort"],
        pool.sshd_port.to_string(),
        "{created}"
    );

    // The live host is taken now; the dead one fails, and the answer says which host it was.
    let (status, refused) = c.create(BOB, json!({"provider": "ssh"})).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (503, Some("provider_unavailable")),
        "{refused}"
    );
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains(&dead), "{message}");
    assert!(!message.contains(&pool.entry(pool.sshd_port)), "{message}");

    // Its claim was given back: once the live host is free again, a create gets it.
    let id = created["lease"]["id"].as_str().unwrap();
    let (status, _) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/release"),
            ALICE,
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(c.reconcile().await.deleted, 1);
    let (status, again) = c.create(BOB, json!({"provider": "ssh"})).await;
    assert_eq!(status, 201, "{again}");
    c.stop().await;
    pool.stop().await;
}

/// Spec §2.2/§4.4: lifetimes the old coordinator read as `Number.isFinite(x) ? x : default`.
/// A string is not a bad request: the create takes the defaults, a heartbeat keeps the stored
/// idle timeout, a registration its default lifetime.
#[tokio::test]
async fn lifetimes_that_are_not_numbers_fall_back_instead_of_failing() {
    let c = Coord::start().await;
    let (status, created) = c
        .create(
            ALICE,
            json!({"ttlSeconds": "3600", "idleTimeoutSeconds": "60"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["lease"]["ttlSeconds"], 5400, "{created}");
    assert_eq!(created["lease"]["idleTimeoutSeconds"], 1800, "{created}");
    let id = created["lease"]["id"].as_str().unwrap().to_owned();
    let (status, beat) = c
        .call(
            "POST",
            &format!("/v1/leases/{id}/heartbeat"),
            ALICE,
            Some(json!({"idleTimeoutSeconds": "60"})),
        )
        .await;
    assert_eq!(status, 200, "{beat}");
    assert_eq!(beat["lease"]["idleTimeoutSeconds"], 1800, "{beat}");
    let (status, registered) = c
        .call(
            "PUT",
            "/v1/leases/box-9/registration",
            ALICE,
            Some(json!({"provider": "ssh", "target": "linux", "host": "10.0.0.9", "ttlSeconds": true})),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    assert_eq!(registered["lease"]["ttlSeconds"], 86_400, "{registered}");
    // Other fields keep their JSON types.
    let (status, refused) = c.create(ALICE, json!({"keep": "yes"})).await;
    assert_eq!(status, 400, "{refused}");
    c.stop().await;
}

/// Spec §2.2: a blank slug asks for none (the default slug of the id), one that normalises to
/// nothing is refused (`bad_requests_are_400_with_a_named_field_not_500`); `slug` wins over
/// `requestedSlug`.
#[tokio::test]
async fn a_blank_slug_asks_for_the_default_and_slug_wins_over_requested_slug() {
    let c = Coord::start().await;
    let (status, b) = c.create(ALICE, json!({"slug": "   "})).await;
    assert_eq!(status, 201, "{b}");
    let id = b["lease"]["id"].as_str().unwrap();
    assert_eq!(
        b["lease"]["slug"],
        crabbox_core::slug::slug_for_lease(id),
        "{b}"
    );
    let (status, b) = c
        .create(ALICE, json!({"slug": "Red Crab", "requestedSlug": "other"}))
        .await;
    assert_eq!(
        (status, &b["lease"]["slug"]),
        (201, &json!("red-crab")),
        "{b}"
    );
    c.stop().await;
}
