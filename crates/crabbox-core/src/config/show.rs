//! `crabbox config show`: every resolved key with its value and origin, as text lines or JSON.
//! Secrets only ever appear as `configured` or `missing`, and the coordinator URL without any
//! credentials it holds.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json, json};

use super::resolve::Resolved;
use super::value::Value;
use crate::duration::format_duration;

/// One line per key, sorted: `key=value origin=<origin>`. Lists are comma joined, empty values
/// print as `-`, and values with spaces or control characters are quoted. Warnings are not
/// included; the caller prints them to stderr.
pub fn render_show(resolved: &Resolved) -> String {
    let mut out = String::new();
    for (key, entry) in resolved.entries() {
        let value = text(&displayed(key, &entry.value));
        let origin = entry.origin.to_string();
        let _ = writeln!(out, "{key}={} origin={}", quoted(&value), quoted(&origin));
    }
    out
}

/// `{"values": {key: {"value": …, "origin": "…"}}, "warnings": […], "providerSelected": …,
/// "providerSource": …, "brokerAuth": …, "brokerAdminAuth": …}`. Unset text is `null`,
/// durations are Go strings (`1h30m0s`), sizes are numbers of bytes.
pub fn show_json(resolved: &Resolved) -> Json {
    let mut values = Map::new();
    for (key, entry) in resolved.entries() {
        let value = json!({
            "value": json_value(&displayed(key, &entry.value)),
            "origin": entry.origin.to_string(),
        });
        values.insert((*key).to_owned(), value);
    }
    let config = resolved.config();
    json!({
        "values": values,
        "warnings": resolved.warnings(),
        "providerSelected": config.provider,
        "providerSource": resolved.origin("provider").map(ToString::to_string),
        "brokerAuth": secret_status(
            config.coordinator.token.is_some() || config.coordinator.token_command.is_some()
        ),
        "brokerAdminAuth": secret_status(config.coordinator.admin_token.is_some()),
    })
}

/// The value as shown: a URL that may carry a password loses it.
fn displayed(key: &str, value: &Value) -> Value {
    match value {
        Value::Text(url) if key == "coordinator" => Value::Text(crate::redact::url(url)),
        other => other.clone(),
    }
}

fn text(value: &Value) -> String {
    let shown = match value {
        Value::Text(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Duration(duration) => format_duration(*duration),
        Value::Count(count) => count.to_string(),
        Value::List(items) => items.join(","),
        Value::Secret(secret) => secret_status(secret.is_some()).to_owned(),
    };
    if shown.is_empty() {
        "-".to_owned()
    } else {
        shown
    }
}

fn json_value(value: &Value) -> Json {
    match value {
        Value::Text(text) if text.is_empty() => Json::Null,
        Value::Text(text) => json!(text),
        Value::Bool(flag) => json!(flag),
        Value::Duration(duration) => json!(format_duration(*duration)),
        Value::Count(count) => json!(count),
        Value::List(items) => json!(items),
        Value::Secret(secret) => json!(secret_status(secret.is_some())),
    }
}

fn secret_status(configured: bool) -> &'static str {
    if configured { "configured" } else { "missing" }
}

/// Keeps each record on one line and each field one word.
fn quoted(text: &str) -> String {
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        format!("{text:?}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::{ConfigInputs, FlagValue, resolve};

    fn resolved() -> Resolved {
        resolve(&ConfigInputs {
            repo: vec![(
                "/r/crabbox.yaml".into(),
                "sync:\n  exclude: [node_modules, dist]\nworkRoot: /work/my box\nbogus: 1\n".into(),
            )],
            env: BTreeMap::from([("CRABBOX_PROVIDER".to_owned(), "ssh".to_owned())]),
            flags: vec![FlagValue::new("ttl", "--ttl", "2h")],
            ..ConfigInputs::default()
        })
        .unwrap()
    }

    #[test]
    fn text_lines_are_sorted_with_origins() {
        let show = render_show(&resolved());
        let lines: Vec<&str> = show.lines().collect();
        let mut sorted = lines.clone();
        sorted.sort_unstable();
        assert_eq!(lines, sorted);
        for expected in [
            "provider=ssh origin=env:CRABBOX_PROVIDER",
            "ttl=2h0m0s origin=flag:--ttl",
            "idleTimeout=30m0s origin=default",
            "sync.exclude=node_modules,dist origin=repo:/r/crabbox.yaml",
            "sync.include=- origin=default",
            "sync.warnBytes=5368709120 origin=default",
            "workRoot=\"/work/my box\" origin=repo:/r/crabbox.yaml",
            "coordinatorToken=missing origin=default",
            "serverType=- origin=default",
            "ssh.port=2222 origin=default",
        ] {
            assert!(lines.contains(&expected), "{expected} not in\n{show}");
        }
        assert!(!show.contains("bogus"));
    }

    #[test]
    fn json_shape() {
        let json = show_json(&resolved());
        assert_eq!(
            json["values"]["ttl"],
            json!({"value": "2h0m0s", "origin": "flag:--ttl"})
        );
        assert_eq!(json["values"]["serverType"]["value"], Json::Null);
        assert_eq!(json["values"]["sync.delete"]["value"], json!(true));
        assert_eq!(json["values"]["sync.failFiles"]["value"], json!(150_000));
        assert_eq!(
            json["values"]["env.allow"]["value"],
            json!(["CI", "NODE_OPTIONS"])
        );
        assert_eq!(
            json["values"]["coordinatorToken"]["value"],
            json!("missing")
        );
        assert_eq!(json["providerSelected"], json!("ssh"));
        assert_eq!(json["providerSource"], json!("env:CRABBOX_PROVIDER"));
        assert_eq!(json["brokerAuth"], json!("missing"));
        assert_eq!(
            json["warnings"],
            json!(["unknown config key \"bogus\" in /r/crabbox.yaml"])
        );
    }

    #[test]
    fn the_coordinator_url_is_shown_without_its_password() {
        let resolved = resolve(&ConfigInputs {
            env: BTreeMap::from([(
                "CRABBOX_COORDINATOR".to_owned(),
                "http://u:SECRETPW@127.0.0.1:1".to_owned(),
            )]),
            ..ConfigInputs::default()
        })
        .unwrap();
        let text = render_show(&resolved);
        let json = show_json(&resolved).to_string();
        assert!(
            text.contains(
                "coordinator=http://<redacted>@127.0.0.1:1 origin=env:CRABBOX_COORDINATOR"
            ),
            "{text}"
        );
        assert!(json.contains("http://<redacted>@127.0.0.1:1"), "{json}");
        assert!(!text.contains("SECRETPW") && !json.contains("SECRETPW"));
    }
}
