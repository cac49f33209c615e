//! The optional desktop and browser of a Linux cloud runner (spec/providers.md §5), as
//! [`BootstrapUnit`]s for the [`LinuxCloudInit`](super::cloud_init::LinuxCloudInit) that every
//! cloud renders.
//!
//! The desktop is XFCE on an `Xtigervnc` display `:99` that listens on `127.0.0.1:5900` only:
//! `crabbox vnc` reaches it through an SSH forward, never through the cloud's firewall. Its
//! password is made on the runner at boot, kept in a file only the lease's user can read, and
//! never passes through the cloud-init log. The browser is Google Chrome from Google's apt
//! repository, trusted only after its signing key's fingerprint matches the pinned one, or
//! the distribution's Chromium where Google builds no Chrome (arm64).
//!
//! Names and paths here are the ones the CLI reads back (`crabbox vnc`, `screenshot`,
//! `run --desktop`/`--browser`), so they stay as the Go tool had them.

use std::fmt;
use std::str::FromStr;

use crabbox_remote::quote::sh_quote;

use super::cloud_init::{BootstrapUnit, WriteFile, is_user_name};

/// The X display the desktop runs on; `run --desktop` exports it as `DISPLAY`.
pub const DESKTOP_DISPLAY: &str = ":99";

/// The VNC port, bound to the runner's loopback only.
pub const VNC_PORT: u16 = 5900;

/// The desktop's VNC password, readable only by the lease's user; `crabbox vnc` reads it over
/// SSH. VNC authentication uses its first 8 characters.
pub const VNC_PASSWORD_FILE: &str = "/var/lib/crabbox/vnc.password";

/// `CRABBOX_DESKTOP_ENV` and `DISPLAY`, for commands that use the desktop (`screenshot`).
pub const DESKTOP_ENV_FILE: &str = "/var/lib/crabbox/desktop.env";

/// `CHROME_BIN` and `BROWSER`, both naming [`BROWSER_WRAPPER`]; written once a browser is
/// installed.
pub const BROWSER_ENV_FILE: &str = "/var/lib/crabbox/browser.env";

/// Starts the installed browser with the lease's own profile and without first-run prompts.
pub const BROWSER_WRAPPER: &str = "/usr/local/bin/crabbox-browser";

/// The password as `Xtigervnc -PasswordFile` reads it (the VNC obfuscated form).
const VNC_HASH_FILE: &str = "/var/lib/crabbox/vnc.pass";

/// The display server, the XFCE session on it, and the helper that opens a terminal on it, in
/// the order they start. `crabbox-xvfb` keeps the name it had when the display was Xvfb.
const DESKTOP_SERVICES: [&str; 3] = [
    "crabbox-xvfb.service",
    "crabbox-desktop.service",
    "crabbox-desktop-session.service",
];

const DESKTOP_SESSION_SCRIPT: &str = "/usr/local/bin/crabbox-desktop-session";

/// What the XFCE desktop installs, as the Go tool had it: the VNC server and its password
/// tool, a small XFCE, X utilities that desktop automation (`desktop click`, `type`,
/// clipboard, `screenshot`, recordings) runs, fonts, `ss` for the readiness check, `openssl`
/// for the password, the Arc theme, and noVNC for the portal's web VNC.
const DESKTOP_PACKAGES: &str = "tigervnc-standalone-server tigervnc-tools xfce4-session xfwm4 \
    xfce4-panel xfdesktop4 xfce4-terminal xfconf xfce4-settings xauth dbus-x11 \
    x11-xserver-utils xterm scrot ffmpeg xdotool wmctrl xclip xsel fonts-dejavu-core \
    fonts-liberation iproute2 openssl arc-theme util-linux novnc websockify";

/// The primary key of "Google Inc. (Linux Packages Signing Authority)", which signs
/// Google's apt repository (through its subkeys).
const GOOGLE_SIGNING_KEY_FINGERPRINT: &str = "EB4C1BFD4F042F6DDDCCEC917721F63BD38B4796";
const GOOGLE_SIGNING_KEY_URL: &str = "https://dl.google.com/linux/linux_signing_key.pub";
const GOOGLE_KEYRING: &str = "/etc/apt/keyrings/google-linux.gpg";
const GOOGLE_CHROME_SOURCE: &str = "/etc/apt/sources.list.d/crabbox-google-chrome.list";

/// Where Chrome (`/etc/opt/chrome`), Debian's Chromium (`/etc/chromium`) and Ubuntu's Chromium
/// snap (`/etc/chromium-browser`) read managed policies.
const BROWSER_POLICY_FILES: [&str; 3] = [
    "/etc/opt/chrome/policies/managed/crabbox.json",
    "/etc/chromium/policies/managed/crabbox.json",
    "/etc/chromium-browser/policies/managed/crabbox.json",
];

