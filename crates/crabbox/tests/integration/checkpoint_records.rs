//! `crabbox checkpoint list|inspect|delete|prune` over records written by hand into the
//! sandbox's state directory: this version's format, the Go tool's (`workspace.tar.gz`, no
//! `lastUsedAt`), records with fields this version does not know, and broken ones.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crabbox_test_support::{Sandbox, code, stderr, stdout};
use serde_json::{Value, json};

use crate::sandbox;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// A new-format archive, an hour old.
const NEW_ARCHIVE: &str = "chk_00000000000000a1";
/// Same createdAt as `NEW_ARCHIVE`, so ordered after it by id.
const NEW_RECIPE: &str = "chk_00000000000000a0";
/// The Go tool's archive record: 40 days old, never used, `workspace.tar.gz`.
const GO_ARCHIVE: &str = "chk_00000000000000b0";
/// A Hetzner snapshot 10 days old, used yesterday, with fields this version does not know.
const NATIVE: &str = "chk_00000000000000c0";

fn checkpoints(sb: &Sandbox) -> PathBuf {
    sb.path().join("state/crabbox/checkpoints")
}

/// RFC 3339 (UTC, seconds) `secs` ago.
fn ago(secs: u64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(secs)).to_string()
}

/// Writes `record` as checkpoint `id`, and `archive` (name, bytes) beside it.
fn put(sb: &Sandbox, id: &str, record: &Value, archive: Option<(&str, &[u8])>) -> PathBuf {
    let dir = checkpoints(sb).join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("checkpoint.json"),
        serde_json::to_vec_pretty(record).unwrap(),
    )
    .unwrap();
    if let Some((name, bytes)) = archive {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    dir
}

/// The four records most tests start from.
fn seed(sb: &Sandbox) {
    let hour_ago = ago(HOUR);
    put(
        sb,
        NEW_ARCHIVE,
        &json!({
            "id": NEW_ARCHIVE, "name": "fresh", "kind": "workspace-archive",
            "createdAt": hour_ago, "lastUsedAt": hour_ago, "crabboxVersion": "0.1.0",
            "provider": "local", "leaseId": "cbx_0123456789ab", "workdir": "/work/cbx_0123456789ab/app",
            "archivePath": "workspace.tar.zst", "archiveBytes": 10,
            "repo": {"name": "app", "head": "abc123"}
        }),
        Some(("workspace.tar.zst", b"0123456789")),
    );
    put(
        sb,
        NEW_RECIPE,
        &json!({
            "id": NEW_RECIPE, "kind": "recipe", "createdAt": hour_ago,
            "lastUsedAt": hour_ago, "crabboxVersion": "0.1.0"
        }),
        None,
    );
    // Exactly what the Go tool wrote before it recorded lastUsedAt.
    put(
        sb,
        GO_ARCHIVE,
        &json!({
            "id": GO_ARCHIVE, "name": "old go", "kind": "workspace-archive",
            "createdAt": ago(40 * DAY), "crabboxVersion": "0.8.3", "provider": "hetzner",
            "leaseId": "cbx_aaaaaaaaaaaa", "slug": "blue-crab", "targetOS": "linux",
            "workdir": "/work/crabbox/cbx_aaaaaaaaaaaa/app",
            "archivePath": "workspace.tar.gz", "archiveBytes": 4,
            "native": {}, "repo": {"root": "/src/app", "name": "app"}
        }),
        Some(("workspace.tar.gz", b"gzip")),
    );
    put(
        sb,
        NATIVE,
        &json!({
            "id": NATIVE, "kind": "hetzner-snapshot", "createdAt": ago(10 * DAY),
            "lastUsedAt": ago(DAY), "crabboxVersion": "0.9.0", "provider": "hetzner",
            "coordinatorState": "ready",
            "ownership": {"mode": "operator", "origin": "local"},
            "native": {
                "provider": "hetzner", "imageId": "987654", "state": "available",
                "region": "fsn1", "direct": true,
                "metadata": {"lease": "cbx_bbbbbbbbbbbb", "source_type": "server"},
                "futureField": {"nested": [1, 2, 3]}
            },
            "repo": {"name": "app", "branch": "main"}
        }),
        None,
    );
}

