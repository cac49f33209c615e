//! The fallback driver (spec/providers.md §2.2, "Candidate/market/region order"), generic over
//! what a provider launches. In each region, in order: every candidate type on the first
//! market, moving to the next type when a type is refused; then, when the first market is
//! spot and the fallback allows it, the types whose refusal on-demand capacity may not share,
//! on-demand; then the next region. A region that lacks what every plan needs (an image)
//! is left at its first such refusal. A fatal error stops everything. Throttling and transient
//! API failures retry the same plan with exponential backoff and full jitter, a bounded number
//! of times. Every failed try is recorded as a [`ProvisioningAttempt`].
//!
//! The clock, the sleep and the random source come in through [`Pacing`], so tests run the
//! real driver instantly and deterministically.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use crabbox_core::machine::Market;

use super::attempt::{Category, ProvisioningAttempt, Refusal};
use super::capacity::CapacityPlan;
use super::class::Candidates;
use crate::ProviderError;

/// One launch to try. A provider that makes its create calls idempotent (EC2's `ClientToken`)
/// should derive the token from the lease and this plan, so that retries of the same plan
/// share it and different plans do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryPlan {
    pub server_type: String,
    pub market: Market,
    pub region: String,
}

/// How often and how patiently a throttled or transiently failing plan is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Tries of one plan in all, the first included.
    pub tries: u32,
    /// The ceiling of the first wait; each later ceiling doubles, up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// Five tries, waiting at most 1, 2, 4 and 8 seconds between them.
    fn default() -> Self {
        Self {
            tries: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(20),
        }
    }
}

impl Backoff {
    /// The most the wait after the `retry`-th failed try (from 0) may be.
    fn ceiling(self, retry: u32) -> Duration {
        let doubled = self.base.saturating_mul(2u32.saturating_pow(retry));
        doubled.min(self.cap)
    }
}

/// Time and chance, injected.
pub trait Pacing {
    /// Milliseconds on a monotonic clock, to time each try.
    fn now_ms(&self) -> u64;
    fn sleep(&mut self, wait: Duration) -> impl Future<Output = ()> + Send;
    /// A uniformly random whole number from 0 to `max`, both included.
    fn random_up_to(&mut self, max: u64) -> u64;
}

/// The real clock, tokio's sleep, and a small generator seeded by the standard library's
/// per-process random keys; jitter needs spread, not secrecy.
#[derive(Debug)]
pub struct SystemPacing {
    origin: Instant,
    state: u64,
}

impl SystemPacing {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: RandomState::new().hash_one(std::process::id()),
        }
    }
}

impl Default for SystemPacing {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacing for SystemPacing {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn sleep(&mut self, wait: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(wait)
    }

    /// The `SplitMix64` generator.
    fn random_up_to(&mut self, max: u64) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        match max.checked_add(1) {
            Some(bound) => z % bound,
            None => z,
        }
    }
}

/// A launch, with the plan that made it and the tries that failed before it.
#[derive(Debug)]
pub struct Provisioned<T> {
    pub value: T,
    pub plan: TryPlan,
    pub attempts: Vec<ProvisioningAttempt>,
}

/// No launch: the error to report, and every try, for the lease record.
#[derive(Debug)]
pub struct ProvisionFailure {
    pub error: ProviderError,
    pub attempts: Vec<ProvisioningAttempt>,
}

/// Runs the candidate/market/region order, calling `try_one` for each plan.
pub async fn provision<T, F, Fut, P>(
    candidates: &Candidates,
    capacity: &CapacityPlan,
    backoff: Backoff,
    pacing: &mut P,
    try_one: F,
) -> Result<Provisioned<T>, ProvisionFailure>
where
    P: Pacing,
    F: FnMut(TryPlan) -> Fut,
    Fut: Future<Output = Result<T, Refusal>>,
{
    let mut tries = Tries {
        backoff,
        pacing,
        try_one,
        attempts: Vec::new(),
    };
    // The last refusal for something a region lacks: the error when every region lacked it.
    let mut lacking = None;
    'regions: for region in &capacity.regions {
        let mut spot_refused = Vec::new();
        for server_type in &candidates.types {
            let plan = TryPlan {
                server_type: server_type.clone(),
                market: capacity.market,
                region: region.clone(),
            };
            match tries.run(plan).await {
                Outcome::Launched(launch) => return Ok(launch),
                Outcome::Stopped(error) => return Err(tries.fail(error)),
                Outcome::Refused(refusal) if refusal.category == Category::Region => {
                    lacking = Some(refusal.error);
                    continue 'regions;
                }
                Outcome::Refused(refusal) => {
                    if capacity.market == Market::Spot && refusal.spot_recoverable {
                        spot_refused.push(server_type);
                    }
                }
            }
        }
        if !capacity.fallback.retries_on_demand() {
            continue;
        }
        for server_type in spot_refused {
            let plan = TryPlan {
                server_type: server_type.clone(),
                market: Market::OnDemand,
                region: region.clone(),
            };
            match tries.run(plan).await {
                Outcome::Launched(launch) => return Ok(launch),
                Outcome::Stopped(error) => return Err(tries.fail(error)),
                Outcome::Refused(_) => {}
            }
        }
    }
    let only_lacking = tries
        .attempts
        .iter()
        .filter(|attempt| attempt.category.moves_on())
        .all(|attempt| attempt.category == Category::Region);
    let error = match lacking {
        // Nothing was refused for capacity: what the regions lack is the whole story.
        Some(error) if only_lacking => error,
        _ => exhausted(candidates, &tries.attempts),
    };
    Err(tries.fail(error))
}

