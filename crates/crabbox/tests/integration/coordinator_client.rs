//! The brokered CLI against a real `crabbox coordinator serve`: where login and logout write,
//! the identity headers and token command, the broker's default provider, admin commands,
//! credentials in the coordinator URL, and idle-timeout updates on a reused lease.

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};

use crabbox_test_support::{Sandbox, code, stderr, stdout};

use crate::coordinator::{SHARED, Server, json, serve};
use crate::sandbox;

/// `crabbox login --url <server> --token-stdin [extra]` fed `token`, in `dir`.
fn login(sb: &Sandbox, dir: &Path, server: &Server, token: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = sb.crabbox(dir, &["login", "--url", &server.url, "--token-stdin"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn crabbox_config_is_the_file_login_and_logout_write() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let dir = sb.work();
    std::fs::create_dir_all(&dir).unwrap();
    // The XDG file exists too; with CRABBOX_CONFIG set it must be neither read nor written.
    let xdg = sb.path().join("config/crabbox/config.yaml");
    std::fs::create_dir_all(xdg.parent().unwrap()).unwrap();
    std::fs::write(&xdg, "class: fast\n").unwrap();
    let cfg = sb.path().join("ci/private/cfg.yaml");
    let env = [("CRABBOX_CONFIG", cfg.as_path())];

    let out = login(&sb, &dir, &server, SHARED, &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("config={}", cfg.display())),
        "{}",
        stdout(&out)
    );
    let meta = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(meta(&cfg), 0o600);
    assert_eq!(meta(cfg.parent().unwrap()), 0o700);
    assert!(std::fs::read_to_string(&cfg).unwrap().contains(SHARED));
    assert_eq!(std::fs::read_to_string(&xdg).unwrap(), "class: fast\n");

    let whoami = |sb: &Sandbox| {
        sb.crabbox(&dir, &["whoami", "--json"])
            .env("CRABBOX_CONFIG", &cfg)
            .output()
            .unwrap()
    };
    let out = whoami(&sb);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["owner"], "dev@example.com");
    let path = sb
        .crabbox(&dir, &["config", "path"])
        .env("CRABBOX_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(stdout(&path).trim(), cfg.display().to_string());

    let out = sb
        .crabbox(&dir, &["logout", "--json"])
        .env("CRABBOX_CONFIG", &cfg)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["config"], cfg.display().to_string());
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        !text.contains(SHARED) && text.contains(&server.url),
        "{text}"
    );
    assert_eq!(meta(&cfg), 0o600);
    assert_eq!(std::fs::read_to_string(&xdg).unwrap(), "class: fast\n");
    let out = whoami(&sb);
    assert_eq!(
        code(&out),
        3,
        "logged out, whoami must be refused: {}",
        stderr(&out)
    );
}
