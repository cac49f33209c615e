//! Coordinator storage behind one trait. Records are the `/v1` wire documents
//! (`crabbox_api::coord`); backends keep the full JSON document plus the few indexed columns the
//! coordinator queries by (id, owner, org, state, slug, created/expiry times, next check time).
//!
//! Every state change is a compare-and-swap on a per-record `version`, so several coordinator
//! replicas on one database never overwrite each other's changes: a caller reads a
//! [`Versioned`] record, computes the new record, and writes it back with the version it read;
//! a lost race returns [`StoreError::Conflict`] and the caller re-reads and decides again.
//! No call takes a global lock, and the cost of a call does not grow with the number of stored
//! leases (every query is served by an index and bounded by a limit).
//!
//! Backends: `crabbox-store-sqlite` (default, one process) and `crabbox-store-postgres`
//! (several replicas). [`codec`] holds the pieces both share (document encoding, log chunking,
//! prefix ranges); the `conformance` feature adds the test suite every backend runs.
//! This crate owns no SQL and no connection handling.

pub mod codec;
#[cfg(feature = "conformance")]
pub mod conformance;

use async_trait::async_trait;
use crabbox_api::coord::{CreateAttempt, Lease, LeaseState, Run, RunEvent, RunState, Timestamp};

/// A record with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: i64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The record changed since it was read (CAS lost) or an insert hit an existing key.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The record to update does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A stored document could not be decoded.
    #[error("corrupt record {key}: {message}")]
    Corrupt { key: String, message: String },
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Backend(String),
    /// The database's own structure is damaged (a file that fails its integrity check): no
    /// retry helps; it has to be restored. The message names the database and what is wrong.
    #[error("damaged database: {0}")]
    Damaged(String),
}

/// Filters for listing leases; results newest `createdAt` first. `limit` is the most rows
/// returned (0 returns none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeaseQuery {
    pub states: Vec<LeaseState>,
    pub provider: Option<String>,
    pub owner: Option<String>,
    /// Exact stored org key.
    pub org: Option<String>,
    /// Only leases created at or after this instant.
    pub created_since: Option<Timestamp>,
    /// Only leases created before this instant.
    pub created_before: Option<Timestamp>,
    pub limit: usize,
}

/// Filters for listing runs; results newest `startedAt` first (ties: larger id first). `limit`
/// is the most rows returned (0 returns none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    /// Runs that ran on this lease: an id in their `leaseIDs`, or a slug the run has had, so
    /// that a run that moved to a replacement lease is found by every lease it ran on.
    pub lease: Option<String>,
    pub owner: Option<String>,
    pub org: Option<String>,
    pub state: Option<RunState>,
    /// Keyset pagination: only runs that sort after this `(startedAt, id)`.
    pub before: Option<(Timestamp, String)>,
    pub limit: usize,
}

/// Active-lease counts and reserved spend, for admission (spec §4.7). Counts *managed* leases
/// only: live ones regardless of month, plus spend of terminal ones created since
/// `month_start`, which must be the first instant of a UTC month (backends keep terminal spend
/// per creation month, so a request costs the same however many leases are stored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    pub active_total: u64,
    pub active_owner: u64,
    pub active_org: u64,
    pub reserved_usd_total: f64,
    pub reserved_usd_owner: f64,
    pub reserved_usd_org: f64,
}

/// The indexed columns of a lease, derived from the record by the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseIndex {
    /// When the reconciler must next look at this lease (expiry, retry, claim deadline);
    /// `None` when nothing is pending.
    pub next_check_at: Option<Timestamp>,
}

/// How one write of [`Store::kv_put_many`] treats what its key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvPut {
    /// Creates the key at version 1, or replaces whatever it holds and bumps its version: for
    /// a document whose newest write wins (an image promotion replaces the one before).
    Upsert,
    /// Creates the key at version 1; `Conflict` if it exists.
    Insert,
    /// Replaces the document if its stored version is still this one; `Conflict` when the
    /// version moved, `NotFound` when the key is gone.
    Swap(i64),
}

/// One document of a [`Store::kv_put_many`] batch.
#[derive(Debug, Clone, PartialEq)]
pub struct KvWrite {
    pub key: String,
    pub value: serde_json::Value,
    pub put: KvPut,
}

impl KvWrite {
    pub fn upsert(key: impl Into<String>, value: serde_json::Value) -> Self {
        Self {
            key: key.into(),
            value,
            put: KvPut::Upsert,
        }
    }

    pub fn insert(key: impl Into<String>, value: serde_json::Value) -> Self {
        Self {
            key: key.into(),
            value,
            put: KvPut::Insert,
        }
    }

    pub fn swap(key: impl Into<String>, value: serde_json::Value, expected: i64) -> Self {
        Self {
            key: key.into(),
            value,
            put: KvPut::Swap(expected),
        }
    }
}

