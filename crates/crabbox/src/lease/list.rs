//! `list`: what the configured coordinator lists (or, for direct leases, nothing: claims are
//! all there is), then every local claim it did not list; and `list --refresh`, which asks
//! the backends instead of trusting the claims and forgets the stale ones.

use super::backend::{ListQuery, Row, SweepAction};
use super::context::canonical_provider;
use super::{Lease, Leases};
use crabbox_providers::LeaseRecord;

use crate::error::CliResult;

/// What `list --refresh` reconciled.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// Claims forgotten: `(lease id, slug, why)`.
    pub forgotten: Vec<(String, String, String)>,
    /// Claims that looked stale but could not be reconciled: `(lease id, error)`.
    pub failed: Vec<(String, String)>,
    /// Runners the configured provider holds that no claim accounts for.
    pub orphans: Vec<LeaseRecord>,
}

impl<'a> Leases<'a> {
    /// The rows of `list`.
    pub async fn list(&self, query: &ListQuery) -> CliResult<Vec<Row>> {
        let claims = self.claims_of(query);
        let records: Vec<_> = claims.iter().map(|c| c.record.clone()).collect();
        let listing = self.home.list(query, &records).await?;
        let mut rows = listing.rows;
        if !listing.exhaustive {
            for claim in &claims {
                if !rows.iter().any(|r| r.view.id == claim.record.lease_id) {
                    rows.push(claim.row().await);
                }
            }
        }
        Ok(rows)
    }

    /// `list --refresh`: each claim's backend says whether its lease still exists; a claim
    /// whose runner or lease is gone is reconciled (a direct runner's leftovers deleted, the
    /// claim, key and sync state forgotten). The configured provider names runners no claim
    /// accounts for.
    pub async fn refresh(&self, query: &ListQuery) -> Refreshed {
        let claims = self.claims_of(query);
        let mut out = Refreshed::default();
        for claim in &claims {
            let sweep = claim.sweep().await;
            if !sweep.stale {
                continue;
            }
            let done = match sweep.action {
                SweepAction::Release => claim.release().await.map(drop),
                SweepAction::Forget => claim.forget().await,
                SweepAction::Keep => continue,
            };
            let id = claim.record.lease_id.clone();
            match done {
                Ok(()) => out
                    .forgotten
                    .push((id, claim.record.slug.clone(), sweep.reason)),
                Err(e) => out.failed.push((id, format!("{:#}", e.error))),
            }
        }
        out.orphans = self.orphans().await;
        out
    }

    /// Runners the configured provider holds that no local claim accounts for.
    pub async fn orphans(&self) -> Vec<LeaseRecord> {
        let (all, _) = self.ctx.claims.list();
        self.home.orphans(&all).await
    }

    /// Deletes a runner [`Leases::orphans`] named.
    pub async fn delete_orphan(&self, record: &LeaseRecord) -> CliResult<()> {
        self.home.delete_orphan(record).await
    }

    /// The claims `query` selects (all, or one provider's).
    fn claims_of(&self, query: &ListQuery) -> Vec<Lease<'a>> {
        let mut claims = self.claims();
        if let Some(p) = &query.provider {
            claims.retain(|c| canonical_provider(&c.record.provider) == *p);
        }
        claims
    }
}
