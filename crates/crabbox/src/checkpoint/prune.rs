//! Which checkpoints `checkpoint prune` selects (spec providers.md §3.8): created more than
//! `--older-than` ago and/or last used more than `--unused-for` ago, optionally of one kind
//! class. Selection is a plain function of the records and the clock; deleting is the
//! command's job.

use std::time::{Duration, SystemTime};

use super::record::{Kind, Record};

/// The kind classes `--kind` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindClass {
    /// Provider-held images and snapshots (every kind but recipe and workspace-archive).
    Native,
    /// Workspace archives kept on this machine.
    Archive,
    /// Metadata-only records.
    Recipe,
}

impl KindClass {
    pub fn matches(self, kind: &Kind) -> bool {
        match self {
            KindClass::Native => kind.is_native(),
            KindClass::Archive => kind.is_archive(),
            KindClass::Recipe => *kind == Kind::Recipe,
        }
    }
}

/// What `prune` deletes. Both ages given means both must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    /// Created longer ago than this.
    pub older_than: Option<Duration>,
    /// Last used (forked or restored; else created) longer ago than this.
    pub unused_for: Option<Duration>,
    pub kind: Option<KindClass>,
}

/// A record a filter could not judge, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Unjudged {
    pub id: String,
    pub reason: String,
}

impl PruneFilter {
    /// Splits `records` into those to prune and those whose timestamps cannot be read (never
    /// pruned: an age that cannot be told is not old). Order is kept.
    pub fn select(&self, records: Vec<Record>, now: SystemTime) -> (Vec<Record>, Vec<Unjudged>) {
        let mut chosen = Vec::new();
        let mut unjudged = Vec::new();
        for record in records {
            if self.kind.is_some_and(|class| !class.matches(&record.kind)) {
                continue;
            }
            match self.is_stale(&record, now) {
                Ok(true) => chosen.push(record),
                Ok(false) => {}
                Err(reason) => unjudged.push(Unjudged {
                    id: record.id,
                    reason,
                }),
            }
        }
        (chosen, unjudged)
    }

    fn is_stale(&self, record: &Record, now: SystemTime) -> Result<bool, String> {
        let older = |limit: Option<Duration>, field: &str, text: &str, at: Option<SystemTime>| {
            let Some(limit) = limit else {
                return Ok::<bool, String>(true);
            };
            let at = at.ok_or_else(|| format!("its {field} {text:?} is not an RFC 3339 time"))?;
            // A time in the future (clock skew) is not old.
            Ok(now.duration_since(at).is_ok_and(|age| age > limit))
        };
        Ok(older(
            self.older_than,
            "createdAt",
            &record.created_at,
            record.created(),
        )? && older(
            self.unused_for,
            "lastUsedAt",
            &record.last_used_at,
            record.last_used(),
        )?)
    }
}

/// Parses a prune age: Go durations (`30m`, `12h`, `1h30m`) or whole days (`7d`). Zero is
/// refused: it would select everything.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let age = if let Some(days) = text.strip_suffix('d') {
        let days: u64 = days
            .parse()
            .map_err(|_| format!("{text:?} is not a duration (use 30m, 12h or 7d)"))?;
        Duration::from_secs(days.saturating_mul(86_400))
    } else {
        crabbox_core::duration::parse_duration(text)
            .map_err(|e| format!("{e}; whole days like 7d work too"))?
    };
    if age.is_zero() {
        return Err(format!("{text:?} is zero (use a positive age like 7d)"));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const DAY: u64 = 86_400;

    fn record(kind: Kind, created_day: u64, used_day: Option<u64>) -> Record {
        let mut r = Record::new(kind, UNIX_EPOCH + Duration::from_secs(created_day * DAY));
        if let Some(day) = used_day {
            r.touch(UNIX_EPOCH + Duration::from_secs(day * DAY));
        }
        r
    }

    fn ids(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn ages_parse_days_and_go_durations() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * DAY)));
        assert_eq!(parse_age("30m"), Ok(Duration::from_mins(30)));
        assert_eq!(parse_age("1h30m"), Ok(Duration::from_mins(90)));
        for bad in ["0", "0d", "d", "1.5d", "-1d", "week", ""] {
            assert!(parse_age(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn filters_by_age_use_and_kind() {
        let now = UNIX_EPOCH + Duration::from_secs(100 * DAY);
        let old_unused = record(Kind::WorkspaceArchive, 10, None);
        let old_used = record(Kind::HetznerSnapshot, 10, Some(99));
        let new = record(Kind::Recipe, 98, None);
        let all = vec![old_unused.clone(), old_used.clone(), new.clone()];
        let filter = |older: Option<u64>, unused: Option<u64>, kind| PruneFilter {
            older_than: older.map(|d| Duration::from_secs(d * DAY)),
            unused_for: unused.map(|d| Duration::from_secs(d * DAY)),
            kind,
        };
        let pick = |f: PruneFilter| f.select(all.clone(), now).0;
        assert_eq!(
            ids(&pick(filter(Some(30), None, None))),
            ids(&[old_unused.clone(), old_used.clone()])
        );
        assert_eq!(
            ids(&pick(filter(None, Some(1), None))),
            ids(&[old_unused.clone(), new.clone()])
        );
        assert_eq!(
            ids(&pick(filter(Some(30), Some(30), None))),
            ids(std::slice::from_ref(&old_unused))
        );
        assert_eq!(
            ids(&pick(filter(Some(1), None, Some(KindClass::Native)))),
            ids(&[old_used])
        );
        assert_eq!(
            ids(&pick(filter(None, Some(1), Some(KindClass::Recipe)))),
            ids(&[new])
        );
    }

    #[test]
    fn unreadable_times_are_never_pruned() {
        let mut bad = record(Kind::Recipe, 1, None);
        bad.created_at = "last tuesday".into();
        let filter = PruneFilter {
            older_than: Some(Duration::from_secs(DAY)),
            ..PruneFilter::default()
        };
        let (chosen, unjudged) = filter.select(vec![bad.clone()], SystemTime::now());
        assert!(chosen.is_empty());
        assert_eq!(unjudged[0].id, bad.id);
        assert!(unjudged[0].reason.contains("createdAt"), "{unjudged:?}");
    }
}
