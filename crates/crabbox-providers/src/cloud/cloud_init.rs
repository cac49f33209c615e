//! The Linux cloud-init that boots a runner (spec/providers.md §2.9), the same for every cloud
//! (Hetzner `user_data`, EC2 `UserData`, Azure `CustomData`): the `crabbox` user with the lease's
//! key, sshd on 2222 and 22 without passwords, the base packages (skipped on a prepared
//! image), the work root and caches, and `crabbox-ready`, which readiness runs over SSH.
//!
//! Optional parts of a runner (desktop, browser, code server) are [`BootstrapUnit`]s: files,
//! install steps and readiness checks rendered after the base, in order.
//!
//! Every value that comes from outside is quoted for where it lands: YAML scalars are
//! double-quoted (JSON's escaping is YAML's), shell words are single-quoted. Values that no
//! quoting can carry (line breaks in a YAML block, a path of `/`) are refused.

use std::fmt::Write as _;

use crabbox_remote::quote::sh_quote;

/// Runs the readiness checks; readiness probes it over SSH.
pub const READY_SCRIPT: &str = "/usr/local/bin/crabbox-ready";

/// What a provider's readiness runs once SSH answers. It names `crabbox-ready` by name, as
/// the login `PATH` finds it in `/usr/local/bin`, so an image or a test runner may keep it
/// elsewhere on the `PATH`.
pub const READY_CHECK: &str =
    "command -v crabbox-ready >/dev/null && crabbox-ready >/tmp/crabbox-ready.log 2>&1";

/// Written last by the bootstrap, so readiness never passes on a half-bootstrapped runner.
pub const BOOTSTRAPPED_MARKER: &str = "/var/lib/crabbox/bootstrapped";

/// Present on images that already hold the base packages; their boots skip apt.
pub const IMAGE_READY_MARKER: &str = "/var/lib/crabbox/image-ready";

/// The base runner, and the units to add.
#[derive(Debug, Clone, Copy)]
pub struct LinuxCloudInit<'a> {
    /// The login user, created with passwordless sudo.
    pub user: &'a str,
    /// The lease's public key (`ssh-ed25519 AAAA… comment`).
    pub public_key: &'a str,
    pub work_root: &'a str,
    /// sshd listens on each; the first is the one readiness tries first.
    pub ssh_ports: &'a [u16],
    pub units: &'a [BootstrapUnit],
}

/// An optional part of a runner. Its files are written with the base files, its bootstrap
/// runs (as root, under `bash -euo pipefail`, with the `retry` helper defined) after the base
/// packages, work root and sshd are set up and before the runner is marked bootstrapped, and
/// its checks are appended to `crabbox-ready`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapUnit {
    /// Names the unit in the bootstrap's comments.
    pub name: String,
    pub files: Vec<WriteFile>,
    pub bootstrap: String,
    pub ready_checks: Vec<String>,
}

/// A file cloud-init writes before running the bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFile {
    pub path: String,
    /// Octal, like `0644`.
    pub permissions: String,
    pub content: String,
}

/// A value the cloud-init cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudInitError {
    #[error(
        "ssh user {0:?} cannot be a Linux user name (use letters, digits, `_`, `.` and `-`, starting with a letter or `_`, at most 32 characters)"
    )]
    User(String),
    #[error("work root {0:?} must be an absolute path other than / without . or .. components")]
    WorkRoot(String),
    #[error("{what} contains a line break or control character: {value:?}")]
    ControlCharacter { what: &'static str, value: String },
    #[error("the public key {0:?} is not one OpenSSH public key line")]
    PublicKey(String),
    #[error("no ssh port to listen on")]
    NoPorts,
}