fn ok(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let out = sb.run(&sb.work(), args);
    assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
    out
}

fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().or(r["record"]["id"].as_str()).unwrap())
        .collect()
}

fn exists(sb: &Sandbox, id: &str) -> bool {
    checkpoints(sb).join(id).exists()
}

#[test]
fn list_is_newest_first_and_reads_go_records_and_unknown_fields() {
    let sb = sandbox();
    let out = ok(&sb, &["checkpoint", "list", "--json"]);
    assert_eq!(json_of(&out), json!([]));
    seed(&sb);
    let out = ok(&sb, &["checkpoint", "list", "--json"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let list = json_of(&out);
    assert_eq!(ids(&list), [NEW_ARCHIVE, NEW_RECIPE, NATIVE, GO_ARCHIVE]);
    let go = &list[3];
    assert_eq!(
        go["lastUsedAt"], go["createdAt"],
        "missing lastUsedAt reads as createdAt"
    );
    assert_eq!(go["archivePath"], "workspace.tar.gz");
    assert_eq!(go["targetOS"], "linux");
    let native = &list[2];
    assert_eq!(native["native"]["futureField"]["nested"][2], 3);
    assert_eq!(native["ownership"]["mode"], "operator");
    assert_eq!(native["coordinatorState"], "ready");
    assert_eq!(native["repo"]["branch"], "main");

    let out = ok(&sb, &["checkpoint", "list"]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for column in [
        "ID",
        "NAME",
        "KIND",
        "PROVIDER",
        "LEASE",
        "CREATED",
        "LAST USED",
        "SIZE",
    ] {
        assert!(lines[0].contains(column), "{column}: {text}");
    }
    assert!(!lines[0].contains("VERIFY"), "{text}");
    assert!(
        lines[1].starts_with(NEW_ARCHIVE) && lines[1].contains("fresh"),
        "{text}"
    );
    assert!(
        lines[1].contains("cbx_0123456789ab") && lines[1].ends_with("10 B"),
        "{text}"
    );
    assert!(
        lines[3].starts_with(NATIVE) && lines[3].contains("hetzner-snapshot"),
        "{text}"
    );
    assert!(
        lines[4].starts_with(GO_ARCHIVE) && lines[4].contains("old go"),
        "{text}"
    );
    // The columns line up: every row has its kind where the header has KIND.
    let kind_at = lines[0].find("KIND").unwrap();
    assert!(
        lines[4][kind_at..].starts_with("workspace-archive"),
        "{text}"
    );
}

#[test]
fn inspect_shows_one_record_and_unknown_ids_are_clear_errors() {
    let sb = sandbox();
    seed(&sb);
    let out = ok(&sb, &["checkpoint", "inspect", NATIVE, "--json"]);
    let record = json_of(&out);
    let written: Value = serde_json::from_slice(
        &std::fs::read(checkpoints(&sb).join(NATIVE).join("checkpoint.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record, written, "inspect --json is the record as stored");

    let out = ok(&sb, &["checkpoint", "inspect", GO_ARCHIVE]);
    let text = stdout(&out);
    for line in [
        &format!("id={GO_ARCHIVE}"),
        "kind=workspace-archive",
        "name=old go",
        "provider=hetzner",
        "slug=blue-crab",
        "bytes=4",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
    let archive = checkpoints(&sb).join(GO_ARCHIVE).join("workspace.tar.gz");
    assert!(
        text.contains(&format!("archive={}", archive.display())),
        "{text}"
    );
    let text = stdout(&ok(&sb, &["checkpoint", "inspect", NATIVE]));
    assert!(text.contains("resource=987654\n") && text.contains("metadata.lease=cbx_bbbbbbbbbbbb"));

    let missing = "chk_ffffffffffffffff";
    for args in [
        vec!["checkpoint", "inspect", missing],
        vec!["checkpoint", "delete", missing],
        vec!["checkpoint", "delete", missing, "--local-only", "--dry-run"],
    ] {
        let out = sb.run(&sb.work(), &args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let expected = format!(
            "error: checkpoint {missing} not found in {}",
            checkpoints(&sb).display()
        );
        assert!(err.contains(&expected), "{err}");
        assert!(err.contains("hint: run `crabbox checkpoint list`"), "{err}");
    }
    let out = sb.run(&sb.work(), &["checkpoint", "inspect", "../../etc"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not a checkpoint id"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_flags_missing_and_resized_archives() {
    let sb = sandbox();
    seed(&sb);
    let go_archive = checkpoints(&sb).join(GO_ARCHIVE).join("workspace.tar.gz");
    std::fs::remove_file(&go_archive).unwrap();
    std::fs::write(
        checkpoints(&sb).join(NEW_ARCHIVE).join("workspace.tar.zst"),
        b"short",
    )
    .unwrap();

    let out = ok(&sb, &["checkpoint", "list", "--verify"]);
    let text = stdout(&out);
    let row = |id: &str| text.lines().find(|l| l.starts_with(id)).unwrap().to_owned();
    assert!(text.lines().next().unwrap().ends_with("VERIFY"), "{text}");
    assert!(
        row(GO_ARCHIVE).ends_with(&format!("missing archive {}", go_archive.display())),
        "{text}"
    );
    assert!(
        row(NEW_ARCHIVE).contains("is 5 bytes, the record says 10"),
        "{text}"
    );
    assert!(row(NEW_RECIPE).ends_with("  ok"), "{text}");
    assert!(row(NATIVE).ends_with("ok (provider not checked)"), "{text}");

    let audits = json_of(&ok(&sb, &["checkpoint", "list", "--verify", "--json"]));
    assert_eq!(ids(&audits), [NEW_ARCHIVE, NEW_RECIPE, NATIVE, GO_ARCHIVE]);
    assert_eq!(audits[0]["localState"], "size_mismatch");
    assert_eq!(audits[1]["localState"], "metadata_only");
    assert_eq!(audits[2]["providerState"], "unchecked");
    assert_eq!(audits[3]["localState"], "missing_archive");
    assert_eq!(audits[3]["nextAction"], "delete_or_recreate");
    assert_eq!(audits[3]["record"]["name"], "old go");

    let audit = json_of(&ok(
        &sb,
        &["checkpoint", "inspect", GO_ARCHIVE, "--verify", "--json"],
    ));
    assert_eq!(audit["localState"], "missing_archive");
    let text = stdout(&ok(&sb, &["checkpoint", "inspect", GO_ARCHIVE, "--verify"]));
    assert!(text.contains("local_state=missing_archive\n"), "{text}");
}

#[test]
fn delete_removes_the_checkpoint_only_after_its_provider_resource() {
    let sb = sandbox();
    seed(&sb);
    let out = ok(&sb, &["checkpoint", "delete", GO_ARCHIVE, "--dry-run"]);
    assert!(
        stdout(&out).starts_with(&format!(
            "would delete checkpoint id={GO_ARCHIVE} kind=workspace-archive"
        )),
        "{}",
        stdout(&out)
    );
    let report = json_of(&ok(
        &sb,
        &["checkpoint", "delete", GO_ARCHIVE, "--dry-run", "--json"],
    ));
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["deleted"][0]["id"], GO_ARCHIVE);
    assert!(exists(&sb, GO_ARCHIVE), "a dry run deletes nothing");

    let out = ok(&sb, &["checkpoint", "delete", GO_ARCHIVE]);
    assert_eq!(
        stdout(&out),
        format!("checkpoint deleted id={GO_ARCHIVE}\n")
    );
    assert!(!exists(&sb, GO_ARCHIVE));

    // A native checkpoint's resource must go first; without the provider the record stays.
    let out = sb.run(&sb.work(), &["checkpoint", "delete", NATIVE]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("deleting hetzner-snapshot checkpoints is not built; pass --local-only"),
        "{}",
        stderr(&out)
    );
    assert!(exists(&sb, NATIVE));
    let report = json_of(&ok(
        &sb,
        &["checkpoint", "delete", NATIVE, "--local-only", "--json"],
    ));
    assert_eq!(
        report,
        json!({"deleted": [{
            "id": NATIVE, "kind": "hetzner-snapshot",
            "createdAt": report["deleted"][0]["createdAt"],
            "lastUsedAt": report["deleted"][0]["lastUsedAt"],
        }], "dryRun": false})
    );
    assert!(!exists(&sb, NATIVE));

    // A native record whose create failed before the provider named a resource has nothing
    // to delete there.
    put(
        &sb,
        "chk_00000000000000d0",
        &json!({"id": "chk_00000000000000d0", "kind": "aws-ami", "createdAt": ago(60)}),
        None,
    );
    ok(&sb, &["checkpoint", "delete", "chk_00000000000000d0"]);
    assert!(!exists(&sb, "chk_00000000000000d0"));
    let left = json_of(&ok(&sb, &["checkpoint", "list", "--json"]));
    assert_eq!(ids(&left), [NEW_ARCHIVE, NEW_RECIPE]);
}

#[test]
fn prune_selects_by_age_use_and_kind() {
    let sb = sandbox();
    seed(&sb);
    let out = sb.run(&sb.work(), &["checkpoint", "prune", "--dry-run"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("--older-than"), "{}", stderr(&out));
    for bad in ["5x", "0", "1.5d", "-3d"] {
        let flag = format!("--older-than={bad}");
        let out = sb.run(&sb.work(), &["checkpoint", "prune", &flag]);
        assert_eq!(code(&out), 2, "{bad}: {}", stderr(&out));
        assert!(stderr(&out).contains(bad), "{}", stderr(&out));
    }

    let dry = |args: &[&str]| {
        let mut all = vec!["checkpoint", "prune", "--dry-run", "--json"];
        all.extend_from_slice(args);
        let report = json_of(&ok(&sb, &all));
        assert_eq!(report["dryRun"], true);
        ids(&report["deleted"])
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(dry(&["--older-than", "30d"]), [GO_ARCHIVE]);
    assert_eq!(dry(&["--older-than", "7d"]), [NATIVE, GO_ARCHIVE]);
    assert_eq!(
        dry(&["--older-than", "30m"]),
        [NEW_ARCHIVE, NEW_RECIPE, NATIVE, GO_ARCHIVE]
    );
    assert_eq!(dry(&["--unused-for", "12h"]), [NATIVE, GO_ARCHIVE]);
    assert_eq!(
        dry(&["--unused-for", "2d"]),
        [GO_ARCHIVE],
        "the native one was used yesterday"
    );
    assert_eq!(
        dry(&["--older-than", "7d", "--unused-for", "2d"]),
        [GO_ARCHIVE]
    );
    assert_eq!(
        dry(&["--older-than", "30m", "--kind", "archive"]),
        [NEW_ARCHIVE, GO_ARCHIVE]
    );
    assert_eq!(
        dry(&["--older-than", "30m", "--kind", "recipe"]),
        [NEW_RECIPE]
    );
    assert_eq!(dry(&["--older-than", "30m", "--kind", "native"]), [NATIVE]);
    assert_eq!(dry(&["--older-than", "90d"]), Vec::<String>::new());
    assert_eq!(
        checkpoints(&sb).read_dir().unwrap().count(),
        4,
        "dry runs delete nothing"
    );

    let out = ok(&sb, &["checkpoint", "prune", "--older-than", "90d"]);
    assert!(
        stderr(&out).contains("no checkpoints matched"),
        "{}",
        stderr(&out)
    );

    let out = ok(
        &sb,
        &[
            "checkpoint",
            "prune",
            "--older-than",
            "7d",
            "--kind",
            "archive",
        ],
    );
    assert!(
        stdout(&out).starts_with(&format!(
            "checkpoint pruned id={GO_ARCHIVE} kind=workspace-archive"
        )),
        "{}",
        stdout(&out)
    );
    assert!(!exists(&sb, GO_ARCHIVE) && exists(&sb, NATIVE));

    // The native one needs its provider: it stays, the others are still pruned, exit 2.
    let out = sb.run(
        &sb.work(),
        &["checkpoint", "prune", "--older-than", "30m", "--json"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(ids(&report["deleted"]), [NEW_ARCHIVE, NEW_RECIPE]);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("could not prune checkpoint {NATIVE}")),
        "{err}"
    );
    assert!(
        err.contains("error: 1 of 3 matching checkpoints could not be pruned"),
        "{err}"
    );
    assert!(exists(&sb, NATIVE));
    let report = json_of(&ok(
        &sb,
        &[
            "checkpoint",
            "prune",
            "--unused-for",
            "1h",
            "--kind",
            "native",
            "--local-only",
            "--json",
        ],
    ));
    assert_eq!(ids(&report["deleted"]), [NATIVE]);
    assert_eq!(checkpoints(&sb).read_dir().unwrap().count(), 0);
}

#[test]
fn broken_records_are_skipped_with_a_warning_and_can_be_forgotten() {
    let sb = sandbox();
    seed(&sb);
    let corrupt = checkpoints(&sb).join("chk_00000000000000e0");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(
        corrupt.join("checkpoint.json"),
        b"{\"id\": \"chk_00000000000000e0\", ",
    )
    .unwrap();
    // A copied directory: its record names another checkpoint.
    let misnamed = put(
        &sb,
        "chk_00000000000000e1",
        &json!({"id": NEW_RECIPE, "kind": "recipe", "createdAt": ago(5)}),
        None,
    );
    let empty = checkpoints(&sb).join("chk_00000000000000e2");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(checkpoints(&sb).join("stray-file"), b"x").unwrap();

    let out = ok(&sb, &["checkpoint", "list", "--json"]);
    assert_eq!(
        ids(&json_of(&out)),
        [NEW_ARCHIVE, NEW_RECIPE, NATIVE, GO_ARCHIVE]
    );
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 3, "{err}");
    for (dir, why) in [
        (&corrupt, "is not a checkpoint record"),
        (&misnamed, "not its directory's name"),
        (&empty, "checkpoint.json is missing"),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(&*dir.to_string_lossy()))
            .unwrap_or_else(|| panic!("no warning names {}: {err}", dir.display()));
        assert!(
            line.starts_with("warning: skipping checkpoint ") && line.contains(why),
            "{line}"
        );
    }

    let out = sb.run(
        &sb.work(),
        &["checkpoint", "inspect", "chk_00000000000000e0"],
    );
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("checkpoint chk_00000000000000e0 is unreadable"),
        "{err}"
    );
    assert!(
        err.contains(&corrupt.join("checkpoint.json").display().to_string()),
        "{err}"
    );
    assert!(err.contains("--local-only"), "{err}");
    let out = sb.run(
        &sb.work(),
        &["checkpoint", "delete", "chk_00000000000000e0"],
    );
    assert_eq!(
        code(&out),
        2,
        "only --local-only forgets an unreadable record"
    );
    ok(
        &sb,
        &[
            "checkpoint",
            "delete",
            "chk_00000000000000e0",
            "--local-only",
        ],
    );
    assert!(!corrupt.exists());
}

#[test]
fn records_stay_private_and_list_changes_nothing() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let sb = sandbox();
    seed(&sb);
    let root = checkpoints(&sb);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let record = root.join(NATIVE).join("checkpoint.json");
    std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = std::fs::read(&record).unwrap();
    ok(&sb, &["checkpoint", "list", "--verify"]);
    ok(&sb, &["checkpoint", "inspect", NATIVE, "--json"]);
    ok(
        &sb,
        &["checkpoint", "prune", "--older-than", "1h", "--dry-run"],
    );
    assert_eq!(
        std::fs::read(&record).unwrap(),
        before,
        "reads never rewrite a record"
    );
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&record), 0o600);
    // A delete leaves no hidden leftovers behind.
    ok(&sb, &["checkpoint", "delete", NEW_ARCHIVE]);
    let names: Vec<String> = root
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}
