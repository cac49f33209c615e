//! Lease rows: one statement per call, each served by an index and bounded by a limit.
//! Documents are encoded before a connection is taken and decoded after it is given back.

use std::fmt::Write as _;

use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_store::codec::{self, LeaseColumns};
use crabbox_store::{Admission, LeaseIndex, LeaseQuery, StoreError, Versioned};
use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::{OptionalExtension as _, params_from_iter};

use crate::backend;
use crate::conn::Connections;

const INSERT: &str = "INSERT INTO leases (id, slug, owner, org, state, provider, registered, \
     created_at, created_month, ended_at, next_check_at, max_estimated_usd, doc, version) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1) \
     ON CONFLICT (id) DO NOTHING";

const UPDATE: &str = "UPDATE leases SET slug = ?2, owner = ?3, org = ?4, state = ?5, \
     provider = ?6, registered = ?7, created_at = ?8, created_month = ?9, ended_at = ?10, \
     next_check_at = ?11, max_estimated_usd = ?12, doc = ?13, version = version + 1 \
     WHERE id = ?1 AND version = ?14";

/// [`UPDATE`] for the common write (a heartbeat, a touch): it changes none of the indexed
/// columns but `next_check_at`, and says so by comparing them instead of setting them. SQLite
/// rewrites an index entry for every column a `SET` names, changed or not, so this one
/// statement writes one index instead of six (half the pages a commit appends to the WAL). It
/// updates nothing when an indexed column did change or the version moved; [`UPDATE`] then
/// decides.
const UPDATE_UNINDEXED: &str = "UPDATE leases SET next_check_at = ?11, \
     max_estimated_usd = ?12, doc = ?13, version = version + 1 \
     WHERE id = ?1 AND version = ?14 AND slug = ?2 AND owner = ?3 AND org = ?4 AND state = ?5 \
     AND provider = ?6 AND registered = ?7 AND created_at = ?8 AND created_month = ?9 \
     AND ended_at IS ?10";

/// Live managed leases counted and summed, plus terminal spend since the month (one row
/// each); sums are in microdollars.
const ADMISSION: &str = "\
     SELECT count(*), \
            coalesce(sum(owner = ?1), 0), \
            coalesce(sum(org = ?2), 0), \
            coalesce(sum(CAST(round(max_estimated_usd * 1000000) AS INTEGER)), 0), \
            coalesce(sum(CASE WHEN owner = ?1 \
                THEN CAST(round(max_estimated_usd * 1000000) AS INTEGER) ELSE 0 END), 0), \
            coalesce(sum(CASE WHEN org = ?2 \
                THEN CAST(round(max_estimated_usd * 1000000) AS INTEGER) ELSE 0 END), 0) \
     FROM leases WHERE state IN ('provisioning', 'active') AND NOT registered \
     UNION ALL \
     SELECT 0, 0, 0, coalesce(sum(micro_usd), 0), \
            coalesce(sum(CASE WHEN owner = ?1 THEN micro_usd ELSE 0 END), 0), \
            coalesce(sum(CASE WHEN org = ?2 THEN micro_usd ELSE 0 END), 0) \
     FROM lease_month_spend WHERE month >= ?3";

fn key(id: &str) -> String {
    format!("lease {id}")
}

/// `?1`–`?13` of [`INSERT`] and [`UPDATE`], owned so that a queued write can carry them.
fn columns(lease: &Lease, index: &LeaseIndex, doc: String) -> Vec<Value> {
    let c = LeaseColumns::of(lease);
    let text = |s: &str| Value::Text(s.to_owned());
    let optional = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
    vec![
        text(c.id),
        text(c.slug),
        text(c.owner),
        text(c.org),
        text(c.state),
        text(c.provider),
        Value::Integer(c.registered.into()),
        Value::Integer(c.created_at),
        Value::Integer(c.created_month),
        optional(c.ended_at),
        optional(index.next_check_at.map(Timestamp::millis)),
        Value::Real(c.max_estimated_usd),
        Value::Text(doc),
    ]
}