/// The storage every coordinator backend implements.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // ---- leases -------------------------------------------------------------------------

    /// Inserts a new lease at version 1; `Conflict` if the id exists.
    async fn insert_lease(&self, lease: &Lease, index: &LeaseIndex) -> Result<i64, StoreError>;

    async fn get_lease(&self, id: &str) -> Result<Option<Versioned<Lease>>, StoreError>;

    /// Writes `lease` if its stored version is still `expected`; returns the new version.
    /// `Conflict` when the version moved, `NotFound` when the lease is gone.
    async fn update_lease(
        &self,
        lease: &Lease,
        index: &LeaseIndex,
        expected: i64,
    ) -> Result<i64, StoreError>;

    async fn list_leases(&self, query: &LeaseQuery) -> Result<Vec<Lease>, StoreError>;

    /// Live leases (`provisioning`/`active`) whose slug equals `slug` exactly.
    async fn live_leases_by_slug(&self, slug: &str) -> Result<Vec<Versioned<Lease>>, StoreError>;

    /// Leases whose `next_check_at <= now`, soonest first, at most `limit`.
    async fn due_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Versioned<Lease>>, StoreError>;

    /// The soonest `next_check_at` over all leases.
    async fn next_check_at(&self) -> Result<Option<Timestamp>, StoreError>;

    /// Counts for admission control (see [`Admission`]); `month_start` is the first instant
    /// of the current UTC month.
    async fn admission(
        &self,
        owner: &str,
        org: &str,
        month_start: Timestamp,
    ) -> Result<Admission, StoreError>;

    /// Deletes terminal leases that ended before `before`; returns how many were deleted.
    async fn prune_leases(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError>;

    // ---- create attempts (spec §4.3) ----------------------------------------------------

    async fn get_attempt(
        &self,
        requested_lease_id: &str,
    ) -> Result<Option<Versioned<CreateAttempt>>, StoreError>;

    /// Inserts (`expected = None`, `Conflict` if present) or compare-and-swaps an attempt.
    async fn put_attempt(
        &self,
        attempt: &CreateAttempt,
        expected: Option<i64>,
    ) -> Result<i64, StoreError>;

    // ---- runs ---------------------------------------------------------------------------

    /// Inserts a new run at version 1 together with its first events; `Conflict` if the id
    /// exists.
    async fn insert_run(&self, run: &Run, events: &[RunEvent]) -> Result<i64, StoreError>;

    async fn get_run(&self, id: &str) -> Result<Option<Versioned<Run>>, StoreError>;

    /// Compare-and-swaps the run and, in the same transaction, inserts `events` (whose `seq`
    /// values the caller assigned from the run's `eventCount`) and, when `log` is given,
    /// replaces the run's stored log.
    async fn update_run(
        &self,
        run: &Run,
        expected: i64,
        events: &[RunEvent],
        log: Option<&str>,
    ) -> Result<i64, StoreError>;

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<Run>, StoreError>;

    /// Events with `seq > after`, ascending, at most `limit`.
    async fn run_events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RunEvent>, StoreError>;

    /// The stored log (empty when none).
    async fn run_log(&self, run_id: &str) -> Result<String, StoreError>;

    /// Deletes terminal runs (with events and logs) whose end (`endedAt`, else `lastEventAt`,
    /// else `startedAt`; spec §4.10) is before `before`, at most `limit`; returns how many.
    async fn prune_runs(&self, before: Timestamp, limit: usize) -> Result<u64, StoreError>;

    // ---- small documents (oauth logins, sweeps, cursors) ------------------------------

    async fn kv_get(&self, key: &str) -> Result<Option<Versioned<serde_json::Value>>, StoreError>;

    /// Inserts (`expected = None`) or compare-and-swaps a document.
    async fn kv_put(
        &self,
        key: &str,
        value: &serde_json::Value,
        expected: Option<i64>,
    ) -> Result<i64, StoreError>;

    /// Writes every document of `writes` in one transaction, all or nothing, and returns their
    /// new versions in the order given. A write that cannot be made (an `Insert` of an existing
    /// key, a `Swap` that lost) fails the whole batch with that write's error and leaves every
    /// key as it was; when several would fail, which one the error names is unspecified.
    /// Writes to one key apply in the order given, so a key may appear more than once. Readers
    /// and other batches see a batch whole or not at all. An empty batch writes nothing.
    async fn kv_put_many(&self, writes: &[KvWrite]) -> Result<Vec<i64>, StoreError>;

    /// Atomically reads and deletes (one-time tickets).
    async fn kv_take(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError>;

    async fn kv_delete(&self, key: &str) -> Result<bool, StoreError>;

    /// Keys with this prefix in key order (`%`, `_` and `\` in the prefix match literally), at
    /// most `limit` (0 returns none). The rows come from one consistent read: a
    /// [`kv_put_many`](Self::kv_put_many) batch is in it whole or not at all.
    async fn kv_list(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError>;

    // ---- coordination -------------------------------------------------------------------

    /// Tries to become the one replica that runs the reconciler. The returned guard holds the
    /// role until dropped (PostgreSQL: a session advisory lock on a dedicated connection;
    /// SQLite: an exclusive file lock next to the database). `None` while another guard, in
    /// this process or another, holds it. Giving the role up on drop may finish shortly after
    /// the drop returns (the lock's connection is closed in the background).
    async fn try_leader(&self) -> Result<Option<Box<dyn LeaderGuard>>, StoreError>;

    /// `select 1`-style health check for `/v1/ready`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Counts for `/metrics`: leases (managed and registered) by state, every state listed
    /// once in [`LeaseState::ALL`] order, zero counts included.
    async fn lease_counts(&self) -> Result<Vec<(LeaseState, u64)>, StoreError>;

    /// Closes the store once its running calls are done; later calls fail. What the database
    /// keeps beside its data is finished first (SQLite: the write-ahead log is copied back and
    /// removed, so the file alone holds every commit).
    async fn close(&self);
}

/// Holds the reconciler role; dropping it gives the role up.
pub trait LeaderGuard: Send + Sync + std::fmt::Debug {
    /// Whether the role is still held (the connection holding it is alive).
    fn is_held(&self) -> bool;
}
