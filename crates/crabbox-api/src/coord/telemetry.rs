//! Runner telemetry samples (`LeaseTelemetry`) and their sanitizing rules (spec §3.5).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Timestamp;

/// How many samples a lease or run keeps.
pub const TELEMETRY_HISTORY_LIMIT: usize = 60;

const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// One sample of a runner's load, memory and disk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct Telemetry {
    pub captured_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load5: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load15: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
}

impl Telemetry {
    /// Sanitizes an untrusted JSON sample: unknown fields dropped, negative or non-finite numbers
    /// dropped, values above their cap clamped, an invalid `capturedAt` replaced by `now`.
    /// Returns `None` when no metric survives.
    pub fn sanitize(raw: &Value, now: Timestamp) -> Option<Self> {
        let obj = raw.as_object()?;
        let num = |key: &str, cap: f64| -> Option<f64> {
            let v = obj.get(key)?.as_f64()?;
            (v.is_finite() && v >= 0.0).then_some(v.min(cap))
        };
        let int = |key: &str, cap: f64| num(key, cap).map(|v| v.trunc() as u64);
        let t = Self {
            captured_at: obj
                .get("capturedAt")
                .and_then(Value::as_str)
                .and_then(Timestamp::parse)
                .unwrap_or(now),
            source: obj
                .get("source")
                .and_then(Value::as_str)
                .map(|s| s.trim().chars().take(32).collect::<String>())
                .filter(|s| !s.is_empty()),
            cpu_count: int("cpuCount", 1e6).filter(|&c| c >= 1),
            load1: num("load1", 10_000.0),
            load5: num("load5", 10_000.0),
            load15: num("load15", 10_000.0),
            memory_percent: num("memoryPercent", 100.0),
            disk_percent: num("diskPercent", 100.0),
            memory_used_bytes: int("memoryUsedBytes", MAX_SAFE_INTEGER),
            memory_total_bytes: int("memoryTotalBytes", MAX_SAFE_INTEGER),
            disk_used_bytes: int("diskUsedBytes", MAX_SAFE_INTEGER),
            disk_total_bytes: int("diskTotalBytes", MAX_SAFE_INTEGER),
            uptime_seconds: int("uptimeSeconds", MAX_SAFE_INTEGER),
        };
        t.has_metric().then_some(t)
    }

    pub fn has_metric(&self) -> bool {
        self.cpu_count.is_some()
            || self.load1.is_some()
            || self.load5.is_some()
            || self.load15.is_some()
            || self.memory_percent.is_some()
            || self.disk_percent.is_some()
            || self.memory_used_bytes.is_some()
            || self.memory_total_bytes.is_some()
            || self.disk_used_bytes.is_some()
            || self.disk_total_bytes.is_some()
            || self.uptime_seconds.is_some()
    }

    /// `history + samples`, de-duplicated by `capturedAt` (last wins), sorted, newest 60 kept.
    pub fn merge_history(history: &mut Vec<Self>, samples: impl IntoIterator<Item = Self>) {
        for s in samples {
            history.retain(|h| h.captured_at != s.captured_at);
            history.push(s);
        }
        history.sort_by_key(|h| h.captured_at);
        if history.len() > TELEMETRY_HISTORY_LIMIT {
            history.drain(..history.len() - TELEMETRY_HISTORY_LIMIT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sanitize_drops_negatives_clamps_caps_and_unknown_fields() {
        let now = Timestamp(1_000);
        let t = Telemetry::sanitize(
            &json!({"capturedAt":"bad","load1":-1,"load5":20000,"memoryPercent":140.5,
                    "cpuCount":0,"diskUsedBytes":12.7,"secret":"x","source":"  linux-proc  "}),
            now,
        )
        .unwrap();
        assert_eq!(t.captured_at, now);
        assert_eq!(t.load1, None);
        assert_eq!(t.load5, Some(10_000.0));
        assert_eq!(t.memory_percent, Some(100.0));
        assert_eq!(t.cpu_count, None);
        assert_eq!(t.disk_used_bytes, Some(12));
        assert_eq!(t.source.as_deref(), Some("linux-proc"));
        let v = serde_json::to_value(&t).unwrap();
        assert!(v.get("secret").is_none());
    }

    #[test]
    fn a_sample_without_metrics_is_rejected() {
        assert!(
            Telemetry::sanitize(&json!({"capturedAt":"2026-01-01T00:00:00Z"}), Timestamp(0))
                .is_none()
        );
        assert!(Telemetry::sanitize(&json!("nope"), Timestamp(0)).is_none());
    }

    #[test]
    fn history_dedupes_sorts_and_keeps_newest_sixty() {
        let sample = |ms: i64, load: f64| Telemetry {
            captured_at: Timestamp(ms),
            load1: Some(load),
            ..Telemetry::default()
        };
        let mut h = vec![sample(5, 1.0)];
        Telemetry::merge_history(&mut h, [sample(5, 2.0), sample(1, 0.5)]);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].captured_at, Timestamp(1));
        assert_eq!(h[1].load1, Some(2.0));
        Telemetry::merge_history(&mut h, (10..100).map(|i| sample(i, 0.1)));
        assert_eq!(h.len(), TELEMETRY_HISTORY_LIMIT);
        assert_eq!(h.last().unwrap().captured_at, Timestamp(99));
        assert_eq!(h[0].captured_at, Timestamp(40));
    }
}
