//! Create-attempt and run cases: compare-and-swap, events and logs written in one
//! transaction with the run, chunked logs, listing with keyset pages, retention.

use std::sync::Arc;

use crabbox_api::coord::{CreateAttempt, RunState, Timestamp};

use super::sample::{MIN, T0, event, finished, run};
use super::{Fixture, assert_conflict, assert_not_found};
use crate::codec::LOG_CHUNK_BYTES;
use crate::{RunQuery, Store};

fn attempt(id: &str) -> CreateAttempt {
    CreateAttempt {
        version: 1,
        requested_lease_id: id.to_owned(),
        token: "token-1".to_owned(),
        owner: "peter@example.com".to_owned(),
        org: "~1.b3BlbmNsYXc".to_owned(),
        state: "pending".to_owned(),
        canonical_lease_id: None,
        cloud_id: None,
        generation: None,
        created_at: T0,
        updated_at: T0,
    }
}

pub async fn attempts_insert_and_compare_and_swap(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    assert!(store.get_attempt("cbx_a").await.unwrap().is_none());
    let mut a = attempt("cbx_a");
    assert_eq!(store.put_attempt(&a, None).await.unwrap(), 1);
    assert_conflict(store.put_attempt(&attempt("cbx_a"), None).await);

    a.canonical_lease_id = Some("cbx_a".to_owned());
    a.generation = Some("gen-1".to_owned());
    a.updated_at = T0.plus_secs(1);
    assert_eq!(store.put_attempt(&a, Some(1)).await.unwrap(), 2);
    let mut stale = a.clone();
    stale.state = "canceled".into();
    assert_conflict(store.put_attempt(&stale, Some(1)).await);
    let got = store.get_attempt("cbx_a").await.unwrap().unwrap();
    assert_eq!((got.version, got.value), (2, a));
    assert_not_found(store.put_attempt(&attempt("cbx_none"), Some(1)).await);
}

async fn event_seqs(store: &dyn Store, run_id: &str) -> Vec<u64> {
    let events = store.run_events(run_id, 0, 1000).await.unwrap();
    assert!(events.iter().all(|e| e.run_id == run_id));
    events.into_iter().map(|e| e.seq).collect()
}

pub async fn run_insert_with_first_event(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let r = run("run_1", "cbx_1", T0);
    assert_eq!(store.insert_run(&r, &[event("run_1", 1)]).await.unwrap(), 1);
    let got = store.get_run("run_1").await.unwrap().unwrap();
    assert_eq!((got.version, &got.value), (1, &r));
    assert_eq!(
        store.run_events("run_1", 0, 10).await.unwrap(),
        [event("run_1", 1)],
        "the first event round-trips"
    );
    // A second insert of the id conflicts and writes none of its events.
    assert_conflict(store.insert_run(&r, &[event("run_1", 2)]).await);
    assert_eq!(event_seqs(&*store, "run_1").await, [1]);

    store
        .insert_run(&run("run_2", "cbx_1", T0), &[])
        .await
        .unwrap();
    assert!(store.run_events("run_2", 0, 10).await.unwrap().is_empty());
    assert!(store.get_run("run_missing").await.unwrap().is_none());
    assert_eq!(store.run_log("run_1").await.unwrap(), "");
    assert_eq!(store.run_log("run_missing").await.unwrap(), "");
}

pub async fn update_run_is_one_transaction(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let r = run("run_1", "cbx_1", T0);
    store.insert_run(&r, &[event("run_1", 1)]).await.unwrap();

    let mut r2 = r.clone();
    r2.event_count = 3;
    r2.phase = "command".into();
    let v = store
        .update_run(
            &r2,
            1,
            &[event("run_1", 2), event("run_1", 3)],
            Some("first log\n"),
        )
        .await
        .unwrap();
    assert_eq!(v, 2);
    assert_eq!(event_seqs(&*store, "run_1").await, [1, 2, 3]);
    assert_eq!(store.run_log("run_1").await.unwrap(), "first log\n");

    // A stale version writes nothing: no run change, no events, no log.
    let mut r3 = r2.clone();
    r3.event_count = 4;
    assert_conflict(
        store
            .update_run(&r3, 1, &[event("run_1", 4)], Some("other"))
            .await,
    );
    // An event that already exists rolls back the whole write, the run's CAS included.
    assert_conflict(
        store
            .update_run(
                &r3,
                2,
                &[event("run_1", 4), event("run_1", 3)],
                Some("other"),
            )
            .await,
    );
    let got = store.get_run("run_1").await.unwrap().unwrap();
    assert_eq!((got.version, got.value), (2, r2));
    assert_eq!(event_seqs(&*store, "run_1").await, [1, 2, 3]);
    assert_eq!(store.run_log("run_1").await.unwrap(), "first log\n");

    // Without a log the stored log stays.
    let r4 = finished(r3, RunState::Succeeded, T0.plus_secs(5));
    assert_eq!(
        store
            .update_run(&r4, 2, &[event("run_1", 4)], None)
            .await
            .unwrap(),
        3
    );
    assert_eq!(event_seqs(&*store, "run_1").await, [1, 2, 3, 4]);
    assert_eq!(store.run_log("run_1").await.unwrap(), "first log\n");
    assert_eq!(store.get_run("run_1").await.unwrap().unwrap().value, r4);

    assert_not_found(
        store
            .update_run(&run("run_none", "cbx_1", T0), 1, &[], None)
            .await,
    );
}

