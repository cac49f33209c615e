//! [`Store`] for [`SqliteStore`]: writes on the writer connection, reads on the readers.

use async_trait::async_trait;
use crabbox_api::coord::{CreateAttempt, Lease, LeaseState, Run, RunEvent, Timestamp};
use crabbox_store::{
    Admission, LeaderGuard, LeaseIndex, LeaseQuery, RunQuery, Store, StoreError, Versioned,
};
use serde_json::Value;

use crate::{SqliteStore, backend, kv, leases, runs};

#[async_trait]
impl Store for SqliteStore {
    async fn insert_lease(&self, lease: &Lease, index: &LeaseIndex) -> Result<i64, StoreError> {
        leases::insert(&mut *self.writer.get().await?, lease, index).await
    }

    async fn get_lease(&self, id: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
        leases::get(&mut *self.reader.get().await?, id).await
    }

    async fn update_lease(
        &self,
        lease: &Lease,
        index: &LeaseIndex,
        expected: i64,
    ) -> Result<i64, StoreError> {
        leases::update(&mut *self.writer.get().await?, lease, index, expected).await
    }

    async fn list_leases(&self, query: &LeaseQuery) -> Result<Vec<Lease>, StoreError> {
        leases::list(&mut *self.reader.get().await?, query).await
    }

    async fn live_leases_by_slug(&self, slug: &str) -> Result<Vec<Versioned<Lease>>, StoreError> {
        leases::live_by_slug(&mut *self.reader.get().await?, slug).await
    }

    async fn due_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Lease>>, StoreError> {
        leases::due(&mut *self.reader.get().await?, now, limit).await
    }

    async fn next_check_at(&self) -> Result<Option<Timestamp>, StoreError> {
        leases::next_check_at(&mut *self.reader.get().await?).await
    }

    async fn admission(
        &self,
        owner: &str,
        org: &str,
        month_start: Timestamp,
    ) -> Result<Admission, StoreError> {
        leases::admission(&mut *self.reader.get().await?, owner, org, month_start).await
    }

    async fn prune_leases(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        leases::prune(&mut *self.writer.get().await?, before, limit).await
    }

    async fn get_attempt(
        &self,
        requested_lease_id: &str,
    ) -> Result<Option<Versioned<CreateAttempt>>, StoreError> {
        kv::get_attempt(&mut *self.reader.get().await?, requested_lease_id).await
    }

    async fn put_attempt(
        &self,
        attempt: &CreateAttempt,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        kv::put_attempt(&mut *self.writer.get().await?, attempt, expected).await
    }

    async fn insert_run(&self, run: &Run, events: &[RunEvent]) -> Result<i64, StoreError> {
        runs::insert(&mut *self.writer.get().await?, run, events).await
    }

    async fn get_run(&self, id: &str) -> Result<Option<Versioned<Run>>, StoreError> {
        runs::get(&mut *self.reader.get().await?, id).await
    }

    async fn update_run(
        &self,
        run: &Run,
        expected: i64,
        events: &[RunEvent],
        log: Option<&str>,
    ) -> Result<i64, StoreError> {
        runs::update(&mut *self.writer.get().await?, run, expected, events, log).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<Run>, StoreError> {
        runs::list(&mut *self.reader.get().await?, query).await
    }

    async fn run_events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, StoreError> {
        runs::events(&mut *self.reader.get().await?, run_id, after, limit).await
    }

    async fn run_log(&self, run_id: &str) -> Result<String, StoreError> {
        runs::log(&mut *self.reader.get().await?, run_id).await
    }

    async fn prune_runs(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError> {
        runs::prune(&mut *self.writer.get().await?, before, limit).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Versioned<Value>>, StoreError> {
        kv::get(&mut *self.reader.get().await?, key).await
    }

    async fn kv_put(
        &self,
        key: &str,
        value: &Value,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        kv::put(&mut *self.writer.get().await?, key, value, expected).await
    }

    async fn kv_take(&self, key: &str) -> Result<Option<Value>, StoreError> {
        kv::take(&mut *self.writer.get().await?, key).await
    }

    async fn kv_delete(&self, key: &str) -> Result<bool, StoreError> {
        kv::delete(&mut *self.writer.get().await?, key).await
    }

    async fn kv_list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Value)>, StoreError> {
        kv::list(&mut *self.reader.get().await?, prefix, limit).await
    }

    async fn try_leader(&self) -> Result<Option<Box<dyn LeaderGuard>>, StoreError> {
        self.leader.try_acquire()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        for connections in [&self.writer, &self.reader] {
            sqlx::Connection::ping(&mut *connections.get().await?)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn lease_counts(&self) -> Result<Vec<(LeaseState, u64)>, StoreError> {
        leases::counts(&mut *self.reader.get().await?).await
    }
}
