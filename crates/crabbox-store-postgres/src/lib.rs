//! The coordinator's shared store: PostgreSQL, for several coordinator replicas on one
//! database. Implements [`crabbox_store::Store`]; this crate owns the SQL, the schema
//! (`migrations/`, applied on connect inside the caller's schema and kept in lockstep with
//! `crabbox-store-sqlite`) and the reconciler's leader lock (a session advisory lock). It does
//! not own the record types or their rules (`crabbox-api`, `crabbox-store`).
//!
//! Every object lives in one schema (default `crabbox`): the migrations create it, and every
//! connection, pooled or not, starts with `search_path` set to it. Writes are single
//! statements or short READ COMMITTED transactions whose compare-and-swap `UPDATE … WHERE
//! version = $n` re-checks the row under its lock, and are retried on serialization failures
//! and deadlocks (SQLSTATE 40001/40P01) up to three attempts.
//!
//! Documents are stored as JSON text, which escapes NUL, so records round-trip exactly; logs
//! are stored as bytes. PostgreSQL text cannot hold NUL at all, so the indexed columns (ids,
//! owners, orgs, slugs, kv keys) and the values compared with them carry U+FFFD in its place:
//! lookups still find what was stored, and `kv_list` returns such keys with U+FFFD.

mod columns;
mod kv;
mod leader;
mod leases;
mod migrate;
mod redact;
mod retry;
mod runs;
mod store;

use std::str::FromStr as _;
use std::time::Duration;

use crabbox_store::StoreError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgPool};

/// The `application_name` every connection reports (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "crabbox-coordinator";

/// How to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Schema holding every table: lowercase letters, digits and `_`, not starting with a
    /// digit, at most 63 characters. Created by the migrations if missing.
    pub schema: String,
    /// Most pooled connections (the leader lock uses one more, outside the pool).
    pub max_connections: u32,
    /// How long a call waits for a pooled connection (and a new connection for its server),
    /// and how long the first connection may take.
    pub acquire_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: "crabbox".to_owned(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A coordinator store in one PostgreSQL schema.
pub struct PgStore {
    pool: PgPool,
    /// For the leader lock's dedicated connection; holds the password, so never printed.
    connect: PgConnectOptions,
    schema: String,
    leader_key: i64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`), creates the
    /// schema if missing and brings it up to date. Errors never contain the URL's password.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        validate_schema(&options.schema)?;
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| {
                StoreError::Backend(format!(
                    "invalid database url {}: {}",
                    redact::url(url),
                    redact::message(url, &e.to_string())
                ))
            })?
            .application_name(APPLICATION_NAME)
            .options([("search_path", options.schema.as_str())]);
        // A pool retries a failing connect until its timeout and then says only that it timed
        // out; one connection first says why (refused, unknown host, wrong password).
        let unreachable = |why: String| {
            StoreError::Backend(format!("could not connect to {}: {why}", redact::url(url)))
        };
        match tokio::time::timeout(options.acquire_timeout, connect.connect()).await {
            Ok(Ok(conn)) => drop(conn.close().await),
            Ok(Err(e)) => return Err(unreachable(redact::message(url, &e.to_string()))),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} ms (--database-connect-timeout-ms)",
                    options.acquire_timeout.as_millis()
                )));
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(|e| {
                StoreError::Backend(format!(
                    "could not connect to {}: {}",
                    redact::url(url),
                    redact::message(url, &e.to_string())
                ))
            })?;
        migrate::run(&pool, &options.schema).await?;
        Ok(Self {
            pool,
            connect,
            leader_key: leader::lock_key(&options.schema),
            schema: options.schema,
        })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

fn validate_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Backend(format!(
            "invalid schema name {schema:?}: use lowercase letters, digits and _ (at most 63, \
             not starting with a digit)"
        )))
    }
}

/// A database failure as the store reports it.
pub(crate) fn backend(e: &sqlx::Error) -> StoreError {
    StoreError::Backend(format!("postgres: {e}"))
}

#[cfg(test)]
mod tests {
    use super::validate_schema;

    #[test]
    fn schema_names_are_plain_lowercase_identifiers() {
        for ok in ["crabbox", "_x", "crabbox_test_01", &"a".repeat(63)] {
            assert!(validate_schema(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "Crabbox",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            &"a".repeat(64),
        ] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }
}
