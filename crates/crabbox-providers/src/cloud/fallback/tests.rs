//! The driver against scripted providers: each plan answers from a script, the clock moves
//! only when a try or a sleep moves it, and the random source is fixed.

use std::collections::{HashMap, VecDeque};
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crabbox_core::machine::MarketFallback;

use super::*;

/// A clock that only sleeps and tries move, a fixed "random" draw, and a log of every sleep.
struct FakePacing {
    clock: Arc<AtomicU64>,
    /// Each draw is `max * numerator / 4`: 4 means always the ceiling.
    numerator: u64,
    slept: Vec<Duration>,
}

impl FakePacing {
    fn new(numerator: u64) -> Self {
        Self {
            clock: Arc::new(AtomicU64::new(1_000)),
            numerator,
            slept: Vec::new(),
        }
    }
}

impl Pacing for FakePacing {
    fn now_ms(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn sleep(&mut self, wait: Duration) -> impl Future<Output = ()> + Send {
        self.slept.push(wait);
        self.clock
            .fetch_add(u64::try_from(wait.as_millis()).unwrap(), Ordering::SeqCst);
        ready(())
    }

    fn random_up_to(&mut self, max: u64) -> u64 {
        max * self.numerator / 4
    }
}

type Answer = Result<&'static str, fn() -> Refusal>;

/// A provider whose answers are scripted per `(type, market, region)`; unscripted plans are
/// refused for capacity. Each try takes 7 ms on the fake clock.
struct Script {
    answers: HashMap<(String, Market, String), VecDeque<Answer>>,
    tried: Vec<String>,
    clock: Arc<AtomicU64>,
}

impl Script {
    fn new(pacing: &FakePacing) -> Self {
        Self {
            answers: HashMap::new(),
            tried: Vec::new(),
            clock: Arc::clone(&pacing.clock),
        }
    }

    fn on(mut self, server_type: &str, market: Market, region: &str, answers: &[Answer]) -> Self {
        self.answers.insert(
            (server_type.into(), market, region.into()),
            answers.iter().copied().collect(),
        );
        self
    }

    fn answer(&mut self, plan: &TryPlan) -> Ready<Result<&'static str, Refusal>> {
        self.clock.fetch_add(7, Ordering::SeqCst);
        self.tried.push(format!(
            "{} {} {}",
            plan.server_type, plan.market, plan.region
        ));
        let key = (plan.server_type.clone(), plan.market, plan.region.clone());
        let answer = self
            .answers
            .get_mut(&key)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Err(capacity));
        ready(answer.map_err(|refusal| refusal()))
    }
}

fn capacity() -> Refusal {
    Refusal::new(
        Category::Capacity,
        "InsufficientInstanceCapacity",
        ProviderError::Capacity("insufficient capacity".into()),
    )
    .spot_recoverable(true)
}

fn quota() -> Refusal {
    Refusal::new(
        Category::Quota,
        "VcpuLimitExceeded",
        ProviderError::Quota("vcpu limit".into()),
    )
    .spot_recoverable(true)
}

fn unsupported() -> Refusal {
    Refusal::new(
        Category::Unsupported,
        "Unsupported",
        ProviderError::InvalidSpec("not offered in this zone".into()),
    )
}

fn throttled() -> Refusal {
    Refusal::new(
        Category::RateLimited,
        "RequestLimitExceeded",
        ProviderError::RateLimited("request limit exceeded".into()),
    )
}

fn auth() -> Refusal {
    Refusal::new(
        Category::Fatal,
        "AuthFailure",
        ProviderError::Auth("AWS RunInstances rejected request (AuthFailure)".into()),
    )
}

fn candidates(types: &[&str]) -> Candidates {
    Candidates {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        explicit: false,
    }
}

fn capacity_plan(market: Market, fallback: MarketFallback, regions: &[&str]) -> CapacityPlan {
    let extra: Vec<String> = regions[1..].iter().map(|r| (*r).to_owned()).collect();
    CapacityPlan::new(market, fallback, regions[0], &extra, &[]).unwrap()
}

fn spot(regions: &[&str]) -> CapacityPlan {
    capacity_plan(Market::Spot, MarketFallback::DEFAULT, regions)
}

async fn run(
    candidates: &Candidates,
    capacity: &CapacityPlan,
    pacing: &mut FakePacing,
    script: &mut Script,
) -> Result<Provisioned<&'static str>, ProvisionFailure> {
    provision(candidates, capacity, Backoff::default(), pacing, |plan| {
        script.answer(&plan)
    })
    .await
}

