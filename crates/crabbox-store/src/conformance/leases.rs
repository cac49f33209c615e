//! Lease cases: round trip, compare-and-swap, listing, slugs, the reconciler's due index.

use std::sync::Arc;

use crabbox_api::coord::{LeaseState, Timestamp};

use super::sample::{MIN, T0, check_at, full_lease, lease, no_check};
use super::{Fixture, assert_conflict, assert_not_found};
use crate::{LeaseQuery, Versioned};

pub async fn lease_round_trip(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let original = full_lease("cbx_000000000001");
    assert_eq!(
        store.insert_lease(&original, &check_at(T0)).await.unwrap(),
        1
    );
    let got = store
        .get_lease(&original.id)
        .await
        .unwrap()
        .expect("stored lease");
    assert_eq!(got.version, 1);
    assert_eq!(
        got.value, original,
        "every field, unknown ones and NULs included"
    );
    assert_eq!(
        serde_json::to_value(&got.value).unwrap(),
        serde_json::to_value(&original).unwrap()
    );
    assert!(store.get_lease("cbx_missing").await.unwrap().is_none());
}

pub async fn lease_insert_existing_conflicts(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let first = lease("cbx_dup");
    store.insert_lease(&first, &no_check()).await.unwrap();
    let mut second = lease("cbx_dup");
    second.owner = "mallory@example.com".into();
    assert_conflict(store.insert_lease(&second, &no_check()).await);
    let got = store.get_lease("cbx_dup").await.unwrap().unwrap();
    assert_eq!((got.version, got.value), (1, first));
}

pub async fn lease_update_is_compare_and_swap(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut l = lease("cbx_cas");
    store.insert_lease(&l, &no_check()).await.unwrap();

    l.last_touched_at = T0.plus_secs(10);
    l.telemetry_history.clear();
    assert_eq!(store.update_lease(&l, &check_at(T0), 1).await.unwrap(), 2);

    let mut stale = l.clone();
    stale.state = LeaseState::Released;
    assert_conflict(store.update_lease(&stale, &no_check(), 1).await);
    assert_conflict(store.update_lease(&stale, &no_check(), 3).await);
    let got = store.get_lease("cbx_cas").await.unwrap().unwrap();
    assert_eq!(
        got,
        Versioned {
            value: l.clone(),
            version: 2
        }
    );

    l.state = LeaseState::Released;
    l.ended_at = Some(T0.plus_secs(20));
    assert_eq!(store.update_lease(&l, &no_check(), 2).await.unwrap(), 3);
    assert_eq!(store.get_lease("cbx_cas").await.unwrap().unwrap().value, l);

    assert_not_found(store.update_lease(&lease("cbx_gone"), &no_check(), 1).await);
}

pub async fn lease_list_filters_and_order(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let specs: [(&str, &str, &str, &str, LeaseState, i64); 6] = [
        ("cbx_a", "alice", "org-1", "hetzner", LeaseState::Active, 0),
        ("cbx_b", "alice", "org-1", "aws", LeaseState::Released, 1),
        (
            "cbx_c",
            "bob",
            "org-1",
            "hetzner",
            LeaseState::Provisioning,
            2,
        ),
        ("cbx_d", "bob", "org-2", "aws", LeaseState::Failed, 3),
        ("cbx_e", "alice", "org-2", "hetzner", LeaseState::Expired, 4),
        ("cbx_f", "carol", "org-2", "hetzner", LeaseState::Active, 5),
    ];
    for (id, owner, org, provider, state, minute) in specs {
        let mut l = lease(id);
        l.owner = owner.to_owned();
        l.org = org.to_owned();
        l.provider = provider.to_owned();
        l.state = state;
        l.created_at = T0.plus_millis(minute * MIN);
        store.insert_lease(&l, &no_check()).await.unwrap();
    }
    let ids = |q: LeaseQuery| {
        let store = Arc::clone(&store);
        async move {
            let leases = store.list_leases(&q).await.unwrap();
            leases.into_iter().map(|l| l.id).collect::<Vec<_>>()
        }
    };
    let all = LeaseQuery {
        limit: 100,
        ..LeaseQuery::default()
    };
    assert_eq!(
        ids(all.clone()).await,
        ["cbx_f", "cbx_e", "cbx_d", "cbx_c", "cbx_b", "cbx_a"],
        "newest first"
    );
    assert_eq!(
        ids(LeaseQuery {
            limit: 2,
            ..all.clone()
        })
        .await,
        ["cbx_f", "cbx_e"]
    );
    assert!(
        ids(LeaseQuery {
            limit: 0,
            ..all.clone()
        })
        .await
        .is_empty()
    );
    let live = vec![LeaseState::Provisioning, LeaseState::Active];
    assert_eq!(
        ids(LeaseQuery {
            states: live.clone(),
            ..all.clone()
        })
        .await,
        ["cbx_f", "cbx_c", "cbx_a"]
    );
    assert_eq!(
        ids(LeaseQuery {
            provider: Some("aws".into()),
            ..all.clone()
        })
        .await,
        ["cbx_d", "cbx_b"]
    );
    assert_eq!(
        ids(LeaseQuery {
            owner: Some("alice".into()),
            ..all.clone()
        })
        .await,
        ["cbx_e", "cbx_b", "cbx_a"]
    );
    assert_eq!(
        ids(LeaseQuery {
            org: Some("org-2".into()),
            ..all.clone()
        })
        .await,
        ["cbx_f", "cbx_e", "cbx_d"]
    );
    assert_eq!(
        ids(LeaseQuery {
            owner: Some("alice".into()),
            org: Some("org-1".into()),
            states: live.clone(),
            ..all.clone()
        })
        .await,
        ["cbx_a"]
    );
    // created_since is inclusive, created_before exclusive.
    assert_eq!(
        ids(LeaseQuery {
            created_since: Some(T0.plus_millis(MIN)),
            created_before: Some(T0.plus_millis(4 * MIN)),
            ..all.clone()
        })
        .await,
        ["cbx_d", "cbx_c", "cbx_b"]
    );
    assert_eq!(
        ids(LeaseQuery {
            created_since: Some(T0.plus_millis(2 * MIN)),
            owner: Some("bob".into()),
            provider: Some("hetzner".into()),
            limit: 1,
            ..all.clone()
        })
        .await,
        ["cbx_c"]
    );
    assert!(
        ids(LeaseQuery {
            owner: Some("nobody".into()),
            ..all
        })
        .await
        .is_empty()
    );
}

