//! The reconciler's leader role on PostgreSQL: a session advisory lock
//! (`pg_try_advisory_lock`) held on a dedicated connection outside the pool. A background task
//! pings that connection; when the ping fails the role is reported lost (the server drops a
//! session's locks when the session ends). Dropping the guard unlocks and closes the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crabbox_store::{LeaderGuard, StoreError};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection as _, Executor as _};
use tokio::sync::oneshot;

/// How often the lock's connection is checked.
const PING_EVERY: Duration = Duration::from_secs(1);

/// The advisory lock key of a schema's reconciler: FNV-1a (64 bit) of a fixed tag and the
/// schema, so coordinators on different schemas of one database never contend.
pub(crate) fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"crabbox-reconciler:".iter().chain(schema.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

pub(crate) async fn try_acquire(
    options: &PgConnectOptions,
    key: i64,
) -> Result<Option<Box<dyn LeaderGuard>>, StoreError> {
    let mut conn = PgConnection::connect_with(options)
        .await
        .map_err(|e| crate::backend(&e))?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| crate::backend(&e))?;
    if !locked {
        let _ = conn.close().await;
        return Ok(None);
    }
    let held = Arc::new(AtomicBool::new(true));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(hold(conn, key, Arc::clone(&held), stopped));
    Ok(Some(Box::new(PgLeaderGuard { held, _stop: stop })))
}

/// Keeps the lock's connection, checking it until the guard is dropped, then unlocks.
async fn hold(
    mut conn: PgConnection,
    key: i64,
    held: Arc<AtomicBool>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut ticks = tokio::time::interval(PING_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            _ = ticks.tick() => {
                if conn.execute("SELECT 1").await.is_err() {
                    held.store(false, Ordering::Release);
                    return;
                }
            }
        }
    }
    held.store(false, Ordering::Release);
    // Closing the session releases the lock too; unlocking first makes it immediate even if
    // the close is slow.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}

/// Dropping it drops the sender, which stops [`hold`].
#[derive(Debug)]
struct PgLeaderGuard {
    held: Arc<AtomicBool>,
    _stop: oneshot::Sender<()>,
}

impl LeaderGuard for PgLeaderGuard {
    fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn keys_differ_per_schema_and_stay_stable() {
        assert_eq!(lock_key("crabbox"), lock_key("crabbox"));
        assert_ne!(lock_key("crabbox"), lock_key("crabbox2"));
    }
}
