//! Reading one key's value, from YAML or from the text of an env var or flag, into a checked
//! [`Value`] of the key's [`Kind`].

use std::time::Duration;

use serde_yaml::Value as Yaml;

use super::error::ValueError;
use super::secret::Secret;
use crate::duration::parse_duration;

/// How a key's text is read and checked. Not comparable: parsers are function pointers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Bool,
    /// A Go duration that must be longer than zero.
    Duration,
    /// A whole number of things (files).
    Count,
    /// A number of bytes, optionally with a unit (`5GiB`, `500MB`).
    Bytes,
    /// A TCP port, kept as text because that is how ssh takes it.
    Port,
    /// A list of ports; from env a comma list, or `none` for the empty list.
    PortList,
    /// A list of strings; from env or flags a comma list.
    List,
    Secret,
    /// One of a fixed set of lowercase words, with the human wording of that set.
    OneOf(&'static [&'static str], &'static str),
    /// Text read by a key's own parser, which returns the value to keep (a canonical
    /// spelling, a number) or says what is wrong.
    Parsed(fn(&str) -> Result<Value, ValueError>),
    /// A list whose items are each read by a parser; from env or flags a comma list.
    ListOf(fn(&str) -> Result<String, ValueError>),
}

/// A checked value, before it is moved into the typed [`super::Config`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// Text; empty means unset. Ports and one-of words are kept here once checked.
    Text(String),
    Bool(bool),
    Duration(Duration),
    /// Counts and byte sizes.
    Count(u64),
    List(Vec<String>),
    Secret(Option<Secret>),
}

/// Reads the text of an env var or flag. Lists are comma separated. Empty text sets nothing
/// (`None`), in files as in env vars, so an empty value never blanks out a lower layer.
pub(crate) fn from_text(kind: Kind, raw: &str) -> Result<Option<Value>, ValueError> {
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    checked(kind, text).map(Some)
}

fn checked(kind: Kind, text: &str) -> Result<Value, ValueError> {
    match kind {
        Kind::PortList if text.eq_ignore_ascii_case("none") => Ok(Value::List(Vec::new())),
        Kind::PortList | Kind::List | Kind::ListOf(_) => {
            let items = text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty());
            items
                .map(|item| list_item(kind, item))
                .collect::<Result<_, _>>()
                .map(Value::List)
        }
        Kind::Text => Ok(Value::Text(text.to_owned())),
        Kind::Bool => parse_bool(text)
            .map(Value::Bool)
            .ok_or_else(|| ValueError::NotBool(text.into())),
        Kind::Duration => {
            let duration = parse_duration(text)?;
            if duration.is_zero() {
                return Err(ValueError::NotPositive(text.to_owned()));
            }
            Ok(Value::Duration(duration))
        }
        Kind::Count => text
            .parse()
            .map(Value::Count)
            .map_err(|_| ValueError::NotCount(text.into())),
        Kind::Bytes => parse_size(text)
            .map(Value::Count)
            .ok_or_else(|| ValueError::NotSize(text.into())),
        Kind::Port => check_port(text).map(Value::Text),
        Kind::Secret => Ok(Value::Secret(Some(Secret::new(text)))),
        Kind::Parsed(parse) => parse(text),
        Kind::OneOf(allowed, wording) => {
            let word = text.to_ascii_lowercase();
            if allowed.contains(&word.as_str()) {
                Ok(Value::Text(word))
            } else {
                Err(ValueError::NotOneOf {
                    value: text.to_owned(),
                    allowed: wording,
                })
            }
        }
    }
}

