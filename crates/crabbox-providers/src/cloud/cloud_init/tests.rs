//! The rendered document, parsed as YAML and its scripts checked by bash itself.

use std::process::{Command, Stdio};

use serde_yaml::Value;

use super::*;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxR8Ck8g7W6dZ9d5pQFvM3hH9yJbq3r2K1sVq0Jm2aL crabbox cbx_abcdef123456";

fn base<'a>(user: &'a str, work_root: &'a str, units: &'a [BootstrapUnit]) -> LinuxCloudInit<'a> {
    LinuxCloudInit {
        user,
        public_key: KEY,
        work_root,
        ssh_ports: &[2222, 22],
        units,
    }
}

fn parse(document: &str) -> Value {
    assert!(document.starts_with("#cloud-config\n"));
    serde_yaml::from_str(document).unwrap_or_else(|e| panic!("{e}\n{document}"))
}

/// The file cloud-init writes at `path`.
fn file<'a>(doc: &'a Value, path: &str) -> &'a str {
    doc["write_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|f| f["path"].as_str() == Some(path))
        .and_then(|f| f["content"].as_str())
        .unwrap_or_else(|| panic!("no {path}"))
}

/// The bootstrap script, after checking that cloud-init runs it with `bash -euxo pipefail -c`.
fn bootstrap(doc: &Value) -> &str {
    let argv = doc["runcmd"][0].as_sequence().unwrap();
    let words: Vec<&str> = argv.iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(words[..4], ["bash", "-euxo", "pipefail", "-c"]);
    words[4]
}

/// `bash -n`: the script parses.
fn assert_bash_parses(script: &str) {
    let mut child = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_whole_document() {
    let document = base("crabbox", "/work/crabbox", &[]).render().unwrap();
    insta::assert_snapshot!(document);
    let doc = parse(&document);
    let user = &doc["users"][0];
    assert_eq!(user["name"].as_str(), Some("crabbox"));
    assert_eq!(user["ssh_authorized_keys"][0].as_str(), Some(KEY));
    assert_eq!(
        file(&doc, "/etc/ssh/sshd_config.d/99-crabbox-port.conf"),
        "Port 2222\nPort 22\nPasswordAuthentication no\n"
    );
    assert_bash_parses(file(&doc, READY_SCRIPT));
    assert_bash_parses(bootstrap(&doc));
    assert!(
        bootstrap(&doc)
            .ends_with("touch /var/lib/crabbox/bootstrapped\n/usr/local/bin/crabbox-ready\n")
    );
}

#[test]
fn a_hostile_work_root_reaches_bash_as_one_literal_word() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = dir.path().join("it's $(touch pwned) \"x\" `id` \\ #;|&");
    std::fs::create_dir(&hostile).unwrap();
    let work_root = hostile.to_str().unwrap();
    let document = base("svc.runner-1$", work_root, &[]).render().unwrap();
    let doc = parse(&document);
    assert_eq!(doc["users"][0]["name"].as_str(), Some("svc.runner-1$"));
    let ready = file(&doc, READY_SCRIPT);
    assert_bash_parses(ready);
    assert_bash_parses(bootstrap(&doc));
    assert!(bootstrap(&doc).contains("chown -R 'svc.runner-1$:svc.runner-1$' "));
    // The readiness line, as cloud-init would write it, run by bash from a directory where
    // an unquoted `$(touch pwned)` would leave a file behind.
    let line = ready.lines().find(|l| l.starts_with("test -w ")).unwrap();
    let status = Command::new("bash")
        .args(["-c", line])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "{line}");
    assert!(!dir.path().join("pwned").exists());
}

#[test]
fn values_no_quoting_can_carry_are_refused() {
    let refused = |user: &str, work_root: &str| base(user, work_root, &[]).render().unwrap_err();
    assert_eq!(
        refused("crab\nbox", "/work").to_string(),
        "ssh user contains a line break or control character: \"crab\\nbox\""
    );
    assert!(matches!(
        refused("crabbox", "/work/a\nBOOT"),
        CloudInitError::ControlCharacter {
            what: "work root",
            ..
        }
    ));
    assert!(matches!(
        refused("crabbox", "/work/\u{2028}x"),
        CloudInitError::ControlCharacter { .. }
    ));
    for user in ["", "-rf", "o'brien", "a b", "root:0", &"a".repeat(33)] {
        assert_eq!(
            refused(user, "/work"),
            CloudInitError::User(user.into()),
            "{user}"
        );
    }
    for root in ["work", "/", "//", "/work/../etc", "/work/./x"] {
        assert_eq!(
            refused("crabbox", root),
            CloudInitError::WorkRoot(root.into()),
            "{root}"
        );
    }
    let bad_key = LinuxCloudInit {
        public_key: "not a key",
        ..base("crabbox", "/work", &[])
    };
    assert!(matches!(
        bad_key.render(),
        Err(CloudInitError::PublicKey(_))
    ));
    let no_ports = LinuxCloudInit {
        ssh_ports: &[],
        ..base("crabbox", "/work", &[])
    };
    assert_eq!(no_ports.render(), Err(CloudInitError::NoPorts));
}

/// Units (desktop, browser, code: issue 14) add files, steps and checks in their places.
#[test]
fn units_extend_files_bootstrap_and_readiness() {
    let unit = BootstrapUnit {
        name: "example tool".into(),
        files: vec![WriteFile {
            path: "/etc/example.conf".into(),
            permissions: "0600".into(),
            content: "  indented: first line\nkey: \"value\"\n\n# not YAML here\n".into(),
        }],
        bootstrap: "retry apt-get install -y example\nsystemctl enable --now example\n".into(),
        ready_checks: vec!["example --version >/dev/null".into()],
    };
    let document = base("crabbox", "/work/crabbox", std::slice::from_ref(&unit))
        .render()
        .unwrap();
    let doc = parse(&document);
    assert_eq!(file(&doc, "/etc/example.conf"), unit.files[0].content);
    assert!(
        file(&doc, READY_SCRIPT).ends_with("test -w /work/crabbox\nexample --version >/dev/null\n")
    );
    let script = bootstrap(&doc);
    assert_bash_parses(script);
    let unit_at = script
        .find("# example tool\nretry apt-get install -y example\n")
        .unwrap();
    assert!(unit_at > script.find("systemctl enable ssh").unwrap());
    assert!(unit_at < script.find("touch /var/lib/crabbox/bootstrapped").unwrap());
}