/// `(id, version, doc)` as read, before decoding.
type Raw = (String, i64, String);

fn raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn versioned((id, version, doc): Raw) -> Result<Versioned<Lease>, StoreError> {
    let value: Lease = codec::decode(&key(&id), &doc)?;
    Ok(Versioned { value, version })
}

pub(crate) async fn insert(
    db: &Connections,
    lease: &Lease,
    index: &LeaseIndex,
) -> Result<i64, StoreError> {
    let key = key(&lease.id);
    let params = columns(lease, index, codec::encode(&key, lease)?);
    db.write(move |conn| {
        let inserted = conn
            .prepare_cached(INSERT)
            .and_then(|mut stmt| stmt.execute(params_from_iter(params)))
            .map_err(backend)?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("{key} exists")));
        }
        Ok(1)
    })
    .await
}

pub(crate) fn get(db: &Connections, id: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
    let row = db
        .point_reader()?
        .prepare_cached("SELECT id, version, doc FROM leases WHERE id = ?1")
        .and_then(|mut stmt| stmt.query_row([id], raw).optional())
        .map_err(backend)?;
    row.map(versioned).transpose()
}

pub(crate) async fn update(
    db: &Connections,
    lease: &Lease,
    index: &LeaseIndex,
    expected: i64,
) -> Result<i64, StoreError> {
    let (id, key) = (lease.id.clone(), key(&lease.id));
    let mut params = columns(lease, index, codec::encode(&key, lease)?);
    params.push(Value::Integer(expected));
    db.write(move |conn| {
        for sql in [UPDATE_UNINDEXED, UPDATE] {
            let updated = conn
                .prepare_cached(sql)
                .and_then(|mut stmt| stmt.execute(params_from_iter(&params)))
                .map_err(backend)?;
            if updated == 1 {
                return Ok(expected + 1);
            }
        }
        let current = version_of(conn, "SELECT version FROM leases WHERE id = ?1", &id)?;
        Err(cas_failure(&key, current, expected))
    })
    .await
}

/// The version of the row `sql` finds by `id`, after a compare-and-swap wrote nothing.
pub(crate) fn version_of(
    conn: &rusqlite::Connection,
    sql: &str,
    id: &str,
) -> Result<Option<i64>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_row([id], |row| row.get(0)).optional())
        .map_err(backend)
}

/// Why a compare-and-swap wrote nothing: the row is gone, or its version moved.
pub(crate) fn cas_failure(key: &str, current: Option<i64>, expected: i64) -> StoreError {
    match current {
        None => StoreError::NotFound(key.to_owned()),
        Some(v) => StoreError::Conflict(format!("{key} is at version {v}, not {expected}")),
    }
}

