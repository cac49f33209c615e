//! Retrying writes that PostgreSQL aborted only because of a concurrent one: serialization
//! failures (40001) and deadlocks (40P01). Everything else, including a lost
//! compare-and-swap, is returned as it is.

use std::future::Future;

use crabbox_store::StoreError;

/// Attempts per write, the first included.
const ATTEMPTS: usize = 3;

/// Why one attempt failed: a database error (maybe worth retrying) or a store outcome.
#[derive(Debug)]
pub(crate) enum Failure {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

pub(crate) type Attempt<T> = Result<T, Failure>;

fn retryable(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| code == "40001" || code == "40P01")
}

/// Runs `attempt` until it succeeds, fails for a reason a retry cannot fix, or has been tried
/// [`ATTEMPTS`] times. Each attempt must be a whole transaction (or one statement).
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure::Store(e)) => return Err(e),
            Err(Failure::Sql(e)) if tries < ATTEMPTS && retryable(&e) => {}
            Err(Failure::Sql(e)) => return Err(crate::backend(&e)),
        }
    }
}
