//! The schema: `migrations/*.sql`, embedded at build time and applied on open. Migration
//! names and numbers match `crabbox-store-postgres/migrations` one for one.

use std::borrow::Cow;
use std::path::Path;

use crabbox_store::StoreError;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{SqlSafeStr as _, SqliteConnection};

/// `(version, description, sql)`; the file is `migrations/<version:04>_<description>.sql`.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "coordinator",
    include_str!("../migrations/0001_coordinator.sql"),
)];

fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator::with_migrations(migrations)
}

fn failed(e: &sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Backend(format!("sqlite migration failed: {e}"))
}

/// Migrates the database file through a connection of its own.
pub(crate) async fn run(options: SqliteConnectOptions, path: &Path) -> Result<(), StoreError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| crate::opening(path, &e))?;
    let outcome = migrator().run(&pool).await.map_err(|e| failed(&e));
    pool.close().await;
    outcome
}

/// Migrates through `conn` (the in-memory database exists only on its one connection).
pub(crate) async fn run_on(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    migrator().run(conn).await.map_err(|e| failed(&e))
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
}