pub async fn run_log_round_trips_in_chunks(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let r = run("run_log", "cbx_1", T0);
    store.insert_run(&r, &[]).await.unwrap();
    // Multi-byte characters straddle each 64 KiB boundary; NUL and emoji inside.
    let mut big = "a".repeat(LOG_CHUNK_BYTES - 1);
    big.push('€');
    for i in 0..40_000 {
        big.push_str(["日本語", "\u{0}", "🦀", "ß\n"][i % 4]);
    }
    big.push_str(&"z".repeat(LOG_CHUNK_BYTES - 2));
    big.push('🦀');
    assert!(big.len() > 3 * LOG_CHUNK_BYTES);
    let mut version = 1;
    for log in [
        big.as_str(),
        "short\n",
        "",
        &"x".repeat(LOG_CHUNK_BYTES),
        "tail ✓",
    ] {
        version = store.update_run(&r, version, &[], Some(log)).await.unwrap();
        assert_eq!(
            store.run_log("run_log").await.unwrap(),
            log,
            "log of {} bytes",
            log.len()
        );
    }
}

pub async fn run_events_after_and_limit(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let r = run("run_e", "cbx_1", T0);
    let first: Vec<_> = (1..=3).map(|s| event("run_e", s)).collect();
    store.insert_run(&r, &first).await.unwrap();
    let more: Vec<_> = (4..=10).map(|s| event("run_e", s)).collect();
    store.update_run(&r, 1, &more, None).await.unwrap();
    store
        .insert_run(
            &run("run_other", "cbx_1", T0),
            &[event("run_other", 1), event("run_other", 2)],
        )
        .await
        .unwrap();

    assert_eq!(
        event_seqs(&*store, "run_e").await,
        (1..=10).collect::<Vec<_>>()
    );
    let page = store.run_events("run_e", 3, 4).await.unwrap();
    assert_eq!(page, (4..=7).map(|s| event("run_e", s)).collect::<Vec<_>>());
    assert!(store.run_events("run_e", 10, 5).await.unwrap().is_empty());
    assert!(store.run_events("run_e", 0, 0).await.unwrap().is_empty());
    assert_eq!(event_seqs(&*store, "run_other").await, [1, 2]);
    assert!(store.run_events("run_none", 0, 5).await.unwrap().is_empty());
}

