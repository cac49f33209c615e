//! `crabbox usage`: the month's leases, runtime and estimated cost, with the caps.

use crabbox_api::coord::UsageGroup;
use crabbox_client::query;

use crate::broker;
use crate::error::CliResult;
use crate::{lease, output};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// user, org or all (admins).
    #[arg(long, default_value = "user")]
    pub scope: String,
    /// Owner to report on (admins).
    #[arg(long)]
    pub user: Option<String>,
    /// Org to report on.
    #[arg(long)]
    pub org: Option<String>,
    /// Month, YYYY-MM (default: this UTC month).
    #[arg(long)]
    pub month: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn group_lines(title: &str, groups: &[UsageGroup]) {
    if groups.is_empty() {
        return;
    }
    output::out(format!("{title}:"));
    for g in groups {
        output::out(format!(
            "  {:<32} leases={} active={} runtime={}s estimated=${:.2} reserved=${:.2}",
            g.key, g.leases, g.active_leases, g.runtime_seconds, g.estimated_usd, g.reserved_usd
        ));
    }
}

fn cap(v: f64) -> String {
    if v > 0.0 {
        format!("{v}")
    } else {
        "off".into()
    }
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let client = broker::require(&ctx.settings, "usage")?;
    let q = query(&[
        ("scope", Some(args.scope.clone())),
        ("owner", args.user.clone()),
        ("org", args.org.clone()),
        ("month", args.month.clone()),
    ]);
    let usage = client
        .usage(&q)
        .await
        .map_err(|e| broker::cli_error(e, "could not read usage"))?;
    if args.json {
        output::json(&usage);
        return Ok(0);
    }
    let u = &usage.usage;
    output::out(format!(
        "usage month={} scope={} owner={} org={} leases={} active={} runtime={}s estimated=${:.2} reserved=${:.2}",
        u.month,
        u.scope,
        u.owner,
        u.org.as_deref().unwrap_or("-"),
        u.leases,
        u.active_leases,
        u.runtime_seconds,
        u.estimated_usd,
        u.reserved_usd
    ));
    group_lines("by owner", &u.by_owner);
    group_lines("by org", &u.by_org);
    group_lines("by provider", &u.by_provider);
    group_lines("by server type", &u.by_server_type);
    let l = &usage.limits;
    output::out(format!(
        "limits active={} per_owner={} per_org={} monthly=${} per_owner_monthly=${} per_org_monthly=${}",
        cap(l.max_active_leases as f64),
        cap(l.max_active_leases_per_owner as f64),
        cap(l.max_active_leases_per_org as f64),
        cap(l.max_monthly_usd),
        cap(l.max_monthly_usd_per_owner),
        cap(l.max_monthly_usd_per_org)
    ));
    Ok(0)
}
