//! Configuration: YAML files (`crabbox.yaml` / `.crabbox.yaml` in the current directory, then
//! the git root; the user file), `CRABBOX_*` environment and flags, with the precedence
//! flags > env > repo > user > defaults. Every value remembers where it came from so
//! `config show` can say so. Unknown keys warn and never fail; bad values fail with the file,
//! key and expected form.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crabbox_api::ExitStatus;

use crate::error::CliError;
use crate::godur;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Duration,
    Port,
    Int,
    Bytes,
    List,
    Secret,
}

struct KeySpec {
    key: &'static str,
    aliases: &'static [&'static str],
    env: &'static [&'static str],
    default: &'static str,
    kind: Kind,
}

const fn k(
    key: &'static str,
    aliases: &'static [&'static str],
    env: &'static [&'static str],
    default: &'static str,
    kind: Kind,
) -> KeySpec {
    KeySpec {
        key,
        aliases,
        env,
        default,
        kind,
    }
}

const KEYS: &[KeySpec] = &[
    k("provider", &[], &["CRABBOX_PROVIDER"], "local", Kind::Str),
    k("class", &[], &["CRABBOX_DEFAULT_CLASS"], "beast", Kind::Str),
    k("serverType", &[], &["CRABBOX_SERVER_TYPE"], "", Kind::Str),
    k(
        "target",
        &["targetOS"],
        &["CRABBOX_TARGET", "CRABBOX_TARGET_OS"],
        "linux",
        Kind::Str,
    ),
    k("profile", &[], &["CRABBOX_PROFILE"], "default", Kind::Str),
    k(
        "ttl",
        &["lease.ttl"],
        &["CRABBOX_TTL"],
        "90m",
        Kind::Duration,
    ),
    k(
        "idleTimeout",
        &["lease.idleTimeout"],
        &["CRABBOX_IDLE_TIMEOUT"],
        "30m",
        Kind::Duration,
    ),
    k(
        "workRoot",
        &[],
        &["CRABBOX_WORK_ROOT"],
        "/work/crabbox",
        Kind::Str,
    ),
    // How long a new lease may take to accept SSH (empty: 30s local, 20m otherwise).
    k(
        "readyTimeout",
        &[],
        &["CRABBOX_READY_TIMEOUT"],
        "",
        Kind::Duration,
    ),
    k("ssh.user", &[], &["CRABBOX_SSH_USER"], "crabbox", Kind::Str),
    k(
        "ssh.key",
        &[],
        &["CRABBOX_SSH_KEY"],
        "~/.ssh/id_ed25519",
        Kind::Str,
    ),
    k("ssh.port", &[], &["CRABBOX_SSH_PORT"], "2222", Kind::Port),
    k(
        "ssh.fallbackPorts",
        &[],
        &["CRABBOX_SSH_FALLBACK_PORTS"],
        "22",
        Kind::List,
    ),
    k(
        "sync.delete",
        &[],
        &["CRABBOX_SYNC_DELETE"],
        "true",
        Kind::Bool,
    ),
    k(
        "sync.checksum",
        &[],
        &["CRABBOX_SYNC_CHECKSUM"],
        "false",
        Kind::Bool,
    ),
    k(
        "sync.gitSeed",
        &[],
        &["CRABBOX_SYNC_GIT_SEED"],
        "true",
        Kind::Bool,
    ),
    k(
        "sync.fingerprint",
        &[],
        &["CRABBOX_SYNC_FINGERPRINT"],
        "true",
        Kind::Bool,
    ),
    k(
        "sync.baseRef",
        &[],
        &["CRABBOX_SYNC_BASE_REF"],
        "",
        Kind::Str,
    ),
    k(
        "sync.timeout",
        &[],
        &["CRABBOX_SYNC_TIMEOUT"],
        "15m",
        Kind::Duration,
    ),
    k(
        "sync.warnFiles",
        &[],
        &["CRABBOX_SYNC_WARN_FILES"],
        "50000",
        Kind::Int,
    ),
    k(
        "sync.warnBytes",
        &[],
        &["CRABBOX_SYNC_WARN_BYTES"],
        "5GiB",
        Kind::Bytes,
    ),
    k(
        "sync.failFiles",
        &[],
        &["CRABBOX_SYNC_FAIL_FILES"],
        "150000",
        Kind::Int,
    ),
    k(
        "sync.failBytes",
        &[],
        &["CRABBOX_SYNC_FAIL_BYTES"],
        "20GiB",
        Kind::Bytes,
    ),
    k(
        "sync.allowLarge",
        &[],
        &["CRABBOX_SYNC_ALLOW_LARGE"],
        "false",
        Kind::Bool,
    ),
    k("sync.exclude", &["sync.excludes"], &[], "", Kind::List),
    k("sync.include", &["sync.includes"], &[], "", Kind::List),
    k(
        "env.allow",
        &[],
        &["CRABBOX_ENV_ALLOW"],
        "CI,NODE_OPTIONS",
        Kind::List,
    ),
    k("static.id", &[], &["CRABBOX_STATIC_ID"], "", Kind::Str),
    k("static.name", &[], &["CRABBOX_STATIC_NAME"], "", Kind::Str),
    k("static.host", &[], &["CRABBOX_STATIC_HOST"], "", Kind::Str),
    k("static.user", &[], &["CRABBOX_STATIC_USER"], "", Kind::Str),
    k("static.port", &[], &["CRABBOX_STATIC_PORT"], "", Kind::Str),
    k(
        "static.workRoot",
        &[],
        &["CRABBOX_STATIC_WORK_ROOT"],
        "",
        Kind::Str,
    ),
    k(
        "coordinator",
        &["broker.url"],
        &["CRABBOX_COORDINATOR"],
        "",
        Kind::Str,
    ),
    k(
        "coordinatorToken",
        &["broker.token"],
        &["CRABBOX_COORDINATOR_TOKEN"],
        "",
        Kind::Secret,
    ),
    k(
        "broker.adminToken",
        &[],
        &["CRABBOX_COORDINATOR_ADMIN_TOKEN", "CRABBOX_ADMIN_TOKEN"],
        "",
        Kind::Secret,
    ),
    k(
        "broker.mode",
        &[],
        &["CRABBOX_COORDINATOR_MODE"],
        "managed",
        Kind::Str,
    ),
];

