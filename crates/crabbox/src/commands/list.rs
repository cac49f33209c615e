//! `crabbox list`: leases known on this machine, or (brokered) the coordinator's leases for
//! this caller plus local claims it does not list. `--all` (admin token) lists every owner's
//! live leases with the health of their runners; `--provider` keeps one provider's leases.

use crabbox_api::view::LeaseView;
use crabbox_client::{Client, query};

use crate::brokered;
use crate::commands::status::canonical_provider;
use crate::error::CliResult;
use crate::lease::{self, Ctx};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only leases of this provider (e.g. local, ssh, aws).
    #[arg(long)]
    pub provider: Option<String>,
    /// Every owner's live leases on the coordinator, with their runners' health (admin token).
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One listed lease: its human view, the JSON printed for it (the coordinator's own lease
/// object for brokered leases, the `LeaseView` for local claims), and `key=value` pairs the
/// human line ends with.
struct Row {
    view: LeaseView,
    json: serde_json::Value,
    extra: String,
}

impl Row {
    fn local(view: LeaseView) -> Self {
        let json = serde_json::to_value(&view).expect("views serialize");
        Self {
            view,
            json,
            extra: String::new(),
        }
    }

    fn coordinator(
        lease: &crabbox_api::coord::Lease,
        url: &str,
        claim: Option<&crabbox_providers::LeaseRecord>,
    ) -> Self {
        Self {
            view: brokered::view(lease, url, claim),
            json: serde_json::to_value(lease).expect("leases serialize"),
            extra: String::new(),
        }
    }
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    // The selected provider (spec §1.4): `--provider`, else one chosen by CRABBOX_PROVIDER or a
    // config file; with none chosen, every provider's leases.
    let provider = args
        .provider
        .or_else(|| lease::explicit_provider(&ctx))
        .as_deref()
        .map(canonical_provider);
    let (mut claims, warnings) = ctx.claims.list();
    for w in warnings {
        output::warn(w);
    }
    if let Some(p) = &provider {
        claims.retain(|c| canonical_provider(&c.provider) == *p);
    }
    let admin_rows = match (&ctx.broker, args.all) {
        (Some(_), true) => all_rows(&ctx, provider.as_deref(), &claims).await?,
        (None, true) => {
            output::err(
                "note: --all lists every owner's leases on a coordinator; none is configured, \
                 so these are this machine's leases",
            );
            None
        }
        _ => None,
    };
    let rows = if let Some(rows) = admin_rows {
        rows
    } else if let Some(client) = &ctx.broker {
        brokered_rows(&ctx, client, provider.as_deref(), claims).await?
    } else {
        let mut rows = Vec::new();
        for record in &claims {
            if crate::broker::is_brokered(record) {
                output::err(format!("note: {}", brokered::foreign_note(&ctx, record)));
            }
            rows.push(Row::local(lease::view(&ctx, record).await));
        }
        rows
    };
    if args.json {
        let all: Vec<serde_json::Value> = rows.into_iter().map(|r| r.json).collect();
        output::json(&all);
        return Ok(0);
    }
    if rows.is_empty() {
        output::err("no leases; `crabbox warmup` creates one");
    }
    for Row { view: v, extra, .. } in rows {
        output::out(format!(
            "{:<20} {:<28} {:<12} {:<14} {:<15} lease={} slug={} keep={} target={} expires={}{extra}",
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

/// The coordinator's live leases for this caller (`GET /v1/leases`), then every local claim
/// it did not list: this coordinator's ended leases as it reports them now, direct leases as
/// their providers see them, and other coordinators' leases as `unknown`.
async fn brokered_rows(
    ctx: &Ctx,
    client: &Client,
    provider: Option<&str>,
    claims: Vec<crabbox_providers::LeaseRecord>,
) -> CliResult<Vec<Row>> {
    let url = client.base_url();
    let leases = client
        .list_leases(&query(&[
            ("state", Some("live".to_owned())),
            ("provider", provider.map(str::to_owned)),
            ("limit", Some("500".to_owned())),
        ]))
        .await
        .map_err(|e| {
            crate::broker::error_at(
                e,
                &format!("could not list leases on coordinator {url}"),
                Some(url),
            )
        })?;
    let mut rows: Vec<Row> = leases
        .iter()
        .map(|lease| {
            let claim = claims.iter().find(|c| c.lease_id == lease.id);
            Row::coordinator(lease, url, claim)
        })
        .collect();
    for record in claims
        .iter()
        .filter(|c| !leases.iter().any(|l| l.id == c.lease_id))
    {
        if !crate::broker::is_brokered(record) {
            rows.push(Row::local(lease::view(ctx, record).await));
        } else if brokered::own_client(ctx, record).is_none() {
            output::err(format!("note: {}", brokered::foreign_note(ctx, record)));
            rows.push(Row::local(lease::claim_view(record, "unknown".to_owned())));
        } else {
            match client.get_lease(&record.lease_id).await {
                Ok(lease) => rows.push(Row::coordinator(&lease, url, Some(record))),
                Err(e) if e.status() == Some(404) => {
                    rows.push(Row::local(lease::claim_view(record, "stopped".to_owned())));
                }
                Err(e) => {
                    output::warn(format!("could not read lease {}: {e}", record.lease_id));
                    rows.push(Row::local(lease::claim_view(record, "unknown".to_owned())));
                }
            }
        }
    }
    Ok(rows)
}

/// `--all`: every owner's live leases (`GET /v1/admin/leases?state=live`) joined with the
/// coordinator's runner pool (`GET /v1/pool`), whose health each row ends with
/// (` owner=… machine=running|gone|unknown`; JSON: the lease plus the pool entry as `machine`). A runner in
/// the pool behind no listed lease is flagged on stderr as an orphan. `None` (the caller's
/// own list is shown instead, with a warning) when no admin token is configured or the
/// coordinator refuses it.
async fn all_rows(
    ctx: &Ctx,
    provider: Option<&str>,
    claims: &[crabbox_providers::LeaseRecord],
) -> CliResult<Option<Vec<Row>>> {
    let fallback = |why: &str| {
        output::warn(format!(
            "list --all needs the coordinator's admin token ({why}); listing your own leases"
        ));
        Ok(None)
    };
    let Ok(admin) = crate::broker::require_admin(&ctx.settings) else {
        return fallback("set broker.adminToken or CRABBOX_COORDINATOR_ADMIN_TOKEN");
    };
    let url = admin.base_url().to_owned();
    let q = query(&[
        ("state", Some("live".to_owned())),
        ("provider", provider.map(str::to_owned)),
        ("limit", Some("500".to_owned())),
    ]);
    let leases = match admin.admin_leases(&q).await {
        Ok(leases) => leases,
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            return fallback(&format!("coordinator {url} refused it: {e}"));
        }
        Err(e) => {
            return Err(crate::broker::error_at(
                e,
                &format!("could not list every lease on coordinator {url}"),
                Some(&url),
            ));
        }
    };
    let machines = admin.pool().await.unwrap_or_else(|e| {
        output::warn(format!(
            "could not read the runner pool of coordinator {url}: {e}"
        ));
        Vec::new()
    });
    let mut rows = Vec::new();
    for lease in &leases {
        let claim = claims.iter().find(|c| c.lease_id == lease.id);
        let mut row = Row::coordinator(lease, &url, claim);
        let machine = machines
            .iter()
            .find(|m| m["leaseID"].as_str() == Some(lease.id.as_str()));
        // `gone: <why>` and `provider not configured` become one word for the record.
        let health = machine
            .and_then(|m| m["status"].as_str())
            .and_then(|s| s.split(':').next())
            .map_or_else(|| "-".to_owned(), |s| s.trim().replace(' ', "-"));
        if let (Some(m), Some(obj)) = (machine, row.json.as_object_mut()) {
            obj.insert("machine".to_owned(), m.clone());
        }
        row.extra = format!(" owner={} machine={}", blank(&lease.owner), health);
        rows.push(row);
    }
    for m in machines.iter().filter(|m| {
        provider.is_none_or(|p| m["provider"].as_str() == Some(p))
            && !leases
                .iter()
                .any(|l| m["leaseID"].as_str() == Some(l.id.as_str()))
    }) {
        output::warn(format!(
            "orphan runner provider={} id={} name={} lease={}: the coordinator lists no live \
             lease for it",
            m["provider"].as_str().unwrap_or("-"),
            m["id"].as_str().unwrap_or("-"),
            m["name"].as_str().unwrap_or("-"),
            m["leaseID"].as_str().unwrap_or("-"),
        ));
    }
    Ok(Some(rows))
}

fn blank(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}
