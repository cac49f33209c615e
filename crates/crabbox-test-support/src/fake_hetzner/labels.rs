//! Labels as Hetzner checks them, and label selectors as Hetzner evaluates them.
//!
//! Keys and values follow the reference's `labels` schema (the Kubernetes rules): a value is
//! empty or up to 63 of `[a-zA-Z0-9._-]`, starting and ending alphanumeric; a key is such a
//! non-empty name with an optional DNS-subdomain prefix and `/`. A selector is requirements
//! joined by commas, all of which must hold: `k=v` (or `k==v`), `k!=v` (also true when `k` is
//! absent), `k`, `!k`, `k in (v1,v2)` and `k notin (v1,v2)`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ApiError;

/// Labels from a request body (`null` or absent: none).
pub(super) fn from_request(value: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid = |why: String| ApiError::invalid_field("labels", &why);
    let map = match value {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(map) => map,
        _ => return Err(invalid("labels must be an object".to_owned())),
    };
    let mut labels = BTreeMap::new();
    for (key, value) in map {
        let Value::String(value) = value else {
            return Err(invalid(format!(
                "the value of label {key:?} is not a string"
            )));
        };
        if !valid_key(key) {
            return Err(invalid(format!("invalid label key {key:?}")));
        }
        if !valid_value(value) {
            return Err(invalid(format!(
                "invalid value {value:?} for label {key:?}"
            )));
        }
        labels.insert(key.clone(), value.clone());
    }
    Ok(labels)
}

fn valid_value(value: &str) -> bool {
    value.is_empty() || valid_name(value)
}

/// 1 to 63 of `[a-zA-Z0-9._-]`, alphanumeric at both ends.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() <= 63
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
}

fn valid_key(key: &str) -> bool {
    match key.split_once('/') {
        None => valid_name(key),
        Some((prefix, name)) => {
            let dns_label = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            prefix.len() <= 253 && prefix.split('.').all(dns_label) && valid_name(name)
        }
    }
}

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Present(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed `label_selector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Selector(Vec<Requirement>);

impl Selector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let invalid =
            || ApiError::invalid_field("label_selector", &format!("invalid selector {text:?}"));
        let mut requirements = Vec::new();
        for part in split_top_level(text).ok_or_else(invalid)? {
            requirements.push(requirement(part.trim()).ok_or_else(invalid)?);
        }
        Ok(Self(requirements))
    }

    /// Whether `labels` (a JSON object of strings; anything else counts as no labels) satisfies
    /// every requirement.
    pub fn matches(&self, labels: &Value) -> bool {
        let get = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v),
            Requirement::NotEquals(k, v) => get(k) != Some(v),
            Requirement::Present(k) => get(k).is_some(),
            Requirement::Absent(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
        })
    }
}

/// The selector's requirements: split at commas outside parentheses. `None` when the
/// parentheses do not balance.
fn split_top_level(text: &str) -> Option<Vec<&str>> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0_i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return None;
        }
    }
    parts.push(&text[start..]);
    (depth == 0).then_some(parts)
}

fn requirement(part: &str) -> Option<Requirement> {
    let key = |k: &str| {
        let k = k.trim();
        valid_key(k).then(|| k.to_owned())
    };
    let value = |v: &str| {
        let v = v.trim();
        valid_value(v).then(|| v.to_owned())
    };
    if let Some(rest) = part.strip_prefix('!') {
        return Some(Requirement::Absent(key(rest)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Some(Requirement::NotEquals(key(k)?, value(v)?));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Some(Requirement::Equals(key(k)?, value(v)?));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((k, set)) = part.split_once(op) {
            let inner = set.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values = inner.split(',').map(value).collect::<Option<Vec<_>>>()?;
            let k = key(k)?;
            return Some(if negated {
                Requirement::NotIn(k, values)
            } else {
                Requirement::In(k, values)
            });
        }
    }
    Some(Requirement::Present(key(part)?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn selects(selector: &str, labels: &Value) -> bool {
        Selector::parse(selector).unwrap().matches(labels)
    }

    #[test]
    fn every_operator_of_the_reference_selects_as_documented() {
        let labels = json!({"env": "prod", "crabbox.dev/lease": "cbx-1", "team": ""});
        for (selector, expected) in [
            ("env=prod", true),
            ("env==prod", true),
            ("env=dev", false),
            ("env!=dev", true),
            ("missing!=x", true),
            ("env", true),
            ("team", true),
            ("!env", false),
            ("!missing", true),
            ("env in (dev, prod)", true),
            ("env notin (dev,prod)", false),
            ("missing notin (a)", true),
            ("env=prod,crabbox.dev/lease=cbx-1", true),
            ("env=prod, crabbox.dev/lease=cbx-2", false),
            ("env in (prod),!missing,team=", true),
        ] {
            assert_eq!(selects(selector, &labels), expected, "{selector}");
        }
    }

    #[test]
    fn malformed_selectors_and_labels_are_refused() {
        for bad in [
            "",
            "env=prod,",
            "env in (a",
            "env in a)",
            "=x",
            "-bad=x",
            "k=a b",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad:?}");
        }
        assert!(from_request(&json!({"ok": "v", "a.b/c-d": ""})).is_ok());
        for bad in [
            json!({"k": 1}),
            json!({"k": "has space"}),
            json!({"-k": "v"}),
            json!({"k": "x".repeat(64)}),
            json!(["k"]),
        ] {
            assert_eq!(
                from_request(&bad).unwrap_err().code,
                "invalid_input",
                "{bad}"
            );
        }
    }
}
