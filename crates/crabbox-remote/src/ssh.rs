//! The OpenSSH client: typed argv for every remote call, one `ControlMaster` per lease, and the
//! readiness probe. All remote operations of a lease (readiness, sync, command) share one
//! multiplexed connection, so only the first pays for the TCP and key exchange.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::process::{Cmd, ProcessError};

/// How the runner's host key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Trust on first use, remembered in the lease's own `known_hosts` file.
    AcceptNew,
    /// The provider told us the key: only that key is accepted, under this alias.
    Pinned { alias: String },
}

/// How the runner is reached when it is not directly reachable (a bastion, a private
/// network): OpenSSH's own `ProxyJump` or `ProxyCommand`, passed through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SshProxy {
    /// `[user@]host[:port]` (comma-separated for several hops). The jump hosts authenticate
    /// with the user's ssh configuration and agent, not the lease's key.
    Jump(String),
    /// A command whose stdin/stdout is the connection (`%h`, `%p`, `%r` expanded by ssh).
    Command(String),
}

/// Everything needed to reach one runner.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub fallback_ports: Vec<u16>,
    /// Private key; `None` uses the user's ssh configuration.
    pub key: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub host_keys: HostKeyPolicy,
    /// Directory for the `ControlMaster` socket; `None` disables multiplexing.
    pub control_dir: Option<PathBuf>,
    /// A jump host or proxy command to reach the runner through.
    pub proxy: Option<SshProxy>,
}

/// Options for one invocation that differ from the defaults.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    pub connect_timeout_secs: u32,
    pub connection_attempts: u32,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            connection_attempts: 3,
        }
    }
}

impl CallOptions {
    /// The quick settings used while probing readiness.
    pub const PROBE: CallOptions = CallOptions {
        connect_timeout_secs: 5,
        connection_attempts: 1,
    };
}

