//! `GET /v1/usage`: monthly usage summary and the configured limits (spec §2.4, §7).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use crabbox_api::coord::{Lease, Timestamp, UsageGroup, UsageSummary};
use crabbox_store::LeaseQuery;
use serde::Deserialize;
use serde_json::json;

use crate::access::Caller;
use crate::error::{Failure, Result};
use crate::leases::OrgFilter;
use crate::lifecycle::round2;
use crate::state::AppState;

/// Upper bound on leases one summary reads (a month of a busy team).
const USAGE_SCAN_LIMIT: usize = 200_000;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UsageQuery {
    scope: Option<String>,
    month: Option<String>,
    owner: Option<String>,
    org: Option<String>,
    org_kind: Option<String>,
}

fn parse_month(raw: &str) -> Option<(i64, u32)> {
    let (y, m) = raw.trim().split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let (y, m) = (y.parse::<i64>().ok()?, m.parse::<u32>().ok()?);
    (1..=12).contains(&m).then_some((y, m))
}

#[derive(Default)]
struct Acc {
    leases: u64,
    active: u64,
    runtime: u64,
    estimated: f64,
    reserved: f64,
}

impl Acc {
    fn add(&mut self, live: bool, runtime: u64, estimated: f64, reserved: f64) {
        self.leases += 1;
        self.active += u64::from(live);
        self.runtime += runtime;
        self.estimated = round2(self.estimated + estimated);
        self.reserved = round2(self.reserved + reserved);
    }

    fn group(&self, key: String) -> UsageGroup {
        UsageGroup {
            key,
            leases: self.leases,
            active_leases: self.active,
            runtime_seconds: self.runtime,
            estimated_usd: self.estimated,
            reserved_usd: self.reserved,
        }
    }
}

