//! Lease accounting cases: admission counts and reserved spend, retention, counts by state.

use std::sync::Arc;

use crabbox_api::coord::{LeaseState, Lifecycle, Timestamp};

use super::sample::{MAY, T0, lease, no_check};
use super::{Fixture, assert_conflict};
use crate::Admission;

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[track_caller]
fn assert_admission(got: &Admission, counts: (u64, u64, u64), usd: (f64, f64, f64)) {
    assert_eq!(
        (got.active_total, got.active_owner, got.active_org),
        counts,
        "{got:?}"
    );
    assert!(
        approx(got.reserved_usd_total, usd.0)
            && approx(got.reserved_usd_owner, usd.1)
            && approx(got.reserved_usd_org, usd.2),
        "reserved {got:?}, expected {usd:?}"
    );
}

pub async fn admission_counts_live_and_this_month(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    assert_admission(
        &store.admission("alice", "org-1", MAY).await.unwrap(),
        (0, 0, 0),
        (0.0, 0.0, 0.0),
    );
    let april = MAY.plus_secs(-3 * 86_400);
    // (id, owner, org, state, created, usd, registered)
    let specs = [
        (
            "cbx_live_old",
            "alice",
            "org-1",
            LeaseState::Active,
            april,
            1.25,
            false,
        ),
        (
            "cbx_live_new",
            "bob",
            "org-1",
            LeaseState::Provisioning,
            T0,
            0.5,
            false,
        ),
        (
            "cbx_live_other",
            "carol",
            "org-2",
            LeaseState::Active,
            T0,
            2.0,
            false,
        ),
        (
            "cbx_done_old",
            "alice",
            "org-1",
            LeaseState::Released,
            april,
            7.0,
            false,
        ),
        (
            "cbx_done_new",
            "alice",
            "org-2",
            LeaseState::Expired,
            MAY,
            0.1,
            false,
        ),
        (
            "cbx_failed_new",
            "bob",
            "org-1",
            LeaseState::Failed,
            T0,
            0.2,
            false,
        ),
        (
            "cbx_registered",
            "alice",
            "org-1",
            LeaseState::Active,
            T0,
            100.0,
            true,
        ),
        (
            "cbx_registered_done",
            "alice",
            "org-1",
            LeaseState::Released,
            T0,
            50.0,
            true,
        ),
    ];
    for (id, owner, org, state, created, usd, registered) in specs {
        let mut l = lease(id);
        l.owner = owner.to_owned();
        l.org = org.to_owned();
        l.state = state;
        l.created_at = created;
        l.max_estimated_usd = usd;
        if registered {
            l.lifecycle = Lifecycle::Registered;
        }
        store.insert_lease(&l, &no_check()).await.unwrap();
    }
    // Live: old 1.25 + new 0.5 + other 2.0; terminal this month: 0.1 + 0.2.
    let a = store.admission("alice", "org-1", MAY).await.unwrap();
    assert_admission(&a, (3, 1, 2), (4.05, 1.35, 1.95));
    let c = store.admission("carol", "org-2", MAY).await.unwrap();
    assert_admission(&c, (3, 1, 1), (4.05, 2.0, 2.1));

    // Releasing a live lease of last month drops its count and its spend (not this month's).
    let mut old = store.get_lease("cbx_live_old").await.unwrap().unwrap();
    old.value.state = LeaseState::Released;
    old.value.ended_at = Some(T0);
    store
        .update_lease(&old.value, &no_check(), old.version)
        .await
        .unwrap();
    // Releasing this month's lease keeps its spend.
    let mut new = store.get_lease("cbx_live_new").await.unwrap().unwrap();
    new.value.state = LeaseState::Released;
    new.value.max_estimated_usd = 0.75;
    store
        .update_lease(&new.value, &no_check(), new.version)
        .await
        .unwrap();
    let a = store.admission("alice", "org-1", MAY).await.unwrap();
    assert_admission(&a, (1, 0, 0), (3.05, 0.1, 0.95));
    // The next month sees only what is still live.
    let june = Timestamp::month_start(2026, 6);
    assert_admission(
        &store.admission("carol", "org-2", june).await.unwrap(),
        (1, 1, 1),
        (2.0, 2.0, 2.0),
    );
    // A registered lease turning managed counts from then on.
    let mut reg = store.get_lease("cbx_registered").await.unwrap().unwrap();
    reg.value.lifecycle = Lifecycle::Managed;
    reg.value.max_estimated_usd = 1.0;
    store
        .update_lease(&reg.value, &no_check(), reg.version)
        .await
        .unwrap();
    let a = store.admission("alice", "org-1", MAY).await.unwrap();
    assert_admission(&a, (2, 1, 1), (4.05, 1.1, 1.95));
}

