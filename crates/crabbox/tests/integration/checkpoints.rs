//! `crabbox checkpoint create | fork | restore | delete` end to end on `local` leases (real
//! sshd, rsync, tar and zstd): a workdir prepared on one lease is saved, forked into a new
//! lease that sees it at once, restored onto a dirty lease with and without `--clear`, dry runs
//! change nothing, a hostile archive is refused with the workdir untouched.

use std::path::{Path, PathBuf};

use crabbox_test_support::{Sandbox, code, git_repo, stderr, stdout};
use serde_json::Value;

fn setup() -> (Sandbox, PathBuf) {
    let sb = crate::sandbox();
    let repo = sb.work().join("app");
    git_repo(&repo, &[("package.json", "{\"name\":\"app\"}\n")]);
    (sb, repo)
}

fn ok(sb: &Sandbox, repo: &Path, args: &[&str]) -> String {
    let out = sb.run(repo, args);
    assert_eq!(code(&out), 0, "crabbox {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn json(sb: &Sandbox, repo: &Path, args: &[&str]) -> Value {
    let text = ok(sb, repo, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
}

/// Runs a shell line in the lease's workdir without syncing, and returns its stdout.
fn shell(sb: &Sandbox, repo: &Path, id: &str, line: &str) -> String {
    ok(
        sb,
        repo,
        &["run", "--id", id, "--no-sync", "--shell", "--", line],
    )
}

/// Every file under the workdir with its content hash: what a user would notice changing.
fn listing(sb: &Sandbox, repo: &Path, id: &str) -> String {
    shell(
        sb,
        repo,
        id,
        "find . -path ./.crabbox -prune -o -print | LC_ALL=C sort | \
         while read -r p; do if [ -f \"$p\" ]; then echo \"$p $(cksum <\"$p\")\"; else echo \"$p\"; fi; done",
    )
}

#[test]
fn a_prepared_workdir_is_saved_forked_restored_and_deleted() {
    let (sb, repo) = setup();
    let source = crate::warm(&sb, &repo);
    // `npm ci` stand-in: node_modules is never synced, so only the checkpoint carries it.
    ok(
        &sb,
        &repo,
        &[
            "run",
            "--id",
            &source,
            "--shell",
            "--",
            "mkdir -p node_modules/left-pad && echo prepared >node_modules/left-pad/index.js \
             && mkdir -p .crabbox/env && echo SECRET=1 >.crabbox/env/vars",
        ],
    );
    let made = json(
        &sb,
        &repo,
        &[
            "checkpoint",
            "create",
            "--id",
            &source,
            "--name",
            "after-npm-ci",
            "--json",
        ],
    );
    assert_eq!(made["kind"], "workspace-archive", "{made}");
    assert_eq!(made["name"], "after-npm-ci");
    assert_eq!(made["leaseId"], source.as_str());
    let chk = made["id"].as_str().unwrap().to_owned();
    let dir = sb.path().join("state/crabbox/checkpoints").join(&chk);
    let archive = dir.join("workspace.tar.zst");
    let mode_of = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode_of(&archive), 0o600);
    assert_eq!(mode_of(&dir), 0o700);
    assert_eq!(
        made["archiveBytes"].as_u64(),
        Some(std::fs::metadata(&archive).unwrap().len())
    );
    let listed = json(&sb, &repo, &["checkpoint", "list", "--json"]);
    assert_eq!(listed[0]["id"], chk.as_str(), "{listed}");

    // A fork sees the prepared workdir at once (a normal `run`, which syncs first).
    let out = sb.run(
        &repo,
        &["checkpoint", "fork", &chk, "--slug", "blue-fork", "--json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let forked: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fork = forked["forks"][0]["lease"].as_str().unwrap().to_owned();
    assert_ne!(fork, source);
    let seen = ok(
        &sb,
        &repo,
        &[
            "run",
            "--id",
            &fork,
            "--",
            "cat",
            "node_modules/left-pad/index.js",
        ],
    );
    assert_eq!(seen.trim(), "prepared");
    assert_eq!(
        shell(
            &sb,
            &repo,
            &fork,
            "test -e .crabbox/env/vars && echo leaked || echo absent"
        )
        .trim(),
        "absent",
        "the lease's own .crabbox/env never enters a checkpoint"
    );

    // Several forks at once: numbered slugs, each with the prepared workdir.
    let pair = json(
        &sb,
        &repo,
        &[
            "checkpoint",
            "fork",
            &chk,
            "--count",
            "2",
            "--slug",
            "pair",
            "--json",
        ],
    );
    let forks = pair["forks"].as_array().expect("forks");
    assert_eq!(forks.len(), 2, "{pair}");
    let listed = json(&sb, &repo, &["list", "--json"]).to_string();
    for (n, made) in forks.iter().enumerate() {
        let id = made["lease"].as_str().unwrap();
        let slug = format!("pair-0{}", n + 1);
        assert!(
            listed.contains(&format!(r#""slug":"{slug}""#)),
            "{slug}: {listed}"
        );
        let seen = shell(&sb, &repo, id, "cat node_modules/left-pad/index.js");
        assert_eq!(seen.trim(), "prepared", "{slug}");
        ok(&sb, &repo, &["stop", id]);
    }

    // Restore onto a dirty lease: merged without --clear, replaced with it.
    shell(
        &sb,
        &repo,
        &fork,
        "echo changed >node_modules/left-pad/index.js && echo mine >scratch.txt",
    );
    let before = listing(&sb, &repo, &fork);
    let dry = json(
        &sb,
        &repo,
        &[
            "checkpoint",
            "restore",
            &chk,
            "--id",
            &fork,
            "--dry-run",
            "--json",
        ],
    );
    assert_eq!(dry["dryRun"], true, "{dry}");
    assert_eq!(
        listing(&sb, &repo, &fork),
        before,
        "a dry run changes nothing"
    );
    ok(
        &sb,
        &repo,
        &[
            "checkpoint",
            "restore",
            &chk,
            "--id",
            &fork,
            "--clear=false",
        ],
    );
    let merged = shell(
        &sb,
        &repo,
        &fork,
        "cat node_modules/left-pad/index.js scratch.txt",
    );
    assert_eq!(
        merged, "prepared\nmine\n",
        "archived files back, others kept"
    );
    ok(&sb, &repo, &["checkpoint", "restore", &chk, "--id", &fork]);
    let cleared = shell(&sb, &repo, &fork, "ls -A | LC_ALL=C sort | tr '\\n' ' '");
    assert!(!cleared.contains("scratch.txt"), "{cleared}");
    assert!(
        cleared.contains("node_modules") && cleared.contains("package.json"),
        "{cleared}"
    );

    // Bad input changes nothing: a recipe cannot restore, an unknown checkpoint.
    let recipe = json(
        &sb,
        &repo,
        &[
            "checkpoint",
            "create",
            "--id",
            &source,
            "--recipe-only",
            "--json",
        ],
    );
    assert_eq!(recipe["kind"], "recipe");
    let out = sb.run(
        &repo,
        &[
            "checkpoint",
            "restore",
            recipe["id"].as_str().unwrap(),
            "--id",
            &fork,
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("recipe"), "{}", stderr(&out));
    let out = sb.run(&repo, &["checkpoint", "fork", "chk_0000000000000000"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // Delete: the record and its archive go.
    ok(&sb, &repo, &["checkpoint", "delete", &chk]);
    assert!(!dir.exists());
    let out = sb.run(&repo, &["checkpoint", "restore", &chk, "--id", &fork]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    for id in [&source, &fork] {
        ok(&sb, &repo, &["stop", id]);
    }
}

/// A hostile archive (an entry escaping the workdir) under a checkpoint record: refused by
/// restore and by fork, naming the entry, with the workdir untouched and nothing leased.
#[test]
fn a_hostile_archive_is_refused_and_changes_nothing() {
    let (sb, repo) = setup();
    let lease = crate::warm(&sb, &repo);
    ok(&sb, &repo, &["run", "--id", &lease, "--", "true"]);
    let made = json(
        &sb,
        &repo,
        &["checkpoint", "create", "--id", &lease, "--json"],
    );
    let chk = made["id"].as_str().unwrap().to_owned();
    let archive = sb
        .path()
        .join("state/crabbox/checkpoints")
        .join(&chk)
        .join("workspace.tar.zst");
    let craft = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, sys, tarfile\n\
             out = io.BytesIO()\n\
             with tarfile.open(fileobj=out, mode='w') as t:\n\
             \x20   data = b'owned\\n'\n\
             \x20   info = tarfile.TarInfo('./../escaped.txt'); info.size = len(data)\n\
             \x20   t.addfile(info, io.BytesIO(data))\n\
             sys.stdout.buffer.write(out.getvalue())",
        ])
        .output()
        .unwrap();
    assert!(craft.status.success());
    let mut zstd = std::process::Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut zstd.stdin.take().unwrap(), &craft.stdout).unwrap();
    std::fs::write(&archive, zstd.wait_with_output().unwrap().stdout).unwrap();

    let before = listing(&sb, &repo, &lease);
    let out = sb.run(&repo, &["checkpoint", "restore", &chk, "--id", &lease]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("escaped.txt") && stderr(&out).contains("escapes the workdir"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        listing(&sb, &repo, &lease),
        before,
        "the workdir is untouched"
    );
    assert_eq!(
        shell(
            &sb,
            &repo,
            &lease,
            "test -e ../escaped.txt && echo yes || echo no"
        )
        .trim(),
        "no"
    );
    let leases = || {
        json(&sb, &repo, &["list", "--json"])
            .as_array()
            .unwrap()
            .len()
    };
    let count = leases();
    let out = sb.run(&repo, &["checkpoint", "fork", &chk]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_eq!(leases(), count, "nothing leased");
    ok(&sb, &repo, &["stop", &lease]);
}

/// A checkpoint the Go system left (record without `lastUsedAt`, `workspace.tar.gz` made by its
/// `tar -czf`) restores and forks onto a static `ssh` host, and a checkpoint made there restores
/// back: archives are any POSIX lease's.
#[tokio::test(flavor = "multi_thread")]
async fn archives_restore_and_fork_onto_a_static_ssh_host_including_the_go_systems() {
    use crabbox_remote::{keys, sshd};
    let (sb, repo) = setup();
    let host = sb.work().join("host");
    let key = keys::ensure_ed25519(&host.join("client"), "id_ed25519", "static test").unwrap();
    let user = crate::static_ssh::user();
    let handle = sshd::start(&host.join("sshd"), &user, &key.public_key().unwrap())
        .await
        .unwrap();
    let work_root = host.join("work");
    crabbox_test_support::write(
        &repo,
        ".crabbox.yaml",
        &format!(
            "provider: ssh\nstatic:\n  host: 127.0.0.1\n  port: \"{}\"\n  user: {user}\n  workRoot: {}\nssh:\n  key: {}\n  fallbackPorts: []\n",
            handle.port,
            work_root.display(),
            key.private.display()
        ),
    );
    // The Go system's checkpoint of a workdir with a prepared dependency.
    let go = sb.work().join("go-workdir");
    std::fs::create_dir_all(go.join("vendor/lib")).unwrap();
    std::fs::write(go.join("vendor/lib/mod.go"), "package lib\n").unwrap();
    std::fs::write(go.join("package.json"), "{\"name\":\"app\"}\n").unwrap();
    let chk = "chk_00000000000000e1";
    let dir = sb.path().join("state/crabbox/checkpoints").join(chk);
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&go)
        .args([
            "--exclude",
            "./.crabbox/env",
            "--exclude",
            "./.crabbox/scripts",
            "-czf",
        ])
        .arg(dir.join("workspace.tar.gz"))
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::metadata(dir.join("workspace.tar.gz"))
        .unwrap()
        .len();
    std::fs::write(
        dir.join("checkpoint.json"),
        serde_json::json!({
            "id": chk, "name": "go-made", "kind": "workspace-archive",
            "createdAt": "2026-10-01T10:00:00Z", "crabboxVersion": "0.9.3",
            "provider": "hetzner", "leaseId": "cbx_00000000a0a0", "workdir": "/work/crabbox/cbx_00000000a0a0/app",
            "archivePath": "workspace.tar.gz", "archiveBytes": bytes
        })
        .to_string(),
    )
    .unwrap();

    let lease = crate::warm(&sb, &repo);
    ok(&sb, &repo, &["checkpoint", "restore", chk, "--id", &lease]);
    assert_eq!(
        shell(&sb, &repo, &lease, "cat vendor/lib/mod.go"),
        "package lib\n"
    );
    let inspected = json(&sb, &repo, &["checkpoint", "inspect", chk, "--json"]);
    assert_ne!(
        inspected["lastUsedAt"], "2026-10-01T10:00:00Z",
        "a restore marks it used"
    );
    // A checkpoint made on the static host restores back after the workdir changed.
    shell(&sb, &repo, &lease, "echo mine >scratch.txt");
    let made = json(
        &sb,
        &repo,
        &["checkpoint", "create", "--id", &lease, "--json"],
    );
    let mine = made["id"].as_str().unwrap().to_owned();
    shell(&sb, &repo, &lease, "rm -rf vendor scratch.txt");
    ok(
        &sb,
        &repo,
        &["checkpoint", "restore", &mine, "--id", &lease],
    );
    assert_eq!(
        shell(&sb, &repo, &lease, "cat vendor/lib/mod.go scratch.txt"),
        "package lib\nmine\n"
    );
    // A fork onto the static host (its one lease) restores into it too.
    ok(&sb, &repo, &["stop", &lease]);
    let out = sb.run(&repo, &["checkpoint", "fork", chk, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let forked: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fork = forked["forks"][0]["lease"].as_str().unwrap().to_owned();
    assert_eq!(
        shell(
            &sb,
            &repo,
            &fork,
            "cat vendor/lib/mod.go; test -e scratch.txt || echo cleared"
        ),
        "package lib\ncleared\n"
    );
    ok(&sb, &repo, &["stop", &fork]);
    sshd::stop(&host.join("sshd")).await;
}

/// The JSON document a command printed last on stdout, after the output of the commands it
/// ran (which streams to stdout first).
fn trailing_json(out: &std::process::Output) -> Value {
    let text = stdout(out);
    let start = if text.starts_with("{\n") {
        0
    } else {
        text.find("\n{\n").map_or(0, |at| at + 1)
    };
    serde_json::from_str(&text[start..])
        .unwrap_or_else(|e| panic!("no trailing JSON ({e}): {text}"))
}

/// A workdir with a prepared dependency on a fresh lease, checkpointed: the lease and the
/// checkpoint id.
fn prepared_checkpoint(sb: &Sandbox, repo: &Path) -> (String, String) {
    let source = crate::warm(sb, repo);
    shell(
        sb,
        repo,
        &source,
        "mkdir -p node_modules/left-pad && echo prepared >node_modules/left-pad/index.js",
    );
    let made = json(
        sb,
        repo,
        &["checkpoint", "create", "--id", &source, "--json"],
    );
    (source, made["id"].as_str().unwrap().to_owned())
}

/// `checkpoint fork … -- command`: each fork syncs this working tree and runs the command
/// with its own index, slug and lease filled in, one fork after the other; the first failing
/// fork's exit code (3, not the last's 5) is the command's, every fork still runs and is kept.
#[test]
fn a_fork_runs_its_command_on_every_fork_and_exits_with_the_first_failure() {
    let (sb, repo) = setup();
    let (source, chk) = prepared_checkpoint(&sb, &repo);
    // Not in the checkpoint: only the sync before each command brings it.
    crabbox_test_support::write(&repo, "fan.txt", "synced\n");
    let out = sb.run(
        &repo,
        &[
            "checkpoint",
            "fork",
            &chk,
            "--count",
            "2",
            "--slug",
            "fan",
            "--json",
            "--",
            "sh",
            "-c",
            "cat node_modules/left-pad/index.js fan.txt; echo fork {{index}}/{{total}} {{slug}} {{lease}}; \
             exit $(({{index}} * 2 + 1))",
        ],
    );
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(code(&out), 3, "the first failing fork's exit code: {err}");
    let forked = trailing_json(&out);
    let forks = forked["forks"].as_array().expect("forks");
    assert_eq!(forks.len(), 2, "{forked}");
    let listed = json(&sb, &repo, &["list", "--json"]).to_string();
    for (n, (fork, exit)) in forks.iter().zip([3, 5]).enumerate() {
        let (index, lease) = (n + 1, fork["lease"].as_str().unwrap());
        let slug = format!("fan-0{index}");
        assert_eq!(fork["slug"], slug.as_str(), "{forked}");
        assert_eq!(fork["exitCode"], exit, "{forked}");
        assert!(
            text.contains(&format!(
                "prepared\nsynced\nfork {index}/2 {slug} {lease}\n"
            )),
            "fork {index}'s own line: {text}"
        );
        assert!(
            err.contains(&format!(
                "fork {index}/2 lease={lease} slug={slug} exit={exit}\n"
            )),
            "{err}"
        );
        assert!(listed.contains(lease), "{lease} kept: {listed}");
    }
    let first = text.find("fork 1/2").unwrap();
    assert!(
        text.find("fork 2/2").unwrap() > first,
        "forks run in order: {text}"
    );
    for fork in forks {
        ok(&sb, &repo, &["stop", fork["lease"].as_str().unwrap()]);
    }
    ok(&sb, &repo, &["stop", &source]);
}

/// `--keep=false` releases each fork once its command ran; without a command it is refused
/// before anything is leased, and a dry run with a command says what each fork would run and
/// leases nothing.
#[test]
fn keep_false_releases_the_forks_and_a_dry_run_leases_nothing() {
    let (sb, repo) = setup();
    let (source, chk) = prepared_checkpoint(&sb, &repo);
    let list = || json(&sb, &repo, &["list", "--json"]);
    let before = list().as_array().unwrap().len();

    let out = sb.run(
        &repo,
        &[
            "checkpoint",
            "fork",
            &chk,
            "--count",
            "2",
            "--slug",
            "once",
            "--keep=false",
            "--json",
            "--",
            "cat",
            "node_modules/left-pad/index.js",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out).matches("prepared\n").count(),
        2,
        "{}",
        stdout(&out)
    );
    let forked = trailing_json(&out);
    let after = list().to_string();
    for fork in forked["forks"].as_array().expect("forks") {
        assert_eq!(fork["exitCode"], 0, "{forked}");
        let lease = fork["lease"].as_str().unwrap();
        assert!(!after.contains(lease), "{lease} released: {after}");
    }
    assert!(!after.contains("once-0"), "{after}");

    let out = sb.run(&repo, &["checkpoint", "fork", &chk, "--keep=false"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("released at once"),
        "{}",
        stderr(&out)
    );

    let out = sb.run(
        &repo,
        &[
            "checkpoint",
            "fork",
            &chk,
            "--count",
            "2",
            "--slug",
            "plan",
            "--dry-run",
            "--",
            "echo",
            "{{index}}/{{total}}",
            "{{slug}}",
            "{{lease}}",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let planned = stdout(&out);
    for index in [1, 2] {
        assert!(
            planned.contains(&format!(
                "fork {index}/2 slug=plan-0{index} would run: crabbox run --id {{{{lease}}}} \
                 --keep -- echo {index}/2 plan-0{index} '{{{{lease}}}}'\n"
            )),
            "{planned}"
        );
    }
    assert_eq!(
        list().as_array().unwrap().len(),
        before,
        "nothing leased by the refusal or the dry run"
    );
    ok(&sb, &repo, &["stop", &source]);
}
