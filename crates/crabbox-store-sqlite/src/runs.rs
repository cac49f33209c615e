//! Run rows with their events and chunked logs. A run and the events and log written with it
//! commit together or not at all.

use std::fmt::Write as _;

use crabbox_api::coord::{Run, RunEvent};
use crabbox_store::codec;
use crabbox_store::{RunQuery, StoreError, Versioned};
use rusqlite::types::ToSqlOutput;
use rusqlite::{OptionalExtension as _, ffi};

use crate::backend;
use crate::conn::Connections;

/// One statement per write, through the `run_writes` view's triggers (see the migration).
const WRITE: &str = "INSERT INTO run_writes (id, lease_id, owner, org, state, started_at, \
     ended_at, doc, expected, events, log, log_cuts, lease_keys) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

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
    db: &Connections,
    run: &Run,
    expected: Option<i64>,
    events: &[RunEvent],
    log: Option<&str>,
) -> Result<(), StoreError> {
    let cuts = log.map(log_cuts).transpose()?;
    let doc = codec::encode(&key(&run.id), run)?;
    let events = events_json(&run.id, events)?;
    let lease_keys = codec::encode(&key(&run.id), &codec::run_lease_keys(run))?;
    let id = run.id.clone();
    let params = (
        run.id.clone(),
        run.lease_id.clone(),
        run.owner.clone(),
        run.org.clone(),
        run.state.as_str(),
        run.started_at.millis(),
        codec::run_ended_at(run),
        doc,
        expected,
        events,
        log.map(|log| log.as_bytes().to_vec()),
        cuts,
        lease_keys,
    );
    db.write(move |conn| {
        conn.prepare_cached(WRITE)
            .and_then(|mut stmt| stmt.execute(params))
            .map(|_| ())
            .map_err(|e| write_error(&id, expected, e))
    })
    .await
}

fn write_error(run_id: &str, expected: Option<i64>, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, message) = &e {
        let message = message.as_deref().unwrap_or_default();
        if message.contains(NOT_FOUND) {
            return StoreError::NotFound(key(run_id));
        }
        if message.contains(MOVED) {
            let expected = expected.unwrap_or_default();
            return StoreError::Conflict(format!("{} is not at version {expected}", key(run_id)));
        }
        if matches!(
            failure.extended_code,
            ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE
        ) {
            return StoreError::Conflict(format!("{} or one of its events exists", key(run_id)));
        }
    }
    backend(e)
}

pub(crate) async fn insert(
    db: &Connections,
    run: &Run,
    events: &[RunEvent],
) -> Result<i64, StoreError> {
    write(db, run, None, events, None).await.map(|()| 1)
}

pub(crate) async fn update(
    db: &Connections,
    run: &Run,
    expected: i64,
    events: &[RunEvent],
    log: Option<&str>,
) -> Result<i64, StoreError> {
    write(db, run, Some(expected), events, log)
        .await
        .map(|()| expected + 1)
}