/// A desktop environment a lease can ask for (`--desktop-env`). This version builds XFCE
/// only; the Go tool's Wayland (labwc) and GNOME desktops are refused by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DesktopEnv {
    #[default]
    Xfce,
}

impl DesktopEnv {
    /// The name in labels, `desktop.env` and `--desktop-env`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Xfce => "xfce",
        }
    }
}

impl fmt::Display for DesktopEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Case and surrounding space do not matter, and an empty value is the default, as a lease
/// label written before desktop environments existed is empty.
impl FromStr for DesktopEnv {
    type Err = DesktopError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        match value.to_ascii_lowercase().as_str() {
            "" | "xfce" => Ok(Self::Xfce),
            "wayland" | "gnome" => Err(DesktopError::UnsupportedEnv(value.to_owned())),
            _ => Err(DesktopError::UnknownEnv(value.to_owned())),
        }
    }
}

/// A desktop that cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesktopError {
    #[error("desktop env {0:?} is not supported by this version; use xfce")]
    UnsupportedEnv(String),
    #[error("unknown desktop env {0:?} (valid: xfce)")]
    UnknownEnv(String),
    #[error(
        "desktop user {0:?} cannot be a Linux user name (use letters, digits, `_`, `.` and `-`, starting with a letter or `_`, at most 32 characters)"
    )]
    User(String),
}

/// The XFCE desktop for `user`, the lease's login user, who owns the session and the VNC
/// password.
pub fn desktop_unit(user: &str) -> Result<BootstrapUnit, DesktopError> {
    if !is_user_name(user) {
        return Err(DesktopError::User(user.to_owned()));
    }
    let env = DesktopEnv::Xfce;
    let owner = sh_quote(&format!("{user}:{user}"));
    let services = DESKTOP_SERVICES.join(" ");
    // The VNC side listens on loopback only (`-localhost yes`) and the X side on no network
    // at all (`-nolisten tcp`); `-ac` then lets any process on the runner, `sudo` ones
    // included, draw on the display without an X cookie, as the lease's commands expect.
    let files = vec![
        unit_file(
            DESKTOP_SERVICES[0],
            &format!(
                "[Unit]\n\
                 Description=Crabbox VNC display {DESKTOP_DISPLAY} (TigerVNC on 127.0.0.1:{VNC_PORT})\n\
                 After=network.target\n\n\
                 [Service]\n\
                 User={user}\n\
                 ExecStart=/usr/bin/Xtigervnc {DESKTOP_DISPLAY} -geometry 1920x1080 -depth 24 \
                 -localhost yes -rfbport {VNC_PORT} -SecurityTypes VncAuth \
                 -PasswordFile={VNC_HASH_FILE} -AlwaysShared -AcceptSetDesktopSize -nolisten tcp -ac\n\
                 Restart=always\n"
            ),
        ),
        unit_file(
            DESKTOP_SERVICES[1],
            &format!(
                "[Unit]\n\
                 Description=Crabbox XFCE session on {DESKTOP_DISPLAY}\n\
                 After={0}\n\
                 Requires={0}\n\n\
                 [Service]\n\
                 User={user}\n\
                 WorkingDirectory=~\n\
                 Environment=DISPLAY={DESKTOP_DISPLAY}\n\
                 ExecStart=/usr/bin/startxfce4\n\
                 Restart=always\n",
                DESKTOP_SERVICES[0]
            ),
        ),
        unit_file(
            DESKTOP_SERVICES[2],
            &format!(
                "[Unit]\n\
                 Description=Crabbox terminal on the desktop\n\
                 After={1}\n\
                 Requires={0} {1}\n\n\
                 [Service]\n\
                 User={user}\n\
                 WorkingDirectory=~\n\
                 Environment=DISPLAY={DESKTOP_DISPLAY}\n\
                 ExecStart={DESKTOP_SESSION_SCRIPT}\n\
                 Restart=always\n",
                DESKTOP_SERVICES[0], DESKTOP_SERVICES[1]
            ),
        ),
        WriteFile {
            path: DESKTOP_SESSION_SCRIPT.into(),
            permissions: "0755".into(),
            content: DESKTOP_SESSION.into(),
        },
    ];
    // The password is made and hashed from file to file inside a subshell that traces
    // nothing, so neither it nor a variable holding it reaches the cloud-init log that
    // `bash -x` writes. A new runner always gets a new password, even on an image baked from
    // a desktop runner.
    let bootstrap = format!(
        "retry apt-get install -y --no-install-recommends {DESKTOP_PACKAGES}
(
  set +x
  umask 077
  rm -f {VNC_PASSWORD_FILE} {VNC_HASH_FILE}
  openssl rand -base64 18 >{VNC_PASSWORD_FILE}
  # VNC authentication reads no more than 8 characters of a password.
  head -c 8 {VNC_PASSWORD_FILE} | tigervncpasswd -f >{VNC_HASH_FILE}
)
chown {owner} {VNC_PASSWORD_FILE} {VNC_HASH_FILE}
chmod 0600 {VNC_PASSWORD_FILE} {VNC_HASH_FILE}
systemctl daemon-reload
systemctl enable {services}
systemctl restart {services}
# Give the display a moment to listen, so the readiness check at the end of the bootstrap
# passes on the first try.
for _ in $(seq 1 30); do
  test -n \"$(ss -Hltn src 127.0.0.1:{VNC_PORT})\" && break
  sleep 1
done
printf '%s\\n' CRABBOX_DESKTOP_ENV={env} DISPLAY={DESKTOP_DISPLAY} >{DESKTOP_ENV_FILE}
chmod 0644 {DESKTOP_ENV_FILE}
"
    );
    let mut ready_checks: Vec<String> = DESKTOP_SERVICES
        .iter()
        .map(|service| format!("systemctl is-active --quiet {service}"))
        .collect();
    // `ss` prints the listener only if it is bound to 127.0.0.1 itself: a display that
    // listened on every address would not count as ready.
    ready_checks.push(format!("test -n \"$(ss -Hltn src 127.0.0.1:{VNC_PORT})\""));
    Ok(BootstrapUnit {
        name: format!("desktop ({env})"),
        files,
        bootstrap,
        ready_checks,
    })
}

