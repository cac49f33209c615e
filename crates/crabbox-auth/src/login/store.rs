//! Where pending logins live between start, callback and poll: small JSON documents under
//! `oauth:<loginID>` and `oauth_state:<state>`, changed only by compare-and-swap so that two
//! coordinator replicas (or two browser tabs) cannot both claim one callback.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use crabbox_store::{Store, StoreError};
use serde_json::Value;

/// A storage failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginStoreError {
    /// The document changed since it was read, or an insert found it present.
    #[error("conflict on {0}")]
    Conflict(String),
    /// The document to update is gone.
    #[error("{0} not found")]
    NotFound(String),
    #[error("login storage failed: {0}")]
    Backend(String),
}

/// Versioned JSON documents by key; the `kv_*` part of [`crabbox_store::Store`].
#[async_trait]
pub trait LoginStore: Send + Sync + std::fmt::Debug {
    /// The document and its version.
    async fn get(&self, key: &str) -> Result<Option<(Value, i64)>, LoginStoreError>;
    /// Inserts (`expected = None`; `Conflict` if present) or compare-and-swaps; returns the new
    /// version.
    async fn put(
        &self,
        key: &str,
        value: &Value,
        expected: Option<i64>,
    ) -> Result<i64, LoginStoreError>;
    /// Atomically reads and deletes.
    async fn take(&self, key: &str) -> Result<Option<Value>, LoginStoreError>;
    async fn delete(&self, key: &str) -> Result<bool, LoginStoreError>;
    /// Documents whose key starts with `prefix`, in key order, at most `limit`.
    async fn list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, LoginStoreError>;
}

/// An in-memory [`LoginStore`] for tests and single-process use.
#[derive(Debug, Default, Clone)]
pub struct MemoryLoginStore {
    docs: Arc<Mutex<BTreeMap<String, (Value, i64)>>>,
}

impl MemoryLoginStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many documents are stored (tests assert that logins clean up after themselves).
    pub fn len(&self) -> usize {
        self.docs.lock().expect("store lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored document, for tests that look for leaked secrets.
    pub fn dump(&self) -> Vec<(String, Value)> {
        let docs = self.docs.lock().expect("store lock");
        docs.iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

#[async_trait]
impl LoginStore for MemoryLoginStore {
    async fn get(&self, key: &str) -> Result<Option<(Value, i64)>, LoginStoreError> {
        Ok(self.docs.lock().expect("store lock").get(key).cloned())
    }

    async fn put(
        &self,
        key: &str,
        value: &Value,
        expected: Option<i64>,
    ) -> Result<i64, LoginStoreError> {
        let mut docs = self.docs.lock().expect("store lock");
        let current = docs.get(key).map(|(_, v)| *v);
        let next = match (current, expected) {
            (None, None) => 1,
            (Some(have), Some(want)) if have == want => have + 1,
            (None, Some(_)) => return Err(LoginStoreError::NotFound(key.to_owned())),
            _ => return Err(LoginStoreError::Conflict(key.to_owned())),
        };
        docs.insert(key.to_owned(), (value.clone(), next));
        Ok(next)
    }

    async fn take(&self, key: &str) -> Result<Option<Value>, LoginStoreError> {
        Ok(self
            .docs
            .lock()
            .expect("store lock")
            .remove(key)
            .map(|(v, _)| v))
    }

    async fn delete(&self, key: &str) -> Result<bool, LoginStoreError> {
        Ok(self.docs.lock().expect("store lock").remove(key).is_some())
    }

    async fn list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, LoginStoreError> {
        let docs = self.docs.lock().expect("store lock");
        Ok(docs
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect())
    }
}

/// A [`LoginStore`] over the coordinator's [`Store`].
#[derive(Debug, Clone)]
pub struct StoreLoginStore(pub Arc<dyn Store>);

fn from_store(error: StoreError) -> LoginStoreError {
    match error {
        StoreError::Conflict(key) => LoginStoreError::Conflict(key),
        StoreError::NotFound(key) => LoginStoreError::NotFound(key),
        other => LoginStoreError::Backend(other.to_string()),
    }
}

#[async_trait]
impl LoginStore for StoreLoginStore {
    async fn get(&self, key: &str) -> Result<Option<(Value, i64)>, LoginStoreError> {
        let doc = self.0.kv_get(key).await.map_err(from_store)?;
        Ok(doc.map(|d| (d.value, d.version)))
    }

    async fn put(
        &self,
        key: &str,
        value: &Value,
        expected: Option<i64>,
    ) -> Result<i64, LoginStoreError> {
        self.0
            .kv_put(key, value, expected)
            .await
            .map_err(from_store)
    }

    async fn take(&self, key: &str) -> Result<Option<Value>, LoginStoreError> {
        self.0.kv_take(key).await.map_err(from_store)
    }

    async fn delete(&self, key: &str) -> Result<bool, LoginStoreError> {
        self.0.kv_delete(key).await.map_err(from_store)
    }

    async fn list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, LoginStoreError> {
        self.0.kv_list(prefix, limit).await.map_err(from_store)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn memory_store_is_compare_and_swap() {
        let s = MemoryLoginStore::new();
        assert_eq!(s.put("oauth:a", &json!(1), None).await, Ok(1));
        assert_eq!(
            s.put("oauth:a", &json!(2), None).await,
            Err(LoginStoreError::Conflict("oauth:a".into()))
        );
        assert_eq!(s.put("oauth:a", &json!(2), Some(1)).await, Ok(2));
        assert_eq!(
            s.put("oauth:a", &json!(3), Some(1)).await,
            Err(LoginStoreError::Conflict("oauth:a".into()))
        );
        assert_eq!(
            s.put("oauth:zz", &json!(3), Some(1)).await,
            Err(LoginStoreError::NotFound("oauth:zz".into()))
        );
        s.put("oauth:b", &json!(3), None).await.unwrap();
        s.put("oauth_state:x", &json!("a"), None).await.unwrap();
        let listed = s.list("oauth:", 10).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(s.list("oauth:", 1).await.unwrap().len(), 1);
        assert_eq!(s.take("oauth:a").await.unwrap(), Some(json!(2)));
        assert_eq!(s.take("oauth:a").await.unwrap(), None);
        assert!(s.delete("oauth:b").await.unwrap());
        assert!(!s.delete("oauth:b").await.unwrap());
        assert_eq!(s.len(), 1);
    }
}
