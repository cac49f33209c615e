//! The units as a reviewer reads them (snapshots), inside a whole cloud-config parsed as YAML,
//! and the parts a user would notice run by bash, gpg and ss themselves: the password never
//! reaches the trace, a foreign signing key is refused, the readiness check counts only a
//! loopback listener, and the browser wrapper starts the browser with its profile and flags.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_yaml::Value;

use super::*;
use crate::cloud::cloud_init::{LinuxCloudInit, READY_SCRIPT};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxR8Ck8g7W6dZ9d5pQFvM3hH9yJbq3r2K1sVq0Jm2aL crabbox cbx_abcdef123456";

/// A unit as text: each file with its mode, the bootstrap, the readiness checks.
fn show(unit: &BootstrapUnit) -> String {
    let mut out = format!("unit: {}\n", unit.name);
    for file in &unit.files {
        let _ = write!(
            out,
            "\n--- {} ({})\n{}",
            file.path, file.permissions, file.content
        );
    }
    out.push_str("\n--- bootstrap\n");
    out.push_str(&unit.bootstrap);
    out.push_str("\n--- ready checks\n");
    for check in &unit.ready_checks {
        out.push_str(check);
        out.push('\n');
    }
    out
}

fn file<'a>(unit: &'a BootstrapUnit, path: &str) -> &'a WriteFile {
    unit.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no {path}"))
}

/// The one line of the bootstrap that starts with `prefix` (after indentation).
fn line<'a>(script: &'a str, prefix: &str) -> &'a str {
    let mut lines = script
        .lines()
        .filter(|l| l.trim_start().starts_with(prefix));
    let found = lines.next().unwrap_or_else(|| panic!("no {prefix:?}"));
    assert!(lines.next().is_none(), "more than one {prefix:?}");
    found
}

/// The bootstrap's lines from the one starting with `first` to the one starting with `last`.
fn section(script: &str, first: &str, last: &str) -> String {
    let lines: Vec<&str> = script.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start().starts_with(first))
        .unwrap_or_else(|| panic!("no {first:?}"));
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.trim_start().starts_with(last))
            .unwrap_or_else(|| panic!("no {last:?}"));
    lines[start..=end].join("\n") + "\n"
}

fn bash(script: &str, env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .args(["-euxo", "pipefail", "-c", script])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `bash -n` (or `sh -n`): the script parses.
fn assert_parses(shell: &str, script: &str) {
    let out = Command::new(shell)
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_desktop_unit() {
    let unit = desktop_unit("crabbox").unwrap();
    insta::assert_snapshot!(show(&unit));
    assert_parses("bash", &unit.bootstrap);
    assert_parses(
        "sh",
        &file(&unit, "/usr/local/bin/crabbox-desktop-session").content,
    );
}

#[test]
fn the_browser_unit() {
    let unit = browser_unit();
    insta::assert_snapshot!(show(&unit));
    assert_parses("bash", &unit.bootstrap);
    assert_parses("sh", &file(&unit, BROWSER_WRAPPER).content);
    for path in BROWSER_POLICY_FILES {
        let policy: serde_json::Value = serde_json::from_str(&file(&unit, path).content).unwrap();
        assert_eq!(
            policy,
            serde_json::json!({
                "DefaultBrowserSettingEnabled": false,
                "MetricsReportingEnabled": false,
                "PromotionalTabsEnabled": false,
            })
        );
    }
}

#[test]
fn a_runner_with_desktop_and_browser() {
    let units = [desktop_unit("crabbox").unwrap(), browser_unit()];
    let document = LinuxCloudInit {
        user: "crabbox",
        public_key: KEY,
        work_root: "/work/crabbox",
        ssh_ports: &[2222, 22],
        units: &units,
    }
    .render()
    .unwrap();
    insta::assert_snapshot!(document);
    let doc: Value = serde_yaml::from_str(&document).unwrap_or_else(|e| panic!("{e}\n{document}"));
    let written: Vec<(&str, &str)> = doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap(), f["content"].as_str().unwrap()))
        .collect();
    for unit in &units {
        for file in &unit.files {
            assert!(
                written.contains(&(file.path.as_str(), file.content.as_str())),
                "{}",
                file.path
            );
        }
    }
    let ready = written.iter().find(|(p, _)| *p == READY_SCRIPT).unwrap().1;
    assert_parses("bash", ready);
    assert!(
        ready.ends_with(
            "test -w /work/crabbox\n\
             systemctl is-active --quiet crabbox-xvfb.service\n\
             systemctl is-active --quiet crabbox-desktop.service\n\
             systemctl is-active --quiet crabbox-desktop-session.service\n\
             test -n \"$(ss -Hltn src 127.0.0.1:5900)\"\n\
             test -s /var/lib/crabbox/browser.env\n\
             . /var/lib/crabbox/browser.env\n\
             test -x \"$BROWSER\"\n\
             \"$BROWSER\" --version >/dev/null\n"
        ),
        "{ready}"
    );
    let script = doc["runcmd"][0][4].as_str().unwrap();
    assert_parses("bash", script);
    let desktop_at = script.find("# desktop (xfce)\n").unwrap();
    let browser_at = script.find("# browser\n").unwrap();
    assert!(script.find("install -d /var/lib/crabbox").unwrap() < desktop_at);
    assert!(desktop_at < browser_at);
    assert!(browser_at < script.find("touch /var/lib/crabbox/bootstrapped").unwrap());
}

