//! `crabbox image bake`: the image bake runbook as one guarded command. A source lease is
//! warmed and verified, imaged, and released; a candidate lease boots the image and is smoked
//! (and, for desktop images, screenshotted) and released; then the image is promoted unless
//! `--no-promote`. Every step is this same `crabbox` binary run with the runbook's own
//! commands, its output kept in an evidence directory with a `summary.json` of what happened.
//! Without `--yes` it only prints the plan and spends nothing.

use std::path::{Path, PathBuf};

use crabbox_api::ExitStatus;
use serde_json::{Value, json};

use crate::error::{CliError, CliResult, WithStatus};
use crate::output;

/// What the source lease must have before it is imaged (the runbook's verify, less what a
/// bake without desktop or browser does not install).
const VERIFY: &str = "set -euo pipefail; command -v ssh; command -v git; command -v rsync";
const VERIFY_DESKTOP: &str = "command -v scrot";
const VERIFY_BROWSER: &str =
    "command -v google-chrome || command -v chromium || command -v chromium-browser";
/// The candidate's smoke.
const SMOKE: &str = "set -euo pipefail; echo image-smoke-ok; uname -srm; command -v git";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image name (`crabbox-linux-desktop-browser-YYYYMMDD-HHMM`).
    #[arg(long)]
    pub name: String,
    /// The class of the source and candidate leases (not the high-pressure beast class).
    #[arg(long, default_value = "standard")]
    pub class: String,
    /// Exactly this instance type for both leases.
    #[arg(long = "type")]
    pub server_type: Option<String>,
    /// A desktop image: desktop leases, and a screenshot of the candidate.
    #[arg(long)]
    pub desktop: bool,
    /// A browser image.
    #[arg(long)]
    pub browser: bool,
    /// The source lease's check before imaging (a remote shell script).
    #[arg(long)]
    pub verify: Option<String>,
    /// The candidate's smoke (a remote shell script).
    #[arg(long)]
    pub smoke: Option<String>,
    /// Stop after the candidate's smoke: do not promote.
    #[arg(long = "no-promote")]
    pub no_promote: bool,
    /// Run it (without: print the plan, spend nothing).
    #[arg(long)]
    pub yes: bool,
    /// Where the evidence goes (default `.crabbox/image-bake-<name>`).
    #[arg(long)]
    pub evidence: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// One step: its name and the `crabbox` arguments (and extra environment) it runs.
struct Step {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

pub async fn run(args: Args) -> CliResult<u8> {
    crabbox_aws_name_check(&args.name)?;
    let evidence = args.evidence.clone().unwrap_or_else(|| {
        PathBuf::from(".crabbox").join(format!("image-bake-{}", args.name.replace(' ', "_")))
    });
    let plan = plan_lines(&args);
    if !args.yes {
        if args.json {
            output::json(&json!({"plan": plan, "ran": false}));
        } else {
            output::out("image bake plan (nothing is spent; add --yes to run it):");
            for line in &plan {
                output::out(format!("  {line}"));
            }
        }
        return Ok(0);
    }
    std::fs::create_dir_all(&evidence).status(ExitStatus::Usage)?;
    let mut bake = Bake {
        evidence,
        summary: json!({"name": args.name, "phase": "starting", "steps": []}),
        leases: Vec::new(),
    };
    let outcome = bake.run_all(&args).await;
    // Whatever happened, the leases it made are released.
    for id in std::mem::take(&mut bake.leases) {
        let _ = bake
            .step(Step {
                name: "release",
                args: vec!["stop".into(), id],
                env: Vec::new(),
            })
            .await;
    }
    bake.summary["phase"] = json!(match &outcome {
        Ok(()) => "done",
        Err(_) => "failed",
    });
    if let Err(e) = &outcome {
        bake.summary["error"] = json!(e.report().trim_end());
    }
    bake.write_summary()?;
    let summary_path = bake.evidence.join("summary.json");
    if args.json {
        output::json(&bake.summary);
    } else {
        output::out(format!(
            "image bake {}: image={} promoted={} evidence={}",
            bake.summary["phase"].as_str().unwrap_or("-"),
            bake.summary["image"].as_str().unwrap_or("-"),
            bake.summary["promoted"].as_bool().unwrap_or(false),
            summary_path.display()
        ));
    }
    outcome.map(|()| 0)
}

/// The name check `image create` makes on the coordinator, made before anything is spent.
fn crabbox_aws_name_check(name: &str) -> CliResult<()> {
    let ok = (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "()[]./_ -".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            CliError::msg(ExitStatus::Usage, format!("not an image name: {name:?}"))
                .hint("3 to 128 of A-Z a-z 0-9 ( ) [ ] . / _ - and space"),
        )
    }
}

