//! The integrity check when the store opens. A damaged file (a disk fault, a copy taken while
//! the coordinator wrote, a crash on storage that lies about fsync) would otherwise open
//! quietly and fail requests one at a time later, or answer from damaged pages; checked at
//! open, it stops the start with an error that names the file.
//!
//! `PRAGMA quick_check` reads every page of every table and index and checks the b-trees and
//! the records on them; unlike `integrity_check` it skips UNIQUE constraints and whether each
//! index matches its table, which makes it linear in the number of rows instead of `n log n`.
//! A damaged page fails it. docs/coordinator.md gives its cost on a large database.

use std::path::Path;

use crabbox_store::StoreError;
use rusqlite::Connection;

/// Problems the check reports at most: the first few name the damage well enough.
const MAX_PROBLEMS: usize = 5;

/// Runs `PRAGMA quick_check` on `conn`, the database at `path`.
pub(crate) fn quick_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let problems = conn
        .prepare(&format!("PRAGMA quick_check({MAX_PROBLEMS})"))
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| failed(path, &e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    // A report may span lines and opens with a `*** in database main ***` banner.
    let report: Vec<&str> = problems
        .iter()
        .flat_map(|p| p.lines())
        .filter(|line| !line.starts_with("***"))
        .collect();
    Err(damaged(path, &report.join("; ")))
}

/// The error for a failure while checking or opening `path`: [`StoreError::Damaged`] when
/// SQLite found the file damaged or not a database at all, else `None`.
pub(crate) fn damage(path: &Path, e: &rusqlite::Error) -> Option<StoreError> {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            Some(damaged(path, &e.to_string()))
        }
        _ => None,
    }
}

fn failed(path: &Path, e: &rusqlite::Error) -> StoreError {
    damage(path, e).unwrap_or_else(|| {
        StoreError::Backend(format!(
            "could not check sqlite database {}: {e}",
            path.display()
        ))
    })
}

fn damaged(path: &Path, what: &str) -> StoreError {
    StoreError::Damaged(format!("sqlite database {}: {what}", path.display()))
}