pub(crate) fn get(db: &Connections, id: &str) -> Result<Option<Versioned<Run>>, StoreError> {
    let row: Option<(i64, String)> = db
        .point_reader()?
        .prepare_cached("SELECT version, doc FROM runs WHERE id = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(backend)?;
    let Some((version, doc)) = row else {
        return Ok(None);
    };
    let value = codec::decode(&key(id), &doc)?;
    Ok(Some(Versioned { value, version }))
}

/// The list query for `q`'s filters. By lease, the lease's entries in `run_leases` are read
/// newest first from its index and each joined to its run (CROSS JOIN keeps that order of the
/// loops); otherwise `runs` is read from its own indexes.
fn list_sql(q: &RunQuery) -> String {
    let (mut sql, (started, id)) = if q.lease.is_some() {
        (
            String::from(
                "SELECT r.id, r.doc FROM run_leases k CROSS JOIN runs r ON r.id = k.run_id \
                 WHERE k.lease = ?",
            ),
            ("k.started_at", "k.run_id"),
        )
    } else {
        (
            String::from("SELECT r.id, r.doc FROM runs r WHERE 1 = 1"),
            ("r.started_at", "r.id"),
        )
    };
    for (present, clause) in [
        (q.owner.is_some(), " AND r.owner = ?"),
        (q.org.is_some(), " AND r.org = ?"),
        (q.state.is_some(), " AND r.state = ?"),
    ] {
        if present {
            sql.push_str(clause);
        }
    }
    if q.before.is_some() {
        let _ = write!(sql, " AND ({started}, {id}) < (?, ?)");
    }
    let _ = write!(sql, " ORDER BY {started} DESC, {id} DESC LIMIT ?");
    sql
}

pub(crate) fn list(db: &Connections, q: &RunQuery) -> Result<Vec<Run>, StoreError> {
    let sql = list_sql(q);
    // Only fixed clauses are spliced in; every value is bound.
    let mut params: Vec<ToSqlOutput<'_>> = Vec::new();
    for text in [&q.lease, &q.owner, &q.org].into_iter().flatten() {
        params.push(text.as_str().into());
    }
    if let Some(state) = q.state {
        params.push(state.as_str().into());
    }
    if let Some((started, id)) = &q.before {
        params.push(started.millis().into());
        params.push(id.as_str().into());
    }
    params.push(codec::sql_limit(q.limit).into());
    let rows = crate::text_pairs(db, &sql, params)?;
    rows.iter()
        .map(|(id, doc)| codec::decode(&key(id), doc))
        .collect()
}

pub(crate) fn events(
    db: &Connections,
    run_id: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<RunEvent>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let rows: Vec<(i64, String)> = db
        .reader()?
        .prepare_cached(
            "SELECT seq, doc FROM run_events WHERE run_id = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )
        .and_then(|mut stmt| {
            stmt.query_map((run_id, after, codec::sql_limit(limit)), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect()
        })
        .map_err(backend)?;
    rows.iter()
        .map(|(seq, doc)| codec::decode(&format!("run {run_id} event {seq}"), doc))
        .collect()
}

pub(crate) fn log(db: &Connections, run_id: &str) -> Result<String, StoreError> {
    let pieces: Vec<Vec<u8>> = db
        .reader()?
        .prepare_cached("SELECT body FROM run_logs WHERE run_id = ?1 ORDER BY chunk")
        .and_then(|mut stmt| stmt.query_map([run_id], |row| row.get(0))?.collect())
        .map_err(backend)?;
    codec::join_log(run_id, &pieces)
}

/// Deletes up to `?2` finished runs that ended before `?1` (see [`crate::prune`]); their
/// events and log pieces go with them (ON DELETE CASCADE).
pub(crate) const PRUNE: &str = "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
     WHERE ended_at < ?1 AND state <> 'running' ORDER BY ended_at LIMIT ?2)";

#[cfg(test)]
mod tests {
    use crabbox_api::coord::RunState;
    use crabbox_store::RunQuery;

    /// Listing one lease's runs reads that lease's index entries and each run by its key, with
    /// every other filter: its cost follows the lease's runs, never the number stored.
    #[test]
    fn listing_by_lease_reads_the_index_not_the_table() {
        let mut conn = crate::conn::open_memory().unwrap();
        crate::migrate::run(&mut conn).unwrap();
        let by_lease = RunQuery {
            lease: Some("cbx_1".into()),
            ..RunQuery::default()
        };
        let shapes = [
            by_lease.clone(),
            RunQuery {
                owner: Some("o".into()),
                org: Some("g".into()),
                state: Some(RunState::Running),
                ..by_lease.clone()
            },
            RunQuery {
                before: Some((
                    crabbox_api::coord::Timestamp::from_millis(1),
                    "run_1".into(),
                )),
                ..by_lease
            },
        ];
        for q in shapes {
            let sql = super::list_sql(&q);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(
                    rusqlite::params_from_iter(std::iter::repeat_n("x", stmt.parameter_count())),
                    |row| row.get(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            // Both tables searched by key, in index order: no scan, no sort.
            assert_eq!(plan.len(), 2, "{sql}: {plan:?}");
            assert!(
                plan[0].starts_with(
                    "SEARCH k USING COVERING INDEX run_leases_lease_started_at (lease=?"
                ),
                "{sql}: {plan:?}"
            );
            assert_eq!(
                plan[1], "SEARCH r USING INDEX sqlite_autoindex_runs_1 (id=?)",
                "{sql}: {plan:?}"
            );
        }
    }
}
