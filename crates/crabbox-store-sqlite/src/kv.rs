//! Versioned single documents: create attempts and the small kv documents.

use crabbox_api::coord::CreateAttempt;
use crabbox_store::codec;
use crabbox_store::{StoreError, Versioned};
use serde_json::Value;
use sqlx::{Row as _, SqliteConnection};

use crate::backend;
use crate::leases::cas_failure;

pub(crate) async fn get_attempt(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<Versioned<CreateAttempt>>, StoreError> {
    let row = sqlx::query("SELECT version, doc FROM create_attempts WHERE requested_lease_id = ?1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get(0).map_err(backend)?;
    let value = codec::decode(
        &format!("create attempt {id}"),
        row.try_get::<&str, _>(1).map_err(backend)?,
    )?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn put_attempt(
    conn: &mut SqliteConnection,
    attempt: &CreateAttempt,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    let id = attempt.requested_lease_id.as_str();
    let key = format!("create attempt {id}");
    let doc = codec::encode(&key, attempt)?;
    let Some(expected) = expected else {
        let done = sqlx::query(
            "INSERT INTO create_attempts (requested_lease_id, version, doc) VALUES (?1, 1, ?2) \
             ON CONFLICT (requested_lease_id) DO NOTHING",
        )
        .bind(id)
        .bind(doc)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        return if done.rows_affected() == 1 {
            Ok(1)
        } else {
            Err(StoreError::Conflict(format!("{key} exists")))
        };
    };
    let done = sqlx::query(
        "UPDATE create_attempts SET doc = ?2, version = version + 1 \
         WHERE requested_lease_id = ?1 AND version = ?3",
    )
    .bind(id)
    .bind(doc)
    .bind(expected)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 1 {
        return Ok(expected + 1);
    }
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM create_attempts WHERE requested_lease_id = ?1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    Err(cas_failure(&key, current, expected))
}

pub(crate) async fn get(
    conn: &mut SqliteConnection,
    key: &str,
) -> Result<Option<Versioned<Value>>, StoreError> {
    let row = sqlx::query("SELECT version, doc FROM kv WHERE key = ?1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get(0).map_err(backend)?;
    let value = codec::decode(key, row.try_get::<&str, _>(1).map_err(backend)?)?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn put(
    conn: &mut SqliteConnection,
    key: &str,
    value: &Value,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    let doc = codec::encode(key, value)?;
    let Some(expected) = expected else {
        let done = sqlx::query(
            "INSERT INTO kv (key, version, doc) VALUES (?1, 1, ?2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(doc)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        return if done.rows_affected() == 1 {
            Ok(1)
        } else {
            Err(StoreError::Conflict(format!("{key} exists")))
        };
    };
    let done = sqlx::query(
        "UPDATE kv SET doc = ?2, version = version + 1 WHERE key = ?1 AND version = ?3",
    )
    .bind(key)
    .bind(doc)
    .bind(expected)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 1 {
        return Ok(expected + 1);
    }
    let current: Option<i64> = sqlx::query_scalar("SELECT version FROM kv WHERE key = ?1")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    Err(cas_failure(key, current, expected))
}

pub(crate) async fn take(
    conn: &mut SqliteConnection,
    key: &str,
) -> Result<Option<Value>, StoreError> {
    let doc: Option<String> = sqlx::query_scalar("DELETE FROM kv WHERE key = ?1 RETURNING doc")
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    doc.map(|doc| codec::decode(key, &doc)).transpose()
}

pub(crate) async fn delete(conn: &mut SqliteConnection, key: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM kv WHERE key = ?1")
        .bind(key)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn list(
    conn: &mut SqliteConnection,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(String, Value)>, StoreError> {
    // A key range, not LIKE: LIKE ignores ASCII case in SQLite, and a range is index-served.
    let query = match codec::prefix_upper_bound(prefix) {
        Some(upper) => sqlx::query(
            "SELECT key, doc FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
        )
        .bind(prefix)
        .bind(upper),
        None => sqlx::query("SELECT key, doc FROM kv WHERE key >= ?1 ORDER BY key LIMIT ?2")
            .bind(prefix),
    };
    let rows = query
        .bind(codec::sql_limit(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.try_get(0).map_err(backend)?;
        if !key.starts_with(prefix) {
            break;
        }
        let value = codec::decode(&key, row.try_get::<&str, _>(1).map_err(backend)?)?;
        out.push((key, value));
    }
    Ok(out)
}