/// Reads a YAML value. `None` means the key was written without a value (`ttl:` or `ttl: ""`),
/// which sets nothing, as in the old tool.
pub(crate) fn from_yaml(kind: Kind, yaml: &Yaml) -> Result<Option<Value>, ValueError> {
    if yaml.is_null() {
        return Ok(None);
    }
    match kind {
        Kind::List | Kind::PortList | Kind::ListOf(_) => {
            let Yaml::Sequence(items) = yaml else {
                return Err(ValueError::WrongType {
                    expected: "a list",
                    found: describe(yaml),
                });
            };
            let texts = items.iter().map(|item| {
                let text = scalar(item).map_err(|found| ValueError::WrongType {
                    expected: "a list of strings",
                    found,
                })?;
                list_item(kind, text.trim())
            });
            texts
                .collect::<Result<_, _>>()
                .map(|items| Some(Value::List(items)))
        }
        Kind::Bool if matches!(yaml, Yaml::Bool(_)) => Ok(yaml.as_bool().map(Value::Bool)),
        _ => {
            let expected = if matches!(kind, Kind::Bool) {
                "a boolean"
            } else {
                "a single value"
            };
            let text = scalar(yaml).map_err(|found| ValueError::WrongType { expected, found })?;
            from_text(kind, &text)
        }
    }
}

fn list_item(kind: Kind, item: &str) -> Result<String, ValueError> {
    match kind {
        Kind::PortList => check_port(item),
        Kind::ListOf(parse) => parse(item),
        _ => Ok(item.to_owned()),
    }
}

/// The text of a YAML scalar; numbers and booleans count, since `port: 2222` is common.
fn scalar(yaml: &Yaml) -> Result<String, &'static str> {
    match yaml {
        Yaml::String(text) => Ok(text.clone()),
        Yaml::Number(number) => Ok(number.to_string()),
        Yaml::Bool(flag) => Ok(flag.to_string()),
        other => Err(describe(other)),
    }
}

/// How a YAML value reads in an error message.
pub(crate) fn describe(yaml: &Yaml) -> &'static str {
    match yaml {
        Yaml::Null => "nothing",
        Yaml::Bool(_) => "a boolean",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

fn check_port(text: &str) -> Result<String, ValueError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(port.to_string()),
        _ => Err(ValueError::NotPort(text.to_owned())),
    }
}

/// Checks a CIDR block (`203.0.113.7/32`, `2001:db8::/48`) and returns it as written.
pub(crate) fn check_cidr(text: &str) -> Result<String, ValueError> {
    let bad = || ValueError::NotCidr(text.to_owned());
    let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
    let address: std::net::IpAddr = address.parse().map_err(|_| bad())?;
    let longest = if address.is_ipv4() { 32 } else { 128 };
    match prefix.parse::<u8>() {
        Ok(length) if length <= longest && prefix.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(text.to_owned())
        }
        _ => Err(bad()),
    }
}

