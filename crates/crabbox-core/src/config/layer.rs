//! Turning one source (a YAML file, the environment, the command-line flags) into the list of
//! settings it makes. A layer only lists the keys it sets; precedence is applied in `resolve`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::{Mapping, Value as Yaml};

use super::error::{ConfigError, ValueError};
use super::keys::{self, KEYS, KeySpec};
use super::origin::Origin;
use super::value::{self, Kind, Value};

/// One configuration value given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagValue {
    /// Dotted config key (`ttl`, `sync.checksum`); aliases work too.
    pub key: String,
    /// The flag as the user wrote it (`--ttl`), for origins and errors.
    pub flag: String,
    /// The flag's text; booleans as `true`/`false`, lists comma separated.
    pub value: String,
}

impl FlagValue {
    pub fn new(key: impl Into<String>, flag: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            flag: flag.into(),
            value: value.into(),
        }
    }
}

/// One key set by one layer.
#[derive(Debug)]
pub(crate) struct Setting {
    pub spec: &'static KeySpec,
    pub value: Value,
    pub origin: Origin,
}

/// Reads a config file. `origin` is [`Origin::User`] or [`Origin::Repo`] for `path`.
pub(crate) fn file(
    path: &Path,
    text: &str,
    origin: &Origin,
    warnings: &mut Vec<String>,
) -> Result<Vec<Setting>, ConfigError> {
    let document: Yaml = serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml {
        path: path.to_owned(),
        line: source.location().map(|location| location.line()),
        source,
    })?;
    let mapping = match &document {
        Yaml::Null => return Ok(Vec::new()),
        Yaml::Mapping(mapping) => mapping,
        other => {
            let found = value::describe(other);
            return Err(ConfigError::NotAMapping {
                path: path.to_owned(),
                found,
            });
        }
    };
    let mut walk = FileWalk {
        path,
        origin,
        warnings,
        found: BTreeMap::new(),
    };
    walk.mapping(mapping, "")?;
    Ok(walk
        .found
        .into_values()
        .map(|(_, setting)| setting)
        .collect())
}

struct FileWalk<'a> {
    path: &'a Path,
    origin: &'a Origin,
    warnings: &'a mut Vec<String>,
    /// Canonical key → (spelling used, setting), to catch a key set twice under two spellings.
    found: BTreeMap<&'static str, (String, Setting)>,
}

impl FileWalk<'_> {
    fn mapping(&mut self, mapping: &Mapping, prefix: &str) -> Result<(), ConfigError> {
        for (name, yaml) in mapping {
            let name = match name {
                Yaml::String(name) => name.clone(),
                Yaml::Number(number) => number.to_string(),
                Yaml::Bool(flag) => flag.to_string(),
                other => format!("<{}>", value::describe(other)),
            };
            let dotted = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            self.entry(dotted, yaml)?;
        }
        Ok(())
    }

    fn entry(&mut self, dotted: String, yaml: &Yaml) -> Result<(), ConfigError> {
        if let Some((spec, _)) = keys::lookup(&dotted) {
            let parsed = value::from_yaml(spec.kind, yaml)
                .map_err(|problem| self.invalid(&dotted, problem))?;
            if let Some(value) = parsed {
                self.record(spec, dotted, value);
            }
        } else if keys::is_section(&dotted) {
            match yaml {
                Yaml::Mapping(inner) => self.mapping(inner, &dotted)?,
                Yaml::Null => {}
                other => {
                    let found = value::describe(other);
                    let problem = ValueError::WrongType {
                        expected: "a mapping",
                        found,
                    };
                    return Err(self.invalid(&dotted, problem));
                }
            }
        } else if !keys::is_accepted_unused(&dotted) {
            self.warnings.push(format!(
                "unknown config key {dotted:?} in {}",
                self.path.display()
            ));
        }
        Ok(())
    }

    /// Keeps one setting per key. When a file spells a key two ways (`ttl` and `lease.ttl`),
    /// the canonical spelling wins, else the later one, and the user is told unless both
    /// spellings hold the same value (`login` writes `provider` and `broker.provider`).
    fn record(&mut self, spec: &'static KeySpec, spelling: String, value: Value) {
        let setting = Setting {
            spec,
            value,
            origin: self.origin.clone(),
        };
        if let Some((previous, kept)) = self.found.get(spec.key) {
            let path = self.path.display();
            if *previous == spelling {
                self.warnings.push(format!(
                    "{spelling:?} is set twice in {path}; using the last"
                ));
            } else if kept.value == setting.value {
                return;
            } else {
                let keep_previous = previous == spec.key;
                let winner = if keep_previous { previous } else { &spelling };
                self.warnings.push(format!(
                    "{previous:?} and {spelling:?} are both set in {path}; using {winner:?}"
                ));
                if keep_previous {
                    return;
                }
            }
        }
        self.found.insert(spec.key, (spelling, setting));
    }

    fn invalid(&self, key: &str, problem: ValueError) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            origin: self.origin.clone(),
            problem,
        }
    }
}

/// Reads the `CRABBOX_*` variables this version knows. Empty variables count as unset. When a
/// key has two variables (`CRABBOX_TARGET`, `CRABBOX_TARGET_OS`), the first listed wins.
pub(crate) fn env(
    vars: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Setting>, ConfigError> {
    let mut settings = Vec::new();
    for spec in KEYS {
        let mut set = spec.env.iter().filter_map(|name| {
            let text = vars
                .get(*name)
                .map(|text| text.trim())
                .filter(|text| !text.is_empty());
            text.map(|text| (*name, text))
        });
        let Some((name, text)) = set.next() else {
            continue;
        };
        // A variable that is not Crabbox's own (`AWS_REGION`) is a fallback, not a second
        // spelling: overriding it with the `CRABBOX_*` one is the point, so it is not warned.
        for (other, other_text) in set {
            if other_text != text && other.starts_with("CRABBOX_") {
                warnings.push(format!("{name} and {other} are both set; using {name}"));
            }
        }
        let origin = Origin::Env(name.to_owned());
        match value::from_text(spec.kind, text) {
            Ok(Some(value)) => settings.push(Setting {
                spec,
                value,
                origin,
            }),
            Ok(None) => {}
            Err(problem) => {
                return Err(ConfigError::InvalidValue {
                    key: spec.key.to_owned(),
                    origin,
                    problem,
                });
            }
        }
    }
    Ok(settings)
}

/// Reads command-line flags, applied in order. Secrets are refused: a flag value shows up in
/// `ps` and shell history.
pub(crate) fn flags(flags: &[FlagValue]) -> Result<Vec<Setting>, ConfigError> {
    let mut settings = Vec::new();
    for flag in flags {
        let Some((spec, _)) = keys::lookup(&flag.key) else {
            return Err(ConfigError::UnknownFlagKey {
                flag: flag.flag.clone(),
                key: flag.key.clone(),
            });
        };
        if matches!(spec.kind, Kind::Secret) {
            let env = spec.env.first().copied().unwrap_or("the environment");
            return Err(ConfigError::SecretFlag {
                flag: flag.flag.clone(),
                key: spec.key,
                env,
            });
        }
        let origin = Origin::Flag(flag.flag.clone());
        match value::from_text(spec.kind, &flag.value) {
            Ok(Some(value)) => settings.push(Setting {
                spec,
                value,
                origin,
            }),
            Ok(None) => {}
            Err(problem) => {
                return Err(ConfigError::InvalidValue {
                    key: flag.key.clone(),
                    origin,
                    problem,
                });
            }
        }
    }
    Ok(settings)
}