enum Outcome<T> {
    Launched(Provisioned<T>),
    /// Refused in a way another plan may not be.
    Refused(Refusal),
    /// Nothing else is worth trying.
    Stopped(ProviderError),
}

/// The state of one provisioning run: what has been tried, and how to try.
struct Tries<'p, P, F> {
    backoff: Backoff,
    pacing: &'p mut P,
    try_one: F,
    attempts: Vec<ProvisioningAttempt>,
}

impl<P, F> Tries<'_, P, F>
where
    P: Pacing,
{
    /// Tries one plan, retrying throttled and transient failures with full jitter.
    async fn run<T, Fut>(&mut self, plan: TryPlan) -> Outcome<T>
    where
        F: FnMut(TryPlan) -> Fut,
        Fut: Future<Output = Result<T, Refusal>>,
    {
        let tries = self.backoff.tries.max(1);
        let mut retry = 0;
        loop {
            let started = self.pacing.now_ms();
            let result = (self.try_one)(plan.clone()).await;
            let duration_ms = self.pacing.now_ms().saturating_sub(started);
            let refusal = match result {
                Ok(value) => {
                    return Outcome::Launched(Provisioned {
                        value,
                        plan,
                        attempts: std::mem::take(&mut self.attempts),
                    });
                }
                Err(refusal) => refusal,
            };
            self.attempts.push(ProvisioningAttempt {
                region: plan.region.clone(),
                server_type: plan.server_type.clone(),
                market: plan.market,
                category: refusal.category,
                code: refusal.code.clone(),
                message: refusal.error.message(),
                duration_ms,
            });
            if refusal.category.retries() && retry + 1 < tries {
                let ceiling = self.backoff.ceiling(retry).as_millis();
                let wait = self
                    .pacing
                    .random_up_to(u64::try_from(ceiling).unwrap_or(u64::MAX));
                self.pacing.sleep(Duration::from_millis(wait)).await;
                retry += 1;
            } else if refusal.category.moves_on() {
                return Outcome::Refused(refusal);
            } else {
                return Outcome::Stopped(refusal.error);
            }
        }
    }

    fn fail(self, error: ProviderError) -> ProvisionFailure {
        ProvisionFailure {
            error,
            attempts: self.attempts,
        }
    }
}

/// Every plan was refused. The error lists each try; it is a quota error when every refusal
/// was a quota, and a capacity error otherwise. An exact type's error says how to get others.
fn exhausted(candidates: &Candidates, attempts: &[ProvisioningAttempt]) -> ProviderError {
    let tried: Vec<String> = attempts.iter().map(ToString::to_string).collect();
    let mut message = format!("{} attempts failed: {}", attempts.len(), tried.join("; "));
    // The provider's own words for the last refusal, where its code alone was listed: they
    // often say what to do (allocate a host, ask for quota).
    if let Some(last) = attempts
        .last()
        .filter(|a| !a.code.is_empty() && !a.message.is_empty())
    {
        message = format!("{message}; the last said: {}", last.message);
    }
    if candidates.explicit {
        message = format!(
            "the exact type {} was refused; drop --type to let the class fall back to other \
             types ({message})",
            candidates.types.join(", ")
        );
    }
    let quota_only = attempts
        .iter()
        .filter(|attempt| attempt.category.moves_on())
        .all(|attempt| attempt.category == Category::Quota);
    if quota_only {
        ProviderError::Quota(message)
    } else {
        ProviderError::Capacity(message)
    }
}

#[cfg(test)]
mod tests;
