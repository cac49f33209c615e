//! The cached fingerprint of a watched root and the rule for trusting it.
//!
//! An entry is `(nonce, generation, key, inputs, state)`. The generation is read from the
//! daemon *before* the fingerprint is computed, so a change that lands while `git status`
//! runs leaves the daemon a step ahead of the entry and the next lookup computes again. The
//! entry is trusted only when the same daemon instance reports the same generation and the
//! key still matches.
//!
//! The key covers what the daemon cannot see: the fingerprint options (rules, flags, remote
//! workdir), the git-related environment, the root's identity, and the stat data of the files
//! outside the root that change what `git status` reports: every git config file it reads
//! (found with `git config --list --show-origin`, including files named by `include.path`
//! that do not exist yet), the global excludes and attributes files, and their default
//! locations. Stat data is taken before the files are read, like the generation.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::WatchDir;
use super::protocol::Answer;
use crate::sync::{FingerprintOptions, LocalState, fingerprint, git};

/// Bump when the entry or the key changes shape.
const CACHE_VERSION: u32 = 1;
/// `git config` is asked at most this many times per lookup to settle the set of inputs.
const DISCOVERY_ROUNDS: usize = 3;

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    version: u32,
    nonce: String,
    generation: u64,
    key: String,
    /// Files outside the root whose stat data is in the key.
    inputs: Vec<PathBuf>,
    state: LocalState,
}

/// Where a computed state will be stored, and under which daemon reading.
#[derive(Debug)]
pub(super) struct Target {
    file: PathBuf,
    nonce: String,
    generation: u64,
    key: String,
    inputs: Vec<PathBuf>,
}

/// Stat data that changes on every write, rename or replacement; `None` for a missing file.
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64, u32)>;

fn stamp(path: &Path) -> Stamp {
    // Followed, so editing the target of a symlinked dotfile counts.
    std::fs::metadata(path).ok().map(|m| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.mode(),
        )
    })
}

fn read_entry(file: &Path) -> Option<Entry> {
    let text = std::fs::read(file).ok()?;
    serde_json::from_slice::<Entry>(&text)
        .ok()
        .filter(|e| e.version == CACHE_VERSION)
}

/// Config and ignore files git reads from fixed places, whether or not they exist yet.
fn fixed_inputs() -> Vec<PathBuf> {
    let env = |key: &str| {
        std::env::var_os(key)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME");
    let xdg = env("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")));
    let mut files: Vec<PathBuf> = Vec::new();
    files.extend(home.map(|h| h.join(".gitconfig")));
    if let Some(xdg) = xdg {
        let git = xdg.join("git");
        files.extend(["config", "ignore", "attributes"].map(|f| git.join(f)));
    }
    files.extend(env("GIT_CONFIG_GLOBAL"));
    files.extend(env("GIT_CONFIG_SYSTEM"));
    files.extend(["/etc/gitconfig", "/etc/gitattributes"].map(PathBuf::from));
    files
}

/// Files `git config` reports reading, plus the files its values point at: includes (also
/// ones that do not exist yet), `core.excludesFile`, `core.attributesFile`.
fn config_inputs(root: &Path) -> Option<Vec<PathBuf>> {
    let out = git::run(root, &["config", "--list", "--show-origin", "-z"]).ok()?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let expand = |value: &str, base: &Path| -> PathBuf {
        match (value.strip_prefix("~/"), &home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ => base.join(value),
        }
    };
    let mut files = Vec::new();
    let mut records = out.split(|b| *b == 0);
    while let (Some(origin), Some(item)) = (records.next(), records.next()) {
        let Some(file) = std::str::from_utf8(origin)
            .ok()
            .and_then(|o| o.strip_prefix("file:"))
        else {
            continue;
        };
        let file = root.join(file);
        let item = String::from_utf8_lossy(item);
        let (key, value) = item.split_once('\n').unwrap_or((&item, ""));
        let key = key.to_ascii_lowercase();
        // `include.path` and `includeIf.<condition>.path`: section first, variable last.
        let section = key.split_once('.').map_or("", |(s, _)| s);
        let variable = key.rsplit_once('.').map_or("", |(_, v)| v);
        let is_include = matches!(section, "include" | "includeif") && variable == "path";
        if is_include {
            let base = file.parent().unwrap_or(root);
            files.push(expand(value, base));
        } else if key == "core.excludesfile" || key == "core.attributesfile" {
            files.push(expand(value, root));
        }
        files.push(file);
    }
    Some(files)
}

fn sorted_unique(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.sort();
    paths.dedup();
    paths
}