pub async fn run_list_filters_order_and_pages(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    // (id, lease, owner, org, state, started minute)
    let specs = [
        ("run_a", "cbx_1", "alice", "org-1", RunState::Succeeded, 0),
        ("run_b", "cbx_1", "alice", "org-1", RunState::Failed, 1),
        ("run_c", "cbx_2", "bob", "org-1", RunState::Running, 2),
        ("run_d", "cbx_2", "bob", "org-2", RunState::Succeeded, 2),
        ("run_e", "cbx_3", "alice", "org-2", RunState::Running, 3),
        ("run_f", "cbx_1", "carol", "org-2", RunState::Succeeded, 4),
    ];
    for (id, lease_id, owner, org, state, minute) in specs {
        let mut r = run(id, lease_id, T0.plus_millis(minute * MIN));
        r.owner = owner.to_owned();
        r.org = org.to_owned();
        if state != RunState::Running {
            r = finished(r, state, T0.plus_millis(minute * MIN + 1000));
        }
        store.insert_run(&r, &[]).await.unwrap();
    }
    let ids = |q: RunQuery| {
        let store = Arc::clone(&store);
        async move {
            let runs = store.list_runs(&q).await.unwrap();
            runs.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    let all = RunQuery {
        limit: 100,
        ..RunQuery::default()
    };
    assert_eq!(
        ids(all.clone()).await,
        ["run_f", "run_e", "run_d", "run_c", "run_b", "run_a"],
        "newest first, ties by id descending"
    );
    assert_eq!(
        ids(RunQuery {
            lease: Some("cbx_1".into()),
            ..all.clone()
        })
        .await,
        ["run_f", "run_b", "run_a"]
    );
    assert_eq!(
        ids(RunQuery {
            owner: Some("alice".into()),
            ..all.clone()
        })
        .await,
        ["run_e", "run_b", "run_a"]
    );
    assert_eq!(
        ids(RunQuery {
            org: Some("org-2".into()),
            ..all.clone()
        })
        .await,
        ["run_f", "run_e", "run_d"]
    );
    assert_eq!(
        ids(RunQuery {
            state: Some(RunState::Running),
            ..all.clone()
        })
        .await,
        ["run_e", "run_c"]
    );
    assert_eq!(
        ids(RunQuery {
            owner: Some("bob".into()),
            org: Some("org-1".into()),
            ..all.clone()
        })
        .await,
        ["run_c"]
    );
    assert_eq!(
        ids(RunQuery {
            limit: 2,
            ..all.clone()
        })
        .await,
        ["run_f", "run_e"]
    );

    // Keyset pages of two walk every run once, in order, across the tie at minute 2.
    let mut seen = Vec::new();
    let mut before: Option<(Timestamp, String)> = None;
    loop {
        let page = store
            .list_runs(&RunQuery {
                before: before.clone(),
                limit: 2,
                ..RunQuery::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some((last.started_at, last.id.clone()));
        seen.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, ["run_f", "run_e", "run_d", "run_c", "run_b", "run_a"]);
    assert_eq!(
        ids(RunQuery {
            before: Some((T0.plus_millis(2 * MIN), "run_d".into())),
            lease: Some("cbx_2".into()),
            ..all
        })
        .await,
        ["run_c"]
    );
}

/// Listing by lease finds a run by every lease it ran on, by id or by slug, also after it
/// moved to a replacement lease; each run once, newest first, with the other filters and
/// keyset pages; and forgets a pruned run.
pub async fn run_list_by_lease_finds_runs_of_past_leases(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let on = |id: &str, lease: &str, slug: &str, minute: i64| {
        let mut r = run(id, lease, T0.plus_millis(minute * MIN));
        slug.clone_into(&mut r.slug);
        r
    };
    // run_m starts on cbx_old ("old-box") and moves to its replacement cbx_new ("new-box").
    let moved = on("run_m", "cbx_old", "old-box", 0);
    store.insert_run(&moved, &[]).await.unwrap();
    let mut replaced = moved.clone();
    "cbx_new".clone_into(&mut replaced.lease_id);
    replaced.lease_ids.push("cbx_new".to_owned());
    "new-box".clone_into(&mut replaced.slug);
    store.update_run(&replaced, 1, &[], None).await.unwrap();
    store
        .insert_run(&on("run_n", "cbx_new", "new-box", 1), &[])
        .await
        .unwrap();
    let mut other = on("run_o", "cbx_other", "other-box", 2);
    "someone@example.com".clone_into(&mut other.owner);
    store.insert_run(&other, &[]).await.unwrap();
    // A registered lease whose id is also its slug.
    store
        .insert_run(&on("run_r", "box-7", "box-7", 3), &[])
        .await
        .unwrap();

    let ids = |q: RunQuery| {
        let store = Arc::clone(&store);
        async move {
            let runs = store.list_runs(&q).await.unwrap();
            runs.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    let by = |lease: &str| RunQuery {
        lease: Some(lease.to_owned()),
        limit: 100,
        ..RunQuery::default()
    };
    assert_eq!(ids(by("cbx_old")).await, ["run_m"], "a past lease by id");
    assert_eq!(ids(by("old-box")).await, ["run_m"], "a past lease by slug");
    assert_eq!(ids(by("cbx_new")).await, ["run_n", "run_m"]);
    assert_eq!(ids(by("new-box")).await, ["run_n", "run_m"]);
    assert_eq!(ids(by("box-7")).await, ["run_r"], "once, by id and slug");
    assert!(ids(by("cbx_none")).await.is_empty());
    assert_eq!(
        ids(RunQuery {
            owner: Some("someone@example.com".into()),
            ..by("other-box")
        })
        .await,
        ["run_o"]
    );
    assert!(
        ids(RunQuery {
            owner: Some("peter@example.com".into()),
            ..by("other-box")
        })
        .await
        .is_empty()
    );
    assert_eq!(
        ids(RunQuery {
            limit: 1,
            ..by("new-box")
        })
        .await,
        ["run_n"]
    );
    assert_eq!(
        ids(RunQuery {
            before: Some((T0.plus_millis(MIN), "run_n".into())),
            ..by("new-box")
        })
        .await,
        ["run_m"]
    );
    // Writes that keep the leases (an event, the finish) leave one entry per lease.
    let done = finished(replaced, RunState::Succeeded, T0.plus_millis(5 * MIN));
    store.update_run(&done, 2, &[], None).await.unwrap();
    assert_eq!(ids(by("cbx_old")).await, ["run_m"]);
    // A pruned run is no longer found by its leases.
    assert_eq!(
        store
            .prune_runs(T0.plus_millis(10 * MIN), 10)
            .await
            .unwrap(),
        1
    );
    assert!(ids(by("cbx_old")).await.is_empty());
    assert_eq!(ids(by("new-box")).await, ["run_n"]);
}

pub async fn prune_runs_keeps_running_and_recent(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let cutoff = T0;
    let old = cutoff.plus_secs(-3600);
    let mut pruned = Vec::new();
    for i in 0..3 {
        let id = format!("run_old_{i}");
        let r = finished(
            run(&id, "cbx_1", old),
            RunState::Succeeded,
            old.plus_secs(i),
        );
        store.insert_run(&r, &[event(&id, 1)]).await.unwrap();
        store
            .update_run(&r, 1, &[event(&id, 2)], Some("old log"))
            .await
            .unwrap();
        pruned.push(id);
    }
    // A finished run without endedAt is aged by its last event, else by its start.
    let mut by_event = run("run_by_event", "cbx_1", old);
    by_event.state = RunState::Failed;
    by_event.last_event_at = Some(old.plus_secs(10));
    store.insert_run(&by_event, &[]).await.unwrap();
    let mut by_start = run("run_by_start", "cbx_1", old);
    by_start.state = RunState::Failed;
    store.insert_run(&by_start, &[]).await.unwrap();
    pruned.extend(["run_by_event".to_owned(), "run_by_start".to_owned()]);

    let mut fresh_by_event = run("run_fresh_event", "cbx_1", old);
    fresh_by_event.state = RunState::Failed;
    fresh_by_event.last_event_at = Some(cutoff.plus_secs(1));
    store.insert_run(&fresh_by_event, &[]).await.unwrap();
    let recent = finished(run("run_recent", "cbx_1", old), RunState::Succeeded, cutoff);
    store
        .insert_run(&recent, &[event("run_recent", 1)])
        .await
        .unwrap();
    store
        .update_run(&recent, 1, &[], Some("kept"))
        .await
        .unwrap();
    let running = run("run_running", "cbx_1", cutoff.plus_secs(-86_400));
    store
        .insert_run(&running, &[event("run_running", 1)])
        .await
        .unwrap();

    assert_eq!(store.prune_runs(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.prune_runs(cutoff, 10).await.unwrap(), 3);
    assert_eq!(store.prune_runs(cutoff, 10).await.unwrap(), 0);
    for id in &pruned {
        assert!(store.get_run(id).await.unwrap().is_none(), "{id} pruned");
        assert!(
            store.run_events(id, 0, 10).await.unwrap().is_empty(),
            "{id} events pruned"
        );
        assert_eq!(store.run_log(id).await.unwrap(), "", "{id} log pruned");
    }
    for id in ["run_fresh_event", "run_recent", "run_running"] {
        assert!(store.get_run(id).await.unwrap().is_some(), "{id} kept");
    }
    assert_eq!(store.run_log("run_recent").await.unwrap(), "kept");
    assert_eq!(event_seqs(&*store, "run_running").await, [1]);
    // A pruned id starts over without old events.
    store
        .insert_run(&run("run_old_0", "cbx_1", T0), &[event("run_old_0", 1)])
        .await
        .unwrap();
    assert_eq!(event_seqs(&*store, "run_old_0").await, [1]);
}
