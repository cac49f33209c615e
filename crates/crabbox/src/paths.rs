//! Where Crabbox keeps its files: user config (`$XDG_CONFIG_HOME/crabbox`), state
//! (`$XDG_STATE_HOME/crabbox`, else `<config>/state`) and per-lease keys (`<config>/testboxes`).

use std::path::PathBuf;

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

fn nonempty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// `~/.config/crabbox` (or `$XDG_CONFIG_HOME/crabbox`; macOS Application Support).
pub fn config_dir() -> PathBuf {
    if let Some(dir) = nonempty_env("XDG_CONFIG_HOME") {
        return dir.join("crabbox");
    }
    if cfg!(target_os = "macos") {
        return home().join("Library/Application Support/crabbox");
    }
    home().join(".config/crabbox")
}

/// The user config file: `CRABBOX_CONFIG` when set (it replaces the whole search, and
/// `login`/`logout` write there too, spec §3.1), else `<config dir>/config.yaml`. Reads and
/// writes share `config_files` so they can never pick different files.
pub fn user_config_file() -> PathBuf {
    let explicit = nonempty_env("CRABBOX_CONFIG");
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    crabbox_core::config::config_files(explicit.as_deref(), Some(&config_home()), &cwd)
        .user
        .unwrap_or_else(|| config_dir().join("config.yaml"))
}

/// The state directory.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = nonempty_env("XDG_STATE_HOME") {
        return dir.join("crabbox");
    }
    config_dir().join("state")
}

/// The per-lease key directory.
pub fn lease_key_dir(lease_id: &str) -> PathBuf {
    config_dir().join("testboxes").join(lease_id)
}

/// Directory for `ControlMaster` sockets (short, private).
pub fn control_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "crabbox-{}",
        crabbox_remote::process::current_uid()
    ));
    let _ = std::fs::create_dir_all(&dir);
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    dir
}

/// The base config directory (`$XDG_CONFIG_HOME` or `~/.config`; macOS Application Support).
pub fn config_home() -> PathBuf {
    config_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf)
}
