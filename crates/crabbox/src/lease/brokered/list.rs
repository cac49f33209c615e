//! `list` on a coordinator: the caller's live leases (`GET /v1/leases`), or with `--all` every
//! owner's live leases joined with the coordinator's runner pool (admin token).

use crabbox_api::coord::Lease;
use crabbox_client::{Client, query};
use crabbox_providers::LeaseRecord;

use super::view;
use crate::broker;
use crate::error::CliResult;
use crate::lease::backend::{ListQuery, Listing, Row};
use crate::output;

/// A coordinator lease's row: its view, and the coordinator's own lease object as JSON.
pub fn coordinator_row(lease: &Lease, url: &str, claim: Option<&LeaseRecord>) -> Row {
    Row {
        view: view(lease, url, claim),
        json: serde_json::to_value(lease).expect("leases serialize"),
        extra: String::new(),
    }
}

fn live_query(q: &ListQuery) -> String {
    query(&[
        ("state", Some("live".to_owned())),
        ("provider", q.provider.clone()),
        ("limit", Some("500".to_owned())),
    ])
}

/// The coordinator's live leases for this caller.
pub async fn own(client: &Client, q: &ListQuery, claims: &[LeaseRecord]) -> CliResult<Listing> {
    let url = client.base_url();
    let leases = client.list_leases(&live_query(q)).await.map_err(|e| {
        broker::error_at(
            e,
            &format!("could not list leases on coordinator {url}"),
            Some(url),
        )
    })?;
    let rows = leases
        .iter()
        .map(|lease| {
            let claim = claims.iter().find(|c| c.lease_id == lease.id);
            coordinator_row(lease, url, claim)
        })
        .collect();
    Ok(Listing {
        rows,
        exhaustive: false,
    })
}

/// `--all`: every owner's live leases (`GET /v1/admin/leases?state=live`) joined with the
/// coordinator's runner pool (`GET /v1/pool`), whose health each row ends with
/// (` owner=… machine=running|gone|unknown`; JSON: the lease plus the pool entry as
/// `machine`). A runner in the pool behind no listed lease is flagged on stderr as an orphan.
/// `None` (the caller's own list is shown instead, with a warning) when no admin token is
/// configured or the coordinator refuses it.
pub async fn all(
    admin: Option<&Client>,
    q: &ListQuery,
    claims: &[LeaseRecord],
) -> CliResult<Option<Listing>> {
    let fallback = |why: &str| {
        output::warn(format!(
            "list --all needs the coordinator's admin token ({why}); listing your own leases"
        ));
        Ok(None)
    };
    let Some(admin) = admin else {
        return fallback("set broker.adminToken or CRABBOX_COORDINATOR_ADMIN_TOKEN");
    };
    let url = admin.base_url().to_owned();
    let leases = match admin.admin_leases(&live_query(q)).await {
        Ok(leases) => leases,
        Err(e) if matches!(e.status(), Some(401 | 403)) => {
            return fallback(&format!("coordinator {url} refused it: {e}"));
        }
        Err(e) => {
            return Err(broker::error_at(
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
        let mut row = coordinator_row(lease, &url, claim);
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
        q.provider
            .as_deref()
            .is_none_or(|p| m["provider"].as_str() == Some(p))
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
    Ok(Some(Listing {
        rows,
        exhaustive: true,
    }))
}

fn blank(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}