fn plan_lines(args: &Args) -> Vec<String> {
    let mut lines = vec![
        format!(
            "warm a source lease: --provider aws --class {}{}{}{}",
            args.class,
            args.server_type
                .as_deref()
                .map_or_else(String::new, |t| format!(" --type {t}")),
            if args.desktop { " --desktop" } else { "" },
            if args.browser { " --browser" } else { "" },
        ),
        "verify it (run --no-sync --shell)".to_owned(),
        format!("image create --name {} --wait", args.name),
        "release the source lease".to_owned(),
        "warm a candidate lease on the image (CRABBOX_AWS_AMI)".to_owned(),
        "smoke it (run --no-sync --shell)".to_owned(),
    ];
    if args.desktop {
        lines.push("screenshot it".to_owned());
    }
    lines.push("release the candidate".to_owned());
    lines.push(if args.no_promote {
        "leave the image unpromoted (--no-promote)".to_owned()
    } else {
        "image promote".to_owned()
    });
    lines
}

struct Bake {
    evidence: PathBuf,
    summary: Value,
    /// Leases made and not yet released.
    leases: Vec<String>,
}

impl Bake {
    async fn run_all(&mut self, args: &Args) -> CliResult<()> {
        let lease_args = |extra: &[&str]| {
            let mut out: Vec<String> = ["warmup", "--provider", "aws", "--class", &args.class]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            if let Some(t) = &args.server_type {
                out.extend(["--type".into(), t.clone()]);
            }
            if args.desktop {
                out.push("--desktop".into());
            }
            if args.browser {
                out.push("--browser".into());
            }
            out.extend(extra.iter().map(|s| (*s).to_owned()));
            out
        };
        // 1. The source lease, verified.
        self.summary["phase"] = json!("source");
        let warm = self
            .step(Step {
                name: "source-warmup",
                args: lease_args(&["--ttl", "2h", "--idle-timeout", "30m", "--json"]),
                env: Vec::new(),
            })
            .await?;
        let source = lease_of(&warm)?;
        self.leases.push(source.clone());
        self.summary["sourceLease"] = json!(source);
        let mut verify = args.verify.clone().unwrap_or_else(|| VERIFY.to_owned());
        if args.verify.is_none() && args.desktop {
            verify = format!("{verify}; {VERIFY_DESKTOP}");
        }
        if args.verify.is_none() && args.browser {
            verify = format!("{verify}; {VERIFY_BROWSER}");
        }
        self.step(run_step("source-verify", &source, &verify))
            .await?;
        // 2. The image.
        self.summary["phase"] = json!("image");
        let made = self
            .step(Step {
                name: "image-create",
                args: [
                    "image", "create", "--id", &source, "--name", &args.name, "--wait", "--json",
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
                env: Vec::new(),
            })
            .await?;
        let image = serde_json::from_str::<Value>(&made)
            .ok()
            .and_then(|v| v["image"]["id"].as_str().map(str::to_owned))
            .ok_or_else(|| CliError::msg(ExitStatus::Failure, "image create gave no image id"))?;
        self.summary["image"] = json!(image);
        self.release(&source).await?;
        // 3. The candidate, smoked.
        self.summary["phase"] = json!("candidate");
        let warm = self
            .step(Step {
                name: "candidate-warmup",
                args: lease_args(&["--ttl", "30m", "--idle-timeout", "10m", "--json"]),
                env: vec![("CRABBOX_AWS_AMI", image.clone())],
            })
            .await?;
        let candidate = lease_of(&warm)?;
        self.leases.push(candidate.clone());
        self.summary["candidateLease"] = json!(candidate);
        let smoke = args.smoke.clone().unwrap_or_else(|| SMOKE.to_owned());
        self.step(run_step("candidate-smoke", &candidate, &smoke))
            .await?;
        if args.desktop {
            let shot = self.evidence.join("candidate-screenshot.png");
            self.step(Step {
                name: "candidate-screenshot",
                args: vec![
                    "screenshot".into(),
                    "--id".into(),
                    candidate.clone(),
                    "--output".into(),
                    shot.display().to_string(),
                ],
                env: Vec::new(),
            })
            .await?;
            self.summary["screenshot"] = json!(shot.display().to_string());
        }
        self.release(&candidate).await?;
        // 4. Promotion.
        if !args.no_promote {
            self.summary["phase"] = json!("promote");
            self.step(Step {
                name: "image-promote",
                args: vec!["image".into(), "promote".into(), image, "--json".into()],
                env: Vec::new(),
            })
            .await?;
            self.summary["promoted"] = json!(true);
        }
        Ok(())
    }

    async fn release(&mut self, id: &str) -> CliResult<()> {
        self.step(Step {
            name: "release",
            args: vec!["stop".into(), id.to_owned()],
            env: Vec::new(),
        })
        .await?;
        self.leases.retain(|l| l != id);
        Ok(())
    }

    /// Runs one step, keeping its output as evidence; its stdout on success.
    async fn step(&mut self, step: Step) -> CliResult<String> {
        let n = self.summary["steps"].as_array().map_or(0, Vec::len) + 1;
        let log = self.evidence.join(format!("{n:02}-{}.log", step.name));
        output::err(format!("image bake: {} ({})", step.name, log.display()));
        let exe = std::env::current_exe().status(ExitStatus::Failure)?;
        let mut cmd = crabbox_remote::process::Cmd::new(&exe).args(&step.args);
        for (k, v) in &step.env {
            cmd = cmd.env(k, v);
        }
        let out = cmd.capture(None).await.status(ExitStatus::Failure)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let text = format!(
            "$ crabbox {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- exit {}\n",
            step.args.join(" "),
            out.code
        );
        std::fs::write(&log, text).status(ExitStatus::Failure)?;
        if let Some(steps) = self.summary["steps"].as_array_mut() {
            steps.push(
                json!({"step": step.name, "exit": out.code, "log": log.display().to_string()}),
            );
        }
        self.write_summary()?;
        if out.code == 0 {
            Ok(stdout)
        } else {
            Err(CliError::msg(
                ExitStatus::Failure,
                format!("image bake step {} failed (exit {})", step.name, out.code),
            )
            .hint(format!("its output is in {}", log.display())))
        }
    }

    fn write_summary(&self) -> CliResult<()> {
        write_atomically(
            &self.evidence.join("summary.json"),
            &serde_json::to_vec_pretty(&self.summary).unwrap_or_default(),
        )
    }
}

fn run_step(name: &'static str, lease: &str, script: &str) -> Step {
    Step {
        name,
        args: vec![
            "run".into(),
            "--id".into(),
            lease.to_owned(),
            "--no-sync".into(),
            "--shell".into(),
            "--".into(),
            script.to_owned(),
        ],
        env: Vec::new(),
    }
}

fn lease_of(warmup_json: &str) -> CliResult<String> {
    serde_json::from_str::<Value>(warmup_json)
        .ok()
        .and_then(|v| v["lease"]["id"].as_str().map(str::to_owned))
        .ok_or_else(|| CliError::msg(ExitStatus::Failure, "warmup gave no lease id"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> CliResult<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).status(ExitStatus::Failure)?;
    std::fs::rename(&tmp, path).status(ExitStatus::Failure)
}