/// Parses a byte count: plain bytes (`5368709120`) or a number with a decimal (`500MB`) or
/// binary (`5GiB`, `1.5GiB`) unit, case-insensitive.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let malformed = (whole.is_empty() && fraction.is_empty()) || fraction.contains('.');
    if malformed || (scale == 1 && number.contains('.')) {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut bytes = whole.checked_mul(scale)?;
    let mut divisor: u128 = 1;
    let mut numerator: u128 = 0;
    for digit in fraction.bytes().take(12) {
        numerator = numerator * 10 + u128::from(digit - b'0');
        divisor *= 10;
    }
    bytes = bytes.checked_add(numerator * scale / divisor)?;
    u64::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Yaml {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5368709120"), Some(5 << 30));
        assert_eq!(parse_size("5GiB"), Some(5 << 30));
        assert_eq!(parse_size("5 gib"), Some(5 << 30));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("1.5KiB"), Some(1536));
        assert_eq!(parse_size("20GiB"), Some(20 << 30));
        for bad in [
            "",
            "GiB",
            "1.5",
            "5GB5",
            "5 parsecs",
            "1.2.3GiB",
            "99999999999TiB",
            "-1",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn text_values() {
        assert_eq!(from_text(Kind::Bool, "YES"), Ok(Some(Value::Bool(true))));
        assert_eq!(from_text(Kind::Bool, "0"), Ok(Some(Value::Bool(false))));
        assert_eq!(
            from_text(Kind::Bool, "maybe"),
            Err(ValueError::NotBool("maybe".into()))
        );
        assert_eq!(
            from_text(Kind::List, " CI, ,HOME ,"),
            Ok(Some(Value::List(vec!["CI".into(), "HOME".into()])))
        );
        assert_eq!(
            from_text(Kind::PortList, "none"),
            Ok(Some(Value::List(Vec::new())))
        );
        assert_eq!(
            from_text(Kind::PortList, "22,2200"),
            Ok(Some(Value::List(vec!["22".into(), "2200".into()])))
        );
        assert_eq!(
            from_text(Kind::PortList, "22,ssh"),
            Err(ValueError::NotPort("ssh".into()))
        );
        for bad in ["0", "65536", "-1", "+22", "ssh"] {
            assert_eq!(
                from_text(Kind::Port, bad),
                Err(ValueError::NotPort(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            from_text(Kind::Duration, "0"),
            Err(ValueError::NotPositive("0".into()))
        );
        assert_eq!(from_text(Kind::Secret, " "), Ok(None));
        assert_eq!(from_text(Kind::Port, ""), Ok(None));
        let target = Kind::OneOf(&["linux", "macos", "windows"], "linux, macos or windows");
        assert_eq!(
            from_text(target, "macOS"),
            Ok(Some(Value::Text("macos".into())))
        );
        assert_eq!(
            from_text(target, "beos").unwrap_err().to_string(),
            "\"beos\" is not one of linux, macos or windows"
        );
    }

    #[test]
    fn cidrs() {
        for good in ["203.0.113.7/32", "0.0.0.0/0", "2001:db8::/48", "::/0"] {
            assert_eq!(check_cidr(good), Ok(good.to_owned()));
        }
        for bad in [
            "203.0.113.7",
            "203.0.113.7/33",
            "10.0.0.0/+8",
            "example.com/32",
            "::/129",
        ] {
            assert_eq!(
                check_cidr(bad),
                Err(ValueError::NotCidr(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn yaml_values() {
        assert_eq!(
            from_yaml(Kind::Port, &yaml("2222")),
            Ok(Some(Value::Text("2222".into())))
        );
        assert_eq!(
            from_yaml(Kind::Bool, &yaml("false")),
            Ok(Some(Value::Bool(false)))
        );
        assert_eq!(
            from_yaml(Kind::Bool, &yaml("yes")),
            Ok(Some(Value::Bool(true)))
        );
        assert_eq!(from_yaml(Kind::Text, &yaml("~")), Ok(None));
        assert_eq!(from_yaml(Kind::Port, &yaml("\"\"")), Ok(None));
        assert_eq!(
            from_yaml(Kind::List, &yaml("[]")),
            Ok(Some(Value::List(Vec::new())))
        );
        assert_eq!(
            from_yaml(Kind::Bytes, &yaml("5GiB")),
            Ok(Some(Value::Count(5 << 30)))
        );
        assert_eq!(
            from_yaml(Kind::Count, &yaml("-3")),
            Err(ValueError::NotCount("-3".into()))
        );
        assert_eq!(
            from_yaml(Kind::PortList, &yaml("[22, \"2200\"]")),
            Ok(Some(Value::List(vec!["22".into(), "2200".into()])))
        );
        assert_eq!(
            from_yaml(Kind::Text, &yaml("[a, b]")),
            Err(ValueError::WrongType {
                expected: "a single value",
                found: "a list"
            })
        );
        assert_eq!(
            from_yaml(Kind::List, &yaml("node_modules")),
            Err(ValueError::WrongType {
                expected: "a list",
                found: "a string"
            })
        );
        assert_eq!(
            from_yaml(Kind::List, &yaml("[[a]]")),
            Err(ValueError::WrongType {
                expected: "a list of strings",
                found: "a list"
            })
        );
    }
}