impl SshTarget {
    /// The `ControlMaster` socket path. Unix socket paths are limited to ~104 bytes, so the
    /// path is a short hash of the connection identity rather than a readable name.
    pub fn control_path(&self) -> Option<PathBuf> {
        let dir = self.control_dir.as_ref()?;
        let mut hasher = Sha256::new();
        for part in [
            self.user.as_str(),
            self.host.as_str(),
            &self.port.to_string(),
            &self
                .key
                .as_deref()
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            &self.known_hosts.display().to_string(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        // Another route to the same runner is another connection. A direct target hashes as it
        // always has, so masters opened before an upgrade are still found (and closed).
        match &self.proxy {
            Some(SshProxy::Jump(hops)) => hasher.update(format!("jump {hops}\0").as_bytes()),
            Some(SshProxy::Command(command)) => {
                hasher.update(format!("command {command}\0").as_bytes());
            }
            None => {}
        }
        let digest = hex::encode(&hasher.finalize()[..6]);
        Some(dir.join(format!("cbx-{digest}")))
    }

    /// `user@host`.
    pub fn destination(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// The option list every call shares, in the order the spec documents (§4.6).
    pub fn base_args(&self, call: CallOptions) -> Vec<String> {
        let mut args = Vec::with_capacity(40);
        let mut opt = |value: String| {
            args.push("-o".to_owned());
            args.push(value);
        };
        if let Some(key) = &self.key {
            opt(format!("IdentityFile={}", key.display()));
            opt("IdentitiesOnly=yes".to_owned());
        }
        for fixed in [
            "ForwardAgent=no",
            "ForwardX11=no",
            "ForwardX11Trusted=no",
            "BatchMode=yes",
            "PasswordAuthentication=no",
            "KbdInteractiveAuthentication=no",
            "LogLevel=ERROR",
        ] {
            opt(fixed.to_owned());
        }
        opt(format!("ConnectTimeout={}", call.connect_timeout_secs));
        opt(format!("ConnectionAttempts={}", call.connection_attempts));
        opt("ServerAliveInterval=15".to_owned());
        opt("ServerAliveCountMax=2".to_owned());
        opt(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        match &self.host_keys {
            HostKeyPolicy::AcceptNew => opt("StrictHostKeyChecking=accept-new".to_owned()),
            HostKeyPolicy::Pinned { alias } => {
                for fixed in [
                    "StrictHostKeyChecking=yes",
                    "GlobalKnownHostsFile=none",
                    "VerifyHostKeyDNS=no",
                    "UpdateHostKeys=no",
                    "CheckHostIP=no",
                ] {
                    opt(fixed.to_owned());
                }
                opt(format!("HostKeyAlias={alias}"));
            }
        }
        match &self.proxy {
            Some(SshProxy::Jump(hops)) => opt(format!("ProxyCommand={}", self.jump_command(hops))),
            Some(SshProxy::Command(command)) => opt(format!("ProxyCommand={command}")),
            None => {}
        }
        if let Some(path) = self.control_path() {
            opt("ControlMaster=auto".to_owned());
            opt("ControlPersist=10m".to_owned());
            opt(format!("ControlPath={}", path.display()));
        } else {
            opt("ControlMaster=no".to_owned());
            opt("ControlPath=none".to_owned());
        }
        args.push("-p".to_owned());
        args.push(self.port.to_string());
        args
    }

    /// `ProxyJump` as the `ProxyCommand` it stands for, with what every Crabbox call needs that
    /// OpenSSH does not pass to a jump host: no prompts (batch mode; a prompt would hang a run),
    /// the jump host's key trusted on first use into the lease's own `known_hosts`, the same
    /// timeouts. The jump host still authenticates with the user's ssh configuration and agent
    /// (never the lease's key); hops before the last use OpenSSH's own `-J`.
    fn jump_command(&self, hops: &str) -> String {
        let mut hops: Vec<&str> = hops
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let last = hops.pop().unwrap_or_default();
        let mut words: Vec<String> = vec!["ssh".into()];
        for option in [
            "BatchMode=yes".to_owned(),
            "StrictHostKeyChecking=accept-new".to_owned(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "ConnectTimeout=10".to_owned(),
            "ServerAliveInterval=15".to_owned(),
            "ServerAliveCountMax=2".to_owned(),
            "ForwardAgent=no".to_owned(),
        ] {
            words.push("-o".into());
            words.push(option);
        }
        if !hops.is_empty() {
            words.push("-J".into());
            words.push(hops.join(","));
        }
        words.extend(["-W".into(), "[%h]:%p".into(), format!("ssh://{last}")]);
        crate::quote::sh_join(&words)
    }

    /// Full argv (without the `ssh` program) to run `remote` on the runner.
    pub fn exec_args(&self, call: CallOptions, remote: &str) -> Vec<String> {
        let mut args = self.base_args(call);
        args.push(self.destination());
        args.push(remote.to_owned());
        args
    }

    /// Full argv (without `ssh`) that authenticates, leaves the `ControlMaster` running in the
    /// background and exits, without starting a remote shell (`-f -N`). Later calls
    /// multiplex over it. Only meaningful with a control socket.
    pub fn master_args(&self, call: CallOptions) -> Vec<String> {
        let mut args = self.base_args(call);
        args.extend(["-f".to_owned(), "-N".to_owned(), self.destination()]);
        args
    }

    /// The `ssh …` command string rsync and git use as their transport (`-e`, `GIT_SSH_COMMAND`).
    pub fn transport_command(&self) -> String {
        let mut words = vec!["ssh".to_owned()];
        words.extend(self.base_args(CallOptions::default()));
        crate::quote::sh_join(&words)
    }

    /// A command ready to run `remote` on the runner.
    pub fn command(&self, call: CallOptions, remote: &str) -> Cmd {
        Cmd::new("ssh").args(self.exec_args(call, remote))
    }

    /// Runs `remote` and captures its output.
    pub async fn capture(&self, remote: &str) -> Result<crate::process::Captured, ProcessError> {
        self.command(CallOptions::default(), remote)
            .capture(None)
            .await
    }

    /// Whether a `ControlMaster` is alive for this target.
    pub async fn master_alive(&self) -> bool {
        let Some(path) = self.control_path() else {
            return false;
        };
        if !path.exists() {
            return false;
        }
        Cmd::new("ssh")
            .args([
                "-o",
                &format!("ControlPath={}", path.display()),
                "-O",
                "check",
                &self.destination(),
            ])
            .capture(None)
            .await
            .is_ok_and(|c| c.code == 0)
    }

    /// Asks the `ControlMaster` to exit (best effort) and removes its socket.
    pub async fn close_master(&self) {
        let Some(path) = self.control_path() else {
            return;
        };
        if path.exists() {
            let _ = Cmd::new("ssh")
                .args([
                    "-o",
                    &format!("ControlPath={}", path.display()),
                    "-O",
                    "exit",
                    &self.destination(),
                ])
                .capture(None)
                .await;
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Why a readiness probe round failed for one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Closed,
    Tcp,
    Auth,
}

impl PortState {
    fn as_str(self) -> &'static str {
        match self {
            PortState::Closed => "closed",
            PortState::Tcp => "tcp",
            PortState::Auth => "auth",
        }
    }
}

/// Readiness failed before the deadline.
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for SSH on {host} after {waited:?} (phase {phase}; ports {ports})")]
pub struct ReadyTimeout {
    pub host: String,
    pub phase: String,
    pub waited: Duration,
    pub ports: String,
    pub last_error: String,
}

/// Whether a TCP connection to `host:port` opens within 5 s.
async fn tcp_open(host: &str, port: u16) -> bool {
    let connect = tokio::net::TcpStream::connect(format!("{host}:{port}"));
    matches!(
        tokio::time::timeout(Duration::from_secs(5), connect).await,
        Ok(Ok(_))
    )
}

/// Waits until the runner accepts SSH and `ready_check` succeeds. Returns the port that
/// worked (it may be a fallback port). `progress` gets a line each round that is still waiting.
///
/// An empty `ready_check` means an authenticated connection is proof enough: the probe then
/// only starts the `ControlMaster` (`ssh -f -N`), which skips the runner's login shell, often
/// the larger part of an exec's cost.
pub async fn wait_ready(
    target: &SshTarget,
    phase: &str,
    timeout: Duration,
    ready_check: &str,
    mut progress: impl FnMut(&str),
) -> Result<u16, ReadyTimeout> {
    let start = Instant::now();
    let mut ports = vec![target.port];
    for p in &target.fallback_ports {
        if !ports.contains(p) {
            ports.push(*p);
        }
    }
    let mut delay = Duration::from_millis(20);
    let mut last_error = String::new();
    loop {
        let mut states = Vec::new();
        for &port in &ports {
            // Through a proxy the runner is not reachable from here: ssh alone can tell.
            if target.proxy.is_none() && !tcp_open(&target.host, port).await {
                states.push((port, PortState::Closed));
                continue;
            }
            let mut probe = target.clone();
            probe.port = port;
            let cmd = if ready_check.is_empty() && probe.control_path().is_some() {
                Cmd::new("ssh").args(probe.master_args(CallOptions::PROBE))
            } else if ready_check.is_empty() {
                probe.command(CallOptions::PROBE, "true")
            } else {
                probe.command(CallOptions::PROBE, ready_check)
            };
            match cmd.capture(None).await {
                Ok(out) if out.code == 0 => return Ok(port),
                Ok(out) => {
                    String::from_utf8_lossy(&out.stderr)
                        .trim()
                        .clone_into(&mut last_error);
                    states.push((
                        port,
                        if out.code == 255 {
                            PortState::Tcp
                        } else {
                            PortState::Auth
                        },
                    ));
                }
                Err(err) => {
                    last_error = err.to_string();
                    states.push((port, PortState::Tcp));
                }
            }
        }
        let summary = states
            .iter()
            .map(|(p, s)| format!("{p}:{}", s.as_str()))
            .collect::<Vec<_>>()
            .join(",");
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(ReadyTimeout {
                host: target.host.clone(),
                phase: phase.to_owned(),
                waited: elapsed,
                ports: summary,
                last_error,
            });
        }
        if elapsed > Duration::from_secs(2) {
            progress(&format!(
                "waiting for {}:{} {phase}... elapsed={}s remaining={}s ports={summary}",
                target.host,
                target.port,
                elapsed.as_secs(),
                timeout.saturating_sub(elapsed).as_secs()
            ));
        }
        tokio::time::sleep(delay.min(timeout.saturating_sub(elapsed))).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> SshTarget {
        SshTarget {
            user: "crabbox".into(),
            host: "203.0.113.7".into(),
            port: 2222,
            fallback_ports: vec![22],
            key: Some(PathBuf::from(
                "/home/u/.config/crabbox/testboxes/cbx_0123456789ab/id_ed25519",
            )),
            known_hosts: PathBuf::from(
                "/home/u/.config/crabbox/testboxes/cbx_0123456789ab/known_hosts",
            ),
            host_keys: HostKeyPolicy::AcceptNew,
            control_dir: Some(PathBuf::from("/tmp/crabbox-1000")),
            proxy: None,
        }
    }

    #[test]
    fn exec_argv() {
        insta::assert_snapshot!(
            target()
                .exec_args(CallOptions::default(), "true")
                .join("\n")
        );
    }

    #[test]
    fn master_argv() {
        insta::assert_snapshot!(target().master_args(CallOptions::PROBE).join("\n"));
    }

    #[test]
    fn probe_and_pinned_argv() {
        let mut t = target();
        t.host_keys = HostKeyPolicy::Pinned {
            alias: "cbx_0123456789ab".into(),
        };
        t.control_dir = None;
        insta::assert_snapshot!(t.exec_args(CallOptions::PROBE, "exit 0").join("\n"));
    }

    #[test]
    fn control_path_is_short_and_stable() {
        let path = target().control_path().unwrap();
        assert_eq!(path, target().control_path().unwrap());
        assert!(path.as_os_str().len() < 60, "{}", path.display());
        let mut other = target();
        other.port = 2223;
        assert_ne!(path, other.control_path().unwrap());
        // The hash of a direct target is the one released versions used, so their masters are
        // still found; another route is another connection.
        assert_eq!(path, PathBuf::from("/tmp/crabbox-1000/cbx-4bff585e7763"));
        let mut jumped = target();
        jumped.proxy = Some(SshProxy::Jump("bastion.example".into()));
        assert_ne!(path, jumped.control_path().unwrap());
    }

    #[test]
    fn proxied_argv() {
        let mut t = target();
        t.proxy = Some(SshProxy::Jump(
            "ops@gate.example:2200,bastion.internal".into(),
        ));
        insta::assert_snapshot!(
            "jump",
            t.exec_args(CallOptions::default(), "true").join("\n")
        );
        t.proxy = Some(SshProxy::Command(
            "nc -X connect -x proxy:3128 %h %p".into(),
        ));
        insta::assert_snapshot!(
            "command",
            t.exec_args(CallOptions::default(), "true").join("\n")
        );
    }
}
