//! Go-syntax durations (`90m`, `1h30m`, `45s`) as the old tool's flags and config used them.

use std::time::Duration;

/// Parses a Go duration string.
pub fn parse(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "{input:?} is not a duration (use Go syntax like 90m or 1h30m)"
            ));
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| {
            format!("{input:?} is not a duration (use Go syntax like 90m or 1h30m)")
        })?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "{input:?} is missing a unit (use Go syntax like 90m or 1h30m)"
                ));
            }
            other => {
                return Err(format!(
                    "{input:?} has unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ));
            }
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// Formats like Go's `Duration.String()` after rounding to milliseconds.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let s_ms = ms % 60_000;
    let secs = if s_ms.is_multiple_of(1000) {
        format!("{}s", s_ms / 1000)
    } else {
        let frac = format!("{:03}", s_ms % 1000);
        format!("{}.{}s", s_ms / 1000, frac.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_go_syntax() {
        assert_eq!(parse("90m").unwrap(), Duration::from_mins(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_mins(90));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_mins(90));
        assert_eq!(parse("300ms").unwrap(), Duration::from_millis(300));
        assert!(parse("ninety").unwrap_err().contains("not a duration"));
        assert!(parse("90").unwrap_err().contains("missing a unit"));
        assert!(parse("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn format_like_go() {
        assert_eq!(format(Duration::from_millis(1234)), "1.234s");
        assert_eq!(format(Duration::from_millis(123_500)), "2m3.5s");
        assert_eq!(format(Duration::from_mins(90)), "1h30m0s");
        assert_eq!(format(Duration::from_millis(450)), "450ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
