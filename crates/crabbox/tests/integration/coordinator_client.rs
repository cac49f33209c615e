//! The brokered CLI against a real `crabbox coordinator serve`: where login and logout write,
//! the identity headers and token command, the broker's default provider, admin commands,
//! credentials in the coordinator URL, and idle-timeout updates on a reused lease.

use std::path::Path;
use std::process::Output;

use crabbox_test_support::{Sandbox, code, git, git_repo, stderr, stdout};

use crate::coordinator::{ADMIN, SHARED, Server, json, serve};
use crate::sandbox;

/// `crabbox login --url <server> --token-stdin [extra]` fed `token`, in `dir`.
fn login(sb: &Sandbox, dir: &Path, server: &Server, token: &str, env: &[(&str, &Path)]) -> Output {
    let mut cmd = sb.crabbox(dir, &["login", "--url", &server.url, "--token-stdin"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::output_with_stdin(&mut cmd, token)
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

/// `crabbox <args>` against `server` with `env`, and without the caller's own e-mail variables.
fn against(
    sb: &Sandbox,
    dir: &Path,
    server: &Server,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = sb.crabbox(dir, args);
    cmd.env("CRABBOX_COORDINATOR", &server.url)
        .env_remove("GIT_AUTHOR_EMAIL")
        .env_remove("GIT_COMMITTER_EMAIL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn script(sb: &Sandbox, name: &str, body: &str) -> String {
    let path = sb.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    serde_json::json!([path]).to_string()
}

#[test]
fn identity_headers_and_the_token_command_reach_the_coordinator() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    git(&repo, &["config", "user.email", "dana@example.com"]);
    let whoami = |env: &[(&str, &str)]| {
        let out = against(&sb, &repo, &server, &["whoami", "--json"], env);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        json(&out)
    };

    // The admin token acts for the owner and org the CLI names.
    let me = whoami(&[
        ("CRABBOX_COORDINATOR_TOKEN", ADMIN),
        ("CRABBOX_OWNER", "carol@example.com"),
        ("CRABBOX_ORG", "acme"),
    ]);
    assert_eq!(
        (&me["owner"], &me["org"], &me["admin"]),
        (&"carol@example.com".into(), &"acme".into(), &true.into()),
        "{me}"
    );
    // Without CRABBOX_OWNER the owner is the git e-mail (here the repository's own).
    let me = whoami(&[("CRABBOX_COORDINATOR_TOKEN", ADMIN)]);
    assert_eq!(me["owner"], "dana@example.com", "{me}");
    let me = whoami(&[
        ("CRABBOX_COORDINATOR_TOKEN", ADMIN),
        ("GIT_AUTHOR_EMAIL", "erin@example.com"),
    ]);
    assert_eq!(me["owner"], "erin@example.com", "{me}");
    // The shared token's identity is the coordinator's to set; the headers change nothing.
    let me = whoami(&[
        ("CRABBOX_COORDINATOR_TOKEN", SHARED),
        ("CRABBOX_OWNER", "carol@example.com"),
    ]);
    assert_eq!(
        (&me["owner"], &me["admin"]),
        (&"dev@example.com".into(), &false.into()),
        "{me}"
    );

    // The token command's stdout is the token; it wins over CRABBOX_COORDINATOR_TOKEN.
    let command = script(&sb, "token.sh", &format!("echo {ADMIN}"));
    let me = whoami(&[
        ("CRABBOX_COORDINATOR_TOKEN_COMMAND", command.as_str()),
        ("CRABBOX_COORDINATOR_TOKEN", "not-a-token"),
        ("CRABBOX_OWNER", "carol@example.com"),
    ]);
    assert_eq!(
        (&me["owner"], &me["admin"]),
        (&"carol@example.com".into(), &true.into()),
        "{me}"
    );

    // A token command that fails is reported by name, and what it printed is never shown.
    for (name, body, says) in [
        (
            "two-lines.sh",
            "echo secret-one; echo secret-two".to_owned(),
            "must print exactly one line",
        ),
        (
            "fails.sh",
            "echo secret-one; echo secret-err >&2; exit 9".to_owned(),
            "failed with exit code 9",
        ),
        (
            "huge.sh",
            "head -c 20000 /dev/zero | tr '\\0' s; echo secret-one".to_owned(),
            "more than 16 KiB",
        ),
        ("empty.sh", "true".to_owned(), "printed no token"),
    ] {
        let command = script(&sb, name, &body);
        let out = against(
            &sb,
            &repo,
            &server,
            &["whoami"],
            &[("CRABBOX_COORDINATOR_TOKEN_COMMAND", command.as_str())],
        );
        assert_eq!(code(&out), 1, "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(name) && err.contains(says), "{name}: {err}");
        assert!(
            !err.contains("secret-") && !stdout(&out).contains("secret-"),
            "{name}: {err}"
        );
    }
    let out = against(
        &sb,
        &repo,
        &server,
        &["whoami"],
        &[("CRABBOX_COORDINATOR_TOKEN_COMMAND", "print-token --now")],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("JSON array"), "{}", stderr(&out));
}

#[test]
fn login_provider_is_the_provider_brokered_leases_ask_for() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    let config = sb.path().join("config/crabbox/config.yaml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "provider: local\nclass: fast\n").unwrap();

    let out = crate::output_with_stdin(
        &mut sb.crabbox(
            &repo,
            &[
                "login",
                "--url",
                &server.url,
                "--provider",
                "ssh",
                "--token-stdin",
            ],
        ),
        SHARED,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("provider=ssh"), "{}", stdout(&out));
    let show = sb.run(&repo, &["config", "show"]);
    assert!(
        stdout(&show).contains(&format!("provider=ssh origin=user:{}", config.display())),
        "{}",
        stdout(&show)
    );
    assert!(stderr(&show).is_empty(), "no warnings: {}", stderr(&show));

    // The coordinator is asked for ssh, which this one does not offer.
    let out = sb.run(&repo, &["warmup"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("provider ssh is not configured"),
        "{}",
        stderr(&out)
    );
    // A flag (or CRABBOX_PROVIDER) still wins over the logged-in default.
    let out = sb.run(&repo, &["warmup", "--provider", "local", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let lease = json(&out);
    assert_eq!(lease["lease"]["provider"], "local", "{lease}");
    let id = lease["lease"]["id"].as_str().unwrap().to_owned();
    let out = sb.run(&repo, &["stop", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn admin_commands_take_the_spec_flags_and_delete_needs_force() {
    let sb = sandbox();
    let state = sb.path().join("coord");
    let server = serve(&sb, &state, &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    let admin = [("CRABBOX_COORDINATOR_ADMIN_TOKEN", ADMIN)];
    let run = |args: &[&str], env: &[(&str, &str)]| against(&sb, &repo, &server, args, env);
    let warm = |env: &[(&str, &str)]| {
        let out = run(&["warmup", "--json"], env);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        json(&out)["lease"]["id"].as_str().unwrap().to_owned()
    };
    // One lease an admin token made for carol in acme, one made with the shared token.
    let carol = warm(&[
        ("CRABBOX_COORDINATOR_TOKEN", ADMIN),
        ("CRABBOX_OWNER", "carol@example.com"),
        ("CRABBOX_ORG", "acme"),
    ]);
    let dev = warm(&[("CRABBOX_COORDINATOR_TOKEN", SHARED)]);
    let runner = |id: &str| state.join("local").join(id).exists();
    assert!(runner(&carol) && runner(&dev));
    let ids = |args: &[&str]| -> Vec<String> {
        let out = run(args, &admin);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        json(&out)
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&["admin", "leases", "--org", "acme", "--json"]),
        std::slice::from_ref(&carol)
    );
    assert_eq!(
        ids(&["admin", "leases", "--owner", "dev@example.com", "--json"]),
        std::slice::from_ref(&dev)
    );
    let out = run(&["admin", "leases", "--state", "active"], &admin);
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with(&carol))
        .map_or_else(|| panic!("{}", stdout(&out)), str::to_owned);
    assert!(
        line.contains(" local ")
            && line.contains("owner=carol@example.com")
            && line.contains(" idle=30m0s expires="),
        "{line}"
    );

    // release ends the lease and keeps the runner unless --delete.
    let out = run(&["admin", "release", &carol], &admin);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("released {carol} slug="))
            && stdout(&out)
                .trim_end()
                .ends_with("state=released delete=false"),
        "{}",
        stdout(&out)
    );
    assert!(runner(&carol), "release without --delete keeps the runner");

    // delete refuses without --force and changes nothing.
    let out = run(&["admin", "delete", &dev], &admin);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("admin delete requires --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        ids(&["admin", "leases", "--state", "active", "--json"]),
        std::slice::from_ref(&dev)
    );
    assert!(runner(&dev));

    let out = run(
        &["admin", "release", "--delete", "--id", &dev, "--json"],
        &admin,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["state"], "released");
    crate::coordinator::wait_until(
        "the runner to be deleted",
        std::time::Duration::from_secs(20),
        || !runner(&dev),
    );

    let out = run(&["admin", "delete", &carol, "--force"], &admin);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("deleted {carol} slug="))
            && stdout(&out).contains("state=released"),
        "{}",
        stdout(&out)
    );
    assert!(!runner(&carol), "delete waits for the provider");
}

#[test]
fn a_password_in_the_coordinator_url_is_never_printed() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    let clean = |out: &Output, what: &str| {
        assert!(
            !stdout(out).contains("SECRETPW") && !stderr(out).contains("SECRETPW"),
            "{what} printed the password:\n{}\n{}",
            stdout(out),
            stderr(out)
        );
    };
    let with_url = |url: &str, args: &[&str]| {
        sb.crabbox(&repo, args)
            .env("CRABBOX_COORDINATOR", url)
            .env("CRABBOX_COORDINATOR_TOKEN", SHARED)
            .output()
            .unwrap()
    };

    // Unreachable: the errors and doctor name the coordinator without the password.
    let down = "http://u:SECRETPW@127.0.0.1:1";
    for args in [
        &["whoami"][..],
        &["whoami", "--json"],
        &["doctor"],
        &["doctor", "--json"],
        &["config", "show"],
        &["config", "show", "--json"],
    ] {
        let out = with_url(down, args);
        clean(&out, &args.join(" "));
    }
    let out = with_url(down, &["whoami"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("http://<redacted>@127.0.0.1:1/v1/whoami"),
        "{}",
        stderr(&out)
    );
    let out = with_url(down, &["doctor"]);
    assert!(
        stdout(&out).contains("failed coord ") && stdout(&out).contains("<redacted>@127.0.0.1:1"),
        "{}",
        stdout(&out)
    );

    // Reachable: the bearer token is what authenticates (not the URL's basic auth), and every
    // output that names the coordinator, lease labels included, shows it redacted.
    let up = server.url.replacen("http://", "http://u:SECRETPW@", 1);
    let shown = server.url.replacen("http://", "http://<redacted>@", 1);
    let out = with_url(&up, &["whoami"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("broker={shown}")),
        "{}",
        stdout(&out)
    );
    let out = with_url(&up, &["doctor"]);
    clean(&out, "doctor");
    assert!(
        stdout(&out).contains(&format!("ok coord {shown}")),
        "{}",
        stdout(&out)
    );
    let cfg = sb.path().join("login.yaml");
    let out = crate::output_with_stdin(
        sb.crabbox(&repo, &["login", "--url", &up, "--token-stdin", "--json"])
            .env("CRABBOX_CONFIG", &cfg),
        SHARED,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    clean(&out, "login --json");
    assert_eq!(json(&out)["broker"], shown.as_str());

    let out = with_url(&up, &["warmup", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    clean(&out, "warmup --json");
    let id = json(&out)["lease"]["id"].as_str().unwrap().to_owned();
    for args in [
        &["status", id.as_str(), "--json"][..],
        &["list", "--json"],
        &["inspect", id.as_str()],
        &["stop", id.as_str()],
    ] {
        let out = with_url(&up, args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        clean(&out, &args.join(" "));
    }
}

#[test]
fn run_on_a_lease_with_idle_timeout_updates_the_coordinator_lease() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);
    let env = [
        ("CRABBOX_COORDINATOR_TOKEN", SHARED),
        ("CRABBOX_COORDINATOR_ADMIN_TOKEN", ADMIN),
    ];
    let run = |args: &[&str]| against(&sb, &repo, &server, args, &env);
    let out = run(&["warmup", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = json(&out)["lease"]["id"].as_str().unwrap().to_owned();
    let stored = || {
        let out = run(&["admin", "leases", "--json"]);
        json(&out)
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id.as_str())
            .cloned()
            .unwrap()
    };
    assert_eq!(stored()["idleTimeoutSeconds"], 1800);

    let out = run(&["run", "--id", &id, "--idle-timeout", "10m", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let line = stderr(&out)
        .lines()
        .find(|l| l.starts_with("updated idle_timeout="))
        .map_or_else(|| panic!("no update line: {}", stderr(&out)), str::to_owned);
    let lease = stored();
    assert_eq!(lease["idleTimeoutSeconds"], 600, "{lease}");
    assert_eq!(
        line,
        format!(
            "updated idle_timeout=10m0s expires={}",
            lease["expiresAt"].as_str().unwrap()
        )
    );

    // Without --idle-timeout a reused lease keeps what it has.
    let out = run(&["run", "--id", &id, "--", "true"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("updated idle_timeout"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stored()["idleTimeoutSeconds"], 600);
    assert_eq!(code(&run(&["stop", &id])), 0);
}
