//! The schema: `migrations/*.sql`, embedded at build time and applied on connect inside the
//! coordinator's schema. Migration names and numbers match `crabbox-store-sqlite/migrations`
//! one for one.

use std::borrow::Cow;

use crabbox_store::StoreError;
use sqlx::PgPool;
use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

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

/// Creates `schema` if missing and applies what is not applied yet. Concurrent replicas
/// serialize on the migrator's advisory lock; the bookkeeping table lives in the schema too.
pub(crate) async fn run(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
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
    let mut migrator = Migrator::with_migrations(migrations);
    // The schema name was validated as a plain lowercase identifier.
    migrator.create_schema(schema.to_owned());
    migrator.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
    migrator.run(pool).await.map_err(|e| {
        StoreError::Backend(format!("postgres migration of schema {schema} failed: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    fn files(dir: &str) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        files
    }

    #[test]
    fn embedded_list_matches_the_migrations_directory() {
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, d, _)| format!("{v:04}_{d}.sql"))
            .collect();
        assert_eq!(
            files(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
            embedded
        );
    }

    #[test]
    fn migrations_are_in_lockstep_with_sqlite() {
        assert_eq!(
            files(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")),
            files(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../crabbox-store-sqlite/migrations"
            )),
            "both backends need the same migration names and numbers"
        );
    }
}