pub(crate) fn list(db: &Connections, q: &LeaseQuery) -> Result<Vec<Lease>, StoreError> {
    let mut sql = String::from("SELECT id, doc FROM leases WHERE 1 = 1");
    if !q.states.is_empty() {
        let marks = vec!["?"; q.states.len()].join(", ");
        let _ = write!(sql, " AND state IN ({marks})");
    }
    for (present, clause) in [
        (q.provider.is_some(), " AND provider = ?"),
        (q.owner.is_some(), " AND owner = ?"),
        (q.org.is_some(), " AND org = ?"),
        (q.created_since.is_some(), " AND created_at >= ?"),
        (q.created_before.is_some(), " AND created_at < ?"),
    ] {
        if present {
            sql.push_str(clause);
        }
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
    // Only placeholders are spliced in; every value is bound.
    let mut params: Vec<ToSqlOutput<'_>> = Vec::new();
    params.extend(q.states.iter().map(|state| state.as_str().into()));
    for text in [&q.provider, &q.owner, &q.org].into_iter().flatten() {
        params.push(text.as_str().into());
    }
    for t in [q.created_since, q.created_before].into_iter().flatten() {
        params.push(t.millis().into());
    }
    params.push(codec::sql_limit(q.limit).into());
    let rows = crate::text_pairs(db, &sql, params)?;
    rows.iter()
        .map(|(id, doc)| codec::decode(&key(id), doc))
        .collect()
}

pub(crate) fn live_by_slug(
    db: &Connections,
    slug: &str,
) -> Result<Vec<Versioned<Lease>>, StoreError> {
    let rows: Vec<Raw> = db
        .reader()?
        .prepare_cached(
            "SELECT id, version, doc FROM leases \
             WHERE slug = ?1 AND state IN ('provisioning', 'active') LIMIT 1000",
        )
        .and_then(|mut stmt| stmt.query_map([slug], raw)?.collect())
        .map_err(backend)?;
    rows.into_iter().map(versioned).collect()
}

pub(crate) fn due(
    db: &Connections,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Versioned<Lease>>, StoreError> {
    let rows: Vec<Raw> = db
        .reader()?
        .prepare_cached(
            "SELECT id, version, doc FROM leases WHERE next_check_at <= ?1 \
             ORDER BY next_check_at LIMIT ?2",
        )
        .and_then(|mut stmt| {
            stmt.query_map((now.millis(), codec::sql_limit(limit)), raw)?
                .collect()
        })
        .map_err(backend)?;
    rows.into_iter().map(versioned).collect()
}

pub(crate) fn next_check_at(db: &Connections) -> Result<Option<Timestamp>, StoreError> {
    let next: Option<i64> = db
        .reader()?
        .prepare_cached(
            "SELECT next_check_at FROM leases WHERE next_check_at IS NOT NULL \
             ORDER BY next_check_at LIMIT 1",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)).optional())
        .map_err(backend)?;
    Ok(next.map(Timestamp::from_millis))
}

pub(crate) fn admission(
    db: &Connections,
    owner: &str,
    org: &str,
    month_start: Timestamp,
) -> Result<Admission, StoreError> {
    let rows: Vec<[i64; 6]> = db
        .reader()?
        .prepare_cached(ADMISSION)
        .and_then(|mut stmt| {
            stmt.query_map((owner, org, month_start.millis()), |row| {
                Ok([
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ])
            })?
            .collect()
        })
        .map_err(backend)?;
    let mut sums = [0_i64; 6];
    for row in &rows {
        for (sum, part) in sums.iter_mut().zip(row) {
            *sum += part;
        }
    }
    Ok(admission_from(sums))
}

/// `[active total, owner, org, micro-USD total, owner, org]` as an [`Admission`].
pub(crate) fn admission_from(sums: [i64; 6]) -> Admission {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Admission {
        active_total: count(sums[0]),
        active_owner: count(sums[1]),
        active_org: count(sums[2]),
        reserved_usd_total: codec::usd_from_micro(sums[3]),
        reserved_usd_owner: codec::usd_from_micro(sums[4]),
        reserved_usd_org: codec::usd_from_micro(sums[5]),
    }
}

/// Deletes up to `?2` terminal leases that ended before `?1` (see [`crate::prune`]). `+state`
/// keeps SQLite from walking the state index over every terminal lease: the partial `ended_at`
/// index finds exactly the old ones.
pub(crate) const PRUNE: &str = "DELETE FROM leases WHERE id IN (SELECT id FROM leases \
     WHERE ended_at < ?1 AND +state IN ('released', 'expired', 'failed') \
     ORDER BY ended_at LIMIT ?2)";

pub(crate) fn counts(db: &Connections) -> Result<Vec<(LeaseState, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = db
        .reader()?
        .prepare_cached("SELECT state, leases FROM lease_state_counts")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .map_err(backend)?;
    Ok(LeaseState::ALL
        .into_iter()
        .map(|state| {
            let n = rows
                .iter()
                .find(|(s, _)| s == state.as_str())
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
            (state, n)
        })
        .collect())
}
