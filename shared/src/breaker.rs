//! A per-instance circuit breaker whose state is a plain value, so it can be stored between scheduled
//! invocations (Lambda keeps no memory we can rely on) and tested without a clock.
//!
//! Closed: every pass scrapes. After `failure_threshold` consecutive failures it opens for
//! `cooldown`; while open the instance is skipped (and marked so), which keeps a dead server from
//! costing a timeout on every pass. When the cool-down ends one trial scrape runs (half-open): success
//! closes the breaker, failure re-opens it with the cool-down doubled, up to `max_cooldown`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub cooldown_ms: i64,
    pub max_cooldown_ms: i64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_threshold: 3,
            cooldown_ms: 60_000,
            max_cooldown_ms: 15 * 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// What the collector stores per instance between invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Breaker {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    /// While open: when the next trial may run.
    pub open_until_ms: i64,
    /// The cool-down that the next opening will use.
    pub cooldown_ms: i64,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: BreakerState::Closed,
            consecutive_failures: 0,
            open_until_ms: 0,
            cooldown_ms: 0,
        }
    }
}

impl Breaker {
    /// Whether a scrape may run now; an open breaker whose cool-down is over moves to half-open.
    pub fn admit(&mut self, now_ms: i64) -> bool {
        match self.state {
            BreakerState::Closed | BreakerState::HalfOpen => true,
            BreakerState::Open if now_ms >= self.open_until_ms => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open => false,
        }
    }

    pub fn on_success(&mut self) {
        *self = Breaker::default();
    }

    pub fn on_failure(&mut self, now_ms: i64, policy: &BreakerPolicy) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let trips = match self.state {
            BreakerState::HalfOpen => true,
            _ => self.consecutive_failures >= policy.failure_threshold,
        };
        if trips {
            let cooldown = if self.state == BreakerState::HalfOpen {
                (self.cooldown_ms.saturating_mul(2)).min(policy.max_cooldown_ms)
            } else {
                policy.cooldown_ms
            };
            self.state = BreakerState::Open;
            self.cooldown_ms = cooldown.max(policy.cooldown_ms);
            self.open_until_ms = now_ms.saturating_add(self.cooldown_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: BreakerPolicy = BreakerPolicy {
        failure_threshold: 3,
        cooldown_ms: 1_000,
        max_cooldown_ms: 3_000,
    };

    #[test]
    fn it_opens_after_the_threshold_of_consecutive_failures() {
        let mut b = Breaker::default();
        for now in 0..2 {
            assert!(b.admit(now));
            b.on_failure(now, &P);
            assert_eq!(b.state, BreakerState::Closed);
        }
        b.on_failure(2, &P);
        assert_eq!(b.state, BreakerState::Open);
        assert!(!b.admit(500));
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let mut b = Breaker::default();
        b.on_failure(0, &P);
        b.on_failure(1, &P);
        b.on_success();
        b.on_failure(2, &P);
        assert_eq!(b.state, BreakerState::Closed);
        assert_eq!(b.consecutive_failures, 1);
    }

    #[test]
    fn after_the_cooldown_one_trial_runs_and_success_closes_it() {
        let mut b = Breaker::default();
        (0..3).for_each(|t| b.on_failure(t, &P));
        assert!(b.admit(2 + 1_000));
        assert_eq!(b.state, BreakerState::HalfOpen);
        b.on_success();
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn a_failed_trial_reopens_with_a_doubled_cooldown_capped_at_the_maximum() {
        let mut b = Breaker::default();
        (0..3).for_each(|t| b.on_failure(t, &P));
        let mut now = 2;
        for expected in [2_000, 3_000, 3_000] {
            now = b.open_until_ms;
            assert!(b.admit(now));
            b.on_failure(now, &P);
            assert_eq!(b.state, BreakerState::Open);
            assert_eq!(b.open_until_ms - now, expected);
        }
        assert!(!b.admit(now + 1));
    }
}