pub async fn live_leases_by_slug_ignore_terminal(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    for (id, state) in [
        ("cbx_1", LeaseState::Active),
        ("cbx_2", LeaseState::Provisioning),
        ("cbx_3", LeaseState::Released),
        ("cbx_4", LeaseState::Expired),
        ("cbx_5", LeaseState::Failed),
    ] {
        let mut l = lease(id);
        l.slug = "blue-lobster".into();
        l.state = state;
        store.insert_lease(&l, &no_check()).await.unwrap();
    }
    let mut other = lease("cbx_6");
    other.slug = "blue-lobster-2".into();
    store.insert_lease(&other, &no_check()).await.unwrap();

    let mut found = store.live_leases_by_slug("blue-lobster").await.unwrap();
    found.sort_by(|a, b| a.value.id.cmp(&b.value.id));
    let ids: Vec<_> = found
        .iter()
        .map(|v| (v.value.id.as_str(), v.version))
        .collect();
    assert_eq!(ids, [("cbx_1", 1), ("cbx_2", 1)]);

    // Releasing one takes it out of the slug's live set.
    let mut first = found.remove(0).value;
    first.state = LeaseState::Released;
    store.update_lease(&first, &no_check(), 1).await.unwrap();
    let found = store.live_leases_by_slug("blue-lobster").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].value.id, "cbx_2");
    assert!(
        store
            .live_leases_by_slug("BLUE-LOBSTER")
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn due_leases_follow_next_check(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    assert_eq!(store.next_check_at().await.unwrap(), None);
    assert!(store.due_leases(T0, 10).await.unwrap().is_empty());
    for (id, at) in [
        ("cbx_late", 30),
        ("cbx_soon", 10),
        ("cbx_mid", 20),
        ("cbx_future", 90),
    ] {
        store
            .insert_lease(&lease(id), &check_at(T0.plus_secs(at)))
            .await
            .unwrap();
    }
    store
        .insert_lease(&lease("cbx_never"), &no_check())
        .await
        .unwrap();
    assert_eq!(store.next_check_at().await.unwrap(), Some(T0.plus_secs(10)));

    let due = |now: Timestamp, limit: usize| {
        let store = Arc::clone(&store);
        async move {
            let leases = store.due_leases(now, limit).await.unwrap();
            leases.into_iter().map(|v| v.value.id).collect::<Vec<_>>()
        }
    };
    assert!(due(T0.plus_secs(9), 10).await.is_empty());
    assert_eq!(
        due(T0.plus_secs(30), 10).await,
        ["cbx_soon", "cbx_mid", "cbx_late"],
        "<= now, soonest first"
    );
    assert_eq!(due(T0.plus_secs(60), 2).await, ["cbx_soon", "cbx_mid"]);

    // Clearing the check time takes a lease out of the due set; moving it reorders.
    let soon = store.get_lease("cbx_soon").await.unwrap().unwrap();
    store
        .update_lease(&soon.value, &no_check(), soon.version)
        .await
        .unwrap();
    let mid = store.get_lease("cbx_mid").await.unwrap().unwrap();
    store
        .update_lease(&mid.value, &check_at(T0.plus_secs(40)), mid.version)
        .await
        .unwrap();
    assert_eq!(due(T0.plus_secs(60), 10).await, ["cbx_late", "cbx_mid"]);
    assert_eq!(store.next_check_at().await.unwrap(), Some(T0.plus_secs(30)));
    let due_versions = store.due_leases(T0.plus_secs(60), 10).await.unwrap();
    assert_eq!(
        due_versions[1].version, 2,
        "due leases carry their version for CAS"
    );
}
