//! Versioned single documents: create attempts and the small kv documents, one at a time or
//! several in one transaction.

use crabbox_api::coord::CreateAttempt;
use crabbox_store::codec;
use crabbox_store::{KvPut, KvWrite, StoreError, Versioned};
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{PgPool, Row as _};

use crate::columns::text;
use crate::leases::cas_failure;
use crate::retry::Attempt;

pub(crate) async fn get_attempt(
    pool: &PgPool,
    id: &str,
) -> Attempt<Option<Versioned<CreateAttempt>>> {
    let row = sqlx::query("SELECT version, doc FROM create_attempts WHERE requested_lease_id = $1")
        .bind(text(id))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get(0)?;
    let value = codec::decode(&format!("create attempt {id}"), row.try_get::<&str, _>(1)?)?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn put_attempt(
    pool: &PgPool,
    attempt: &CreateAttempt,
    expected: Option<i64>,
) -> Attempt<i64> {
    let id = text(&attempt.requested_lease_id);
    let key = format!("create attempt {}", attempt.requested_lease_id);
    let doc = codec::encode(&key, attempt)?;
    let Some(expected) = expected else {
        let done = sqlx::query(
            "INSERT INTO create_attempts (requested_lease_id, version, doc) VALUES ($1, 1, $2) \
             ON CONFLICT (requested_lease_id) DO NOTHING",
        )
        .bind(&id)
        .bind(doc)
        .execute(pool)
        .await?;
        return if done.rows_affected() == 1 {
            Ok(1)
        } else {
            Err(StoreError::Conflict(format!("{key} exists")).into())
        };
    };
    let done = sqlx::query(
        "UPDATE create_attempts SET doc = $2, version = version + 1 \
         WHERE requested_lease_id = $1 AND version = $3",
    )
    .bind(&id)
    .bind(doc)
    .bind(expected)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(expected + 1);
    }
    let current: Option<i64> =
        sqlx::query_scalar("SELECT version FROM create_attempts WHERE requested_lease_id = $1")
            .bind(&id)
            .fetch_optional(pool)
            .await?;
    Err(cas_failure(&key, current, expected).into())
}

pub(crate) async fn get(pool: &PgPool, key: &str) -> Attempt<Option<Versioned<Value>>> {
    let row = sqlx::query("SELECT version, doc FROM kv WHERE key = $1")
        .bind(text(key))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get(0)?;
    let value = codec::decode(key, row.try_get::<&str, _>(1)?)?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn put(
    pool: &PgPool,
    key: &str,
    value: &Value,
    expected: Option<i64>,
) -> Attempt<i64> {
    let doc = codec::encode(key, value)?;
    let put = expected.map_or(KvPut::Insert, KvPut::Swap);
    put_one(&mut *pool.acquire().await?, key, &doc, put).await
}

/// Writes every document of `writes` in one transaction on one connection. The rows are
/// written (and so locked) in the order of their stored keys, the same in every batch, so two
/// batches on the same keys wait for each other instead of deadlocking; a key's own writes keep
/// the order given.
pub(crate) async fn put_many(pool: &PgPool, writes: &[KvWrite]) -> Attempt<Vec<i64>> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let docs = writes
        .iter()
        .map(|w| codec::encode(&w.key, &w.value))
        .collect::<Result<Vec<_>, _>>()?;
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by(|&a, &b| text(&writes[a].key).cmp(&text(&writes[b].key)));
    let mut versions = vec![0; writes.len()];
    let mut tx = pool.begin().await?;
    for i in order {
        let write = &writes[i];
        match put_one(&mut tx, &write.key, &docs[i], write.put).await {
            Ok(version) => versions[i] = version,
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        }
    }
    tx.commit().await?;
    Ok(versions)
}

/// One document write on `conn`; returns the new version.
async fn put_one(conn: &mut PgConnection, key: &str, doc: &str, put: KvPut) -> Attempt<i64> {
    match put {
        KvPut::Upsert => Ok(sqlx::query_scalar(
            "INSERT INTO kv (key, version, doc) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET doc = EXCLUDED.doc, version = kv.version + 1 \
             RETURNING version",
        )
        .bind(text(key))
        .bind(doc)
        .fetch_one(&mut *conn)
        .await?),
        KvPut::Insert => {
            let done = sqlx::query(
                "INSERT INTO kv (key, version, doc) VALUES ($1, 1, $2) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(text(key))
            .bind(doc)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 1 {
                Ok(1)
            } else {
                Err(StoreError::Conflict(format!("{key} exists")).into())
            }
        }
        KvPut::Swap(expected) => {
            let done = sqlx::query(
                "UPDATE kv SET doc = $2, version = version + 1 WHERE key = $1 AND version = $3",
            )
            .bind(text(key))
            .bind(doc)
            .bind(expected)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(expected + 1);
            }
            let current: Option<i64> = sqlx::query_scalar("SELECT version FROM kv WHERE key = $1")
                .bind(text(key))
                .fetch_optional(&mut *conn)
                .await?;
            Err(cas_failure(key, current, expected).into())
        }
    }
}

pub(crate) async fn take(pool: &PgPool, key: &str) -> Attempt<Option<Value>> {
    let doc: Option<String> = sqlx::query_scalar("DELETE FROM kv WHERE key = $1 RETURNING doc")
        .bind(text(key))
        .fetch_optional(pool)
        .await?;
    Ok(doc.map(|doc| codec::decode(key, &doc)).transpose()?)
}

pub(crate) async fn delete(pool: &PgPool, key: &str) -> Attempt<bool> {
    let done = sqlx::query("DELETE FROM kv WHERE key = $1")
        .bind(text(key))
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn list(
    pool: &PgPool,
    prefix: &str,
    limit: usize,
) -> Attempt<Vec<(String, Value)>> {
    // A key range over the "C"-collated key (byte order), not LIKE: index-served and with no
    // wildcard to escape.
    let prefix = text(prefix);
    let query = match codec::prefix_upper_bound(&prefix) {
        Some(upper) => sqlx::query(
            "SELECT key, doc FROM kv WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3",
        )
        .bind(prefix.clone())
        .bind(upper),
        None => sqlx::query("SELECT key, doc FROM kv WHERE key >= $1 ORDER BY key LIMIT $2")
            .bind(prefix.clone()),
    };
    let rows = query.bind(codec::sql_limit(limit)).fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let key: String = row.try_get(0)?;
        if !key.starts_with(prefix.as_ref()) {
            break;
        }
        let value = codec::decode(&key, row.try_get::<&str, _>(1)?)?;
        out.push((key, value));
    }
    Ok(out)
}
