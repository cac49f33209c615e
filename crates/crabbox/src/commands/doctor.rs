//! `crabbox doctor`: checks tools, config, keys and (for local) sshd, with a fix for each.

use crabbox_remote::sshd;

use crate::lease;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Check this provider (default: the configured one). `aws` adds the credentials'
    /// identity and the account's vCPU quotas.
    #[arg(long)]
    pub provider: Option<String>,
}

fn tool_version(program: &str, arg: &str) -> Option<String> {
    let out = std::process::Command::new(program).arg(arg).output().ok()?;
    let text = if out.stdout.is_empty() {
        out.stderr
    } else {
        out.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(str::to_owned)
}

/// Whether a file watcher serves this root's fingerprint. Only a watcher that hit the inotify
/// watch limit fails the check: everything else is a normal state (not started yet, off).
fn watcher(ctx: &lease::Ctx) -> (bool, String) {
    let root = ctx.repo_root.display();
    if crate::commands::watch::settings(ctx).is_none() {
        let why = if crabbox_remote::watch::SUPPORTED {
            format!(
                "off (sync.watch from {})",
                ctx.settings.origin("sync.watch")
            )
        } else {
            "unsupported on this platform (Linux only)".to_owned()
        };
        return (true, why);
    }
    match crabbox_remote::watch::status(&ctx.state_dir, &ctx.repo_root) {
        Ok(None) => (
            true,
            format!("not running for {root} (the next run or sync-plan starts one)"),
        ),
        Ok(Some(a)) if a.ready => (
            true,
            format!(
                "running for {root} pid={} watches={} generation={}",
                a.pid, a.watches, a.generation
            ),
        ),
        Ok(Some(a)) => {
            let reason = a.broken.unwrap_or_else(|| "starting".to_owned());
            (
                !reason.contains("max_user_watches"),
                format!("not usable for {root} pid={}: {reason}", a.pid),
            )
        }
        Err(e) => (true, format!("no answer for {root}: {e}")),
    }
}

pub async fn run(args: &Args) -> u8 {
    let mut checks: Vec<(String, &str, String)> = Vec::new();
    let mut add = |check: &str, ok: bool, details: String, hint: &str| {
        let status = if ok { "ok" } else { "failed" };
        let details = if ok || hint.is_empty() {
            details
        } else {
            format!("{details} hint={hint}")
        };
        checks.push((check.to_owned(), status, details));
    };
    let flags = args
        .provider
        .iter()
        .map(|p| crabbox_core::config::FlagValue::new("provider", "--provider", p.clone()))
        .collect();
    let ctx = lease::context(flags);
    match &ctx {
        Ok(ctx) => add(
            "config",
            true,
            format!(
                "files={} provider={} source={}",
                ctx.settings.files.len(),
                ctx.settings.config().provider.clone(),
                ctx.settings.origin("provider")
            ),
            "",
        ),
        Err(e) => add(
            "config",
            false,
            e.error.to_string(),
            "fix the file and key named above",
        ),
    }
    for (tool, arg, hint) in [
        ("git", "--version", "install git (apt-get install git)"),
        (
            "ssh",
            "-V",
            "install the OpenSSH client (apt-get install openssh-client)",
        ),
        (
            "rsync",
            "--version",
            "install rsync (apt-get install rsync)",
        ),
    ] {
        let v = tool_version(tool, arg);
        add(
            &format!("tool-{tool}"),
            v.is_some(),
            v.unwrap_or_else(|| "missing".into()),
            hint,
        );
    }
    let provider = ctx
        .as_ref()
        .map(|c| c.settings.config().provider.clone())
        .unwrap_or_default();
    if provider == "local" {
        let found = sshd::find_sshd();
        add(
            "sshd",
            found.is_some(),
            found.map_or("missing".into(), |p| p.display().to_string()),
            "install openssh-server (apt-get install openssh-server); the local provider runs a private sshd per lease",
        );
        add(
            "perl",
            tool_version("perl", "-v").is_some(),
            "runner-side sync helper".into(),
            "install perl",
        );
    }
    if let Ok(ctx) = &ctx {
        if ctx.settings.config().provider.clone() == "ssh" {
            let key = ctx
                .settings
                .config()
                .ssh
                .key
                .clone()
                .replace('~', &std::env::var("HOME").unwrap_or_default());
            add(
                "ssh-key",
                std::path::Path::new(&key).is_file(),
                key,
                "set ssh.key or CRABBOX_SSH_KEY to a private key the static host accepts",
            );
            add(
                "static-host",
                ctx.settings.config().static_host.host.is_some(),
                ctx.settings
                    .config()
                    .static_host
                    .host
                    .clone()
                    .unwrap_or_default(),
                "set static.host in crabbox.yaml or CRABBOX_STATIC_HOST",
            );
        } else {
            add("ssh-key", true, "per-lease keys".into(), "");
        }
        let (_, warnings) = ctx.claims.list();
        add(
            "claims",
            warnings.is_empty(),
            format!("{} unreadable", warnings.len()),
            "remove the broken claim files named in warnings",
        );
        let (ok, details) = watcher(ctx);
        add(
            "watch",
            ok,
            details,
            "raise the limit (sysctl fs.inotify.max_user_watches=524288) or set sync.watch: false",
        );
    }
    // A cloud provider used directly: its credentials and the account's limits.
    if let Ok(ctx) = &ctx
        && ctx.broker.is_none()
    {
        for check in crate::clouds::doctor(&provider, ctx.settings.config()).await {
            add(&check.name, check.ok, check.details, &check.hint);
        }
    }
    // Brokered: the coordinator answers, and accepts the configured token.
    if let Some(client) = ctx.as_ref().ok().and_then(|c| c.broker.clone()) {
        let health = client.health().await;
        add(
            "coord",
            health.is_ok(),
            match &health {
                Ok(_) => client.base_url().to_owned(),
                Err(e) => e.to_string(),
            },
            "start the coordinator or fix coordinator / CRABBOX_COORDINATOR",
        );
        if health.is_ok() {
            let me = client.whoami().await;
            add(
                "broker",
                me.is_ok(),
                match &me {
                    Ok(me) => format!("user={} org={} auth={}", me.owner, me.org, me.auth),
                    Err(e) => e.to_string(),
                },
                "run `crabbox login --url <coordinator>`",
            );
        }
    }
    let failed = checks.iter().any(|c| c.1 == "failed");
    if args.json {
        let list: Vec<_> = checks
            .iter()
            .map(|(c, s, d)| serde_json::json!({"check": c, "status": s, "details": d}))
            .collect();
        output::json(&serde_json::json!({"ok": !failed, "provider": provider, "checks": list}));
    } else {
        for (check, status, details) in &checks {
            output::out(format!("{status} {check} {details}"));
        }
    }
    u8::from(failed)
}
