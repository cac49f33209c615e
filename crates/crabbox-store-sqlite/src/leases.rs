//! Lease rows: one statement per call, each served by an index and bounded by a limit.

use std::fmt::Write as _;

use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_store::codec::{self, LeaseColumns};
use crabbox_store::{Admission, LeaseIndex, LeaseQuery, StoreError, Versioned};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{AssertSqlSafe, Database, Row as _, SqliteConnection};

use crate::backend;

type Query = sqlx::query::Query<'static, Sqlite, <Sqlite as Database>::Arguments>;

const INSERT: &str = "INSERT INTO leases (id, slug, owner, org, state, provider, registered, \
     created_at, created_month, ended_at, next_check_at, max_estimated_usd, doc, version) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1) \
     ON CONFLICT (id) DO NOTHING";

const UPDATE: &str = "UPDATE leases SET slug = ?2, owner = ?3, org = ?4, state = ?5, \
     provider = ?6, registered = ?7, created_at = ?8, created_month = ?9, ended_at = ?10, \
     next_check_at = ?11, max_estimated_usd = ?12, doc = ?13, version = version + 1 \
     WHERE id = ?1 AND version = ?14";

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

fn bind_columns(query: Query, lease: &Lease, index: &LeaseIndex) -> Result<Query, StoreError> {
    let c = LeaseColumns::of(lease);
    let doc = codec::encode(&key(&lease.id), lease)?;
    Ok(query
        .bind(c.id)
        .bind(c.slug)
        .bind(c.owner)
        .bind(c.org)
        .bind(c.state)
        .bind(c.provider)
        .bind(c.registered)
        .bind(c.created_at)
        .bind(c.created_month)
        .bind(c.ended_at)
        .bind(index.next_check_at.map(Timestamp::millis))
        .bind(c.max_estimated_usd)
        .bind(doc))
}

fn versioned(row: &SqliteRow) -> Result<Versioned<Lease>, StoreError> {
    let id: &str = row.try_get("id").map_err(backend)?;
    let version: i64 = row.try_get("version").map_err(backend)?;
    let doc: &str = row.try_get("doc").map_err(backend)?;
    let value: Lease = codec::decode(&key(id), doc)?;
    Ok(Versioned { value, version })
}

pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    lease: &Lease,
    index: &LeaseIndex,
) -> Result<i64, StoreError> {
    let done = bind_columns(sqlx::query(INSERT), lease, index)?
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("{} exists", key(&lease.id))));
    }
    Ok(1)
}

pub(crate) async fn get(
    conn: &mut SqliteConnection,
    id: &str,
) -> Result<Option<Versioned<Lease>>, StoreError> {
    sqlx::query("SELECT id, version, doc FROM leases WHERE id = ?1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        .as_ref()
        .map(versioned)
        .transpose()
}

pub(crate) async fn update(
    conn: &mut SqliteConnection,
    lease: &Lease,
    index: &LeaseIndex,
    expected: i64,
) -> Result<i64, StoreError> {
    let done = bind_columns(sqlx::query(UPDATE), lease, index)?
        .bind(expected)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    if done.rows_affected() == 1 {
        return Ok(expected + 1);
    }
    let current: Option<i64> = sqlx::query_scalar("SELECT version FROM leases WHERE id = ?1")
        .bind(lease.id.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    Err(cas_failure(&key(&lease.id), current, expected))
}

/// Why a compare-and-swap wrote nothing: the row is gone, or its version moved.
pub(crate) fn cas_failure(key: &str, current: Option<i64>, expected: i64) -> StoreError {
    match current {
        None => StoreError::NotFound(key.to_owned()),
        Some(v) => StoreError::Conflict(format!("{key} is at version {v}, not {expected}")),
    }
}

pub(crate) async fn list(
    conn: &mut SqliteConnection,
    q: &LeaseQuery,
) -> Result<Vec<Lease>, StoreError> {
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
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for state in &q.states {
        query = query.bind(state.as_str());
    }
    for text in [&q.provider, &q.owner, &q.org].into_iter().flatten() {
        query = query.bind(text.as_str());
    }
    for t in [q.created_since, q.created_before].into_iter().flatten() {
        query = query.bind(t.millis());
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

pub(crate) async fn live_by_slug(
    conn: &mut SqliteConnection,
    slug: &str,
) -> Result<Vec<Versioned<Lease>>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, version, doc FROM leases \
         WHERE slug = ?1 AND state IN ('provisioning', 'active') LIMIT 1000",
    )
    .bind(slug)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    rows.iter().map(versioned).collect()
}

pub(crate) async fn due(
    conn: &mut SqliteConnection,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Versioned<Lease>>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, version, doc FROM leases WHERE next_check_at <= ?1 \
         ORDER BY next_check_at LIMIT ?2",
    )
    .bind(now.millis())
    .bind(codec::sql_limit(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    rows.iter().map(versioned).collect()
}

pub(crate) async fn next_check_at(
    conn: &mut SqliteConnection,
) -> Result<Option<Timestamp>, StoreError> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT next_check_at FROM leases WHERE next_check_at IS NOT NULL \
         ORDER BY next_check_at LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(next.map(Timestamp::from_millis))
}

pub(crate) async fn admission(
    conn: &mut SqliteConnection,
    owner: &str,
    org: &str,
    month_start: Timestamp,
) -> Result<Admission, StoreError> {
    let rows = sqlx::query(ADMISSION)
        .bind(owner)
        .bind(org)
        .bind(month_start.millis())
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let mut sums = [0_i64; 6];
    for row in &rows {
        for (i, sum) in sums.iter_mut().enumerate() {
            *sum += row.try_get::<i64, _>(i).map_err(backend)?;
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

pub(crate) async fn prune(
    conn: &mut SqliteConnection,
    before: Timestamp,
    limit: usize,
) -> Result<u64, StoreError> {
    // `+state` keeps SQLite from walking the state index over every terminal lease: the
    // partial ended_at index finds exactly the old ones.
    let done = sqlx::query(
        "DELETE FROM leases WHERE id IN (SELECT id FROM leases \
         WHERE ended_at < ?1 AND +state IN ('released', 'expired', 'failed') \
         ORDER BY ended_at LIMIT ?2)",
    )
    .bind(before.millis())
    .bind(codec::sql_limit(limit))
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected())
}

pub(crate) async fn counts(
    conn: &mut SqliteConnection,
) -> Result<Vec<(LeaseState, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, leases FROM lease_state_counts")
        .fetch_all(&mut *conn)
        .await
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
