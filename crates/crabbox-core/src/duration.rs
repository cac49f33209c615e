//! Go-compatible durations: parsing `90m`, `1h30m`, `1.5h`, `300ms` the way Go's
//! `time.ParseDuration` does, and printing the way Go's `Duration.String()` does, so config files,
//! flags and human output stay interchangeable with the old tool.

use std::fmt::Write as _;
use std::time::Duration;

/// Hint appended to errors about malformed input.
const SYNTAX_HINT: &str = "use Go syntax like 90m or 1h30m";

/// Go durations are an `int64` of nanoseconds; anything longer does not exist there.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Why a string is not a duration. Every message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("an empty value is not a duration ({SYNTAX_HINT})")]
    Empty,
    #[error("{0:?} is negative (durations must be positive, like 90m)")]
    Negative(String),
    #[error("{0:?} has no unit ({SYNTAX_HINT})")]
    MissingUnit(String),
    #[error("{input:?} has unknown unit {unit:?} (use ns, us, ms, s, m or h)")]
    UnknownUnit { input: String, unit: String },
    #[error("{0:?} is not a duration ({SYNTAX_HINT})")]
    Invalid(String),
    #[error("{0:?} is too long for a duration (the limit is about 2562047h)")]
    TooLong(String),
}

/// Parses a Go duration string. Negative durations are rejected because nothing in Crabbox
/// counts backwards; a bare `0` is the only unitless number allowed, as in Go.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut rest = input;
    if let Some(stripped) = rest.strip_prefix('-') {
        return if stripped.is_empty() {
            Err(DurationError::Invalid(input.to_owned()))
        } else {
            Err(DurationError::Negative(input.to_owned()))
        };
    }
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Invalid(input.to_owned()));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, remaining) = component(rest, input)?;
        total = total.saturating_add(nanos);
        if total > MAX_NANOS {
            return Err(DurationError::TooLong(input.to_owned()));
        }
        rest = remaining;
    }
    let secs = u64::try_from(total / 1_000_000_000).expect("bounded by MAX_NANOS");
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Parses one `<number><unit>` component and returns its nanoseconds and the remaining text.
fn component<'a>(text: &'a str, input: &str) -> Result<(u128, &'a str), DurationError> {
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, after) = text.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(DurationError::Invalid(input.to_owned()));
    }
    let unit_len = after
        .find(|c: char| c.is_ascii_digit() || c == '.')
        .unwrap_or(after.len());
    let (unit, remaining) = after.split_at(unit_len);
    if unit.is_empty() {
        return Err(DurationError::MissingUnit(input.to_owned()));
    }
    let scale: u128 = match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ if unit.chars().all(char::is_alphabetic) => {
            return Err(DurationError::UnknownUnit {
                input: input.to_owned(),
                unit: unit.to_owned(),
            });
        }
        _ => return Err(DurationError::Invalid(input.to_owned())),
    };
    let too_long = || DurationError::TooLong(input.to_owned());
    let whole_value: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_long())?
    };
    let mut nanos = whole_value.checked_mul(scale).ok_or_else(too_long)?;
    // Like Go, digits beyond what a nanosecond can express are ignored (truncated).
    let mut divisor: u128 = 1;
    let mut fraction_value: u128 = 0;
    for digit in fraction.bytes().take(20) {
        fraction_value = fraction_value * 10 + u128::from(digit - b'0');
        divisor *= 10;
    }
    nanos = nanos.saturating_add(fraction_value * scale / divisor);
    Ok((nanos, remaining))
}

/// Formats like Go's `Duration.String()` after rounding to whole milliseconds (halves round
/// up): `0s`, `450ms`, `1.234s`, `2m3.5s`, `1h30m0s`.
pub fn format_duration(d: Duration) -> String {
    let millis = (d.as_nanos() + 500_000) / 1_000_000;
    if millis == 0 {
        return "0s".to_owned();
    }
    if millis < 1_000 {
        return format!("{millis}ms");
    }
    let hours = millis / 3_600_000;
    let minutes = millis / 60_000 % 60;
    let seconds = millis / 1_000 % 60;
    let fraction = millis % 1_000;
    let mut out = String::new();
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    out.push_str(&seconds.to_string());
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_mins(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_mins(90)));
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_mins(90)));
        assert_eq!(parse_duration("300ms"), Ok(ms(300)));
        assert_eq!(parse_duration("2h0m0s"), Ok(Duration::from_hours(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("1.s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1ns"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("2μs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("1.0000000001s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration(" 10m "), Ok(Duration::from_mins(10)));
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        let err = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert_eq!(
            err(""),
            "an empty value is not a duration (use Go syntax like 90m or 1h30m)"
        );
        assert_eq!(
            err("-5m"),
            "\"-5m\" is negative (durations must be positive, like 90m)"
        );
        assert_eq!(
            err("90"),
            "\"90\" has no unit (use Go syntax like 90m or 1h30m)"
        );
        assert_eq!(
            err("1h30"),
            "\"1h30\" has no unit (use Go syntax like 90m or 1h30m)"
        );
        assert_eq!(
            err("5d"),
            "\"5d\" has unknown unit \"d\" (use ns, us, ms, s, m or h)"
        );
        assert_eq!(
            err("ninety"),
            "\"ninety\" is not a duration (use Go syntax like 90m or 1h30m)"
        );
        assert_eq!(
            err("1.2.3s"),
            "\"1.2.3s\" is not a duration (use Go syntax like 90m or 1h30m)"
        );
        for bad in ["-", "+", ".s", "1 h", "h", "1h-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad} parsed");
        }
        assert!(matches!(
            parse_duration("9999999999h"),
            Err(DurationError::TooLong(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::TooLong(_))
        ));
    }

    #[test]
    fn formats_like_go_after_millisecond_rounding() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(400)), "0s");
        assert_eq!(format_duration(Duration::from_micros(500)), "1ms");
        assert_eq!(format_duration(ms(450)), "450ms");
        assert_eq!(format_duration(ms(1_234)), "1.234s");
        assert_eq!(
            format_duration(Duration::from_nanos(1_234_567_890)),
            "1.235s"
        );
        assert_eq!(format_duration(ms(123_500)), "2m3.5s");
        assert_eq!(format_duration(Duration::from_mins(90)), "1h30m0s");
        assert_eq!(format_duration(Duration::from_secs(3600 + 5)), "1h0m5s");
        assert_eq!(format_duration(Duration::from_mins(1)), "1m0s");
        assert_eq!(format_duration(ms(999_600)), "16m39.6s");
    }

    #[test]
    fn format_then_parse_round_trips() {
        for d in [
            ms(1),
            ms(999),
            ms(1_001),
            ms(61_010),
            Duration::from_hours(24),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
