//! Concurrency cases: many writers on one record, as several requests or replicas would race.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::Fixture;
use super::sample::{lease, no_check};
use crate::StoreError;

const WRITERS: usize = 32;

pub async fn racing_cas_updates_lose_nothing(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    store
        .insert_lease(&lease("cbx_race"), &no_check())
        .await
        .unwrap();

    // Round one: every writer read version 1; exactly one write may land.
    let barrier = Arc::new(Barrier::new(WRITERS));
    let mut tasks = JoinSet::new();
    for n in 0..WRITERS {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.spawn(async move {
            let read = store.get_lease("cbx_race").await.unwrap().unwrap();
            let mut l = read.value;
            l.extra.insert("winner".to_owned(), json!(n));
            barrier.wait().await;
            match store.update_lease(&l, &no_check(), read.version).await {
                Ok(v) => Some((n, v)),
                Err(StoreError::Conflict(_)) => None,
                Err(e) => panic!("writer {n}: {e}"),
            }
        });
    }
    let winners: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "one write per version: {winners:?}");
    let got = store.get_lease("cbx_race").await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.value.extra["winner"], json!(winners[0].0));

    // Round two: writers retry on conflict; every append survives, one version each.
    let mut tasks = JoinSet::new();
    for n in 0..WRITERS {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut conflicts = 0_u64;
            loop {
                let read = store.get_lease("cbx_race").await.unwrap().unwrap();
                let mut l = read.value;
                let mut seen = l.extra.get("writers").cloned().unwrap_or_else(|| json!([]));
                seen.as_array_mut().unwrap().push(json!(n));
                l.extra.insert("writers".to_owned(), seen);
                match store.update_lease(&l, &no_check(), read.version).await {
                    Ok(_) => return conflicts,
                    Err(StoreError::Conflict(_)) => conflicts += 1,
                    Err(e) => panic!("writer {n}: {e}"),
                }
            }
        });
    }
    tasks.join_all().await;
    let got = store.get_lease("cbx_race").await.unwrap().unwrap();
    assert_eq!(
        got.version,
        2 + i64::try_from(WRITERS).unwrap(),
        "one version per successful write"
    );
    let mut writers: Vec<u64> = got.value.extra["writers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    writers.sort_unstable();
    assert_eq!(
        writers,
        (0..WRITERS as u64).collect::<Vec<_>>(),
        "no write was lost"
    );
}

pub async fn racing_inserts_have_one_winner(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let barrier = Arc::new(Barrier::new(16));
    let mut tasks = JoinSet::new();
    for n in 0..16_u32 {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.spawn(async move {
            let mut l = lease("cbx_same");
            l.server_id = u64::from(n);
            barrier.wait().await;
            match store.insert_lease(&l, &no_check()).await {
                Ok(v) => Some((n, v)),
                Err(StoreError::Conflict(_)) => None,
                Err(e) => panic!("inserter {n}: {e}"),
            }
        });
    }
    let winners: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
    let got = store.get_lease("cbx_same").await.unwrap().unwrap();
    assert_eq!(
        (got.version, got.value.server_id),
        (1, u64::from(winners[0].0))
    );
}

pub async fn racing_takes_have_one_winner(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    store
        .kv_put("ticket:1", &json!({"once": true}), None)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let mut tasks = JoinSet::new();
    for _ in 0..16 {
        let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            store.kv_take("ticket:1").await.unwrap()
        });
    }
    let taken: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(taken, [json!({"once": true})], "a ticket is redeemed once");
}