#[test]
fn the_vnc_server_listens_on_loopback_only() {
    let unit = desktop_unit("crabbox").unwrap();
    let service = &file(&unit, "/etc/systemd/system/crabbox-xvfb.service").content;
    let exec = line(service, "ExecStart=");
    let words: Vec<&str> = exec.split(' ').collect();
    for pair in [
        ["-localhost", "yes"],
        ["-rfbport", "5900"],
        ["-SecurityTypes", "VncAuth"],
        ["-nolisten", "tcp"],
    ] {
        assert!(words.windows(2).any(|w| w == pair), "{pair:?} in {exec}");
    }
    assert!(words.contains(&"-PasswordFile=/var/lib/crabbox/vnc.pass"));

    // The readiness check, run against real listeners: one on 127.0.0.1 counts, one on every
    // address does not.
    let check = unit.ready_checks.last().unwrap();
    let loopback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let everywhere = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let on = |listener: &std::net::TcpListener| {
        let port = listener.local_addr().unwrap().port().to_string();
        bash(&check.replace("5900", &port), &[]).status.success()
    };
    assert!(on(&loopback), "{check}");
    assert!(!on(&everywhere), "{check}");
}

#[test]
fn the_vnc_password_is_private_and_stays_out_of_the_log() {
    let unit = desktop_unit("crabbox").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // Stands in for TigerVNC's tool: it writes what it was given, marked.
    write_executable(
        &bin.join("tigervncpasswd"),
        "#!/bin/sh\ntest \"$1\" = -f\nprintf 'hashed:'\ncat\n",
    );
    let block = section(&unit.bootstrap, "(", ")").replace(
        "/var/lib/crabbox/",
        &format!("{}/", state.to_str().unwrap()),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    // A password left over from an image is replaced, and a world-readable one cannot leak
    // the new one.
    std::fs::write(state.join("vnc.password"), "baked-into-the-image\n").unwrap();
    std::fs::set_permissions(
        state.join("vnc.password"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = bash(&block, &[("PATH", &path)]);
    assert!(out.status.success(), "{out:?}");
    let password = std::fs::read_to_string(state.join("vnc.password")).unwrap();
    let password = password.strip_suffix('\n').unwrap();
    assert_eq!(password.len(), 24, "{password}");
    assert_ne!(password, "baked-into-the-image");
    assert_eq!(
        std::fs::read_to_string(state.join("vnc.pass")).unwrap(),
        format!("hashed:{}", &password[..8])
    );
    assert_eq!(mode(&state.join("vnc.password")), 0o600);
    assert_eq!(mode(&state.join("vnc.pass")), 0o600);
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(trace.contains("+ set +x"), "{trace}");
    assert!(!trace.contains(&password[..8]), "{trace}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // Past the block, the password file is only owned and locked down: nothing reads it.
    for l in unit
        .bootstrap
        .lines()
        .filter(|l| l.contains(VNC_PASSWORD_FILE))
    {
        let l = l.trim_start();
        assert!(
            l.starts_with("rm -f ")
                || l.starts_with("openssl rand -base64 18 >")
                || l.starts_with("head -c 8 ")
                || l == "chown crabbox:crabbox /var/lib/crabbox/vnc.password /var/lib/crabbox/vnc.pass"
                || l == "chmod 0600 /var/lib/crabbox/vnc.password /var/lib/crabbox/vnc.pass",
            "{l}"
        );
    }
}

#[test]
fn the_desktop_env_file_names_the_desktop_and_display() {
    let unit = desktop_unit("crabbox").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("desktop.env");
    let write = line(&unit.bootstrap, "printf '%s\\n' CRABBOX_DESKTOP_ENV=")
        .replace(DESKTOP_ENV_FILE, env.to_str().unwrap());
    assert!(bash(&write, &[]).status.success());
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "CRABBOX_DESKTOP_ENV=xfce\nDISPLAY=:99\n"
    );
}

/// The bootstrap's key check, run by gpg on a key that is not Google's: refused, and no
/// keyring written; and the same check pinned to that key's own fingerprint: accepted, with
/// the keyring holding that key.
#[test]
fn only_the_pinned_google_key_is_trusted() {
    let unit = browser_unit();
    let script = &unit.bootstrap;
    let at = |needle: &str| {
        script
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?}"))
    };
    let checked = at("if [ \"$google_fingerprint\" != EB4C1BFD4F042F6DDDCCEC917721F63BD38B4796 ]");
    assert!(checked < at("install -m 0644 \"$google_key/google-linux.gpg\""));
    assert!(checked < at("signed-by=/etc/apt/keyrings/google-linux.gpg"));
    assert!(at("signed-by=") < at("retry apt-get update"));
    assert!(at("retry apt-get update") < at("google-chrome-stable"));
    assert!(at("repo_add_once=\"false\"") < at("google-chrome-stable"));

    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("signer");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--batch", "--quiet"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "crabbox test <test@invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    let listing = String::from_utf8(gpg(&["--with-colons", "--list-keys"])).unwrap();
    let fingerprint = listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:").map(|rest| rest.trim_matches(':')))
        .unwrap()
        .to_owned();
    let armored = gpg(&["--armor", "--export", &fingerprint]);
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &home)
        .args(["--kill", "all"])
        .status();

    let check = section(
        script,
        "GNUPGHOME=\"$google_key/gnupg\" gpg --batch --quiet --import",
        "install -m 0644",
    );
    let run = |pinned: &str| {
        let work = tempfile::tempdir().unwrap();
        let key_dir = work.path().join("key");
        std::fs::create_dir_all(key_dir.join("gnupg")).unwrap();
        std::fs::set_permissions(
            key_dir.join("gnupg"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(key_dir.join("signing-key.asc"), &armored).unwrap();
        let keyrings = work.path().join("keyrings");
        let script = format!(
            "google_key={}\n{}",
            key_dir.display(),
            check
                .replace(GOOGLE_SIGNING_KEY_FINGERPRINT, pinned)
                .replace("/etc/apt/keyrings", keyrings.to_str().unwrap())
        );
        let out = bash(&script, &[]);
        let keyring = std::fs::read(keyrings.join("google-linux.gpg")).ok();
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", key_dir.join("gnupg"))
            .args(["--kill", "all"])
            .status();
        (out, keyring)
    };

    let (refused, keyring) = run(GOOGLE_SIGNING_KEY_FINGERPRINT);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(
            "is not the pinned EB4C1BFD4F042F6DDDCCEC917721F63BD38B4796; not trusting the Google Chrome repository"
        ),
        "{refused:?}"
    );
    assert_eq!(keyring, None);

    let (accepted, keyring) = run(&fingerprint);
    assert!(accepted.status.success(), "{accepted:?}");
    let keyring_file = dir.path().join("keyring.gpg");
    std::fs::write(&keyring_file, keyring.unwrap()).unwrap();
    let shown = String::from_utf8(gpg(&[
        "--with-colons",
        "--show-keys",
        keyring_file.to_str().unwrap(),
    ]))
    .unwrap();
    assert!(
        shown.contains(&format!("fpr:::::::::{fingerprint}:")),
        "{shown}"
    );
}

#[test]
fn the_browser_wrapper_starts_the_browser_with_its_profile_and_flags() {
    let unit = browser_unit();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    write_executable(
        &bin.join("google-chrome-stable"),
        "#!/bin/sh\nfor arg; do printf '%s\\n' \"$arg\"; done\n",
    );
    let wrapper = dir.path().join("crabbox-browser");
    write_executable(&wrapper, &file(&unit, BROWSER_WRAPPER).content);
    let home = dir.path().join("home");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let out = Command::new(&wrapper)
        .arg("--version")
        .env_clear()
        .env("PATH", &path)
        .env("HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let profile = home.join(".cache/crabbox/browser-profile");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "--no-first-run\n--no-default-browser-check\n--disable-default-apps\n\
             --hide-crash-restore-bubble\n--user-data-dir={}\n--window-size=1500,900\n\
             --window-position=80,80\n--version\n",
            profile.display()
        )
    );
    assert_eq!(mode(&profile), 0o700);

    // Without any browser installed it says so.
    let out = Command::new(&wrapper)
        .env_clear()
        .env("PATH", dir.path().join("none"))
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither Google Chrome nor Chromium"));

    let dir_env = tempfile::tempdir().unwrap();
    let env = dir_env.path().join("browser.env");
    let write = line(&unit.bootstrap, "printf '%s\\n' CHROME_BIN=")
        .replace(BROWSER_ENV_FILE, env.to_str().unwrap());
    assert!(bash(&write, &[]).status.success());
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "CHROME_BIN=/usr/local/bin/crabbox-browser\nBROWSER=/usr/local/bin/crabbox-browser\n"
    );
}