/// The key over `inputs`, whose stamps were taken before they were read.
fn key(
    options: &str,
    root: &Path,
    inputs: &[PathBuf],
    stamps: &BTreeMap<PathBuf, Stamp>,
) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(
        format!(
            "crabbox-watch-cache-v{CACHE_VERSION} {}",
            env!("CARGO_PKG_VERSION")
        )
        .as_bytes(),
    );
    field(options.as_bytes());
    field(root.as_os_str().as_encoded_bytes());
    field(format!("{:?}", stamp(root).map(|s| (s.0, s.1))).as_bytes());
    // Git reads its config locations and overrides from the environment.
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("GIT_") || k == "HOME" || k == "XDG_CONFIG_HOME")
        .collect();
    env.sort();
    for (k, v) in env {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    for input in inputs {
        field(input.as_os_str().as_encoded_bytes());
        field(format!("{:?}", stamps.get(input).copied().flatten()).as_bytes());
    }
    hex::encode(h.finalize())
}

/// The outcome of comparing the daemon's answer and the inputs with the stored entry.
#[derive(Debug)]
pub(super) enum Check {
    Hit(LocalState),
    /// Compute, then store under this target (none when the answer cannot be trusted later).
    Miss(Option<Target>),
}

/// Looks up the entry for `root` given the daemon's `answer` (which must be ready).
pub(super) fn check(
    dir: &WatchDir,
    root: &Path,
    opts: &FingerprintOptions<'_>,
    answer: &Answer,
) -> Check {
    let options = fingerprint::options_digest(opts);
    let is_git = git::git_dir(root).is_some();
    let file = dir.cache_file();
    let entry = read_entry(&file);
    let fixed = if is_git { fixed_inputs() } else { Vec::new() };
    if let Some(entry) = &entry
        && entry.nonce == answer.nonce
        && entry.generation == answer.generation
        && fixed.iter().all(|f| entry.inputs.contains(f))
    {
        let stamps = entry.inputs.iter().map(|p| (p.clone(), stamp(p))).collect();
        if key(&options, root, &entry.inputs, &stamps) == entry.key {
            return Check::Hit(entry.state.clone());
        }
    }
    // Settle the inputs: stamp what is known, ask git what it reads, repeat while git names
    // files that were not stamped before it read them.
    let mut stamps: BTreeMap<PathBuf, Stamp> = BTreeMap::new();
    let mut known = fixed.clone();
    known.extend(entry.map(|e| e.inputs).unwrap_or_default());
    let mut inputs = None;
    for _ in 0..DISCOVERY_ROUNDS {
        for path in &known {
            stamps.entry(path.clone()).or_insert_with(|| stamp(path));
        }
        let mut found = fixed.clone();
        if is_git {
            let Some(config) = config_inputs(root) else {
                return Check::Miss(None);
            };
            found.extend(config);
        }
        let found = sorted_unique(found);
        if found.iter().all(|f| stamps.contains_key(f)) {
            inputs = Some(found);
            break;
        }
        known = found;
    }
    let Some(inputs) = inputs else {
        return Check::Miss(None);
    };
    Check::Miss(Some(Target {
        file,
        nonce: answer.nonce.clone(),
        generation: answer.generation,
        key: key(&options, root, &inputs, &stamps),
        inputs,
    }))
}

impl Target {
    /// Writes the entry atomically (temp file, then rename), 0600. Best effort: a cache that
    /// cannot be written only means the next run computes again.
    pub(super) fn store(self, state: &LocalState) {
        let entry = Entry {
            version: CACHE_VERSION,
            nonce: self.nonce,
            generation: self.generation,
            key: self.key,
            inputs: self.inputs,
            state: state.clone(),
        };
        let Ok(text) = serde_json::to_vec(&entry) else {
            return;
        };
        let tmp = self
            .file
            .with_extension(format!("tmp.{}", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&text));
        if written.is_err() || std::fs::rename(&tmp, &self.file).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_inputs_follow_includes_and_excludes_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(&root)
            .status()
            .unwrap();
        std::fs::write(
            root.join(".git/config"),
            "[core]\n\texcludesFile = ~/my-ignore\n[include]\n\tpath = extra.inc\n",
        )
        .unwrap();
        let inputs = config_inputs(&root).unwrap();
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert!(inputs.contains(&root.join(".git/config")), "{inputs:?}");
        assert!(inputs.contains(&home.join("my-ignore")), "{inputs:?}");
        assert!(
            inputs.contains(&root.join(".git/extra.inc")),
            "a missing include is an input: {inputs:?}"
        );
    }

    #[test]
    fn the_key_changes_with_any_input() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let input = root.join("gitconfig");
        let inputs = vec![input.clone()];
        let stamps = |p: &Path| BTreeMap::from([(p.to_owned(), stamp(p))]);
        let missing = key("o", root, &inputs, &stamps(&input));
        std::fs::write(&input, "[core]\n").unwrap();
        let created = key("o", root, &inputs, &stamps(&input));
        assert_ne!(missing, created);
        assert_ne!(
            created,
            key("other options", root, &inputs, &stamps(&input))
        );
        assert_eq!(created, key("o", root, &inputs, &stamps(&input)));
    }
}
