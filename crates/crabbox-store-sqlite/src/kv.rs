//! Versioned single documents: create attempts and the small kv documents, one at a time or
//! several in one transaction.

use crabbox_api::coord::CreateAttempt;
use crabbox_store::codec;
use crabbox_store::{KvPut, KvWrite, StoreError, Versioned};
use rusqlite::{Connection, OptionalExtension as _};
use serde_json::Value;

use crate::backend;
use crate::conn::Connections;
use crate::leases::{cas_failure, version_of};
use crate::writer::all_or_nothing;

/// `(version, doc)` of the row `sql` finds by `id`.
fn read(db: &Connections, sql: &str, id: &str) -> Result<Option<(i64, String)>, StoreError> {
    db.point_reader()?
        .prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(backend)
}

/// The statements of one kind of versioned document.
struct Table {
    get: &'static str,
    insert: &'static str,
    update: &'static str,
    version: &'static str,
}

const ATTEMPTS: Table = Table {
    get: "SELECT version, doc FROM create_attempts WHERE requested_lease_id = ?1",
    insert: "INSERT INTO create_attempts (requested_lease_id, version, doc) VALUES (?1, 1, ?2) \
             ON CONFLICT (requested_lease_id) DO NOTHING",
    update: "UPDATE create_attempts SET doc = ?2, version = version + 1 \
             WHERE requested_lease_id = ?1 AND version = ?3",
    version: "SELECT version FROM create_attempts WHERE requested_lease_id = ?1",
};

const KV: Table = Table {
    get: "SELECT version, doc FROM kv WHERE key = ?1",
    insert: "INSERT INTO kv (key, version, doc) VALUES (?1, 1, ?2) ON CONFLICT (key) DO NOTHING",
    update: "UPDATE kv SET doc = ?2, version = version + 1 WHERE key = ?1 AND version = ?3",
    version: "SELECT version FROM kv WHERE key = ?1",
};

/// Creates a kv document at version 1 or replaces it, bumping its version.
const UPSERT: &str = "INSERT INTO kv (key, version, doc) VALUES (?1, 1, ?2) \
     ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, version = kv.version + 1 \
     RETURNING version";

/// Inserts (`expected` `None`) or compares and swaps the document `doc` under `id`.
async fn put(
    db: &Connections,
    table: &'static Table,
    key: String,
    id: String,
    doc: String,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    db.write(move |conn| match expected {
        None => insert(conn, table, &key, &id, &doc),
        Some(expected) => swap(conn, table, &key, &id, &doc, expected),
    })
    .await
}

/// Inserts `doc` under `id` at version 1; `Conflict` if `id` exists.
fn insert(
    conn: &Connection,
    table: &Table,
    key: &str,
    id: &str,
    doc: &str,
) -> Result<i64, StoreError> {
    let inserted = conn
        .prepare_cached(table.insert)
        .and_then(|mut stmt| stmt.execute((id, doc)))
        .map_err(backend)?;
    if inserted == 1 {
        Ok(1)
    } else {
        Err(StoreError::Conflict(format!("{key} exists")))
    }
}

/// Replaces the document under `id` if it is still at version `expected`.
fn swap(
    conn: &Connection,
    table: &Table,
    key: &str,
    id: &str,
    doc: &str,
    expected: i64,
) -> Result<i64, StoreError> {
    let updated = conn
        .prepare_cached(table.update)
        .and_then(|mut stmt| stmt.execute((id, doc, expected)))
        .map_err(backend)?;
    if updated == 1 {
        return Ok(expected + 1);
    }
    let current = version_of(conn, table.version, id)?;
    Err(cas_failure(key, current, expected))
}