/// Keys from the existing tool that this version accepts without using yet.
const ACCEPTED_PREFIXES: &[&str] = &[
    "architecture",
    "os",
    "network",
    "desktop",
    "desktopEnv",
    "browser",
    "code",
    "windows",
    "capacity",
    "tailscale",
    "aws",
    "azure",
    "hetzner",
    "daytona",
    "islo",
    "blacksmith",
    "actions",
    "results",
    "cache",
    "profiles",
    "presets",
    "jobs",
    "hostId",
    "run",
    "localContainer",
    "broker",
    "lease",
    "pond",
    "gcp",
    "access",
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    User(PathBuf),
    Repo(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::User(p) => write!(f, "user:{}", p.display()),
            Origin::Repo(p) => write!(f, "repo:{}", p.display()),
            Origin::Env(v) => write!(f, "env:{v}"),
            Origin::Flag(v) => write!(f, "flag:{v}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    List(Vec<String>),
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<&'static str, (Value, Origin)>,
    pub warnings: Vec<String>,
    /// Config files that were read, in order.
    pub files: Vec<PathBuf>,
}

fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter()
        .find(|s| s.key == key || s.aliases.contains(&key))
}

fn flatten(
    prefix: &str,
    value: &serde_yaml::Value,
    out: &mut Vec<(String, Value)>,
    unknown: &mut Vec<String>,
) {
    use serde_yaml::Value as Y;
    let scalar = |v: &Y| match v {
        Y::String(s) => Some(s.clone()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Number(n) => Some(n.to_string()),
        Y::Null => Some(String::new()),
        _ => None,
    };
    match value {
        Y::Mapping(map) if spec(prefix).is_none() => {
            for (k, v) in map {
                let Some(name) = scalar(k) else { continue };
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                flatten(&key, v, out, unknown);
            }
        }
        Y::Sequence(items) => {
            let list: Vec<String> = items.iter().filter_map(scalar).collect();
            out.push((prefix.to_owned(), Value::List(list)));
        }
        other => match scalar(other) {
            Some(s) => out.push((prefix.to_owned(), Value::Str(s))),
            None => unknown.push(prefix.to_owned()),
        },
    }
}

fn usage(message: String) -> CliError {
    CliError::msg(ExitStatus::Usage, message)
}

fn validate(spec: &KeySpec, value: &Value, whence: &str) -> Result<Value, CliError> {
    let bad = |v: &str, expected: &str| {
        usage(format!(
            "invalid value for {:?} {whence}: {v:?} is not {expected}",
            spec.key
        ))
    };
    match (spec.kind, value) {
        (Kind::List, Value::Str(s)) => {
            let items: Vec<String> = if s.trim() == "none" || s.trim().is_empty() {
                Vec::new()
            } else {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            };
            Ok(Value::List(items))
        }
        (Kind::List, list) => Ok(list.clone()),
        (_, Value::List(_)) => Err(usage(format!(
            "invalid value for {:?} {whence}: expected a single value, got a list",
            spec.key
        ))),
        (Kind::Bool, Value::Str(s)) => parse_bool(s)
            .map(|b| Value::Str(b.to_string()))
            .ok_or_else(|| bad(s, "a boolean (true/false)")),
        (Kind::Duration, Value::Str(s)) => match godur::parse(s) {
            Ok(d) if !d.is_zero() => Ok(value.clone()),
            Ok(_) => Err(bad(s, "a positive duration")),
            Err(_) => Err(bad(s, "a duration (use Go syntax like 90m or 1h30m)")),
        },
        (Kind::Port, Value::Str(s)) => match s.parse::<u16>() {
            Ok(p) if p > 0 => Ok(value.clone()),
            _ => Err(bad(s, "a port number (1-65535)")),
        },
        (Kind::Int, Value::Str(s)) => s
            .parse::<u64>()
            .map(|_| value.clone())
            .map_err(|_| bad(s, "a whole number")),
        (Kind::Bytes, Value::Str(s)) => parse_bytes(s)
            .map(|_| value.clone())
            .ok_or_else(|| bad(s, "a size (bytes, or like 500MB, 5GiB)")),
        (Kind::Str | Kind::Secret, _) => Ok(value.clone()),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `123`, `500MB`, `5GiB`.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let mult: u64 = match s[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A flag's contribution: dotted key, flag name, value.
pub type FlagValue = (&'static str, &'static str, String);

/// Finds the repo config files: the current directory, then the git root.
fn repo_files(cwd: &Path, git_root: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = vec![cwd.to_owned()];
    if let Some(root) = git_root
        && root != cwd
    {
        dirs.push(root.to_owned());
    }
    // Lower precedence first: the git root's files, then the current directory's.
    dirs.reverse();
    let mut files = Vec::new();
    for dir in dirs {
        for name in ["crabbox.yaml", ".crabbox.yaml"] {
            let path = dir.join(name);
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files
}

impl Settings {
    /// Loads configuration for a command run in `cwd`.
    pub fn load(
        cwd: &Path,
        git_root: Option<&Path>,
        flags: &[FlagValue],
    ) -> Result<Self, CliError> {
        let env: BTreeMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CRABBOX_"))
            .collect();
        let (user, repo) = match env.get("CRABBOX_CONFIG").filter(|v| !v.is_empty()) {
            Some(only) => (Some(PathBuf::from(only)), Vec::new()),
            None => (
                Some(crate::paths::user_config_file()),
                repo_files(cwd, git_root),
            ),
        };
        let mut layers: Vec<(PathBuf, Origin)> = Vec::new();
        if let Some(user) = user.filter(|p| p.is_file()) {
            layers.push((user.clone(), Origin::User(user)));
        }
        for file in repo {
            layers.push((file.clone(), Origin::Repo(file)));
        }
        let mut files = Vec::new();
        let mut sources = Vec::new();
        for (path, origin) in layers {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| usage(format!("could not read config {}: {e}", path.display())))?;
            files.push(path);
            sources.push((origin, text));
        }
        Self::resolve(&sources, &env, flags).map(|mut s| {
            s.files = files;
            s
        })
    }

    /// Pure resolution from file texts, environment and flags.
    pub fn resolve(
        files: &[(Origin, String)],
        env: &BTreeMap<String, String>,
        flags: &[FlagValue],
    ) -> Result<Self, CliError> {
        let mut values: BTreeMap<&'static str, (Value, Origin)> = BTreeMap::new();
        let mut warnings = Vec::new();
        for spec in KEYS {
            let default = if spec.kind == Kind::List {
                Value::List(
                    spec.default
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                )
            } else {
                Value::Str(spec.default.to_owned())
            };
            values.insert(spec.key, (default, Origin::Default));
        }
        for (origin, text) in files {
            let path = match origin {
                Origin::User(p) | Origin::Repo(p) => p.display().to_string(),
                other => other.to_string(),
            };
            if text.trim().is_empty() {
                continue;
            }
            let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
                    .unwrap_or_default();
                usage(format!("could not parse config {path}{at}: {e}"))
            })?;
            if !doc.is_mapping() && !doc.is_null() {
                return Err(usage(format!(
                    "config {path} must be a YAML mapping of keys to values"
                )));
            }
            let mut flat = Vec::new();
            let mut odd = Vec::new();
            flatten("", &doc, &mut flat, &mut odd);
            for (key, value) in flat {
                if let Some(spec) = spec(&key) {
                    let v = validate(spec, &value, &format!("in {path}"))?;
                    values.insert(spec.key, (v, origin.clone()));
                } else {
                    let top = key.split('.').next().unwrap_or("");
                    if !ACCEPTED_PREFIXES.contains(&top) {
                        warnings.push(format!("unknown config key {key:?} in {path}"));
                    }
                }
            }
        }
        for spec in KEYS {
            for var in spec.env {
                if let Some(raw) = env.get(*var) {
                    let v = validate(
                        spec,
                        &Value::Str(raw.clone()),
                        &format!("from environment variable {var}"),
                    )?;
                    values.insert(spec.key, (v, Origin::Env((*var).to_owned())));
                    break;
                }
            }
        }
        for (key, flag, raw) in flags {
            let spec = spec(key).expect("flags map to known keys");
            let v = validate(spec, &Value::Str(raw.clone()), &format!("from flag {flag}"))?;
            values.insert(spec.key, (v, Origin::Flag((*flag).to_owned())));
        }
        Ok(Self {
            values,
            warnings,
            files: Vec::new(),
        })
    }

    fn raw(&self, key: &str) -> &Value {
        &self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("unknown settings key {key}"))
            .0
    }

    pub fn origin(&self, key: &str) -> &Origin {
        &self.values[key].1
    }

    pub fn str(&self, key: &str) -> String {
        match self.raw(key) {
            Value::Str(s) => s.clone(),
            Value::List(l) => l.join(","),
        }
    }

    pub fn opt(&self, key: &str) -> Option<String> {
        Some(self.str(key)).filter(|s| !s.trim().is_empty())
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        match self.raw(key) {
            Value::List(l) => l.clone(),
            Value::Str(s) => vec![s.clone()],
        }
    }

    pub fn bool(&self, key: &str) -> bool {
        parse_bool(&self.str(key)).unwrap_or(false)
    }

    pub fn duration(&self, key: &str) -> Duration {
        godur::parse(&self.str(key)).expect("validated duration")
    }

    pub fn u64(&self, key: &str) -> u64 {
        let s = self.str(key);
        s.parse().ok().or_else(|| parse_bytes(&s)).unwrap_or(0)
    }

    pub fn port(&self, key: &str) -> u16 {
        self.str(key).parse().unwrap_or(22)
    }

    /// `key=value origin=…` lines, secrets shown as configured/missing.
    pub fn show_lines(&self) -> Vec<String> {
        KEYS.iter()
            .map(|spec| {
                let shown = self.shown(spec);
                format!(
                    "{}={} origin={}",
                    spec.key,
                    if shown.is_empty() { "-".into() } else { shown },
                    self.origin(spec.key)
                )
            })
            .collect()
    }

    fn shown(&self, spec: &KeySpec) -> String {
        if spec.kind == Kind::Secret {
            return if self.str(spec.key).is_empty() {
                "missing"
            } else {
                "configured"
            }
            .into();
        }
        self.str(spec.key)
    }

    /// `config show --json`.
    pub fn show_json(&self) -> serde_json::Value {
        let mut values = serde_json::Map::new();
        for spec in KEYS {
            let value = match (spec.kind, self.raw(spec.key)) {
                (Kind::Secret, _) => serde_json::Value::String(self.shown(spec)),
                (_, Value::List(l)) => serde_json::json!(l),
                (_, Value::Str(s)) => serde_json::Value::String(s.clone()),
            };
            values.insert(
                spec.key.to_owned(),
                serde_json::json!({"value": value, "origin": self.origin(spec.key).to_string()}),
            );
        }
        serde_json::json!({
            "values": values,
            "warnings": self.warnings,
            "files": self.files,
            "providerSelected": self.str("provider"),
            "providerSource": self.origin("provider").to_string(),
            "brokerAuth": self.shown(spec("coordinatorToken").expect("known key")),
            "brokerAdminAuth": self.shown(spec("broker.adminToken").expect("known key")),
        })
    }
}

/// The starter `.crabbox.yaml` that `crabbox init` writes.
pub fn starter_config(repo_name: &str) -> String {
    format!(
        "# Crabbox configuration for {repo_name}. Every key is optional; `crabbox config show`\n\
# prints the resolved values and where each came from.\n\
\n\
# provider: local        # local (an sshd on this machine) or ssh (a static host)\n\
class: beast\n\
ttl: 90m\n\
idleTimeout: 30m\n\
\n\
sync:\n  delete: true\n  gitSeed: true\n  fingerprint: true\n  timeout: 15m\n  exclude:\n    - .cache\n    - dist\n    - node_modules\n\
\n\
env:\n  allow:\n    - CI\n    - NODE_OPTIONS\n\
\n\
ssh:\n  user: crabbox\n  port: \"2222\"\n  fallbackPorts:\n    - \"22\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(text: &str) -> (Origin, String) {
        (
            Origin::Repo(PathBuf::from("/r/crabbox.yaml")),
            text.to_owned(),
        )
    }

    #[test]
    fn precedence_flags_env_repo_user_default() {
        let user = (
            Origin::User(PathBuf::from("/u/config.yaml")),
            "ttl: 2h\nclass: small\nidleTimeout: 5m\n".to_owned(),
        );
        let env: BTreeMap<String, String> = [("CRABBOX_TTL".to_owned(), "3h".to_owned())].into();
        let s = Settings::resolve(
            &[user.clone(), repo("ttl: 1h\nclass: fast\n")],
            &env,
            &[("ttl", "--ttl", "4h".into())],
        )
        .unwrap();
        assert_eq!(s.str("ttl"), "4h");
        assert_eq!(s.origin("ttl").to_string(), "flag:--ttl");
        assert_eq!(s.str("class"), "fast");
        assert_eq!(s.origin("class").to_string(), "repo:/r/crabbox.yaml");
        assert_eq!(s.str("idleTimeout"), "5m");
        assert_eq!(s.str("provider"), "local");
        let s = Settings::resolve(&[user, repo("ttl: 1h\n")], &env, &[]).unwrap();
        assert_eq!(s.origin("ttl").to_string(), "env:CRABBOX_TTL");
    }

    #[test]
    fn unknown_keys_warn_and_aliases_work() {
        let s = Settings::resolve(&[repo("lease:\n  ttl: 2h\nsync:\n  excludes: [a, b]\nbogus: 1\ncapacity:\n  market: spot\n")], &BTreeMap::new(), &[]).unwrap();
        assert_eq!(s.str("ttl"), "2h");
        assert_eq!(s.list("sync.exclude"), ["a", "b"]);
        assert_eq!(
            s.warnings,
            ["unknown config key \"bogus\" in /r/crabbox.yaml"]
        );
    }

    #[test]
    fn bad_values_name_file_and_key() {
        let err = Settings::resolve(&[repo("ttl: ninety\n")], &BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(err.code, 2);
        assert_eq!(
            err.error.to_string(),
            "invalid value for \"ttl\" in /r/crabbox.yaml: \"ninety\" is not a duration (use Go syntax like 90m or 1h30m)"
        );
        let err = Settings::resolve(&[repo("ttl: [1]\n")], &BTreeMap::new(), &[]).unwrap_err();
        assert!(err.error.to_string().contains("expected a single value"));
        let err =
            Settings::resolve(&[repo("ttl: 1h\n  bad: [\n")], &BTreeMap::new(), &[]).unwrap_err();
        assert!(
            err.error
                .to_string()
                .contains("could not parse config /r/crabbox.yaml at line"),
            "{}",
            err.error
        );
        let env = [("CRABBOX_SSH_PORT".to_owned(), "99999".to_owned())].into();
        let err = Settings::resolve(&[], &env, &[]).unwrap_err();
        assert!(
            err.error
                .to_string()
                .contains("from environment variable CRABBOX_SSH_PORT")
        );
    }

    #[test]
    fn env_lists_and_secrets() {
        let env = [
            ("CRABBOX_SSH_FALLBACK_PORTS".to_owned(), "none".to_owned()),
            ("CRABBOX_ENV_ALLOW".to_owned(), "FOO,BAR_*".to_owned()),
            (
                "CRABBOX_COORDINATOR_TOKEN".to_owned(),
                "sekrit-token".to_owned(),
            ),
        ]
        .into();
        let s = Settings::resolve(&[], &env, &[]).unwrap();
        assert!(s.list("ssh.fallbackPorts").is_empty());
        assert_eq!(s.list("env.allow"), ["FOO", "BAR_*"]);
        let shown = s.show_lines().join("\n") + &s.show_json().to_string();
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains("coordinatorToken=configured origin=env:CRABBOX_COORDINATOR_TOKEN"));
    }

    #[test]
    fn starter_config_round_trips_without_warnings() {
        let s = Settings::resolve(&[repo(&starter_config("demo"))], &BTreeMap::new(), &[]).unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.list("sync.exclude"), [".cache", "dist", "node_modules"]);
    }
}
