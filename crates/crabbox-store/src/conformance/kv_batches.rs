//! Batches of small documents (`kv_put_many`): written together, all or nothing, and never
//! interleaved with another batch on the same keys, as an image promotion needs for its
//! scoped, region-less, legacy and history keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{Fixture, assert_conflict, assert_not_found};
use crate::{KvWrite, Store};

/// `(version, value)` of every key in `keys`; `None` for a missing one.
async fn snapshot(store: &dyn Store, keys: &[&str]) -> Vec<Option<(i64, Value)>> {
    let mut out = Vec::new();
    for key in keys {
        let got = store.kv_get(key).await.unwrap();
        out.push(got.map(|v| (v.version, v.value)));
    }
    out
}

pub async fn kv_put_many_writes_every_key(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    store
        .kv_put("image:promoted:a", &json!("ami-old"), None)
        .await
        .unwrap();
    store
        .kv_put("image:promoted:a", &json!("ami-older"), Some(1))
        .await
        .unwrap();
    store.kv_put("sweep:cursor", &json!(7), None).await.unwrap();

    let versions = store
        .kv_put_many(&[
            // Replaces whatever the scoped key held, whatever its version.
            KvWrite::upsert("image:promoted:a", json!("ami-new")),
            // Creates a key that did not exist.
            KvWrite::upsert("image:promoted:b", json!("ami-new")),
            KvWrite::insert("image:catalog:a:ami-new", json!({"promotedAt": 1})),
            KvWrite::swap("sweep:cursor", json!(8), 1),
        ])
        .await
        .unwrap();
    assert_eq!(versions, [3, 1, 1, 2], "new versions, in the order given");
    assert_eq!(
        snapshot(
            &*store,
            &[
                "image:promoted:a",
                "image:promoted:b",
                "image:catalog:a:ami-new",
                "sweep:cursor"
            ]
        )
        .await,
        [
            Some((3, json!("ami-new"))),
            Some((1, json!("ami-new"))),
            Some((1, json!({"promotedAt": 1}))),
            Some((2, json!(8))),
        ]
    );

    // A key's writes apply in the order given: the swap sees the insert before it.
    let versions = store
        .kv_put_many(&[
            KvWrite::insert("z:twice", json!(1)),
            KvWrite::upsert("a:other", json!(0)),
            KvWrite::swap("z:twice", json!(2), 1),
            KvWrite::upsert("z:twice", json!(3)),
        ])
        .await
        .unwrap();
    assert_eq!(versions, [1, 1, 2, 3]);
    assert_eq!(snapshot(&*store, &["z:twice"]).await, [Some((3, json!(3)))]);
}

pub async fn kv_put_many_failure_writes_nothing(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    store.kv_put("k:a", &json!("a1"), None).await.unwrap();
    store.kv_put("k:b", &json!("b1"), None).await.unwrap();
    store.kv_put("k:b", &json!("b2"), Some(1)).await.unwrap();
    let keys = ["k:a", "k:b", "k:new"];
    let before = snapshot(&*store, &keys).await;
    assert_eq!(
        before,
        [Some((1, json!("a1"))), Some((2, json!("b2"))), None]
    );

    let lost_swap = KvWrite::swap("k:b", json!("lost"), 1);
    // The failing write last (after every other one ran), first, and in the middle.
    for batch in [
        vec![
            KvWrite::upsert("k:a", json!("a2")),
            KvWrite::insert("k:new", json!("new")),
            lost_swap.clone(),
        ],
        vec![
            lost_swap.clone(),
            KvWrite::upsert("k:a", json!("a2")),
            KvWrite::insert("k:new", json!("new")),
        ],
        vec![
            KvWrite::insert("k:new", json!("new")),
            lost_swap.clone(),
            KvWrite::upsert("k:a", json!("a2")),
        ],
    ] {
        assert_conflict(store.kv_put_many(&batch).await);
        assert_eq!(snapshot(&*store, &keys).await, before, "{batch:?}");
    }

    // An insert of an existing key and a swap of a missing one fail the batch the same way.
    assert_conflict(
        store
            .kv_put_many(&[
                KvWrite::upsert("k:b", json!("b3")),
                KvWrite::insert("k:a", json!("again")),
            ])
            .await,
    );
    assert_not_found(
        store
            .kv_put_many(&[
                KvWrite::upsert("k:a", json!("a3")),
                KvWrite::swap("k:missing", json!("x"), 1),
            ])
            .await,
    );
    assert_eq!(snapshot(&*store, &keys).await, before);
    assert!(store.kv_get("k:missing").await.unwrap().is_none());

    // The store goes on: the same batch with the right version lands whole.
    store
        .kv_put_many(&[
            KvWrite::upsert("k:a", json!("a2")),
            KvWrite::insert("k:new", json!("new")),
            KvWrite::swap("k:b", json!("b3"), 2),
        ])
        .await
        .unwrap();
    assert_eq!(
        snapshot(&*store, &keys).await,
        [
            Some((2, json!("a2"))),
            Some((3, json!("b3"))),
            Some((1, json!("new")))
        ]
    );
}