pub(crate) fn get_attempt(
    db: &Connections,
    id: &str,
) -> Result<Option<Versioned<CreateAttempt>>, StoreError> {
    let Some((version, doc)) = read(db, ATTEMPTS.get, id)? else {
        return Ok(None);
    };
    let value = codec::decode(&format!("create attempt {id}"), &doc)?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn put_attempt(
    db: &Connections,
    attempt: &CreateAttempt,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    let id = attempt.requested_lease_id.clone();
    let key = format!("create attempt {id}");
    let doc = codec::encode(&key, attempt)?;
    put(db, &ATTEMPTS, key, id, doc, expected).await
}

pub(crate) fn get(db: &Connections, key: &str) -> Result<Option<Versioned<Value>>, StoreError> {
    let Some((version, doc)) = read(db, KV.get, key)? else {
        return Ok(None);
    };
    let value = codec::decode(key, &doc)?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn put_value(
    db: &Connections,
    key: &str,
    value: &Value,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    let doc = codec::encode(key, value)?;
    put(db, &KV, key.to_owned(), key.to_owned(), doc, expected).await
}

/// Writes every document of `writes` in one transaction (see [`all_or_nothing`]).
pub(crate) async fn put_many(db: &Connections, writes: &[KvWrite]) -> Result<Vec<i64>, StoreError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let rows = writes
        .iter()
        .map(|w| Ok((w.key.clone(), codec::encode(&w.key, &w.value)?, w.put)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    db.write(move |conn| {
        all_or_nothing(conn, |conn| {
            rows.iter()
                .map(|(key, doc, put)| match *put {
                    KvPut::Upsert => conn
                        .prepare_cached(UPSERT)
                        .and_then(|mut stmt| stmt.query_row((key, doc), |row| row.get(0)))
                        .map_err(backend),
                    KvPut::Insert => insert(conn, &KV, key, key, doc),
                    KvPut::Swap(expected) => swap(conn, &KV, key, key, doc, expected),
                })
                .collect()
        })
    })
    .await
}

pub(crate) async fn take(db: &Connections, key: &str) -> Result<Option<Value>, StoreError> {
    let owned = key.to_owned();
    let doc: Option<String> = db
        .write(move |conn| {
            conn.prepare_cached("DELETE FROM kv WHERE key = ?1 RETURNING doc")
                .and_then(|mut stmt| stmt.query_row([owned], |row| row.get(0)).optional())
                .map_err(backend)
        })
        .await?;
    doc.map(|doc| codec::decode(key, &doc)).transpose()
}

pub(crate) async fn delete(db: &Connections, key: &str) -> Result<bool, StoreError> {
    let key = key.to_owned();
    db.write(move |conn| {
        conn.prepare_cached("DELETE FROM kv WHERE key = ?1")
            .and_then(|mut stmt| stmt.execute([key]))
            .map(|deleted| deleted > 0)
            .map_err(backend)
    })
    .await
}

pub(crate) fn list(
    db: &Connections,
    prefix: &str,
    limit: usize,
) -> Result<Vec<(String, Value)>, StoreError> {
    let limit = codec::sql_limit(limit);
    let pair = |row: &rusqlite::Row<'_>| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?));
    let conn = db.reader()?;
    // A key range, not LIKE: LIKE ignores ASCII case in SQLite, and a range is index-served.
    let rows: Vec<(String, String)> = match codec::prefix_upper_bound(prefix) {
        Some(upper) => conn
            .prepare_cached(
                "SELECT key, doc FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
            )
            .and_then(|mut stmt| stmt.query_map((prefix, upper, limit), pair)?.collect()),
        None => conn
            .prepare_cached("SELECT key, doc FROM kv WHERE key >= ?1 ORDER BY key LIMIT ?2")
            .and_then(|mut stmt| stmt.query_map((prefix, limit), pair)?.collect()),
    }
    .map_err(backend)?;
    drop(conn);
    let mut out = Vec::with_capacity(rows.len());
    for (key, doc) in rows {
        if !key.starts_with(prefix) {
            break;
        }
        let value = codec::decode(&key, &doc)?;
        out.push((key, value));
    }
    Ok(out)
}
