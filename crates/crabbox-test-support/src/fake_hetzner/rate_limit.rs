//! Rate limiting as the reference's "Rate Limiting" section describes it: a budget of requests
//! per hour (3600 by default) that refills gradually, one request every `3600 s / limit`;
//! every answer carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (the
//! UNIX time at which the budget is full again), and a request made with none left is refused
//! with `429 rate_limit_exceeded`. Every request counts, answered or refused.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub(super) struct Budget {
    limit: u32,
    remaining: u32,
    refill_every: Duration,
    /// When the refill of the next request started.
    since: Instant,
}

impl Budget {
    pub fn new(limit: u32) -> Self {
        let limit = limit.max(1);
        Self {
            limit,
            remaining: limit,
            refill_every: Duration::from_hours(1) / limit,
            since: Instant::now(),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// A budget of `limit` per hour with `remaining` left now.
    pub fn set(&mut self, limit: u32, remaining: u32) {
        *self = Self::new(limit);
        self.remaining = remaining.min(self.limit);
    }

    pub fn set_refill_every(&mut self, every: Duration) {
        self.refill_every = every.max(Duration::from_millis(1));
    }

    fn refill(&mut self, now: Instant) {
        if self.remaining >= self.limit {
            self.since = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.since);
        let gained =
            (elapsed.as_nanos() / self.refill_every.as_nanos()).min(u128::from(self.limit)) as u32;
        if gained > 0 {
            self.remaining = (self.remaining + gained).min(self.limit);
            self.since = if self.remaining == self.limit {
                now
            } else {
                self.since + self.refill_every * gained
            };
        }
    }

    /// Spends one request; false when none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        true
    }

    /// `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` as of `now`.
    pub fn headers(&self, now: Instant) -> [(&'static str, String); 3] {
        let missing = self.limit - self.remaining;
        let full_in = (self.refill_every * missing).saturating_sub(
            now.saturating_duration_since(self.since)
                .min(self.refill_every),
        );
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            + full_in;
        let reset = unix.as_secs() + u64::from(unix.subsec_nanos() > 0);
        [
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", reset.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_then_refuses_then_refills_one_per_interval() {
        let start = Instant::now();
        let mut budget = Budget::new(3600);
        budget.set(3600, 2);
        assert!(budget.take(start));
        assert!(budget.take(start));
        assert!(!budget.take(start), "nothing left");
        assert_eq!(budget.headers(start)[1].1, "0");
        let later = start + Duration::from_millis(2500);
        assert!(budget.take(later), "two refilled after 2.5 s");
        assert!(budget.take(later));
        assert!(!budget.take(later));
    }

    #[test]
    fn reset_is_when_the_budget_is_full_again() {
        let start = Instant::now();
        let mut budget = Budget::new(60);
        budget.set(60, 60);
        assert!(budget.take(start));
        let [limit, remaining, reset] = budget.headers(start);
        assert_eq!((limit.1.as_str(), remaining.1.as_str()), ("60", "59"));
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let reset: u64 = reset.1.parse().unwrap();
        assert!(
            (now_unix + 59..=now_unix + 61).contains(&reset),
            "{reset} vs {now_unix}"
        );
    }
}
