//! Lease rows: one statement per call, each served by an index and bounded by a limit.

use std::fmt::Write as _;

use crabbox_api::coord::{Lease, LeaseState, Timestamp};
use crabbox_store::codec::{self, LeaseColumns};
use crabbox_store::{Admission, LeaseIndex, LeaseQuery, StoreError, Versioned};
use sqlx::postgres::{PgArguments, PgRow, Postgres};
use sqlx::{AssertSqlSafe, PgPool, Row as _};

use crate::backend;
use crate::columns::text;
use crate::retry::Attempt;

type Query = sqlx::query::Query<'static, Postgres, PgArguments>;

const INSERT: &str = "INSERT INTO leases (id, slug, owner, org, state, provider, registered, \
     created_at, created_month, ended_at, next_check_at, max_estimated_usd, doc, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1) \
     ON CONFLICT (id) DO NOTHING";

const UPDATE: &str = "UPDATE leases SET slug = $2, owner = $3, org = $4, state = $5, \
     provider = $6, registered = $7, created_at = $8, created_month = $9, ended_at = $10, \
     next_check_at = $11, max_estimated_usd = $12, doc = $13, version = version + 1 \
     WHERE id = $1 AND version = $14";

/// Live managed leases counted and summed, plus terminal spend since the month (one row
/// each); sums are in microdollars.
const ADMISSION: &str = "\
     SELECT count(*), \
            count(*) FILTER (WHERE owner = $1), \
            count(*) FILTER (WHERE org = $2), \
            coalesce(sum(round(max_estimated_usd * 1000000)::bigint), 0)::bigint, \
            coalesce(sum(round(max_estimated_usd * 1000000)::bigint) \
                FILTER (WHERE owner = $1), 0)::bigint, \
            coalesce(sum(round(max_estimated_usd * 1000000)::bigint) \
                FILTER (WHERE org = $2), 0)::bigint \
     FROM leases WHERE state IN ('provisioning', 'active') AND NOT registered \
     UNION ALL \
     SELECT 0, 0, 0, coalesce(sum(micro_usd), 0)::bigint, \
            coalesce(sum(micro_usd) FILTER (WHERE owner = $1), 0)::bigint, \
            coalesce(sum(micro_usd) FILTER (WHERE org = $2), 0)::bigint \
     FROM lease_month_spend WHERE month >= $3";

fn key(id: &str) -> String {
    format!("lease {id}")
}

fn bind_columns(query: Query, lease: &Lease, index: &LeaseIndex) -> Result<Query, StoreError> {
    let c = LeaseColumns::of(lease);
    let doc = codec::encode(&key(&lease.id), lease)?;
    Ok(query
        .bind(text(c.id))
        .bind(text(c.slug))
        .bind(text(c.owner))
        .bind(text(c.org))
        .bind(c.state)
        .bind(text(c.provider))
        .bind(c.registered)
        .bind(c.created_at)
        .bind(c.created_month)
        .bind(c.ended_at)
        .bind(index.next_check_at.map(Timestamp::millis))
        .bind(c.max_estimated_usd)
        .bind(doc))
}

fn versioned(row: &PgRow) -> Result<Versioned<Lease>, StoreError> {
    let id: &str = row.try_get("id").map_err(|e| backend(&e))?;
    let version: i64 = row.try_get("version").map_err(|e| backend(&e))?;
    let doc: &str = row.try_get("doc").map_err(|e| backend(&e))?;
    let value: Lease = codec::decode(&key(id), doc)?;
    Ok(Versioned { value, version })
}

pub(crate) async fn insert(pool: &PgPool, lease: &Lease, index: &LeaseIndex) -> Attempt<i64> {
    let done = bind_columns(sqlx::query(INSERT), lease, index)?
        .execute(pool)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::Conflict(format!("{} exists", key(&lease.id))).into());
    }
    Ok(1)
}

pub(crate) async fn get(pool: &PgPool, id: &str) -> Attempt<Option<Versioned<Lease>>> {
    let row = sqlx::query("SELECT id, version, doc FROM leases WHERE id = $1")
        .bind(text(id))
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(versioned).transpose()?)
}

pub(crate) async fn update(
    pool: &PgPool,
    lease: &Lease,
    index: &LeaseIndex,
    expected: i64,
) -> Attempt<i64> {
    let done = bind_columns(sqlx::query(UPDATE), lease, index)?
        .bind(expected)
        .execute(pool)
        .await?;
    if done.rows_affected() == 1 {
        return Ok(expected + 1);
    }
    let current: Option<i64> = sqlx::query_scalar("SELECT version FROM leases WHERE id = $1")
        .bind(text(&lease.id))
        .fetch_optional(pool)
        .await?;
    Err(cas_failure(&key(&lease.id), current, expected).into())
}

