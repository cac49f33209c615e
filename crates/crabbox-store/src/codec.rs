//! What every backend does the same way: records stored as their JSON documents, run logs cut
//! into bounded pieces, key-prefix ranges, and the derived index columns of a record.

use crabbox_api::coord::{Lease, Run, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// The largest piece of a run log stored in one row (spec §3.4: 65,536 bytes).
pub const LOG_CHUNK_BYTES: usize = 65_536;

/// The JSON text stored for a record.
pub fn encode<T: Serialize>(key: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("encode {key}: {e}")))
}

/// Decodes a stored document; a document that no longer parses is [`StoreError::Corrupt`].
pub fn decode<T: DeserializeOwned>(key: &str, doc: &str) -> Result<T, StoreError> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

/// Splits a log into pieces of at most [`LOG_CHUNK_BYTES`] bytes, cut on character
/// boundaries, whose concatenation is the log. An empty log has no pieces.
pub fn split_log(log: &str) -> Vec<&str> {
    let mut pieces = Vec::with_capacity(log.len() / LOG_CHUNK_BYTES + 1);
    let mut rest = log;
    while !rest.is_empty() {
        let mut end = rest.len().min(LOG_CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// The log whose stored pieces (UTF-8 bytes, in order) are `pieces`.
pub fn join_log(run_id: &str, pieces: &[Vec<u8>]) -> Result<String, StoreError> {
    let bytes = pieces.concat();
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt {
        key: format!("run {run_id} log"),
        message: e.to_string(),
    })
}

/// The smallest string above every string that starts with `prefix`, so that
/// `prefix <= key < bound` selects exactly the keys with that prefix under a byte-wise (UTF-8
/// code point) ordering. `None` when there is no such bound (empty prefix, or a prefix made
/// only of `char::MAX`).
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            // The surrogate range is not made of chars; the next scalar value is U+E000.
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Microdollars, the unit backends sum spend in so that totals of cent amounts are exact.
pub fn micro_usd(usd: f64) -> i64 {
    (usd * 1_000_000.0).round() as i64
}

/// Dollars from microdollars.
pub fn usd_from_micro(micro: i64) -> f64 {
    micro as f64 / 1_000_000.0
}

/// The indexed columns of a lease row, derived from the record.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseColumns<'a> {
    pub id: &'a str,
    pub slug: &'a str,
    pub owner: &'a str,
    pub org: &'a str,
    pub state: &'static str,
    pub provider: &'a str,
    pub registered: bool,
    pub created_at: i64,
    /// The first instant of the UTC month of `created_at` (terminal spend is kept per month).
    pub created_month: i64,
    pub ended_at: Option<i64>,
    pub max_estimated_usd: f64,
}

impl<'a> LeaseColumns<'a> {
    pub fn of(lease: &'a Lease) -> Self {
        let (year, month) = lease.created_at.year_month();
        Self {
            id: &lease.id,
            slug: &lease.slug,
            owner: &lease.owner,
            org: &lease.org,
            state: lease.state.as_str(),
            provider: &lease.provider,
            registered: lease.is_registered(),
            created_at: lease.created_at.millis(),
            created_month: Timestamp::month_start(year, month).millis(),
            ended_at: lease.ended_at.map(Timestamp::millis),
            max_estimated_usd: lease.max_estimated_usd,
        }
    }
}

/// When a run ended, for retention: `endedAt`, else `lastEventAt`, else `startedAt` for a
/// finished run; `None` while it is running (spec §4.10).
pub fn run_ended_at(run: &Run) -> Option<i64> {
    (run.state != crabbox_api::coord::RunState::Running).then(|| {
        run.ended_at
            .or(run.last_event_at)
            .unwrap_or(run.started_at)
            .millis()
    })
}

/// The keys a run is listed under by lease (`GET /v1/runs?leaseID=`): every lease id it has
/// run on, its current lease (a record from before `leaseIDs` has only that) and its slug,
/// without blanks or repeats. Stores add the new ones to their run-lease index with every
/// write of the run; the migrations that created the index filled it by the same rule.
pub fn run_lease_keys(run: &Run) -> Vec<&str> {
    let mut keys: Vec<&str> = Vec::with_capacity(run.lease_ids.len() + 2);
    let all = run.lease_ids.iter().chain([&run.lease_id, &run.slug]);
    for key in all.map(String::as_str) {
        if !key.is_empty() && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// A limit as SQL wants it.
pub fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A run event sequence number as stored (a signed 64-bit column).
pub fn sql_seq(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Backend(format!("event seq {seq} out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_log_keeps_characters_whole_and_concatenates_back() {
        assert!(split_log("").is_empty());
        assert_eq!(split_log("abc"), vec!["abc"]);
        // 3-byte characters straddle every 64 KiB boundary.
        let log = "x".repeat(LOG_CHUNK_BYTES - 1) + &"€".repeat(LOG_CHUNK_BYTES);
        let pieces = split_log(&log);
        assert!(
            pieces
                .iter()
                .all(|p| p.len() <= LOG_CHUNK_BYTES && !p.is_empty())
        );
        assert_eq!(pieces.concat(), log);
        assert_eq!(pieces[0].len(), LOG_CHUNK_BYTES - 1);
    }

    #[test]
    fn prefix_bound_selects_exactly_the_prefix() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("oauth:").as_deref(), Some("oauth;"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        let bound = prefix_upper_bound("ab").unwrap();
        for key in ["ab", "ab\u{10FFFF}", "ab\0"] {
            assert!(key >= "ab" && key < bound.as_str(), "{key:?}");
        }
        assert!("ac" >= bound.as_str());
    }

    #[test]
    fn micro_usd_sums_cents_exactly() {
        let total = micro_usd(0.1) + micro_usd(0.2);
        assert!((usd_from_micro(total) - 0.3).abs() < f64::EPSILON);
    }
}
