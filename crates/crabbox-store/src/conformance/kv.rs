//! Small-document and coordination cases: kv compare-and-swap, one-shot take, literal prefix
//! listing, the reconciler's leader role, health check.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Fixture, assert_conflict, assert_not_found};
use crate::Store;

pub async fn kv_put_cas_take_delete(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    assert!(store.kv_get("oauth:1").await.unwrap().is_none());
    let doc = json!({"state": "pending", "nul": "a\u{0}b", "nested": {"n": [1, 2.5, null]}});
    assert_eq!(store.kv_put("oauth:1", &doc, None).await.unwrap(), 1);
    assert_conflict(store.kv_put("oauth:1", &json!({}), None).await);
    let got = store.kv_get("oauth:1").await.unwrap().unwrap();
    assert_eq!((got.version, &got.value), (1, &doc));

    let next = json!({"state": "done"});
    assert_eq!(store.kv_put("oauth:1", &next, Some(1)).await.unwrap(), 2);
    assert_conflict(
        store
            .kv_put("oauth:1", &json!({"state": "lost"}), Some(1))
            .await,
    );
    assert_eq!(store.kv_get("oauth:1").await.unwrap().unwrap().value, next);
    assert_not_found(store.kv_put("oauth:missing", &next, Some(1)).await);

    // take is one-shot: the second take finds nothing.
    assert_eq!(store.kv_take("oauth:1").await.unwrap(), Some(next));
    assert_eq!(store.kv_take("oauth:1").await.unwrap(), None);
    assert!(store.kv_get("oauth:1").await.unwrap().is_none());
    // A taken key can be inserted afresh.
    assert_eq!(store.kv_put("oauth:1", &json!(1), None).await.unwrap(), 1);

    assert!(store.kv_delete("oauth:1").await.unwrap());
    assert!(!store.kv_delete("oauth:1").await.unwrap());
    assert!(store.kv_get("oauth:1").await.unwrap().is_none());
}

pub async fn kv_list_prefix_is_literal(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let keys = [
        "a%b:1", "a%b:2", "aXb:1", "a_b:1", "azb:1", "a\\b:1", "a\\\\b:1", "A%b:3", "a%b", "a%c:1",
        "b:1",
    ];
    for (i, key) in keys.iter().enumerate() {
        store.kv_put(key, &json!(i), None).await.unwrap();
    }
    let list = |prefix: &'static str, limit: usize| {
        let store = Arc::clone(&store);
        async move {
            let rows = store.kv_list(prefix, limit).await.unwrap();
            rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list("a%b", 10).await,
        ["a%b", "a%b:1", "a%b:2"],
        "% is literal, key order"
    );
    assert_eq!(list("a_b", 10).await, ["a_b:1"], "_ is literal");
    assert_eq!(list("a\\b", 10).await, ["a\\b:1"], "backslash is literal");
    assert_eq!(list("a%b:", 1).await, ["a%b:1"]);
    assert!(list("a%b:", 0).await.is_empty());
    assert!(list("zzz", 10).await.is_empty());
    assert_eq!(list("", 100).await.len(), keys.len());
    let rows = store.kv_list("a%b:", 10).await.unwrap();
    assert_eq!(
        rows,
        [
            ("a%b:1".to_owned(), json!(0)),
            ("a%b:2".to_owned(), json!(1))
        ]
    );
}

pub async fn leader_is_exclusive(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let replica = fx.replica().await;
    let first = store
        .try_leader()
        .await
        .unwrap()
        .expect("the first try leads");
    assert!(first.is_held());
    assert!(
        replica.try_leader().await.unwrap().is_none(),
        "another replica must not lead"
    );
    assert!(
        store.try_leader().await.unwrap().is_none(),
        "nor a second task of this one"
    );
    drop(first);
    // The role is given up on drop; the lock's connection may close a moment later.
    let second = eventually_leads(&*replica).await;
    assert!(second.is_held());
    assert!(store.try_leader().await.unwrap().is_none());
    drop(second);
    let third = eventually_leads(&*store).await;
    assert!(third.is_held());
}

async fn eventually_leads(store: &dyn Store) -> Box<dyn crate::LeaderGuard> {
    for _ in 0..100 {
        if let Some(guard) = store.try_leader().await.unwrap() {
            return guard;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the leader role was not given up within 5 s of dropping its guard");
}

pub async fn ping_answers(fx: Arc<dyn Fixture>) {
    fx.store().ping().await.unwrap();
    fx.replica().await.ping().await.unwrap();
}
