//! Numeric request fields the old coordinator read as `Number.isFinite(x) ? x : fallback`
//! (spec §2.2, §2.3, §4.4): a value of another JSON type (`"60"`, `true`, `null`, `{}`) counts
//! as absent, so the field falls back to its documented default (a create's TTL, a finish's
//! exit code 1, a heartbeat's stored idle timeout) instead of failing the whole request. Only
//! the fields the spec names use this; every other field keeps its strict JSON type.

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// `#[serde(default, deserialize_with = "…::number_or_absent")]` on an `Option<f64>` field.
pub fn number_or_absent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    d.deserialize_any(NumberOrAbsent)
}

struct NumberOrAbsent;

impl<'de> Visitor<'de> for NumberOrAbsent {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number (any other JSON value counts as absent)")
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::number_or_absent")]
        n: Option<f64>,
        #[serde(default)]
        strict: Option<f64>,
    }

    fn n(json: &str) -> Option<f64> {
        let body = serde_json::from_str::<Body>(json).unwrap();
        assert_eq!(body.strict, body.strict.map(|_| 1.0));
        body.n
    }

    #[test]
    fn numbers_are_kept_and_other_values_count_as_absent() {
        assert_eq!(n(r#"{"n": 60}"#), Some(60.0));
        assert_eq!(n(r#"{"n": -1.5}"#), Some(-1.5));
        assert_eq!(n(r#"{"n": 18446744073709551615}"#), Some(u64::MAX as f64));
        for other in [r#""60""#, "true", "null", "[1]", r#"{"a": [1]}"#] {
            assert_eq!(
                n(&format!(r#"{{"n": {other}, "strict": 1}}"#)),
                None,
                "{other}"
            );
        }
        assert_eq!(n("{}"), None);
        // Fields without the helper stay strict.
        assert!(serde_json::from_str::<Body>(r#"{"strict": "1"}"#).is_err());
    }
}
