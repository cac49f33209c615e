//! Run rows with their events and chunked logs. A run and the events and log written with it
//! commit together or not at all.

use crabbox_api::coord::{Run, RunEvent, Timestamp};
use crabbox_store::codec;
use crabbox_store::{RunQuery, StoreError, Versioned};
use sqlx::{AssertSqlSafe, Row as _, SqliteConnection};

use crate::backend;

/// One statement per write, through the `run_writes` view's triggers (see the migration).
const WRITE: &str = "INSERT INTO run_writes (id, lease_id, owner, org, state, started_at, \
     ended_at, doc, expected, events, log, log_cuts) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Raised by the update trigger.
const NOT_FOUND: &str = "crabbox: run not found";
const MOVED: &str = "crabbox: run version moved";

fn key(id: &str) -> String {
    format!("run {id}")
}

/// `[[seq, document], …]` for the trigger.
fn events_json(run_id: &str, events: &[RunEvent]) -> Result<String, StoreError> {
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        let event_key = format!("run {run_id} event {}", event.seq);
        rows.push((
            codec::sql_seq(event.seq)?,
            codec::encode(&event_key, event)?,
        ));
    }
    codec::encode(&key(run_id), &rows)
}

/// `[[offset, length], …]` of the log's pieces, in bytes.
fn log_cuts(log: &str) -> Result<String, StoreError> {
    let mut offset = 0;
    let cuts: Vec<(usize, usize)> = codec::split_log(log)
        .into_iter()
        .map(|piece| {
            let cut = (offset, piece.len());
            offset += piece.len();
            cut
        })
        .collect();
    codec::encode("run log", &cuts)
}

async fn write(
    conn: &mut SqliteConnection,
    run: &Run,
    expected: Option<i64>,
    events: &[RunEvent],
    log: Option<&str>,
) -> Result<(), StoreError> {
    let cuts = log.map(log_cuts).transpose()?;
    sqlx::query(WRITE)
        .bind(run.id.as_str())
        .bind(run.lease_id.as_str())
        .bind(run.owner.as_str())
        .bind(run.org.as_str())
        .bind(run.state.as_str())
        .bind(run.started_at.millis())
        .bind(codec::run_ended_at(run))
        .bind(codec::encode(&key(&run.id), run)?)
        .bind(expected)
        .bind(events_json(&run.id, events)?)
        .bind(log.map(str::as_bytes))
        .bind(cuts)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| write_error(&run.id, expected, e))
}

fn write_error(run_id: &str, expected: Option<i64>, e: sqlx::Error) -> StoreError {
    if let Some(db) = e.as_database_error() {
        if db.message().contains(NOT_FOUND) {
            return StoreError::NotFound(key(run_id));
        }
        if db.message().contains(MOVED) {
            let expected = expected.unwrap_or_default();
            return StoreError::Conflict(format!("{} is not at version {expected}", key(run_id)));
        }
        if db.kind() == sqlx::error::ErrorKind::UniqueViolation {
            return StoreError::Conflict(format!("{} or one of its events exists", key(run_id)));
        }
    }
    backend(e)
}

pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    run: &Run,
    events: &[RunEvent],
) -> Result<i64, StoreError> {
    write(conn, run, None, events, None).await.map(|()| 1)
}

pub(crate) async fn update(
    conn: &mut SqliteConnection,
    run: &Run,
    expected: i64,
    events: &[RunEvent],
    log: Option<&str>,
) -> Result<i64, StoreError> {
    write(conn, run, Some(expected), events, log)
        .await
        .map(|()| expected + 1)
}

pub(crate) async fn get(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<Versioned<Run>>, StoreError> {
    let row = sqlx::query("SELECT version, doc FROM runs WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get(0).map_err(backend)?;
    let value = codec::decode(&key(id), row.try_get::<&str, _>(1).map_err(backend)?)?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn list(
    conn: &mut SqliteConnection,
    q: &RunQuery,
) -> Result<Vec<Run>, StoreError> {
    let mut sql = String::from("SELECT id, doc FROM runs WHERE 1 = 1");
    for (present, clause) in [
        (q.lease_id.is_some(), " AND lease_id = ?"),
        (q.owner.is_some(), " AND owner = ?"),
        (q.org.is_some(), " AND org = ?"),
        (q.state.is_some(), " AND state = ?"),
        (q.before.is_some(), " AND (started_at, id) < (?, ?)"),
    ] {
        if present {
            sql.push_str(clause);
        }
    }
    sql.push_str(" ORDER BY started_at DESC, id DESC LIMIT ?");
    // Only fixed clauses are spliced in; every value is bound.
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for text in [&q.lease_id, &q.owner, &q.org].into_iter().flatten() {
        query = query.bind(text.as_str());
    }
    if let Some(state) = q.state {
        query = query.bind(state.as_str());
    }
    if let Some((started, id)) = &q.before {
        query = query.bind(started.millis()).bind(id.as_str());
    }
    let rows = query
        .bind(codec::sql_limit(q.limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    rows.iter()
        .map(|row| {
            let id: &str = row.try_get(0).map_err(backend)?;
            codec::decode(&key(id), row.try_get::<&str, _>(1).map_err(backend)?)
        })
        .collect()
}

pub(crate) async fn events(
    conn: &mut SqliteConnection,
    run_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<RunEvent>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows = sqlx::query(
        "SELECT seq, doc FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )
    .bind(run_id)
    .bind(after)
    .bind(codec::sql_limit(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get(0).map_err(backend)?;
            let doc: &str = row.try_get(1).map_err(backend)?;
            codec::decode(&format!("run {run_id} event {seq}"), doc)
        })
        .collect()
}

pub(crate) async fn log(conn: &mut SqliteConnection, run_id: &str) -> Result<String, StoreError> {
    let pieces: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT body FROM run_logs WHERE run_id = ?1 ORDER BY chunk")
            .bind(run_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?;
    codec::join_log(run_id, &pieces)
}

pub(crate) async fn prune(
    conn: &mut SqliteConnection,
    before: Timestamp,
    limit: usize,
) -> Result<u64, StoreError> {
    // Events and log pieces go with their run (ON DELETE CASCADE).
    let done = sqlx::query(
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
         WHERE ended_at < ?1 AND state <> 'running' ORDER BY ended_at LIMIT ?2)",
    )
    .bind(before.millis())
    .bind(codec::sql_limit(limit))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected())
}