#[test]
fn user_names_are_quoted_or_refused() {
    for user in [
        "o'brien",
        "a b",
        "crab\nbox",
        "root:0",
        "-rf",
        "",
        "%i",
        &"a".repeat(33),
    ] {
        assert_eq!(
            desktop_unit(user),
            Err(DesktopError::User(user.into())),
            "{user:?}"
        );
    }
    assert_eq!(
        desktop_unit("o'brien").unwrap_err().to_string(),
        "desktop user \"o'brien\" cannot be a Linux user name (use letters, digits, `_`, `.` and \
         `-`, starting with a letter or `_`, at most 32 characters)"
    );
    let unit = desktop_unit("svc.runner-1$").unwrap();
    assert!(unit.bootstrap.contains(
        "chown 'svc.runner-1$:svc.runner-1$' /var/lib/crabbox/vnc.password /var/lib/crabbox/vnc.pass\n"
    ));
    for service in DESKTOP_SERVICES {
        let content = &file(&unit, &format!("/etc/systemd/system/{service}")).content;
        assert_eq!(line(content, "User="), "User=svc.runner-1$");
    }
}

#[test]
fn desktop_envs() {
    for name in ["xfce", " XFCE ", ""] {
        assert_eq!(name.parse::<DesktopEnv>(), Ok(DesktopEnv::Xfce), "{name:?}");
    }
    assert_eq!(DesktopEnv::default().to_string(), "xfce");
    for name in ["wayland", "gnome", "GNOME"] {
        assert_eq!(
            name.parse::<DesktopEnv>().unwrap_err().to_string(),
            format!("desktop env {name:?} is not supported by this version; use xfce")
        );
    }
    assert_eq!(
        "kde".parse::<DesktopEnv>().unwrap_err().to_string(),
        "unknown desktop env \"kde\" (valid: xfce)"
    );
}
