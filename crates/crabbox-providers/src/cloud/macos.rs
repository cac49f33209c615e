//! The user data of an EC2 Mac runner (spec/providers.md §2.2, §2.9). A Mac boots Amazon's
//! macOS image, whose `ec2-macos-init` runs user data that starts with `#!` as a root shell
//! script once per instance; there is no cloud-init. The script gives the image's existing
//! user (`ec2-user`) the lease's key, puts Remote Login on the lease's ports without
//! passwords, makes the work root and `/var/db/crabbox`, turns on Screen Sharing for a desktop
//! lease (its password made on the Mac, kept in a root-only file), and writes and runs
//! `crabbox-ready`, which readiness then runs over SSH.
//!
//! The values it carries are single-quoted shell words, checked as the Linux cloud-init
//! checks them (a user name, an absolute work root, one key line, a port).

use std::fmt::Write as _;

use crabbox_remote::quote::sh_quote;

use super::cloud_init::{CloudInitError, LinuxCloudInit};

/// The user every Amazon macOS image has; leases log in as it.
pub const MACOS_USER: &str = "ec2-user";

/// A Mac's work root.
pub const MACOS_WORK_ROOT: &str = "/Users/ec2-user/crabbox";

/// Screen Sharing's password for a desktop lease, readable by root only.
pub const MACOS_VNC_PASSWORD_FILE: &str = "/var/db/crabbox/vnc.password";

/// The port Screen Sharing listens on.
pub const MACOS_VNC_PORT: u16 = 5900;

/// The user data of one Mac lease.
#[derive(Debug, Clone, Copy)]
pub struct MacosUserData<'a> {
    pub user: &'a str,
    pub public_key: &'a str,
    pub work_root: &'a str,
    /// sshd listens on each (EC2 Mac: 22).
    pub ssh_ports: &'a [u16],
    /// Turn Screen Sharing on (a `--desktop` lease).
    pub desktop: bool,
}

impl MacosUserData<'_> {
    /// The `#!/bin/bash` script.
    pub fn render(&self) -> Result<String, CloudInitError> {
        LinuxCloudInit {
            user: self.user,
            public_key: self.public_key,
            work_root: self.work_root,
            ssh_ports: self.ssh_ports,
            units: &[],
        }
        .check()?;
        let mut ports = Vec::new();
        for port in self.ssh_ports.iter().filter(|port| **port != 0) {
            if !ports.contains(port) {
                ports.push(*port);
            }
        }
        let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
        let mut out = String::from(
            "#!/bin/bash\n# Crabbox EC2 Mac runner bootstrap (run once by ec2-macos-init, as root).\n\
             set -euo pipefail\n",
        );
        let _ = writeln!(out, "crabbox_user={}", sh_quote(self.user));
        let _ = writeln!(
            out,
            "crabbox_public_key={}",
            sh_quote(self.public_key.trim())
        );
        let _ = writeln!(out, "crabbox_work_root={}", sh_quote(self.work_root));
        let _ = writeln!(out, "crabbox_ssh_ports=({})", ports.join(" "));
        out.push_str(ACCOUNT);
        out.push_str(SSHD);
        if self.desktop {
            out.push_str(SCREEN_SHARING);
        }
        out.push_str("cat >/usr/local/bin/crabbox-ready <<'CRABBOX_READY'\n");
        out.push_str(&self.ready_script(&ports));
        out.push_str("CRABBOX_READY\nchmod 0755 /usr/local/bin/crabbox-ready\n");
        out.push_str("touch /var/db/crabbox/bootstrapped\n/usr/local/bin/crabbox-ready\n");
        Ok(out)
    }

    fn ready_script(&self, ports: &[String]) -> String {
        let mut script = format!(
            "#!/bin/bash\nset -euo pipefail\ngit --version >/dev/null\nrsync --version >/dev/null\n\
             test -f /var/db/crabbox/bootstrapped\ntest -w {}\nlistening=0\n\
             for port in {}; do\n  if nc -z 127.0.0.1 \"$port\"; then listening=1; break; fi\ndone\n\
             test \"$listening\" = 1\n",
            sh_quote(self.work_root),
            ports.join(" ")
        );
        if self.desktop {
            let _ = writeln!(script, "nc -z 127.0.0.1 {MACOS_VNC_PORT}");
        }
        script
    }
}