pub async fn prune_leases_keeps_live_and_recent(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let cutoff = T0;
    let mut insert = Vec::new();
    for i in 0..5 {
        let mut l = lease(&format!("cbx_old_{i}"));
        l.state = [
            LeaseState::Released,
            LeaseState::Expired,
            LeaseState::Failed,
        ][i % 3];
        l.ended_at = Some(cutoff.plus_secs(-3600 + i64::try_from(i).unwrap()));
        insert.push(l);
    }
    let mut recent = lease("cbx_recent");
    recent.state = LeaseState::Released;
    recent.ended_at = Some(cutoff);
    insert.push(recent);
    let mut live_old = lease("cbx_live_old");
    live_old.created_at = cutoff.plus_secs(-86_400);
    // A live lease that carries an old endedAt (re-registered) is never pruned.
    live_old.ended_at = Some(cutoff.plus_secs(-86_400));
    insert.push(live_old);
    let mut provisioning = lease("cbx_provisioning");
    provisioning.state = LeaseState::Provisioning;
    insert.push(provisioning);
    for l in &insert {
        store.insert_lease(l, &no_check()).await.unwrap();
    }
    assert_eq!(store.prune_leases(cutoff, 3).await.unwrap(), 3);
    assert_eq!(store.prune_leases(cutoff, 10).await.unwrap(), 2);
    assert_eq!(store.prune_leases(cutoff, 10).await.unwrap(), 0);
    for i in 0..5 {
        assert!(
            store
                .get_lease(&format!("cbx_old_{i}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    for id in ["cbx_recent", "cbx_live_old", "cbx_provisioning"] {
        assert!(
            store.get_lease(id).await.unwrap().is_some(),
            "{id} survives"
        );
    }
    let counts = store.lease_counts().await.unwrap();
    assert_eq!(
        counts,
        [
            (LeaseState::Provisioning, 1),
            (LeaseState::Active, 1),
            (LeaseState::Released, 1),
            (LeaseState::Expired, 0),
            (LeaseState::Failed, 0),
        ]
    );
    // Pruned ids can be used again.
    store
        .insert_lease(&lease("cbx_old_0"), &no_check())
        .await
        .unwrap();
}

pub async fn lease_counts_by_state(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let zero: Vec<_> = LeaseState::ALL.into_iter().map(|s| (s, 0)).collect();
    assert_eq!(store.lease_counts().await.unwrap(), zero);
    for (i, state) in [
        LeaseState::Active,
        LeaseState::Active,
        LeaseState::Provisioning,
        LeaseState::Failed,
    ]
    .into_iter()
    .enumerate()
    {
        let mut l = lease(&format!("cbx_{i}"));
        l.state = state;
        l.lifecycle = if i == 1 {
            Lifecycle::Registered
        } else {
            Lifecycle::Managed
        };
        store.insert_lease(&l, &no_check()).await.unwrap();
    }
    let mut l = store.get_lease("cbx_2").await.unwrap().unwrap();
    l.value.state = LeaseState::Active;
    store
        .update_lease(&l.value, &no_check(), l.version)
        .await
        .unwrap();
    // A rejected write changes no count.
    l.value.state = LeaseState::Expired;
    assert_conflict(store.update_lease(&l.value, &no_check(), l.version).await);
    assert_eq!(
        store.lease_counts().await.unwrap(),
        [
            (LeaseState::Provisioning, 0),
            (LeaseState::Active, 3),
            (LeaseState::Released, 0),
            (LeaseState::Expired, 0),
            (LeaseState::Failed, 1),
        ]
    );
}
