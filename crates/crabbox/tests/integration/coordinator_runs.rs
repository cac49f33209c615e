//! What a brokered `crabbox run` records on a real `crabbox coordinator serve` process (spec
//! cli-dataplane §4.9, §4.11): lifecycle events with phases in spec order, live output events
//! within their budget and without credentials, telemetry samples while the command runs, the
//! whole log through `logChunks`, and a failed run when no lease could be had.

use std::path::Path;
use std::process::Output;

use crabbox_test_support::{Sandbox, code, curl, git_repo, stderr, stdout};
use serde_json::Value;

use crate::coordinator::{SHARED, json, serve};
use crate::sandbox;

/// `crabbox <args>` in `dir`, brokered by the coordinator at `url` with the shared token.
fn at(sb: &Sandbox, dir: &Path, url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = sb.crabbox(dir, args);
    cmd.env("CRABBOX_COORDINATOR", url)
        .env("CRABBOX_COORDINATOR_TOKEN", SHARED);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("crabbox runs")
}

fn run_id(out: &Output) -> String {
    stderr(out)
        .lines()
        .find_map(|l| l.strip_prefix("recording run "))
        .unwrap_or_else(|| panic!("no run record: {}", stderr(out)))
        .trim()
        .to_owned()
}

/// `GET /v1/runs/{id}` as the shared-token user.
fn get_run(url: &str, id: &str) -> Value {
    let out = curl()
        .arg("-H")
        .arg(format!("authorization: Bearer {SHARED}"))
        .arg(format!("{url}/v1/runs/{id}"))
        .output()
        .expect("curl runs");
    let body: Value = serde_json::from_slice(&out.stdout).expect("run JSON");
    body["run"].clone()
}

fn kinds(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect()
}

/// The events of `kind`.
fn of_kind<'a>(events: &'a Value, kind: &str) -> Vec<&'a Value> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .collect()
}

