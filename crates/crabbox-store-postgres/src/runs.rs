//! Run rows with their events and chunked logs. A run and the events and log written with it
//! commit together or not at all.

use std::fmt::Write as _;

use crabbox_api::coord::{Run, RunEvent, Timestamp};
use crabbox_store::codec;
use crabbox_store::{RunQuery, StoreError, Versioned};
use sqlx::postgres::{PgArguments, PgConnection, Postgres};
use sqlx::{AssertSqlSafe, PgPool, Row as _};

use crate::backend;
use crate::columns::text;
use crate::leases::cas_failure;
use crate::retry::Attempt;

type Query = sqlx::query::Query<'static, Postgres, PgArguments>;

const INSERT: &str = "INSERT INTO runs (id, lease_id, owner, org, state, started_at, ended_at, \
     doc, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) ON CONFLICT (id) DO NOTHING";

const UPDATE: &str = "UPDATE runs SET lease_id = $2, owner = $3, org = $4, state = $5, \
     started_at = $6, ended_at = $7, doc = $8, version = version + 1 \
     WHERE id = $1 AND version = $9";

fn key(id: &str) -> String {
    format!("run {id}")
}

fn bind_columns(query: Query, run: &Run) -> Result<Query, StoreError> {
    let doc = codec::encode(&key(&run.id), run)?;
    Ok(query
        .bind(text(&run.id))
        .bind(text(&run.lease_id))
        .bind(text(&run.owner))
        .bind(text(&run.org))
        .bind(run.state.as_str())
        .bind(run.started_at.millis())
        .bind(codec::run_ended_at(run))
        .bind(doc))
}

/// Inserts all events in one statement; one that already exists is a conflict (the caller
/// rolls back).
async fn insert_events(conn: &mut PgConnection, run_id: &str, events: &[RunEvent]) -> Attempt<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut seqs = Vec::with_capacity(events.len());
    let mut docs = Vec::with_capacity(events.len());
    for event in events {
        seqs.push(codec::sql_seq(event.seq)?);
        docs.push(codec::encode(
            &format!("run {run_id} event {}", event.seq),
            event,
        )?);
    }
    let done = sqlx::query(
        "INSERT INTO run_events (run_id, seq, doc) \
         SELECT $1, e.seq, e.doc FROM unnest($2::bigint[], $3::text[]) AS e (seq, doc) \
         ON CONFLICT (run_id, seq) DO NOTHING",
    )
    .bind(text(run_id))
    .bind(&seqs)
    .bind(&docs)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != events.len() as u64 {
        return Err(StoreError::Conflict(format!(
            "run {run_id}: an event with one of seq {:?} exists",
            events.iter().map(|e| e.seq).collect::<Vec<_>>()
        ))
        .into());
    }
    Ok(())
}

