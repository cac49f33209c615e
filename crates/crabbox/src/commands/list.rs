//! `crabbox list`: leases known on this machine, or (brokered) the coordinator's leases for
//! this caller plus local claims it does not list.

use crabbox_api::view::LeaseView;
use crabbox_client::Client;

use crate::brokered;
use crate::error::CliResult;
use crate::lease::{self, Ctx};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One listed lease: its human view, and the JSON printed for it (the coordinator's own lease
/// object for brokered leases, the `LeaseView` for local claims).
struct Row {
    view: LeaseView,
    json: serde_json::Value,
}

impl Row {
    fn local(view: LeaseView) -> Self {
        let json = serde_json::to_value(&view).expect("views serialize");
        Self { view, json }
    }

    fn coordinator(
        lease: &crabbox_api::coord::Lease,
        url: &str,
        claim: Option<&crabbox_providers::LeaseRecord>,
    ) -> Self {
        Self {
            view: brokered::view(lease, url, claim),
            json: serde_json::to_value(lease).expect("leases serialize"),
        }
    }
}

pub async fn run(args: Args) -> CliResult<u8> {
    let ctx = lease::context(Vec::new())?;
    let (claims, warnings) = ctx.claims.list();
    for w in warnings {
        output::warn(w);
    }
    let rows = if let Some(client) = &ctx.broker {
        brokered_rows(&ctx, client, claims).await?
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
    for Row { view: v, .. } in rows {
        output::out(format!(
            "{:<20} {:<28} {:<12} {:<14} {:<15} lease={} slug={} keep={} target={} expires={}",
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
    claims: Vec<crabbox_providers::LeaseRecord>,
) -> CliResult<Vec<Row>> {
    let url = client.base_url();
    let leases = client
        .list_leases("state=live&limit=500")
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