#[test]
fn a_brokered_run_records_lifecycle_output_telemetry_and_its_whole_log() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("hello.txt", "hi\n")]);

    // 150 000 bytes of output: more than one 64 KiB log chunk and the 64 KiB live budget. The
    // sleep spans a few telemetry intervals (1s here instead of 15s).
    let script = "echo out-line; echo api_token=s3cr3tvalue0123456789 >&2; \
                  head -c 150000 /dev/zero | tr '\\0' x; echo; sleep 3; echo done";
    let out = at(
        &sb,
        &repo,
        &server.url,
        &[("CRABBOX_RUN_TELEMETRY_INTERVAL", "1s")],
        &["run", "--", "sh", "-c", script],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let id = run_id(&out);

    let events = json(&at(
        &sb,
        &repo,
        &server.url,
        &[],
        &["events", &id, "--json"],
    ));
    let kinds = kinds(&events);
    // The lifecycle in spec order, output events interleaved after command.started.
    let lifecycle: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| !matches!(*k, "stdout" | "stderr" | "output.truncated"))
        .collect();
    assert_eq!(
        lifecycle,
        [
            "run.started",
            "leasing.started",
            "lease.created",
            "bootstrap.waiting",
            "sync.started",
            "sync.finished",
            "command.started",
            "command.finished",
            "lease.released",
        ],
        "{kinds:?}"
    );
    // Every event carries its phase.
    for e in events.as_array().unwrap() {
        let want = match e["type"].as_str().unwrap() {
            "run.started" => "starting",
            "leasing.started" => "leasing",
            "lease.created" => "leased",
            "bootstrap.waiting" => "bootstrap",
            "sync.started" => "sync",
            "sync.finished" => "synced",
            "command.finished" => "succeeded",
            "lease.released" => "released",
            _ => "command",
        };
        assert_eq!(e["phase"], want, "{e}");
    }
    let human = at(&sb, &repo, &server.url, &[], &["events", &id]);
    assert!(
        !stdout(&human).contains("phase=-"),
        "every event shows a phase:\n{}",
        stdout(&human)
    );
    let run = get_run(&server.url, &id);
    let created = of_kind(&events, "lease.created")[0];
    assert_eq!(created["leaseID"], run["leaseID"], "{created}");
    assert_eq!(created["slug"], run["slug"], "{created}");
    // The run was created before its lease; the lease's fields reached it through the event.
    assert_eq!(run["provider"], "local", "{run}");
    assert!(
        run["leaseID"].as_str().unwrap().starts_with("cbx_"),
        "{run}"
    );
    assert!(
        of_kind(&events, "sync.finished")[0]["message"]
            .as_str()
            .unwrap()
            .contains("skipped=false")
    );

    // Live output: both streams, at most 64 KiB in ≤16 KiB events, then one truncation event;
    // the credential on stderr never reaches an event.
    let live = |stream: &str| -> Vec<String> {
        of_kind(&events, stream)
            .iter()
            .inspect(|e| assert_eq!(e["stream"], stream, "{e}"))
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let (out_events, err_events) = (live("stdout"), live("stderr"));
    assert!(
        out_events.concat().starts_with("out-line\n"),
        "{out_events:?}"
    );
    assert!(err_events.concat().contains("api_token="), "{err_events:?}");
    assert!(
        !events.to_string().contains("s3cr3tvalue0123456789"),
        "a credential reached the events"
    );
    assert!(out_events.iter().all(|m| m.len() <= 16 * 1024));
    assert!(out_events.concat().len() + err_events.concat().len() <= 64 * 1024 + 64);
    assert_eq!(of_kind(&events, "output.truncated").len(), 1, "{kinds:?}");

    // Telemetry: start, end and samples taken while the command ran.
    let telemetry = &run["telemetry"];
    for end in ["start", "end"] {
        assert_eq!(telemetry[end]["source"], "ssh-linux", "{telemetry}");
    }
    let samples = telemetry["samples"].as_array().expect("samples");
    assert!(samples.len() >= 2, "{telemetry}");
    assert!(samples.iter().all(|s| s["source"] == "ssh-linux"));

    // The whole log arrives (in several chunks): the user's output, byte for byte.
    let log = at(&sb, &repo, &server.url, &[], &["logs", &id]);
    assert_eq!(code(&log), 0, "{}", stderr(&log));
    let text = stdout(&log);
    assert!(
        text.contains("out-line\n") && text.contains("done\n"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert_eq!(text.matches('x').count(), 150_000);
    assert_eq!(run["logBytes"].as_u64().unwrap() as usize, text.len());
    assert_eq!(run["logTruncated"], false);
    assert_eq!(
        (run["state"].as_str(), run["phase"].as_str()),
        (Some("succeeded"), Some("released"))
    );
}

#[test]
fn a_lease_that_cannot_be_had_still_leaves_a_failed_run_with_the_reason() {
    let sb = sandbox();
    let server = serve(&sb, &sb.path().join("coord"), &[], &[]);
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);

    // This coordinator does not offer the ssh provider: the create is refused.
    let out = at(
        &sb,
        &repo,
        &server.url,
        &[],
        &["run", "--provider", "ssh", "--", "true"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let id = run_id(&out);
    let run = get_run(&server.url, &id);
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exitCode"], 2, "{run}");
    assert_eq!(run["leaseID"], "", "{run}");
    assert_eq!(run["command"][0], "true", "{run}");

    let events = json(&at(
        &sb,
        &repo,
        &server.url,
        &[],
        &["events", &id, "--json"],
    ));
    assert_eq!(
        kinds(&events),
        [
            "run.started",
            "leasing.started",
            "run.failed",
            "command.finished"
        ]
    );
    let failed = of_kind(&events, "run.failed")[0];
    assert_eq!(failed["phase"], "failed");
    assert_eq!(failed["exitCode"], 2);
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("provider_not_configured"),
        "{failed}"
    );
    // `crabbox history` lists it as failed.
    let history = json(&at(&sb, &repo, &server.url, &[], &["history", "--json"]));
    assert_eq!(history[0]["id"], id.as_str());
    assert_eq!(history[0]["state"], "failed");
}

/// `lease.created` is said when the lease exists, before the wait for its ssh: a runner that
/// never answers still leaves a run that names the lease it got.
#[test]
fn a_lease_whose_runner_never_answers_ssh_is_named_in_the_failed_run() {
    let sb = sandbox();
    // Runners that refuse every login: the lease is created, ssh never becomes ready.
    let wrapper = sb.sshd_wrapper("locked-sshd", "", "-o PubkeyAuthentication=no");
    let server = serve(
        &sb,
        &sb.path().join("coord"),
        &[],
        &[("CRABBOX_SSHD", wrapper.to_str().unwrap())],
    );
    let repo = sb.work().join("repo");
    git_repo(&repo, &[("a.txt", "a\n")]);

    let out = at(
        &sb,
        &repo,
        &server.url,
        &[("CRABBOX_READY_TIMEOUT", "2s")],
        &["run", "--", "true"],
    );
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    let id = run_id(&out);
    let events = json(&at(
        &sb,
        &repo,
        &server.url,
        &[],
        &["events", &id, "--json"],
    ));
    let kinds = kinds(&events);
    assert_eq!(
        kinds[..3],
        ["run.started", "leasing.started", "lease.created"],
        "{events}"
    );
    assert!(kinds.contains(&"run.failed"), "{events}");
    let created = of_kind(&events, "lease.created")[0];
    let lease = created["leaseID"].as_str().unwrap();
    assert!(lease.starts_with("cbx_"), "{created}");
    assert_eq!(created["phase"], "leased", "{created}");
    assert_eq!(get_run(&server.url, &id)["leaseID"], lease);
}