fn groups(map: BTreeMap<String, Acc>) -> Vec<UsageGroup> {
    let mut out: Vec<UsageGroup> = map.into_iter().map(|(k, a)| a.group(k)).collect();
    out.sort_by(|a, b| {
        b.reserved_usd
            .partial_cmp(&a.reserved_usd)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

pub fn summarize(
    leases: &[Lease],
    month: (i64, u32),
    scope: &str,
    owner: &str,
    org_label: Option<String>,
    now: Timestamp,
) -> UsageSummary {
    let mut total = Acc::default();
    let (mut by_owner, mut by_org, mut by_provider, mut by_type) = (
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::new(),
    );
    for l in leases.iter().filter(|l| !l.is_registered()) {
        let stop = if l.is_live() {
            now
        } else {
            l.ended_at.or(l.released_at).unwrap_or(now)
        };
        let runtime = u64::try_from((stop.millis() - l.created_at.millis()) / 1000).unwrap_or(0);
        let estimated = round2(runtime as f64 / 3600.0 * l.estimated_hourly_usd);
        let reserved = round2(if l.max_estimated_usd > 0.0 {
            l.max_estimated_usd
        } else {
            estimated
        });
        let live = l.is_live();
        total.add(live, runtime, estimated, reserved);
        let key = |s: &str| {
            if s.is_empty() {
                "unknown".to_owned()
            } else {
                s.to_owned()
            }
        };
        by_owner
            .entry(key(&l.owner))
            .or_insert_with(Acc::default)
            .add(live, runtime, estimated, reserved);
        by_org
            .entry(key(&crabbox_auth::org::label_for_key(&l.org)))
            .or_insert_with(Acc::default)
            .add(live, runtime, estimated, reserved);
        by_provider
            .entry(key(&l.provider))
            .or_insert_with(Acc::default)
            .add(live, runtime, estimated, reserved);
        by_type
            .entry(key(&l.server_type))
            .or_insert_with(Acc::default)
            .add(live, runtime, estimated, reserved);
    }
    UsageSummary {
        month: format!("{:04}-{:02}", month.0, month.1),
        scope: scope.to_owned(),
        owner: owner.to_owned(),
        org: org_label,
        leases: total.leases,
        active_leases: total.active,
        runtime_seconds: total.runtime,
        estimated_usd: total.estimated,
        reserved_usd: total.reserved,
        by_owner: groups(by_owner),
        by_org: groups(by_org),
        by_provider: groups(by_provider),
        by_server_type: groups(by_type),
    }
}

pub async fn usage(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UsageQuery>,
) -> Result<Response> {
    let now = state.now();
    let month = match q.month.as_deref().filter(|m| !m.is_empty()) {
        Some(raw) => parse_month(raw)
            .ok_or_else(|| Failure::bad_request("invalid_month", "month must be YYYY-MM"))?,
        None => now.year_month(),
    };
    let mut scope = q.scope.clone().unwrap_or_else(|| "user".into());
    if !matches!(scope.as_str(), "user" | "org" | "all") {
        return Err(Failure::bad_request(
            "invalid_scope",
            "scope must be user, org or all",
        ));
    }
    let (owner, org_key) = if caller.admin {
        let owner = q
            .owner
            .clone()
            .filter(|o| !o.is_empty())
            .unwrap_or_else(|| caller.owner.clone());
        let org = match OrgFilter::parse(q.org.as_deref(), q.org_kind.as_deref()) {
            OrgFilter::Key(key) => Some(key),
            OrgFilter::Any => (scope == "org").then(|| caller.org_key.clone()),
            OrgFilter::Nothing => {
                return Err(Failure::bad_request(
                    "invalid_org_identity",
                    format!(
                        "org {:?} with orgKind {:?} names no valid org (orgKind: missing, or \
                         legacy with a plain label)",
                        q.org.as_deref().unwrap_or(""),
                        q.org_kind.as_deref().unwrap_or("")
                    ),
                ));
            }
        };
        (owner, org)
    } else {
        scope = "user".into();
        (caller.owner.clone(), Some(caller.org_key.clone()))
    };
    let start = Timestamp::month_start(month.0, month.1);
    let end = if month.1 == 12 {
        Timestamp::month_start(month.0 + 1, 1)
    } else {
        Timestamp::month_start(month.0, month.1 + 1)
    };
    let leases = state
        .store
        .list_leases(&LeaseQuery {
            owner: (scope == "user").then(|| owner.clone()),
            org: org_key.clone(),
            created_since: Some(start),
            created_before: Some(end),
            limit: USAGE_SCAN_LIMIT,
            ..LeaseQuery::default()
        })
        .await?;
    let summary = summarize(
        &leases,
        month,
        &scope,
        &owner,
        org_key.as_deref().map(crabbox_auth::org::label_for_key),
        now,
    );
    Ok(Json(json!({"usage": summary, "limits": state.settings.limits})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crabbox_api::coord::{LeaseState, Lifecycle};

    #[test]
    fn months_parse_strictly() {
        assert_eq!(parse_month("2026-05"), Some((2026, 5)));
        assert_eq!(parse_month("2026-13"), None);
        assert_eq!(parse_month("26-05"), None);
    }

    #[test]
    fn summary_counts_runtime_cost_and_skips_registered() {
        let base = Lease {
            owner: "friend@example.com".into(),
            org: "~0".into(),
            provider: "hetzner".into(),
            server_type: "ccx63".into(),
            estimated_hourly_usd: 0.9,
            max_estimated_usd: 1.0,
            state: LeaseState::Active,
            created_at: Timestamp(0),
            ..Lease::default()
        };
        let mut registered = base.clone();
        registered.lifecycle = Lifecycle::Registered;
        let s = summarize(
            &[base, registered],
            (1970, 1),
            "user",
            "friend@example.com",
            None,
            Timestamp(120_000),
        );
        assert_eq!(s.leases, 1);
        assert_eq!(s.active_leases, 1);
        assert_eq!(s.runtime_seconds, 120);
        assert!((s.estimated_usd - 0.03).abs() < 1e-9);
        assert!((s.reserved_usd - 1.0).abs() < 1e-9);
        assert_eq!(s.by_server_type[0].key, "ccx63");
        assert_eq!(s.by_org[0].key, "unknown");
    }

    #[test]
    fn groups_sort_by_reserved_cost_then_key_and_ended_leases_stop_at_their_end() {
        let lease = |owner: &str, reserved: f64, state: LeaseState| Lease {
            owner: owner.into(),
            org: crabbox_auth::org::key_for_label("example-org").unwrap(),
            provider: "hetzner".into(),
            estimated_hourly_usd: 3.6,
            max_estimated_usd: reserved,
            state,
            created_at: Timestamp(0),
            ended_at: (state != LeaseState::Active).then_some(Timestamp(1_000_000)),
            ..Lease::default()
        };
        let s = summarize(
            &[
                lease("zed", 5.0, LeaseState::Active),
                lease("amy", 1.0, LeaseState::Released),
                lease("bob", 1.0, LeaseState::Active),
            ],
            (1970, 1),
            "all",
            "admin",
            None,
            Timestamp(3_600_000),
        );
        let keys: Vec<&str> = s.by_owner.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, ["zed", "amy", "bob"]);
        assert_eq!(s.active_leases, 2);
        // 3600 s for each live lease, 1000 s for the ended one.
        assert_eq!(s.runtime_seconds, 8200);
        assert!((s.by_owner[1].estimated_usd - 1.0).abs() < 1e-9);
        assert!((s.reserved_usd - 7.0).abs() < 1e-9);
        assert_eq!(s.by_org[0].key, "example-org");
        assert_eq!(s.by_org[0].leases, 3);
    }
}
