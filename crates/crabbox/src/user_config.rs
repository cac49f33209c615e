//! The user config file as `login` and `logout` edit it: read as a YAML mapping (keys this
//! version does not know are kept), changed in place, and written back atomically with private
//! permissions (spec §3.1: directory 0700, file 0600, temp file then rename). The file is
//! `paths::user_config_file()`, so `CRABBOX_CONFIG` is honoured for writes as for reads.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crabbox_api::ExitStatus;
use serde_yaml::{Mapping, Value};

use crate::error::{CliError, CliResult};

fn io_error(doing: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::new(
        ExitStatus::Usage,
        anyhow::Error::new(e).context(format!("could not {doing} {}", path.display())),
    )
}

/// Reads the file as a YAML mapping (empty when it is absent or blank).
pub fn read(path: &Path) -> CliResult<Mapping> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Mapping::new()),
        Ok(text) => serde_yaml::from_str::<Mapping>(&text).map_err(|e| {
            CliError::msg(
                ExitStatus::Usage,
                format!("{} is not a YAML mapping: {e}", path.display()),
            )
            .hint("fix or remove the file, then log in again")
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Mapping::new()),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// The file a write replaces: symlinks are followed, so a config kept in a dotfiles checkout
/// stays a link to it instead of being replaced by a plain file.
fn write_target(path: &Path) -> CliResult<PathBuf> {
    let mut target = path.to_owned();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|e| io_error("read", &target, e))?;
                target = match target.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("inspect", &target, e));
            }
            _ => return Ok(target),
        }
    }
    Err(CliError::msg(
        ExitStatus::Usage,
        format!("{} is a loop of symbolic links", path.display()),
    ))
}

/// Writes `map` to `path`: a private temp file in the same directory, synced, then renamed over
/// the old file, so a crash leaves either the old or the new config and never half of one.
pub fn write(path: &Path, map: &Mapping) -> CliResult<()> {
    let target = write_target(path)?;
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io_error("create", &dir, e))?;
    // Crabbox's own config directory is kept private even if something loosened it; the
    // directory of a file named by CRABBOX_CONFIG belongs to the user and is left alone.
    if dir == crate::paths::config_dir() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let text = serde_yaml::to_string(map).map_err(|e| CliError::new(ExitStatus::Failure, e))?;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).expect("the OS random source is unavailable");
    let name = target
        .file_name()
        .map_or_else(|| "config.yaml".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error("write", &target, e));
    }
    // Make the rename itself durable; a failure here loses nothing that is not already safe.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn key(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// Sets (or with `None` removes) `broker.<field>`, dropping the legacy top-level spelling
/// (`coordinator`, `coordinatorToken`) so one value wins.
pub fn set_broker(map: &mut Mapping, field: &str, value: Option<&str>) {
    let legacy = match field {
        "url" => "coordinator",
        "token" => "coordinatorToken",
        _ => "",
    };
    if !legacy.is_empty() {
        map.remove(key(legacy));
    }
    let broker = map
        .entry(key("broker"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if !broker.is_mapping() {
        *broker = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(broker) = broker else {
        unreachable!("replaced by a mapping above")
    };
    match value {
        Some(v) => {
            broker.insert(key(field), key(v));
        }
        None => {
            broker.remove(key(field));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_private_atomic_and_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("dotfiles/crabbox.yaml");
        let link = dir.path().join("cfg/config.yaml");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "class: fast\nbroker:\n  token: old\n").unwrap();
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();

        let mut map = read(&link).unwrap();
        set_broker(&mut map, "token", None);
        set_broker(&mut map, "url", Some("https://c.example"));
        write(&link, &map).unwrap();

        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let text = std::fs::read_to_string(&real).unwrap();
        assert!(text.contains("class: fast") && text.contains("url: https://c.example"));
        assert!(!text.contains("old"), "{text}");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(real.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let fresh = dir.path().join("new/nested/config.yaml");
        write(&fresh, &map).unwrap();
        let mode = std::fs::metadata(fresh.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
