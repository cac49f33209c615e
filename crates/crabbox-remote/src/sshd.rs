//! A private OpenSSH `sshd` per local lease: its own config, host key, authorized key and
//! loopback port, running as the current user. This is the `local` provider's runner.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::keys;
use crate::process::{self, Cmd};

/// Error starting or inspecting a local sshd.
#[derive(Debug, thiserror::Error)]
pub enum SshdError {
    #[error(
        "no sshd binary found (looked in /usr/sbin, /usr/local/sbin, /opt/homebrew/sbin and PATH)"
    )]
    NotInstalled,
    #[error("could not prepare sshd files in {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    #[error("sshd did not start: {0}")]
    Start(String),
}

/// A started sshd.
#[derive(Debug, Clone)]
pub struct SshdHandle {
    pub port: u16,
    pub pid: i32,
    /// The host public key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
}

/// Finds the sshd binary. sshd must be started by absolute path (it re-executes itself).
pub fn find_sshd() -> Option<PathBuf> {
    // An explicit binary (a non-standard install, or a wrapper) wins.
    if let Some(path) = std::env::var_os("CRABBOX_SSHD").map(PathBuf::from) {
        return path.is_absolute().then_some(path);
    }
    let fixed = [
        "/usr/sbin/sshd",
        "/usr/local/sbin/sshd",
        "/opt/homebrew/sbin/sshd",
    ];
    if let Some(p) = fixed.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("sshd"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn files_err(path: &Path) -> impl FnOnce(std::io::Error) -> SshdError + '_ {
    move |source| SshdError::Files {
        path: path.to_owned(),
        source,
    }
}

fn config_text(dir: &Path, port: u16, user: &str) -> String {
    let d = dir.display();
    // StrictModes is off because every file sshd reads here is created by us with 0600/0700
    // modes inside a 0700 directory; its home-directory checks would add nothing but false
    // failures under unusual HOME layouts. Key exchange is limited to X25519 (ECDH P-256 for
    // old clients): the connection never leaves the loopback interface, so the post-quantum
    // hybrid OpenSSH prefers protects nothing here and costs ~50 ms per connection.
    format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/ssh_host_ed25519_key\nPidFile {d}/sshd.pid\n\
AuthorizedKeysFile {d}/authorized_keys\nAllowUsers {user}\nPubkeyAuthentication yes\n\
PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
StrictModes no\nUsePAM no\nPrintMotd no\nPrintLastLog no\nMaxSessions 64\nMaxStartups 64:30:128\n\
ClientAliveInterval 15\nClientAliveCountMax 4\nLogLevel ERROR\n\
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256\n"
    )
}

/// Starts an sshd in `dir` accepting `authorized_key` for `user` on a free loopback port.
pub async fn start(dir: &Path, user: &str, authorized_key: &str) -> Result<SshdHandle, SshdError> {
    let sshd = find_sshd().ok_or(SshdError::NotInstalled)?;
    fs::create_dir_all(dir).map_err(files_err(dir))?;
    let host = keys::ensure_ed25519(dir, "ssh_host_ed25519_key", "crabbox local runner")?;
    let host_key = host.public_key()?;
    let auth = dir.join("authorized_keys");
    fs::write(&auth, format!("{authorized_key}\n")).map_err(files_err(&auth))?;
    if rustix::process::geteuid().is_root() {
        // Privilege separation needs this directory when sshd runs as root.
        let _ = fs::create_dir_all("/run/sshd");
    }
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port().map_err(files_err(dir))?;
        let config = dir.join("sshd_config");
        fs::write(&config, config_text(dir, port, user)).map_err(files_err(&config))?;
        let log = dir.join("sshd.log");
        let _ = fs::remove_file(dir.join("sshd.pid"));
        // Without -D sshd daemonizes once it is listening, so when this returns the port is
        // bound (or sshd has already failed and said why).
        let out = Cmd::new(&sshd)
            .args([
                "-f".as_ref(),
                config.as_os_str(),
                "-E".as_ref(),
                log.as_os_str(),
            ])
            .capture(None)
            .await?;
        if out.code == 0
            && let Some(pid) = read_pid(dir).await
        {
            return Ok(SshdHandle {
                port,
                pid,
                host_key,
            });
        }
        last = fs::read_to_string(&log).unwrap_or_default();
        last.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    Err(SshdError::Start(last.trim().to_owned()))
}

async fn read_pid(dir: &Path) -> Option<i32> {
    for _ in 0..100 {
        if let Some(pid) = pid_of(dir) {
            return Some(pid);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// The pid from the sshd's pid file, if any.
pub fn pid_of(dir: &Path) -> Option<i32> {
    fs::read_to_string(dir.join("sshd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether the sshd for `dir` is running.
pub fn alive(dir: &Path) -> bool {
    pid_of(dir).is_some_and(process::pid_alive)
}

/// Whether process `pid` names `dir` on its command line (no /proc: assumed).
fn names(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return !Path::new("/proc/self").exists();
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// Stops the sshd for `dir`: its connections first, then the listener. A connection's
/// processes outlive the listener otherwise, and so does every client `ControlMaster`
/// connected to it (for its 10-minute `ControlPersist`): a runner released by a coordinator
/// while a client still has a master on it would leave both behind.
pub async fn stop(dir: &Path) {
    let Some(pid) = pid_of(dir) else { return };
    // A pid file outlives its sshd, and the pid may have been reused since: only a process
    // that still names this runner's directory has its children stopped.
    if names(pid, dir) {
        for conn in process::descendants(pid) {
            process::signal_pid(conn, false);
        }
    }
    if process::signal_pid(pid, false) {
        for _ in 0..100 {
            if !process::pid_alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        process::signal_pid(pid, true);
    }
}
