//! `crabbox list`: leases known on this machine, or (brokered) the coordinator's leases for
//! this caller plus local claims it does not list. `--all` (admin token) lists every owner's
//! live leases with the health of their runners; `--provider` keeps one provider's leases;
//! `--refresh` asks the providers and the coordinator instead of trusting local claims, and
//! forgets the claims it finds stale.

use crate::error::CliResult;
use crate::lease::{self, Leases, ListQuery, Row, canonical_provider};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only leases of this provider (e.g. local, ssh, aws).
    #[arg(long)]
    pub provider: Option<String>,
    /// Every owner's live leases on the coordinator, with their runners' health (admin token).
    #[arg(long)]
    pub all: bool,
    /// Ask the providers (and the coordinator) whether each claimed lease still exists, and
    /// forget the claims of leases that are gone.
    #[arg(long)]
    pub refresh: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    // The selected provider (spec §1.4): `--provider`, else one chosen by CRABBOX_PROVIDER or a
    // config file; with none chosen, every provider's leases.
    let query = ListQuery {
        provider: args
            .provider
            .or_else(|| ctx.explicit_provider())
            .as_deref()
            .map(canonical_provider),
        all: args.all,
    };
    let leases = Leases::new(&ctx);
    if args.refresh {
        refresh(&leases, &query).await;
    }
    let rows = leases.list(&query).await?;
    if args.json {
        let all: Vec<serde_json::Value> = rows.into_iter().map(|r| r.json).collect();
        output::json(&all);
        return Ok(0);
    }
    if rows.is_empty() {
        output::err("no leases; `crabbox warmup` creates one");
    }
    for Row { view: v, extra, .. } in rows {
        // What the lease offers beyond a shell (`desktop=xfce browser=true`).
        let mut offers = String::new();
        if v.labels.get("desktop").is_some_and(|d| d == "true") {
            let env = v.labels.get("desktop_env").map_or("xfce", String::as_str);
            offers = format!(" desktop={env}");
        }
        if v.labels.get("browser").is_some_and(|b| b == "true") {
            offers.push_str(" browser=true");
        }
        output::out(format!(
            "{:<20} {:<28} {:<12} {:<14} {:<15} lease={} slug={} keep={} target={} expires={}{offers}{extra}",
            v.server_id,
            v.slug,
            v.state,
            v.server_type,
            v.host,
            v.id,
            v.slug,
            v.keep,
            v.target,
            v.expires_at
        ));
    }
    Ok(0)
}

/// Reconciles the claims before listing, saying on stderr what it changed.
async fn refresh(leases: &Leases<'_>, query: &ListQuery) {
    let refreshed = leases.refresh(query).await;
    for (id, slug, reason) in &refreshed.forgotten {
        output::err(format!(
            "forgot stale lease id={id} slug={slug} reason={reason}"
        ));
    }
    for (id, error) in &refreshed.failed {
        output::warn(format!(
            "lease {id} looks gone, but its claim could not be reconciled: {error}"
        ));
    }
    for orphan in &refreshed.orphans {
        let server = if orphan.server_id.is_empty() {
            String::new()
        } else {
            format!(" server={}", orphan.server_id)
        };
        output::warn(format!(
            "orphan runner lease={}{server} orphan=no-active-lease: the provider holds it, but no claim here names it",
            orphan.lease_id
        ));
    }
}