#[tokio::test]
async fn the_first_type_that_launches_wins_and_earlier_refusals_are_recorded() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing)
        .on("big", Market::Spot, "r1", &[Err(quota)])
        .on("mid", Market::Spot, "r1", &[Ok("i-mid")]);
    let types = candidates(&["huge", "big", "mid", "small"]);
    let launch = run(&types, &spot(&["r1"]), &mut pacing, &mut script)
        .await
        .unwrap();
    assert_eq!(launch.value, "i-mid");
    assert_eq!(
        launch.plan,
        TryPlan {
            server_type: "mid".into(),
            market: Market::Spot,
            region: "r1".into()
        }
    );
    assert_eq!(script.tried, ["huge spot r1", "big spot r1", "mid spot r1"]);
    insta::assert_json_snapshot!(launch.attempts, @r#"
    [
      {
        "region": "r1",
        "serverType": "huge",
        "market": "spot",
        "category": "capacity",
        "code": "InsufficientInstanceCapacity",
        "message": "insufficient capacity",
        "durationMs": 7
      },
      {
        "region": "r1",
        "serverType": "big",
        "market": "spot",
        "category": "quota",
        "code": "VcpuLimitExceeded",
        "message": "vcpu limit",
        "durationMs": 7
      }
    ]
    "#);
}

