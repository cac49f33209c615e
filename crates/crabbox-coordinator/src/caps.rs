//! Admission control: active-lease caps and monthly spend caps (spec §4.7).
//!
//! Counts come from one aggregate query (`Store::admission`), so the cost of a create does not
//! grow with the number of stored leases. Two replicas admitting at the same instant can both
//! pass a cap that has room for one; the overshoot is bounded by the number of concurrent
//! creates (the old coordinator serialised every create on one lock instead).

use axum::http::StatusCode;
use crabbox_api::coord::{Lease, Timestamp};

use crate::error::{Failure, Result};
use crate::state::AppState;

fn refuse(message: String) -> Failure {
    Failure::new(StatusCode::TOO_MANY_REQUESTS, "cost_limit_exceeded").message(message)
}

pub async fn admit(state: &AppState, lease: &Lease, now: Timestamp) -> Result<()> {
    let limits = &state.settings.limits;
    let any_cap = limits.max_active_leases > 0
        || limits.max_active_leases_per_owner > 0
        || limits.max_active_leases_per_org > 0
        || limits.max_monthly_usd > 0.0
        || limits.max_monthly_usd_per_owner > 0.0
        || limits.max_monthly_usd_per_org > 0.0;
    if !any_cap || lease.is_registered() {
        return Ok(());
    }
    let (year, month) = now.year_month();
    let counts = state
        .store
        .admission(
            &lease.owner,
            &lease.org,
            Timestamp::month_start(year, month),
        )
        .await?;
    let capacity_admin = limits
        .capacity_admin_owners
        .iter()
        .any(|o| o.eq_ignore_ascii_case(&lease.owner));
    let owner_cap = if capacity_admin {
        limits
            .max_active_leases_per_owner
            .max(limits.max_active_leases_per_capacity_admin)
    } else {
        limits.max_active_leases_per_owner
    };
    let checks = [
        (
            limits.max_active_leases,
            counts.active_total,
            "active lease limit exceeded",
        ),
        (
            owner_cap,
            counts.active_owner,
            "active lease limit for owner exceeded",
        ),
        (
            limits.max_active_leases_per_org,
            counts.active_org,
            "active lease limit for org exceeded",
        ),
    ];
    for (cap, active, what) in checks {
        if cap > 0 && active + 1 > cap {
            return Err(refuse(format!("{what}: {}/{cap}", active + 1)));
        }
    }
    let spend = [
        (
            limits.max_monthly_usd,
            counts.reserved_usd_total,
            "monthly budget exceeded",
        ),
        (
            limits.max_monthly_usd_per_owner,
            counts.reserved_usd_owner,
            "monthly budget for owner exceeded",
        ),
        (
            limits.max_monthly_usd_per_org,
            counts.reserved_usd_org,
            "monthly budget for org exceeded",
        ),
    ];
    for (budget, reserved, what) in spend {
        let total = reserved + lease.max_estimated_usd;
        if budget > 0.0 && total > budget {
            return Err(refuse(format!("{what}: ${total:.2}/${budget:.2}")));
        }
    }
    Ok(())
}