/// Google Chrome stable on amd64, else Chromium, with managed policies, [`BROWSER_WRAPPER`]
/// and [`BROWSER_ENV_FILE`].
pub fn browser_unit() -> BootstrapUnit {
    let mut files: Vec<WriteFile> = BROWSER_POLICY_FILES
        .iter()
        .map(|path| WriteFile {
            path: (*path).into(),
            permissions: "0644".into(),
            content: browser_policy(),
        })
        .collect();
    files.push(WriteFile {
        path: BROWSER_WRAPPER.into(),
        permissions: "0755".into(),
        content: BROWSER_WRAPPER_SCRIPT.into(),
    });
    let fingerprint = GOOGLE_SIGNING_KEY_FINGERPRINT;
    let bootstrap = format!(
        "# gnupg checks Google's key; build-essential and python3 build the native addons that
# browser test suites fall back to compiling when no prebuilt binary fits.
retry apt-get install -y --no-install-recommends gnupg build-essential python3
if [ \"$(dpkg --print-architecture)\" = amd64 ]; then
  google_key=\"$(mktemp -d)\"
  install -d -m 0700 \"$google_key/gnupg\"
  retry curl -fsSL -o \"$google_key/signing-key.asc\" {GOOGLE_SIGNING_KEY_URL}
  # The downloaded key is trusted only if it is the pinned one, and only that key (with its
  # subkeys) goes into the keyring apt checks the repository against.
  GNUPGHOME=\"$google_key/gnupg\" gpg --batch --quiet --import \"$google_key/signing-key.asc\"
  google_fingerprint=\"$(GNUPGHOME=\"$google_key/gnupg\" gpg --batch --with-colons --fingerprint {fingerprint} 2>/dev/null | awk -F: '$1 == \"fpr\" {{ print $10; exit }}' || true)\"
  if [ \"$google_fingerprint\" != {fingerprint} ]; then
    echo 'the key at {GOOGLE_SIGNING_KEY_URL} is not the pinned {fingerprint}; not trusting the Google Chrome repository' >&2
    exit 1
  fi
  GNUPGHOME=\"$google_key/gnupg\" gpg --batch --export {fingerprint} >\"$google_key/google-linux.gpg\"
  test -s \"$google_key/google-linux.gpg\"
  install -d -m 0755 /etc/apt/keyrings
  install -m 0644 \"$google_key/google-linux.gpg\" {GOOGLE_KEYRING}
  GNUPGHOME=\"$google_key/gnupg\" gpgconf --kill all || true
  rm -rf \"$google_key\"
  # Without this the package adds a source of its own, trusting a key it installs itself.
  printf '%s\\n' 'repo_add_once=\"false\"' 'repo_reenable_on_distupgrade=\"false\"' >/etc/default/google-chrome
  rm -f /etc/apt/sources.list.d/google-chrome.list /etc/apt/sources.list.d/google-chrome.sources
  echo 'deb [arch=amd64 signed-by={GOOGLE_KEYRING}] https://dl.google.com/linux/chrome/deb/ stable main' >{GOOGLE_CHROME_SOURCE}
  retry apt-get update
  retry apt-get install -y --no-install-recommends google-chrome-stable
  rm -f /etc/apt/sources.list.d/google-chrome.list /etc/apt/sources.list.d/google-chrome.sources
elif apt-cache show chromium >/dev/null 2>&1; then
  retry apt-get install -y --no-install-recommends chromium
else
  retry apt-get install -y --no-install-recommends chromium-browser
fi
printf '%s\\n' CHROME_BIN={BROWSER_WRAPPER} BROWSER={BROWSER_WRAPPER} >{BROWSER_ENV_FILE}
chmod 0644 {BROWSER_ENV_FILE}
"
    );
    BootstrapUnit {
        name: "browser".into(),
        files,
        bootstrap,
        ready_checks: vec![
            format!("test -s {BROWSER_ENV_FILE}"),
            format!(". {BROWSER_ENV_FILE}"),
            "test -x \"$BROWSER\"".into(),
            "\"$BROWSER\" --version >/dev/null".into(),
        ],
    }
}

/// Opens one terminal on the desktop, so that a new VNC viewer lands on something usable,
/// then stays up so that systemd keeps the unit active without opening another.
const DESKTOP_SESSION: &str = r#"#!/bin/sh
set -eu
export DISPLAY="${DISPLAY:-:99}"
if pgrep -u "$(id -u)" -f 'Crabbox Desktop' >/dev/null 2>&1; then
  :
elif command -v xfce4-terminal >/dev/null 2>&1; then
  xfce4-terminal --title='Crabbox Desktop' --geometry=110x32+48+48 &
elif command -v xterm >/dev/null 2>&1; then
  xterm -title 'Crabbox Desktop' -geometry 110x32+48+48 -bg '#111827' -fg '#e5e7eb' &
fi
exec sleep infinity
"#;

/// Chrome where it was installed, else Chromium; a profile of the user's own (0700) unless
/// `CRABBOX_BROWSER_PROFILE` names one; no first-run, default-browser or restore prompts.
/// It finds the browser when it runs, so one wrapper serves every architecture. `HOME` may be
/// unset (cloud-init runs the first readiness check without it).
const BROWSER_WRAPPER_SCRIPT: &str = r#"#!/bin/sh
set -eu
browser=""
for name in google-chrome-stable chromium chromium-browser; do
  if browser="$(command -v "$name")"; then
    break
  fi
done
if [ -z "$browser" ]; then
  echo 'crabbox-browser: neither Google Chrome nor Chromium is installed' >&2
  exit 127
fi
home="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
profile="${CRABBOX_BROWSER_PROFILE:-$home/.cache/crabbox/browser-profile}"
umask 077
mkdir -p "$profile"
chmod 700 "$profile"
exec "$browser" --no-first-run --no-default-browser-check --disable-default-apps --hide-crash-restore-bubble --user-data-dir="$profile" --window-size=1500,900 --window-position=80,80 "$@"
"#;

/// Chrome's managed policy: it never asks to be the default browser, sends no usage
/// statistics and opens no promotional tabs.
fn browser_policy() -> String {
    let policy = serde_json::json!({
        "DefaultBrowserSettingEnabled": false,
        "MetricsReportingEnabled": false,
        "PromotionalTabsEnabled": false,
    });
    let mut text = serde_json::to_string_pretty(&policy).expect("a JSON value serializes");
    text.push('\n');
    text
}

fn unit_file(name: &str, service: &str) -> WriteFile {
    WriteFile {
        path: format!("/etc/systemd/system/{name}"),
        permissions: "0644".into(),
        content: format!("{service}\n[Install]\nWantedBy=multi-user.target\n"),
    }
}

#[cfg(test)]
mod tests;

/// What a cloud lease's capabilities add to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseParts {
    /// The bootstrap units they need.
    pub units: Vec<BootstrapUnit>,
    /// The labels that say the lease has them.
    pub labels: Vec<(String, String)>,
}

/// A cloud lease's optional parts. A desktop environment this version does not build is
/// refused before anything is made.
pub fn for_lease(
    caps: &crate::Capabilities,
    user: &str,
) -> Result<LeaseParts, crate::ProviderError> {
    let invalid = |e: DesktopError| crate::ProviderError::InvalidSpec(e.to_string());
    let mut units = Vec::new();
    let mut labels = Vec::new();
    if caps.desktop {
        let env: DesktopEnv = caps
            .desktop_env
            .as_deref()
            .unwrap_or("")
            .parse()
            .map_err(invalid)?;
        units.push(desktop_unit(user).map_err(invalid)?);
        labels.push(("desktop".to_owned(), "true".to_owned()));
        labels.push(("desktop_env".to_owned(), env.as_str().to_owned()));
    }
    if caps.browser {
        units.push(browser_unit());
        labels.push(("browser".to_owned(), "true".to_owned()));
    }
    Ok(LeaseParts { units, labels })
}
