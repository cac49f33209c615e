//! A fixed set of connections, each used by one call at a time.
//!
//! sqlx's pool is not used here: on every release it pings the connection, which for SQLite
//! is one more round trip to the connection's thread per statement, doubling the cost of the
//! small statements the coordinator makes. These connections are opened once and kept.

use std::sync::atomic::{AtomicUsize, Ordering};

use crabbox_store::StoreError;
use sqlx::SqliteConnection;
use tokio::sync::{Mutex, MutexGuard};

#[derive(Debug)]
pub(crate) struct Connections {
    conns: Vec<Mutex<Option<SqliteConnection>>>,
    next: AtomicUsize,
}

/// One connection, exclusively, until dropped.
pub(crate) type Conn<'a> = tokio::sync::MappedMutexGuard<'a, SqliteConnection>;

impl Connections {
    pub(crate) fn new(conns: Vec<SqliteConnection>) -> Self {
        Self {
            conns: conns.into_iter().map(|c| Mutex::new(Some(c))).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// An idle connection if there is one, else the next in turn once it is free.
    pub(crate) async fn get(&self) -> Result<Conn<'_>, StoreError> {
        let n = self.conns.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let guard = match (0..n).find_map(|i| self.conns[(start + i) % n].try_lock().ok()) {
            Some(guard) => guard,
            None => self.conns[start].lock().await,
        };
        MutexGuard::try_map(guard, Option::as_mut)
            .map_err(|_| StoreError::Backend("sqlite: the store is closed".to_owned()))
    }

    /// Closes every connection once its current call is done.
    pub(crate) async fn close(&self) {
        for slot in &self.conns {
            if let Some(conn) = slot.lock().await.take() {
                let _ = sqlx::Connection::close(conn).await;
            }
        }
    }
}
