//! Timestamps as the coordinator writes them: ISO-8601 UTC with milliseconds
//! (`2026-05-01T00:00:41.000Z`), held as Unix milliseconds.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Milliseconds since the Unix epoch, serialized as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The wall clock now.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    #[must_use]
    pub const fn plus_secs(self, secs: i64) -> Self {
        Self(self.0.saturating_add(secs.saturating_mul(1000)))
    }

    #[must_use]
    pub const fn plus_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Parses RFC 3339 / ISO-8601 with a zone (`Z` or an offset); fractional seconds optional.
    pub fn parse(s: &str) -> Option<Self> {
        let ts: jiff::Timestamp = s.trim().parse().ok()?;
        Some(Self(ts.as_millisecond()))
    }

    /// `(year, month)` in UTC.
    pub fn year_month(self) -> (i64, u32) {
        let (y, m, _) = civil_from_days(self.0.div_euclid(86_400_000));
        (y, m)
    }

    /// The first instant of the UTC month `year-month`.
    pub fn month_start(year: i64, month: u32) -> Self {
        Self(days_from_civil(year, month, 1) * 86_400_000)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let ms_of_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let (hour, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
        let (minute, rest) = (rest / 60_000, rest % 60_000);
        let (second, milli) = (rest / 1000, rest % 1000);
        if !(0..=9999).contains(&year) {
            return write!(
                out,
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z"
            );
        }
        // Every lease and run response carries several of these: digits by hand, not through
        // the formatting machinery (a tenth of the cost).
        let mut text = *b"0000-00-00T00:00:00.000Z";
        for (at, value, width) in [
            (0, year, 4),
            (5, i64::from(month), 2),
            (8, i64::from(day), 2),
            (11, hour, 2),
            (14, minute, 2),
            (17, second, 2),
            (20, milli, 3),
        ] {
            let mut v = value;
            for i in (at..at + width).rev() {
                text[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        out.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time",
            "description": "ISO-8601 UTC with milliseconds"})
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp {s:?}")))
    }
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_javascript_to_iso_string() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_777_593_641_000).to_string(),
            "2026-05-01T00:00:41.000Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn parses_iso_with_zone_and_round_trips() {
        for s in ["2026-05-01T00:00:41.000Z", "2024-02-29T23:59:59.123Z"] {
            assert_eq!(Timestamp::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(
            Timestamp::parse("2026-05-01T02:00:41+02:00")
                .unwrap()
                .to_string(),
            "2026-05-01T00:00:41.000Z"
        );
        assert!(Timestamp::parse("yesterday").is_none());
    }

    #[test]
    fn month_helpers() {
        let t = Timestamp::parse("2026-03-15T10:00:00Z").unwrap();
        assert_eq!(t.year_month(), (2026, 3));
        assert_eq!(
            Timestamp::month_start(2026, 3).to_string(),
            "2026-03-01T00:00:00.000Z"
        );
    }
}
