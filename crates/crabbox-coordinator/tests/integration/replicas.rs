//! Two coordinator replicas on one PostgreSQL database receiving the same request at the same
//! moment: each must answer as a sequential replay of that request does, never with a conflict
//! of the replicas' own making that the client would have to retry.

use serde_json::{Value, json};

use crate::harness::{ALICE, Coord, base_env, public_key};

/// Sends one request per pair to each replica at the same moment, every pair at once, and
/// returns each pair's two answers (replica `a`'s first).
async fn race_pairs(
    a: &Coord,
    b: &Coord,
    pairs: usize,
    method: &str,
    path: impl Fn(usize) -> String,
    body: impl Fn(usize) -> Value,
) -> Vec<[(u16, Value); 2]> {
    let races = (0..pairs).map(|i| {
        let (path, body) = (path(i), body(i));
        async move {
            let (first, second) = futures_util::future::join(
                a.call(method, &path, ALICE, Some(body.clone())),
                b.call(method, &path, ALICE, Some(body)),
            )
            .await;
            [first, second]
        }
    });
    futures_util::future::join_all(races).await
}

/// Both answers of a pair are 2xx with the same `expected` statuses as a sequential replay
/// (in either order), and describe the same lease.
fn assert_pair_replays(i: usize, pair: &[(u16, Value); 2], expected: &[[u16; 2]], same: &[&str]) {
    let [(sa, ba), (sb, bb)] = pair;
    assert!(
        expected
            .iter()
            .any(|e| *e == [*sa, *sb] || *e == [*sb, *sa]),
        "pair {i}: {sa} {ba} / {sb} {bb}"
    );
    for field in same {
        assert!(ba["lease"][field].is_string(), "pair {i}: {field} in {ba}");
        assert_eq!(ba["lease"][field], bb["lease"][field], "pair {i}: {field}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_identical_registrations_on_two_replicas_both_succeed() {
    let a = Coord::start_postgres(base_env(), &[]).await;
    let b = a.replica().await;
    let answers = race_pairs(
        &a,
        &b,
        100,
        "PUT",
        |i| format!("/v1/leases/race-box-{i}/registration"),
        |i| {
            json!({"provider": "ssh", "target": "linux", "host": format!("10.0.0.{i}"),
                   "slug": format!("race box {i}")})
        },
    )
    .await;
    for (i, pair) in answers.iter().enumerate() {
        // A sequential replay answers 201 to the first and 200 to the refresh.
        assert_pair_replays(
            i,
            pair,
            &[[201, 200]],
            &["id", "slug", "owner", "state", "host"],
        );
        assert_eq!(pair[0].1["lease"]["id"], format!("race-box-{i}"));
        assert_eq!(pair[0].1["lease"]["state"], "active");
    }
    b.stop().await;
    a.stop().await;
}

/// Creates of `pairs` leases raced in pairs across two replicas: the one that provisions
/// answers 201, the other joins it like a retry (one of `joined`), both with the same lease,
/// and each lease gets one runner.
async fn assert_raced_creates_make_one_lease_each(
    method: &str,
    path: impl Fn(usize) -> String,
    body: impl Fn(usize) -> Value,
    joined: &[u16],
) {
    let a = Coord::start_postgres(base_env(), &[]).await;
    let b = a.replica().await;
    let pairs = 30;
    let answers = race_pairs(&a, &b, pairs, method, path, body).await;
    let expected: Vec<[u16; 2]> = joined.iter().map(|j| [201, *j]).collect();
    for (i, pair) in answers.iter().enumerate() {
        assert_pair_replays(i, pair, &expected, &["id", "slug", "owner"]);
        for (_, body) in pair {
            // The joiner may read the lease before its runner is there.
            let state = body["lease"]["state"].as_str();
            assert!(
                matches!(state, Some("active" | "provisioning")),
                "pair {i}: {body}"
            );
        }
    }
    assert_eq!(a.runner_dirs(), pairs, "a lease was provisioned twice");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_identical_fixed_id_puts_on_two_replicas_make_one_lease() {
    // A fixed-id replay answers `202` while the lease is provisioning, `200` once active.
    assert_raced_creates_make_one_lease_each(
        "PUT",
        |i| format!("/v1/leases/cbx_0000000f{i:04x}"),
        |i| json!({"provider": "local", "sshPublicKey": public_key(), "slug": format!("fixed {i}")}),
        &[200, 202],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_retries_of_create_attempts_on_two_replicas_make_one_lease() {
    // A retry of a create attempt answers `200` with the lease, provisioning or not.
    assert_raced_creates_make_one_lease_each(
        "POST",
        |_| "/v1/leases".to_owned(),
        |i| {
            json!({"provider": "local", "sshPublicKey": public_key(),
                   "leaseID": format!("cbx_0000000c{i:04x}"),
                   "createAttemptID": format!("cat_{i:032x}")})
        },
        &[200],
    )
    .await;
}