impl LinuxCloudInit<'_> {
    /// The `#cloud-config` document.
    pub fn render(&self) -> Result<String, CloudInitError> {
        self.check()?;
        let mut out =
            String::from("#cloud-config\npackage_update: false\npackage_upgrade: false\nusers:\n");
        let _ = writeln!(out, "  - name: {}", yaml_quote(self.user));
        out.push_str("    groups: sudo\n    shell: /bin/bash\n");
        out.push_str("    sudo: [\"ALL=(ALL) NOPASSWD:ALL\"]\n    lock_passwd: true\n");
        let _ = writeln!(
            out,
            "    ssh_authorized_keys:\n      - {}",
            yaml_quote(self.public_key)
        );
        out.push_str("write_files:\n");
        for file in self.files() {
            write_file(&mut out, &file);
        }
        out.push_str("runcmd:\n  - - bash\n    - -euxo\n    - pipefail\n    - -c\n    - |2\n");
        indent(&mut out, &self.bootstrap_script(), 6);
        Ok(out)
    }

    pub(crate) fn check(&self) -> Result<(), CloudInitError> {
        for (what, value) in [
            ("ssh user", self.user),
            ("work root", self.work_root),
            ("public key", self.public_key),
        ] {
            if value.chars().any(breaks_a_line) {
                return Err(CloudInitError::ControlCharacter {
                    what,
                    value: value.to_owned(),
                });
            }
        }
        if !is_user_name(self.user) {
            return Err(CloudInitError::User(self.user.to_owned()));
        }
        let components = self.work_root.split('/').skip(1);
        let odd_component = components.clone().any(|c| c == "." || c == "..");
        if !self.work_root.starts_with('/')
            || self.work_root.trim_matches('/').is_empty()
            || odd_component
        {
            return Err(CloudInitError::WorkRoot(self.work_root.to_owned()));
        }
        let key = self.public_key.trim();
        let mut fields = key.split(' ');
        let kind_ok = fields.next().is_some_and(|kind| {
            ["ssh-", "ecdsa-", "sk-"]
                .iter()
                .any(|prefix| kind.starts_with(prefix))
        });
        if !kind_ok || fields.next().is_none_or(str::is_empty) {
            return Err(CloudInitError::PublicKey(self.public_key.to_owned()));
        }
        if self.ssh_ports.iter().all(|port| *port == 0) {
            return Err(CloudInitError::NoPorts);
        }
        Ok(())
    }

    fn files(&self) -> Vec<WriteFile> {
        let mut ports = Vec::new();
        let mut sshd = String::new();
        for port in self.ssh_ports.iter().filter(|port| **port != 0) {
            if !ports.contains(port) {
                ports.push(*port);
                let _ = writeln!(sshd, "Port {port}");
            }
        }
        sshd.push_str("PasswordAuthentication no\n");
        let mut files = vec![
            WriteFile {
                path: "/etc/ssh/sshd_config.d/99-crabbox-port.conf".into(),
                permissions: "0644".into(),
                content: sshd,
            },
            WriteFile {
                path: READY_SCRIPT.into(),
                permissions: "0755".into(),
                content: self.ready_script(),
            },
        ];
        files.extend(
            self.units
                .iter()
                .flat_map(|unit| unit.files.iter().cloned()),
        );
        files
    }

    fn ready_script(&self) -> String {
        let mut script = format!(
            "#!/usr/bin/env bash\nset -euo pipefail\ngit --version\nrsync --version >/dev/null\n\
             curl --version >/dev/null\njq --version >/dev/null\ntest -f {BOOTSTRAPPED_MARKER}\n\
             test -w {}\n",
            sh_quote(self.work_root)
        );
        for check in self.units.iter().flat_map(|unit| &unit.ready_checks) {
            script.push_str(check.trim_end());
            script.push('\n');
        }
        script
    }

    fn bootstrap_script(&self) -> String {
        let root = sh_quote(self.work_root);
        let owner = sh_quote(&format!("{0}:{0}", self.user));
        let mut script = format!(
            r#"export DEBIAN_FRONTEND=noninteractive
cat >/etc/apt/apt.conf.d/80-crabbox-retries <<'APT'
Acquire::Retries "8";
Acquire::http::Timeout "30";
Acquire::https::Timeout "30";
APT
retry() {{
  n=1
  until "$@"; do
    if [ "$n" -ge 8 ]; then
      return 1
    fi
    sleep $((n * 5))
    n=$((n + 1))
  done
}}
if test -f {IMAGE_READY_MARKER} &&
  test -x /usr/sbin/sshd &&
  test -s /etc/ssl/certs/ca-certificates.crt &&
  command -v curl >/dev/null &&
  command -v git >/dev/null &&
  command -v rsync >/dev/null &&
  command -v jq >/dev/null; then
  echo 'crabbox prebaked base packages ready; skipping apt bootstrap'
else
  retry apt-get update
  retry apt-get install -y --no-install-recommends openssh-server ca-certificates curl git rsync jq
fi
mkdir -p {root} /var/cache/crabbox/pnpm /var/cache/crabbox/npm
chown -R {owner} {root} /var/cache/crabbox
install -d /var/lib/crabbox
systemctl enable ssh || true
timeout 30s systemctl restart ssh || timeout 30s systemctl restart ssh.socket || true
"#
        );
        for unit in self.units {
            let _ = writeln!(script, "# {}", unit.name.replace('\n', " "));
            script.push_str(unit.bootstrap.trim_end());
            script.push('\n');
        }
        let _ = write!(script, "touch {BOOTSTRAPPED_MARKER}\n{READY_SCRIPT}\n");
        script
    }
}

/// Characters YAML (1.1, which cloud-init's parser reads) or a one-line shell word cannot
/// carry: control characters and the Unicode line and paragraph separators.
fn breaks_a_line(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// What `useradd` accepts without `--badname`: a letter or `_`, then letters, digits, `_`,
/// `.` and `-`, optionally ending in `$`. It also keeps the name a plain word in a systemd
/// `User=` line, which has no quoting (the desktop units use it there).
pub(super) fn is_user_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut chars = body.chars();
    name.len() <= 32
        && chars
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn write_file(out: &mut String, file: &WriteFile) {
    let _ = writeln!(out, "  - path: {}", yaml_quote(&file.path));
    let _ = writeln!(out, "    permissions: {}", yaml_quote(&file.permissions));
    out.push_str("    content: |2\n");
    indent(out, &file.content, 6);
}

/// A YAML block scalar's lines, each indented by `by` spaces (blank lines stay blank). The
/// scalars are written `|2`, two columns past their parent, so a first line that itself starts
/// with spaces cannot change where the block's indentation is taken from.
fn indent(out: &mut String, text: &str, by: usize) {
    for line in text.lines() {
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', by));
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// A double-quoted YAML scalar; JSON string syntax is a subset of it.
fn yaml_quote(value: &str) -> String {
    serde_json::to_string(value).expect("strings serialize")
}

#[cfg(test)]
mod tests;
