//! `crabbox inspect <id>`: every detail of a lease, one `key=value` per line.

use crate::error::CliResult;
use crate::lease::{self, Leases};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: super::status::LeaseArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let v = Leases::new(&ctx)
        .find(&args.target.one()?)
        .await?
        .view()
        .await;
    if args.json {
        output::json(&v);
        return Ok(0);
    }
    for (k, val) in [
        ("id", v.id.clone()),
        ("slug", v.slug.clone()),
        ("provider", v.provider.clone()),
        ("target", v.target.clone()),
        ("state", v.state.clone()),
        ("server", v.server_id.clone()),
        ("host", v.host.clone()),
        ("ssh", format!("{}@{}:{}", v.ssh_user, v.host, v.ssh_port)),
        ("ssh_key", v.ssh_key.clone()),
        ("work_root", v.work_root.clone()),
        ("repo", v.repo_root.clone().unwrap_or_default()),
        ("idle_for", v.idle_for.clone()),
        ("idle_timeout", v.idle_timeout.clone()),
        ("ttl", v.ttl.clone()),
        ("created", v.created_at.clone()),
        ("last_touched", v.last_touched_at.clone()),
        ("expires", v.expires_at.clone()),
    ] {
        output::out(format!(
            "{k}={}",
            if val.is_empty() { "-".into() } else { val }
        ));
    }
    if let Some(usd) = v.estimated_hourly_usd {
        output::out(format!("hourly_usd={usd:.4}"));
    }
    for (n, attempt) in v.provisioning_attempts.iter().enumerate() {
        let field = |name: &str| attempt[name].as_str().unwrap_or("-").to_owned();
        output::out(format!(
            "attempt.{}={} {} in {}: {} ({}) {}",
            n + 1,
            field("serverType"),
            field("market"),
            field("region"),
            field("code"),
            field("category"),
            field("message"),
        ));
    }
    for (k, val) in &v.labels {
        output::out(format!("label.{k}={val}"));
    }
    Ok(0)
}
