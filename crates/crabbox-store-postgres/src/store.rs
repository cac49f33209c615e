//! [`Store`] for [`PgStore`]: every call on the pool, writes retried on serialization
//! failures and deadlocks.

use async_trait::async_trait;
use crabbox_api::coord::{CreateAttempt, Lease, LeaseState, Run, RunEvent, Timestamp};
use crabbox_store::{
    Admission, KvWrite, LeaderGuard, LeaseIndex, LeaseQuery, RunQuery, Store, StoreError, Versioned,
};
use serde_json::Value;

use crate::retry::retrying;
use crate::{PgStore, backend, kv, leader, leases, runs};

#[async_trait]
impl Store for PgStore {
    async fn insert_lease(&self, lease: &Lease, index: &LeaseIndex) -> Result<i64, StoreError> {
        retrying(|| leases::insert(&self.pool, lease, index)).await
    }

    async fn get_lease(&self, id: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
        retrying(|| leases::get(&self.pool, id)).await
    }

    async fn update_lease(
        &self,
        lease: &Lease,
        index: &LeaseIndex,
        expected: i64,
    ) -> Result<i64, StoreError> {
        retrying(|| leases::update(&self.pool, lease, index, expected)).await
    }

    async fn list_leases(&self, query: &LeaseQuery) -> Result<Vec<Lease>, StoreError> {
        retrying(|| leases::list(&self.pool, query)).await
    }

    async fn live_leases_by_slug(&self, slug: &str) -> Result<Vec<Versioned<Lease>>, StoreError> {
        retrying(|| leases::live_by_slug(&self.pool, slug)).await
    }

    async fn due_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Lease>>, StoreError> {
        retrying(|| leases::due(&self.pool, now, limit)).await
    }

    async fn next_check_at(&self) -> Result<Option<Timestamp>, StoreError> {
        retrying(|| leases::next_check_at(&self.pool)).await
    }

    async fn admission(
        &self,
        owner: &str,
        org: &str,
        month_start: Timestamp,
    ) -> Result<Admission, StoreError> {
        retrying(|| leases::admission(&self.pool, owner, org, month_start)).await
    }

    async fn prune_leases(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        retrying(|| leases::prune(&self.pool, before, limit)).await
    }

    async fn get_attempt(
        &self,
        requested_lease_id: &str,
    ) -> Result<Option<Versioned<CreateAttempt>>, StoreError> {
        retrying(|| kv::get_attempt(&self.pool, requested_lease_id)).await
    }

    async fn put_attempt(
        &self,
        attempt: &CreateAttempt,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        retrying(|| kv::put_attempt(&self.pool, attempt, expected)).await
    }

    async fn insert_run(&self, run: &Run, events: &[RunEvent]) -> Result<i64, StoreError> {
        retrying(|| runs::insert(&self.pool, run, events)).await
    }

    async fn get_run(&self, id: &str) -> Result<Option<Versioned<Run>>, StoreError> {
        retrying(|| runs::get(&self.pool, id)).await
    }

    async fn update_run(
        &self,
        run: &Run,
        expected: i64,
        events: &[RunEvent],
        log: Option<&str>,
    ) -> Result<i64, StoreError> {
        retrying(|| runs::update(&self.pool, run, expected, events, log)).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<Run>, StoreError> {
        retrying(|| runs::list(&self.pool, query)).await
    }

    async fn run_events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, StoreError> {
        retrying(|| runs::events(&self.pool, run_id, after, limit)).await
    }

    async fn run_log(&self, run_id: &str) -> Result<String, StoreError> {
        retrying(|| runs::log(&self.pool, run_id)).await
    }

    async fn prune_runs(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        retrying(|| runs::prune(&self.pool, before, limit)).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Versioned<Value>>, StoreError> {
        retrying(|| kv::get(&self.pool, key)).await
    }

    async fn kv_put(
        &self,
        key: &str,
        value: &Value,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        retrying(|| kv::put(&self.pool, key, value, expected)).await
    }

    async fn kv_put_many(&self, writes: &[KvWrite]) -> Result<Vec<i64>, StoreError> {
        retrying(|| kv::put_many(&self.pool, writes)).await
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Value>, StoreError> {
        retrying(|| kv::take(&self.pool, key)).await
    }

    async fn kv_delete(&self, key: &str) -> Result<bool, StoreError> {
        retrying(|| kv::delete(&self.pool, key)).await
    }

    async fn kv_list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        retrying(|| kv::list(&self.pool, prefix, limit)).await
    }

    async fn try_leader(&self) -> Result<Option<Box<dyn LeaderGuard>>, StoreError> {
        leader::try_acquire(&self.connect, self.leader_key).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(|e| backend(&e))?;
        Ok(())
    }

    async fn lease_counts(&self) -> Result<Vec<(LeaseState, u64)>, StoreError> {
        retrying(|| leases::counts(&self.pool)).await
    }
}