/// Adds the run's lease keys it is not yet listed under (`run_leases`).
async fn index_leases(conn: &mut PgConnection, run: &Run) -> Attempt<()> {
    let keys: Vec<&str> = codec::run_lease_keys(run);
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO run_leases (run_id, lease, started_at) \
         SELECT $1, k.lease, $3 FROM unnest($2::text[]) AS k (lease) \
         ON CONFLICT (run_id, lease) DO NOTHING",
    )
    .bind(text(&run.id))
    .bind(keys.iter().map(|k| text(k)).collect::<Vec<_>>())
    .bind(run.started_at.millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn replace_log(conn: &mut PgConnection, run_id: &str, log: &str) -> Attempt<()> {
    sqlx::query("DELETE FROM run_logs WHERE run_id = $1")
        .bind(text(run_id))
        .execute(&mut *conn)
        .await?;
    let pieces = codec::split_log(log);
    if pieces.is_empty() {
        return Ok(());
    }
    let chunks: Vec<i64> = (0..pieces.len())
        .map(|i| i64::try_from(i).unwrap_or(i64::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO run_logs (run_id, chunk, body) \
         SELECT $1, l.chunk, l.body FROM unnest($2::bigint[], $3::bytea[]) AS l (chunk, body)",
    )
    .bind(text(run_id))
    .bind(&chunks)
    .bind(pieces.iter().map(|p| p.as_bytes()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn insert(pool: &PgPool, run: &Run, events: &[RunEvent]) -> Attempt<i64> {
    let query = bind_columns(sqlx::query(INSERT), run)?;
    let mut tx = pool.begin().await?;
    let done = query.execute(&mut *tx).await?;
    if done.rows_affected() == 0 {
        tx.rollback().await?;
        return Err(StoreError::Conflict(format!("{} exists", key(&run.id))).into());
    }
    let written = match insert_events(&mut tx, &run.id, events).await {
        Ok(()) => index_leases(&mut tx, run).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tx.rollback().await?;
        return Err(e);
    }
    tx.commit().await?;
    Ok(1)
}

pub(crate) async fn update(
    pool: &PgPool,
    run: &Run,
    expected: i64,
    events: &[RunEvent],
    log: Option<&str>,
) -> Attempt<i64> {
    let query = bind_columns(sqlx::query(UPDATE), run)?.bind(expected);
    let mut tx = pool.begin().await?;
    let done = query.execute(&mut *tx).await?;
    if done.rows_affected() == 0 {
        let current: Option<i64> = sqlx::query_scalar("SELECT version FROM runs WHERE id = $1")
            .bind(text(&run.id))
            .fetch_optional(&mut *tx)
            .await?;
        tx.rollback().await?;
        return Err(cas_failure(&key(&run.id), current, expected).into());
    }
    let written = match insert_events(&mut tx, &run.id, events).await {
        Ok(()) => match log {
            Some(log) => replace_log(&mut tx, &run.id, log).await,
            None => Ok(()),
        },
        Err(e) => Err(e),
    };
    let written = match written {
        Ok(()) => index_leases(&mut tx, run).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        tx.rollback().await?;
        return Err(e);
    }
    tx.commit().await?;
    Ok(expected + 1)
}

pub(crate) async fn get(pool: &PgPool, id: &str) -> Attempt<Option<Versioned<Run>>> {
    let row = sqlx::query("SELECT version, doc FROM runs WHERE id = $1")
        .bind(text(id))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let version: i64 = row.try_get(0)?;
    let value = codec::decode(&key(id), row.try_get::<&str, _>(1)?)?;
    Ok(Some(Versioned { value, version }))
}

pub(crate) async fn list(pool: &PgPool, q: &RunQuery) -> Attempt<Vec<Run>> {
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    // By lease, the lease's entries in `run_leases` are read newest first from its index and
    // each joined to its run; otherwise `runs` is read from its own indexes.
    let (mut sql, (started, id)) = if q.lease.is_some() {
        (
            format!(
                "SELECT r.id, r.doc FROM run_leases k JOIN runs r ON r.id = k.run_id \
                 WHERE k.lease = ${}",
                next()
            ),
            ("k.started_at", "k.run_id"),
        )
    } else {
        (
            String::from("SELECT r.id, r.doc FROM runs r WHERE TRUE"),
            ("r.started_at", "r.id"),
        )
    };
    for (present, column) in [
        (q.owner.is_some(), "r.owner"),
        (q.org.is_some(), "r.org"),
        (q.state.is_some(), "r.state"),
    ] {
        if present {
            let _ = write!(sql, " AND {column} = ${}", next());
        }
    }
    if q.before.is_some() {
        let (a, b) = (next(), next());
        let _ = write!(sql, " AND ({started}, {id}) < (${a}, ${b})");
    }
    let _ = write!(sql, " ORDER BY {started} DESC, {id} DESC LIMIT ${}", next());
    // Only placeholders are spliced in; every value is bound.
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for value in [&q.lease, &q.owner, &q.org].into_iter().flatten() {
        query = query.bind(text(value));
    }
    if let Some(state) = q.state {
        query = query.bind(state.as_str());
    }
    if let Some((started, id)) = &q.before {
        query = query.bind(started.millis()).bind(text(id));
    }
    let rows = query
        .bind(codec::sql_limit(q.limit))
        .fetch_all(pool)
        .await?;
    let runs: Result<Vec<Run>, StoreError> = rows
        .iter()
        .map(|row| {
            let id: &str = row.try_get(0).map_err(|e| backend(&e))?;
            codec::decode(
                &key(id),
                row.try_get::<&str, _>(1).map_err(|e| backend(&e))?,
            )
        })
        .collect();
    Ok(runs?)
}

pub(crate) async fn events(
    pool: &PgPool,
    run_id: &str,
    after: u64,
    limit: usize,
) -> Attempt<Vec<RunEvent>> {
    let rows = sqlx::query(
        "SELECT seq, doc FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(text(run_id))
    .bind(i64::try_from(after).unwrap_or(i64::MAX))
    .bind(codec::sql_limit(limit))
    .fetch_all(pool)
    .await?;
    let events: Result<Vec<RunEvent>, StoreError> = rows
        .iter()
        .map(|row| {
            let seq: i64 = row.try_get(0).map_err(|e| backend(&e))?;
            let doc: &str = row.try_get(1).map_err(|e| backend(&e))?;
            codec::decode(&format!("run {run_id} event {seq}"), doc)
        })
        .collect();
    Ok(events?)
}

pub(crate) async fn log(pool: &PgPool, run_id: &str) -> Attempt<String> {
    let pieces: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT body FROM run_logs WHERE run_id = $1 ORDER BY chunk")
            .bind(text(run_id))
            .fetch_all(pool)
            .await?;
    Ok(codec::join_log(run_id, &pieces)?)
}

pub(crate) async fn prune(pool: &PgPool, before: Timestamp, limit: usize) -> Attempt<u64> {
    // Events and log pieces go with their run (ON DELETE CASCADE).
    let done = sqlx::query(
        "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
         WHERE ended_at < $1 AND state <> 'running' ORDER BY ended_at LIMIT $2)",
    )
    .bind(before.millis())
    .bind(codec::sql_limit(limit))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
