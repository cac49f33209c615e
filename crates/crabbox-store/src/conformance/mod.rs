//! The behaviour every [`Store`] backend must show, as one test per case.
//!
//! A backend's integration tests implement [`Fixture`] (a fresh, empty store per case, and a
//! second handle on the same database as another replica would open it) and expand
//! [`conformance_tests!`](crate::conformance_tests) once, which writes one `#[tokio::test]` per
//! case. Each case asserts what a coordinator calling the store would notice. The fixture is
//! torn down after the case also when the case fails, so databases do not fill up with
//! leftovers.
//!
//! [`bench`] is a small load generator for measuring a backend by hand; it is not a test.

mod accounting;
pub mod bench;
mod kv;
mod kv_batches;
mod leases;
mod races;
mod runs;
mod sample;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Store, StoreError};

pub use accounting::{
    admission_counts_live_and_this_month, lease_counts_by_state, prune_leases_keeps_live_and_recent,
};
pub use kv::{
    kv_list_prefix_is_literal, kv_put_cas_take_delete, leader_is_exclusive, ping_answers,
};
pub use kv_batches::{
    kv_put_many_empty_batch_writes_nothing, kv_put_many_failure_writes_nothing,
    kv_put_many_writes_every_key, racing_kv_batches_never_interleave,
};
pub use leases::{
    due_leases_follow_next_check, lease_insert_existing_conflicts, lease_list_filters_and_order,
    lease_round_trip, lease_update_is_compare_and_swap, live_leases_by_slug_ignore_terminal,
};
pub use races::{
    racing_cas_updates_lose_nothing, racing_inserts_have_one_winner, racing_takes_have_one_winner,
};
pub use runs::{
    attempts_insert_and_compare_and_swap, prune_runs_keeps_running_and_recent,
    run_events_after_and_limit, run_insert_with_first_event,
    run_list_by_lease_finds_runs_of_past_leases, run_list_filters_order_and_pages,
    run_log_round_trips_in_chunks, update_run_is_one_transaction,
};
pub use sample::{T0, full_lease, lease, run};

/// What a backend provides to run the suite.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The store under test; empty when the case starts.
    fn store(&self) -> Arc<dyn Store>;

    /// Another store instance on the same database, opened the way a second coordinator
    /// replica (or process) would open it.
    async fn replica(&self) -> Arc<dyn Store>;

    /// Removes what the fixture created. Runs after every case, passed or failed.
    async fn teardown(&self);
}

/// Runs one case against a fresh fixture and tears the fixture down afterwards, re-raising a
/// failure of the case.
pub async fn run_case<F, C, CF>(fixture: impl Future<Output = F>, case: C)
where
    F: Fixture + 'static,
    C: FnOnce(Arc<dyn Fixture>) -> CF,
    CF: Future<Output = ()> + Send + 'static,
{
    let fixture: Arc<dyn Fixture> = Arc::new(fixture.await);
    let outcome = tokio::spawn(case(Arc::clone(&fixture))).await;
    fixture.teardown().await;
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("case did not finish: {err}"),
        }
    }
}

/// Expands to one `#[tokio::test]` per conformance case. The argument is an expression that
/// evaluates to a future of a [`Fixture`], evaluated once per case:
///
/// ```ignore
/// crabbox_store::conformance_tests!(SqliteFixture::new());
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@cases $fixture;
            lease_round_trip,
            lease_insert_existing_conflicts,
            lease_update_is_compare_and_swap,
            lease_list_filters_and_order,
            live_leases_by_slug_ignore_terminal,
            due_leases_follow_next_check,
            admission_counts_live_and_this_month,
            prune_leases_keeps_live_and_recent,
            lease_counts_by_state,
            attempts_insert_and_compare_and_swap,
            run_insert_with_first_event,
            update_run_is_one_transaction,
            run_log_round_trips_in_chunks,
            run_events_after_and_limit,
            run_list_filters_order_and_pages,
            run_list_by_lease_finds_runs_of_past_leases,
            prune_runs_keeps_running_and_recent,
            kv_put_cas_take_delete,
            kv_list_prefix_is_literal,
            kv_put_many_writes_every_key,
            kv_put_many_failure_writes_nothing,
            kv_put_many_empty_batch_writes_nothing,
            leader_is_exclusive,
            ping_answers,
            racing_cas_updates_lose_nothing,
            racing_inserts_have_one_winner,
            racing_takes_have_one_winner,
            racing_kv_batches_never_interleave,
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::run_case($fixture, $crate::conformance::$case).await;
            }
        )*
    };
}

/// Asserts that a call lost a compare-and-swap or hit an existing key.
#[track_caller]
pub fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Asserts that a call found nothing to update.
#[track_caller]
pub fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("expected not found, got {other:?}"),
    }
}
