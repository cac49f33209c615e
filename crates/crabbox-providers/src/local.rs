//! The `local` provider: every lease is a real OpenSSH sshd on a free loopback port, running
//! as the current user with its own host key and work root under the state directory. It runs
//! the whole data plane (SSH, rsync, git) for real, without any cloud. A desktop lease also
//! gets a display, window manager and VNC server of its own, a browser lease a browser
//! wrapper (`crabbox_remote::desktop`); they stop with the lease.

use std::path::PathBuf;

use async_trait::async_trait;
use crabbox_remote::{desktop, sshd};

use crate::record::{AcquireRequest, Capabilities, Capability, LeaseDesktop, LeaseRecord};
use crate::{Health, Provider, ProviderError};

/// The one desktop environment the local provider runs.
const DESKTOP_ENV: &str = "openbox";

/// The local provider.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    root: PathBuf,
}

impl LocalProvider {
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self {
            root: state_dir.join("local"),
        }
    }

    fn lease_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }
}

/// The current user's login name.
pub fn current_user() -> String {
    let uid = rustix_uid();
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let mut fields = line.split(':');
            let (Some(name), _, Some(id)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            if id.parse::<u32>().ok() == Some(uid) {
                return name.to_owned();
            }
        }
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into())
}

fn rustix_uid() -> u32 {
    crabbox_remote::process::current_uid()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn per_lease_key(&self) -> bool {
        true
    }

    /// The runner is this machine, whose git, rsync and sshd `crabbox doctor` checks; an
    /// authenticated connection is proof enough, and skips a login shell on the runner.
    fn ready_check(&self, _record: &LeaseRecord) -> &'static str {
        ""
    }

    fn capabilities(&self) -> &'static [Capability] {
        &[Capability::Desktop, Capability::Browser]
    }

    async fn acquire(&self, req: &AcquireRequest) -> Result<LeaseRecord, ProviderError> {
        check_desktop(&req.capabilities)?;
        let dir = self.lease_dir(&req.lease_id);
        let user = current_user();
        let handle = sshd::start(&dir.join("sshd"), &user, &req.public_key)
            .await
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                ProviderError::Io {
                    context: format!("could not start sshd for lease {}", req.lease_id),
                    source: Box::new(e),
                }
            })?;
        let mut labels: std::collections::BTreeMap<String, String> =
            [("class".to_owned(), req.class.clone())].into();
        let caps = &req.capabilities;
        if caps.desktop || caps.browser {
            match desktop::start(&dir.join("desktop"), caps.desktop, caps.browser).await {
                Ok(started) => labels.extend(
                    LeaseDesktop {
                        display: started.display,
                        desktop_env: DESKTOP_ENV.into(),
                        vnc_port: started.vnc_port.unwrap_or_default(),
                        vnc_password_file: started
                            .password_file
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                        browser: started.browser.map(|p| p.display().to_string()),
                    }
                    .labels(),
                ),
                Err(e) => {
                    sshd::stop(&dir.join("sshd")).await;
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(desktop_error(e));
                }
            }
        }
        let created = now();
        Ok(LeaseRecord {
            lease_id: req.lease_id.clone(),
            slug: req.slug.clone(),
            provider: "local".into(),
            server_id: handle.pid.to_string(),
            server_type: "local".into(),
            ssh_host: "127.0.0.1".into(),
            ssh_user: user,
            ssh_port: handle.port,
            ssh_fallback_ports: vec![],
            ssh_host_key: Some(handle.host_key),
            ssh_key: None,
            ssh_proxy: None,
            work_root: dir.join("work").display().to_string(),
            keep: req.keep,
            repo_root: None,
            created_at: created,
            last_touched_at: created,
            ttl_secs: req.ttl_secs,
            idle_timeout_secs: req.idle_timeout_secs,
            state: "ready".into(),
            labels,
            ..LeaseRecord::default()
        })
    }

    async fn health(&self, lease: &LeaseRecord) -> Health {
        let dir = self.lease_dir(&lease.lease_id).join("sshd");
        if sshd::alive(&dir) {
            Health::Alive
        } else {
            Health::Gone(format!("its sshd (pid {}) is not running", lease.server_id))
        }
    }

    async fn inventory(&self) -> Result<Vec<String>, ProviderError> {
        match std::fs::read_dir(&self.root) {
            Ok(entries) => Ok(entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ProviderError::Io {
                context: format!("could not list {}", self.root.display()),
                source: Box::new(e),
            }),
        }
    }

    async fn release(&self, lease: &LeaseRecord) -> Result<(), ProviderError> {
        let dir = self.lease_dir(&lease.lease_id);
        desktop::stop(&dir.join("desktop")).await;
        sshd::stop(&dir.join("sshd")).await;
        // A process that just ended may still have written a file as it went (a browser
        // saving its profile): the removal is tried a few times.
        let mut tries = 0;
        loop {
            tries += 1;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(_) if tries < 5 => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(ProviderError::Io {
                        context: format!("could not remove {}", dir.display()),
                        source: Box::new(e),
                    });
                }
            }
        }
    }
}

/// The local desktop is openbox: another desktop environment is a cloud's.
fn check_desktop(caps: &Capabilities) -> Result<(), ProviderError> {
    match caps.desktop_env.as_deref() {
        Some(env) if caps.desktop && env != DESKTOP_ENV => {
            Err(ProviderError::InvalidSpec(format!(
                "the local provider's desktop is {DESKTOP_ENV}, not {env}; drop --desktop-env or \
             lease {env} from a cloud provider"
            )))
        }
        _ => Ok(()),
    }
}

fn desktop_error(e: desktop::DesktopError) -> ProviderError {
    match e {
        desktop::DesktopError::Missing(tools) => ProviderError::InvalidSpec(format!(
            "a local desktop or browser needs {} on this machine; install them (Debian: \
             `apt-get install xvfb openbox x11vnc chromium`, or run scripts/dev-setup)",
            tools.join(", ")
        )),
        other => ProviderError::Io {
            context: "could not start the lease's desktop".into(),
            source: Box::new(other),
        },
    }
}
