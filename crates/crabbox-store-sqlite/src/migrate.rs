//! The schema: `migrations/*.sql`, embedded at build time and applied on open. Migration
//! names and numbers match `crabbox-store-postgres/migrations` one for one.
//!
//! Applied migrations are recorded in `_migrations`. Checking and applying happen in one
//! `BEGIN IMMEDIATE` transaction, which takes the database's write lock first: a second process
//! opening the same new file waits for the first (up to the busy timeout) and then finds
//! everything applied, so each migration runs exactly once.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior};

use crabbox_store::StoreError;

/// `(version, description, sql)`; the file is `migrations/<version:04>_<description>.sql`.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "coordinator",
        include_str!("../migrations/0001_coordinator.sql"),
    ),
    (
        2,
        "run_leases",
        include_str!("../migrations/0002_run_leases.sql"),
    ),
];

const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS _migrations (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

/// Databases written before this crate applied its own migrations kept sqlx's table; what it
/// records as applied counts as applied.
const ADOPT_SQLX: &str = "INSERT OR IGNORE INTO _migrations (version, description, applied_at) \
     SELECT version, description, installed_on FROM _sqlx_migrations WHERE success";

/// Applies every migration not applied yet.
pub(crate) fn run(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed)?;
    tx.execute_batch(BOOKKEEPING).map_err(failed)?;
    let sqlx_table: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(failed)?;
    if sqlx_table.is_some() {
        tx.execute(ADOPT_SQLX, []).map_err(failed)?;
    }
    let applied: Vec<i64> = tx
        .prepare("SELECT version FROM _migrations ORDER BY version")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .map_err(failed)?;
    if let Some(unknown) = applied
        .iter()
        .find(|v| !MIGRATIONS.iter().any(|(known, _, _)| known == *v))
    {
        return Err(StoreError::Backend(format!(
            "sqlite migration failed: the database has migration {unknown}, which this build \
             does not know (was it written by a newer crabbox?)"
        )));
    }
    for &(version, description, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tx.execute_batch(sql)
            .and_then(|()| {
                tx.execute(
                    "INSERT INTO _migrations (version, description, applied_at) \
                     VALUES (?1, ?2, datetime('now'))",
                    (version, description),
                )
            })
            .map_err(|e| {
                StoreError::Backend(format!(
                    "sqlite migration {version:04}_{description} failed: {e}"
                ))
            })?;
    }
    tx.commit().map_err(failed)
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "by value so that it reads `.map_err(failed)`"
)]
fn failed(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("sqlite migration failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    #[test]
    fn embedded_list_matches_the_migrations_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, d, _)| format!("{v:04}_{d}.sql"))
            .collect();
        assert_eq!(files, embedded);
    }

    #[test]
    fn migrating_twice_applies_nothing_the_second_time() {
        let mut conn = crate::conn::open_memory().unwrap();
        super::run(&mut conn).unwrap();
        super::run(&mut conn).unwrap();
        let applied: i64 = conn
            .query_row("SELECT count(*) FROM _migrations", [], |row| row.get(0))
            .unwrap();
        assert_eq!(applied, i64::try_from(MIGRATIONS.len()).unwrap());
    }
}