/// The key for the image's user, the work root, Crabbox's state directory.
const ACCOUNT: &str = r#"id "$crabbox_user" >/dev/null
home_dir=$(dscl . -read "/Users/$crabbox_user" NFSHomeDirectory 2>/dev/null | awk '{print $2; exit}' || true)
home_dir=${home_dir:-/Users/$crabbox_user}
install -d -m 0700 -o "$crabbox_user" -g staff "$home_dir/.ssh"
keys="$home_dir/.ssh/authorized_keys"
touch "$keys"
grep -qxF "$crabbox_public_key" "$keys" || printf '%s\n' "$crabbox_public_key" >>"$keys"
chown "$crabbox_user:staff" "$keys"
chmod 0600 "$keys"
install -d -m 0755 -o "$crabbox_user" -g staff "$crabbox_work_root"
install -d -m 0700 /var/db/crabbox
"#;

/// Remote Login on the lease's ports, keys only: Crabbox's block of `sshd_config` is replaced
/// on every run, the result checked before sshd restarts on it.
const SSHD: &str = r#"config=/etc/ssh/sshd_config
kept=$(mktemp)
awk '/^# crabbox begin$/ {skip=1; next} /^# crabbox end$/ {skip=0; next} !skip' "$config" >"$kept"
{
  cat "$kept"
  echo '# crabbox begin'
  for port in "${crabbox_ssh_ports[@]}"; do echo "Port $port"; done
  echo 'PubkeyAuthentication yes'
  echo 'PasswordAuthentication no'
  echo 'KbdInteractiveAuthentication no'
  echo '# crabbox end'
} >"$config.crabbox"
rm -f "$kept"
/usr/sbin/sshd -t -f "$config.crabbox"
mv "$config.crabbox" "$config"
systemsetup -setremotelogin on >/dev/null 2>&1 || true
launchctl enable system/com.openssh.sshd || true
launchctl kickstart -k system/com.openssh.sshd || true
"#;

/// Screen Sharing with a password made here, set as the user's (macOS Screen Sharing
/// authenticates accounts), kept for `crabbox vnc` in a root-only file.
const SCREEN_SHARING: &str = r#"password_file=/var/db/crabbox/vnc.password
if [ ! -s "$password_file" ]; then
  password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 16 || true)
  test "${#password}" = 16
  (umask 077; printf '%s\n' "$password" >"$password_file")
  dscl . -passwd "/Users/$crabbox_user" "$password"
fi
chmod 0600 "$password_file"
launchctl enable system/com.apple.screensharing || true
launchctl load -w /System/Library/LaunchDaemons/com.apple.screensharing.plist 2>/dev/null || true
launchctl kickstart -k system/com.apple.screensharing || true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE4m crabbox cbx_0123456789ab";

    fn data(desktop: bool) -> MacosUserData<'static> {
        MacosUserData {
            user: MACOS_USER,
            public_key: KEY,
            work_root: MACOS_WORK_ROOT,
            ssh_ports: &[22],
            desktop,
        }
    }

    #[test]
    fn the_whole_script() {
        insta::assert_snapshot!(data(true).render().unwrap());
    }

    #[test]
    fn a_plain_lease_has_no_screen_sharing_and_the_script_is_valid_bash() {
        let script = data(false).render().unwrap();
        assert!(!script.contains("screensharing"));
        assert!(!script.contains("5900"));
        let checked = std::process::Command::new("bash")
            .args(["-n", "-c", &script])
            .status()
            .unwrap();
        assert!(checked.success());
    }

    #[test]
    fn values_no_quoting_can_carry_are_refused() {
        let bad_key = MacosUserData {
            public_key: "ssh-ed25519 AAAA\nrm -rf /",
            ..data(false)
        };
        assert!(bad_key.render().is_err());
        let bad_user = MacosUserData {
            user: "ec2-user; reboot",
            ..data(false)
        };
        assert!(bad_user.render().is_err());
        let bad_root = MacosUserData {
            work_root: "relative",
            ..data(false)
        };
        assert!(bad_root.render().is_err());
    }
}