#[tokio::test]
async fn spot_refused_types_are_retried_on_demand_in_order() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing)
        .on("b", Market::Spot, "r1", &[Err(unsupported)])
        .on("c", Market::Spot, "r1", &[Err(quota)])
        .on("c", Market::OnDemand, "r1", &[Ok("i-c")]);
    let launch = run(
        &candidates(&["a", "b", "c"]),
        &spot(&["r1"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap();
    assert_eq!(launch.value, "i-c");
    assert_eq!(launch.plan.market, Market::OnDemand);
    // `b` was not offered at all, so on-demand would not help it.
    assert_eq!(
        script.tried,
        [
            "a spot r1",
            "b spot r1",
            "c spot r1",
            "a on-demand r1",
            "c on-demand r1"
        ]
    );
}

#[tokio::test]
async fn without_a_fallback_or_on_a_single_market_nothing_is_retried_on_demand() {
    for (market, fallback, expected) in [
        (
            Market::Spot,
            MarketFallback::None,
            ["a spot r1", "b spot r1"],
        ),
        (
            Market::OnDemand,
            MarketFallback::DEFAULT,
            ["a on-demand r1", "b on-demand r1"],
        ),
    ] {
        let mut pacing = FakePacing::new(4);
        let mut script = Script::new(&pacing);
        let plan = capacity_plan(market, fallback, &["r1"]);
        let failure = run(&candidates(&["a", "b"]), &plan, &mut pacing, &mut script)
            .await
            .unwrap_err();
        assert_eq!(script.tried, expected);
        assert_eq!(failure.attempts.len(), 2);
    }
}

#[tokio::test]
async fn the_next_region_is_tried_when_a_region_is_exhausted() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing)
        .on("a", Market::Spot, "r1", &[Err(unsupported)])
        .on("b", Market::Spot, "r2", &[Ok("i-b")]);
    let launch = run(
        &candidates(&["a", "b"]),
        &spot(&["r1", "r2"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap();
    assert_eq!(launch.value, "i-b");
    assert_eq!(
        script.tried,
        [
            "a spot r1",
            "b spot r1",
            "b on-demand r1",
            "a spot r2",
            "b spot r2"
        ]
    );
    assert_eq!(launch.attempts.len(), 4);
}

#[tokio::test]
async fn a_fatal_error_stops_everything() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing).on("b", Market::Spot, "r1", &[Err(auth)]);
    let failure = run(
        &candidates(&["a", "b", "c"]),
        &spot(&["r1", "r2"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap_err();
    assert_eq!(script.tried, ["a spot r1", "b spot r1"]);
    assert!(
        matches!(&failure.error, ProviderError::Auth(m) if m.contains("AuthFailure")),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.attempts[1].category, Category::Fatal);
}

#[tokio::test]
async fn throttling_retries_the_same_plan_with_full_jitter() {
    let mut pacing = FakePacing::new(2);
    let mut script = Script::new(&pacing).on(
        "a",
        Market::Spot,
        "r1",
        &[Err(throttled), Err(throttled), Ok("i-a")],
    );
    let launch = run(
        &candidates(&["a", "b"]),
        &spot(&["r1"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap();
    assert_eq!(launch.value, "i-a");
    assert_eq!(script.tried, ["a spot r1"; 3]);
    // Half of each ceiling (1 s, then 2 s), as the fixed draw says.
    assert_eq!(
        pacing.slept,
        [Duration::from_millis(500), Duration::from_secs(1)]
    );
    let categories: Vec<Category> = launch.attempts.iter().map(|a| a.category).collect();
    assert_eq!(categories, [Category::RateLimited, Category::RateLimited]);
}

#[tokio::test]
async fn throttling_gives_up_after_the_bounded_tries_without_trying_other_types() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing).on(
        "a",
        Market::Spot,
        "r1",
        &[Err(throttled as fn() -> Refusal); 9],
    );
    let backoff = Backoff {
        tries: 6,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(5),
    };
    let failure = provision(
        &candidates(&["a", "b"]),
        &spot(&["r1"]),
        backoff,
        &mut pacing,
        |plan| script.answer(&plan),
    )
    .await
    .unwrap_err();
    assert!(matches!(failure.error, ProviderError::RateLimited(_)));
    assert_eq!(script.tried, ["a spot r1"; 6]);
    let waits: Vec<u64> = pacing.slept.iter().map(Duration::as_secs).collect();
    assert_eq!(waits, [1, 2, 4, 5, 5], "ceilings double up to the cap");
}

#[tokio::test]
async fn an_exact_type_that_is_refused_says_to_drop_type() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing);
    let exact = Candidates {
        types: vec!["c7a.48xlarge".into()],
        explicit: true,
    };
    let failure = run(&exact, &spot(&["r1"]), &mut pacing, &mut script)
        .await
        .unwrap_err();
    assert_eq!(
        script.tried,
        ["c7a.48xlarge spot r1", "c7a.48xlarge on-demand r1"]
    );
    insta::assert_snapshot!(failure.error, @"no capacity: the exact type c7a.48xlarge was refused; drop --type to let the class fall back to other types (2 attempts failed: c7a.48xlarge spot in r1: InsufficientInstanceCapacity (capacity); c7a.48xlarge on-demand in r1: InsufficientInstanceCapacity (capacity); the last said: insufficient capacity)");
}

#[tokio::test]
async fn when_every_refusal_is_a_quota_the_error_is_a_quota_error() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing)
        .on("a", Market::Spot, "r1", &[Err(quota)])
        .on("a", Market::OnDemand, "r1", &[Err(quota)]);
    let failure = run(
        &candidates(&["a"]),
        &spot(&["r1"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(failure.error, ProviderError::Quota(_)),
        "{:?}",
        failure.error
    );
    assert_eq!(failure.attempts.len(), 2);
}

#[test]
fn system_pacing_draws_within_bounds() {
    let mut pacing = SystemPacing::new();
    let draws: Vec<u64> = (0..200).map(|_| pacing.random_up_to(3)).collect();
    assert!(draws.iter().all(|d| *d <= 3));
    assert!((0..=3).all(|n| draws.contains(&n)), "{draws:?}");
    assert_eq!(pacing.random_up_to(0), 0);
}

fn no_image() -> Refusal {
    Refusal::new(
        Category::Region,
        "",
        ProviderError::InvalidSpec("no AWS AMI found in r1; set CRABBOX_AWS_AMI".into()),
    )
}

#[tokio::test]
async fn a_region_that_lacks_an_image_is_left_at_once_and_its_error_is_the_answer() {
    let mut pacing = FakePacing::new(4);
    let mut script = Script::new(&pacing)
        .on("a", Market::Spot, "r1", &[Err(no_image)])
        .on("b", Market::Spot, "r2", &[Ok("i-b")]);
    let launch = run(
        &candidates(&["a", "b"]),
        &spot(&["r1", "r2"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap();
    assert_eq!(launch.value, "i-b");
    assert_eq!(
        script.tried,
        ["a spot r1", "a spot r2", "b spot r2"],
        "no other type (or market) is tried in a region without the image"
    );

    let mut script = Script::new(&pacing)
        .on("a", Market::Spot, "r1", &[Err(no_image)])
        .on("a", Market::Spot, "r2", &[Err(no_image)]);
    let failure = run(
        &candidates(&["a", "b"]),
        &spot(&["r1", "r2"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap_err();
    assert_eq!(script.tried, ["a spot r1", "a spot r2"]);
    assert!(
        matches!(&failure.error, ProviderError::InvalidSpec(m) if m.contains("CRABBOX_AWS_AMI")),
        "the region's own error, not a capacity error: {:?}",
        failure.error
    );
    assert_eq!(failure.attempts.len(), 2);

    // Capacity refused somewhere as well: the full list, as a capacity error.
    let mut script = Script::new(&pacing).on("a", Market::Spot, "r2", &[Err(no_image)]);
    let failure = run(
        &candidates(&["a"]),
        &capacity_plan(Market::OnDemand, MarketFallback::DEFAULT, &["r1", "r2"]),
        &mut pacing,
        &mut script,
    )
    .await
    .unwrap_err();
    assert!(matches!(failure.error, ProviderError::Capacity(_)));
}