/// Why a compare-and-swap wrote nothing: the row is gone, or its version moved.
pub(crate) fn cas_failure(key: &str, current: Option<i64>, expected: i64) -> StoreError {
    match current {
        None => StoreError::NotFound(key.to_owned()),
        Some(v) => StoreError::Conflict(format!("{key} is at version {v}, not {expected}")),
    }
}

pub(crate) async fn list(pool: &PgPool, q: &LeaseQuery) -> Attempt<Vec<Lease>> {
    let mut sql = String::from("SELECT id, doc FROM leases WHERE TRUE");
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    if !q.states.is_empty() {
        let _ = write!(sql, " AND state = ANY(${})", next());
    }
    for (present, column) in [
        (q.provider.is_some(), "provider ="),
        (q.owner.is_some(), "owner ="),
        (q.org.is_some(), "org ="),
        (q.created_since.is_some(), "created_at >="),
        (q.created_before.is_some(), "created_at <"),
    ] {
        if present {
            let _ = write!(sql, " AND {column} ${}", next());
        }
    }
    let _ = write!(sql, " ORDER BY created_at DESC, id DESC LIMIT ${}", next());
    // Only placeholders are spliced in; every value is bound.
    let mut query = sqlx::query(AssertSqlSafe(sql));
    if !q.states.is_empty() {
        query = query.bind(q.states.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    }
    for value in [&q.provider, &q.owner, &q.org].into_iter().flatten() {
        query = query.bind(text(value));
    }
    for t in [q.created_since, q.created_before].into_iter().flatten() {
        query = query.bind(t.millis());
    }
    let rows = query
        .bind(codec::sql_limit(q.limit))
        .fetch_all(pool)
        .await?;
    let leases: Result<Vec<Lease>, StoreError> = rows
        .iter()
        .map(|row| {
            let id: &str = row.try_get(0).map_err(|e| backend(&e))?;
            codec::decode(
                &key(id),
                row.try_get::<&str, _>(1).map_err(|e| backend(&e))?,
            )
        })
        .collect();
    Ok(leases?)
}

pub(crate) async fn live_by_slug(pool: &PgPool, slug: &str) -> Attempt<Vec<Versioned<Lease>>> {
    let rows = sqlx::query(
        "SELECT id, version, doc FROM leases \
         WHERE slug = $1 AND state IN ('provisioning', 'active') LIMIT 1000",
    )
    .bind(text(slug))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(versioned).collect::<Result<_, _>>()?)
}

pub(crate) async fn due(
    pool: &PgPool,
    now: Timestamp,
    limit: usize,
) -> Attempt<Vec<Versioned<Lease>>> {
    let rows = sqlx::query(
        "SELECT id, version, doc FROM leases WHERE next_check_at <= $1 \
         ORDER BY next_check_at LIMIT $2",
    )
    .bind(now.millis())
    .bind(codec::sql_limit(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(versioned).collect::<Result<_, _>>()?)
}

pub(crate) async fn next_check_at(pool: &PgPool) -> Attempt<Option<Timestamp>> {
    let next: Option<i64> = sqlx::query_scalar(
        "SELECT next_check_at FROM leases WHERE next_check_at IS NOT NULL \
         ORDER BY next_check_at LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(next.map(Timestamp::from_millis))
}

pub(crate) async fn admission(
    pool: &PgPool,
    owner: &str,
    org: &str,
    month_start: Timestamp,
) -> Attempt<Admission> {
    let rows = sqlx::query(ADMISSION)
        .bind(text(owner))
        .bind(text(org))
        .bind(month_start.millis())
        .fetch_all(pool)
        .await?;
    let mut sums = [0_i64; 6];
    for row in &rows {
        for (i, sum) in sums.iter_mut().enumerate() {
            *sum += row.try_get::<i64, _>(i)?;
        }
    }
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Admission {
        active_total: count(sums[0]),
        active_owner: count(sums[1]),
        active_org: count(sums[2]),
        reserved_usd_total: codec::usd_from_micro(sums[3]),
        reserved_usd_owner: codec::usd_from_micro(sums[4]),
        reserved_usd_org: codec::usd_from_micro(sums[5]),
    })
}

pub(crate) async fn prune(pool: &PgPool, before: Timestamp, limit: usize) -> Attempt<u64> {
    let done = sqlx::query(
        "DELETE FROM leases WHERE id IN (SELECT id FROM leases \
         WHERE ended_at < $1 AND state IN ('released', 'expired', 'failed') \
         ORDER BY ended_at LIMIT $2)",
    )
    .bind(before.millis())
    .bind(codec::sql_limit(limit))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

pub(crate) async fn counts(pool: &PgPool) -> Attempt<Vec<(LeaseState, u64)>> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, leases FROM lease_state_counts")
        .fetch_all(pool)
        .await?;
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
