//! [`Store`] for [`SqliteStore`]: reads inline on the readers, writes on the writer connection
//! (inline when it is idle, else batched by the writer thread).

use async_trait::async_trait;
use crabbox_api::coord::{CreateAttempt, Lease, LeaseState, Run, RunEvent, Timestamp};
use crabbox_store::{
    Admission, KvWrite, LeaderGuard, LeaseIndex, LeaseQuery, RunQuery, Store, StoreError, Versioned,
};
use serde_json::Value;

use crate::{SqliteStore, backend, kv, leases, runs};

#[async_trait]
impl Store for SqliteStore {
    async fn insert_lease(&self, lease: &Lease, index: &LeaseIndex) -> Result<i64, StoreError> {
        leases::insert(&self.db, lease, index).await
    }

    async fn get_lease(&self, id: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
        leases::get(&self.db, id)
    }

    async fn update_lease(
        &self,
        lease: &Lease,
        index: &LeaseIndex,
        expected: i64,
    ) -> Result<i64, StoreError> {
        leases::update(&self.db, lease, index, expected).await
    }

    async fn list_leases(&self, query: &LeaseQuery) -> Result<Vec<Lease>, StoreError> {
        leases::list(&self.db, query)
    }

    async fn live_leases_by_slug(&self, slug: &str) -> Result<Vec<Versioned<Lease>>, StoreError> {
        leases::live_by_slug(&self.db, slug)
    }

    async fn due_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Lease>>, StoreError> {
        leases::due(&self.db, now, limit)
    }

    async fn next_check_at(&self) -> Result<Option<Timestamp>, StoreError> {
        leases::next_check_at(&self.db)
    }

    async fn admission(
        &self,
        owner: &str,
        org: &str,
        month_start: Timestamp,
    ) -> Result<Admission, StoreError> {
        leases::admission(&self.db, owner, org, month_start)
    }

    async fn prune_leases(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        crate::prune(&self.db, leases::PRUNE, before, limit).await
    }

    async fn get_attempt(
        &self,
        requested_lease_id: &str,
    ) -> Result<Option<Versioned<CreateAttempt>>, StoreError> {
        kv::get_attempt(&self.db, requested_lease_id)
    }

    async fn put_attempt(
        &self,
        attempt: &CreateAttempt,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        kv::put_attempt(&self.db, attempt, expected).await
    }

    async fn insert_run(&self, run: &Run, events: &[RunEvent]) -> Result<i64, StoreError> {
        runs::insert(&self.db, run, events).await
    }

    async fn get_run(&self, id: &str) -> Result<Option<Versioned<Run>>, StoreError> {
        runs::get(&self.db, id)
    }

    async fn update_run(
        &self,
        run: &Run,
        expected: i64,
        events: &[RunEvent],
        log: Option<&str>,
    ) -> Result<i64, StoreError> {
        runs::update(&self.db, run, expected, events, log).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<Run>, StoreError> {
        runs::list(&self.db, query)
    }

    async fn run_events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, StoreError> {
        runs::events(&self.db, run_id, after, limit)
    }

    async fn run_log(&self, run_id: &str) -> Result<String, StoreError> {
        runs::log(&self.db, run_id)
    }

    async fn prune_runs(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        crate::prune(&self.db, runs::PRUNE, before, limit).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Versioned<Value>>, StoreError> {
        kv::get(&self.db, key)
    }

    async fn kv_put(
        &self,
        key: &str,
        value: &Value,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        kv::put_value(&self.db, key, value, expected).await
    }

    async fn kv_put_many(&self, writes: &[KvWrite]) -> Result<Vec<i64>, StoreError> {
        kv::put_many(&self.db, writes).await
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Value>, StoreError> {
        kv::take(&self.db, key).await
    }

    async fn kv_delete(&self, key: &str) -> Result<bool, StoreError> {
        kv::delete(&self.db, key).await
    }

    async fn kv_list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        kv::list(&self.db, prefix, limit)
    }

    async fn try_leader(&self) -> Result<Option<Box<dyn LeaderGuard>>, StoreError> {
        self.leader.try_acquire()
    }

    async fn close(&self) {
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(checkpointer);
        // The writer closes last: as the last connection it copies the log back into the
        // database file and removes it.
        self.db.close();
    }

    async fn ping(&self) -> Result<(), StoreError> {
        for conn in self.db.each() {
            conn?
                .prepare_cached("SELECT 1")
                .and_then(|mut stmt| stmt.query_row([], |_| Ok(())))
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn lease_counts(&self) -> Result<Vec<(LeaseState, u64)>, StoreError> {
        leases::counts(&self.db)
    }
}