pub async fn kv_put_many_empty_batch_writes_nothing(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    assert!(store.kv_put_many(&[]).await.unwrap().is_empty());
    assert!(store.kv_list("", 10).await.unwrap().is_empty());
    store.kv_put("k", &json!(1), None).await.unwrap();
    assert!(store.kv_put_many(&[]).await.unwrap().is_empty());
    assert_eq!(snapshot(&*store, &["k"]).await, [Some((1, json!(1)))]);
}

const KEYS: [&str; 4] = ["promo:a", "promo:b", "promo:c", "promo:d"];
const BATCH_WRITERS: usize = 16;
const ROUNDS: usize = 8;

/// Writers on two replicas upsert every key of [`KEYS`] in one batch each, listing the keys
/// in different orders, while readers list them. Every reader sees the keys of one batch only,
/// every batch lands whole (one version for all its keys), and none fails.
pub async fn racing_kv_batches_never_interleave(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let replica = fx.replica().await;
    let first: Vec<KvWrite> = KEYS.iter().map(|k| KvWrite::insert(*k, json!(0))).collect();
    assert_eq!(store.kv_put_many(&first).await.unwrap(), [1, 1, 1, 1]);

    let writing = Arc::new(AtomicBool::new(true));
    let mut readers = JoinSet::new();
    for reader in [Arc::clone(&store), Arc::clone(&replica)] {
        let writing = Arc::clone(&writing);
        readers.spawn(async move {
            let mut seen = 0_u64;
            while writing.load(Ordering::Acquire) || seen == 0 {
                let rows = reader.kv_list("promo:", 10).await.unwrap();
                let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(keys, KEYS, "every key, in key order");
                assert!(
                    rows.iter().all(|(_, v)| *v == rows[0].1),
                    "a reader saw two batches at once: {rows:?}"
                );
                seen += 1;
                tokio::task::yield_now().await;
            }
            seen
        });
    }

    let barrier = Arc::new(Barrier::new(BATCH_WRITERS));
    let mut writers = JoinSet::new();
    for n in 0..BATCH_WRITERS {
        let own = if n % 2 == 0 { &store } else { &replica };
        let (own, barrier) = (Arc::clone(own), Arc::clone(&barrier));
        writers.spawn(async move {
            barrier.wait().await;
            let mut versions = Vec::new();
            for round in 0..ROUNDS {
                let tag = json!(format!("writer {n} round {round}"));
                let mut batch: Vec<KvWrite> = KEYS
                    .iter()
                    .map(|k| KvWrite::upsert(*k, tag.clone()))
                    .collect();
                batch.rotate_left(n % KEYS.len());
                if n % 3 == 0 {
                    batch.reverse();
                }
                let got = own
                    .kv_put_many(&batch)
                    .await
                    .unwrap_or_else(|e| panic!("writer {n} round {round}: {e}"));
                assert!(
                    got.iter().all(|v| *v == got[0]),
                    "writer {n} round {round}: a batch landed in parts: {got:?}"
                );
                versions.push(got[0]);
            }
            versions
        });
    }
    let mut versions: Vec<i64> = writers.join_all().await.into_iter().flatten().collect();
    writing.store(false, Ordering::Release);
    for seen in readers.join_all().await {
        assert!(seen > 0);
    }

    let total = i64::try_from(BATCH_WRITERS * ROUNDS).unwrap();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (2..=1 + total).collect::<Vec<_>>(),
        "every batch has a version of its own"
    );
    let last = snapshot(&*store, &KEYS).await;
    assert!(
        last.iter().all(|got| *got == last[0]),
        "the keys end with values from one batch: {last:?}"
    );
    assert_eq!(last[0].as_ref().map(|(v, _)| *v), Some(1 + total));
}
