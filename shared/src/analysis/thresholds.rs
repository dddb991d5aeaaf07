//! Detection thresholds and severity tiers: the seed's defaults, overridable per deployment group
//! (every field has a default, so a group stores only what it changes).

use super::Severity;
use serde::{Deserialize, Serialize};

/// Severity tiers as multiples (or fractions) of a threshold, so overriding a threshold moves its
/// tiers with it. Memory tiers are absolute (`Thresholds::memory_*`), because KV usage is a
/// fraction with a hard ceiling at 1.0.
pub mod tiers {
    /// Latency p95 / threshold: above 1 is LOW, from 1.5 MEDIUM, from 2 HIGH, from 4 CRITICAL.
    pub const LATENCY_MEDIUM_FROM_X: f64 = 1.5;
    pub const LATENCY_HIGH_FROM_X: f64 = 2.0;
    pub const LATENCY_CRITICAL_FROM_X: f64 = 4.0;
    /// Throughput / threshold: below 1 is LOW, below 0.75 MEDIUM, below 0.5 HIGH, below 0.25 CRITICAL.
    pub const THROUGHPUT_MEDIUM_BELOW_X: f64 = 0.75;
    pub const THROUGHPUT_HIGH_BELOW_X: f64 = 0.5;
    pub const THROUGHPUT_CRITICAL_BELOW_X: f64 = 0.25;
    /// Sustained waiting requests / threshold: from 1 MEDIUM, from 2 HIGH, from 5 CRITICAL.
    pub const QUEUE_HIGH_FROM_X: f64 = 2.0;
    pub const QUEUE_CRITICAL_FROM_X: f64 = 5.0;
    /// Hit ratio / threshold: below 1 LOW, below 0.5 MEDIUM, below 0.25 HIGH; never CRITICAL (a
    /// cold cache costs efficiency, it does not take a server down).
    pub const CACHE_MEDIUM_BELOW_X: f64 = 0.5;
    pub const CACHE_HIGH_BELOW_X: f64 = 0.25;
}

/// What counts as a bottleneck. Units are in the names; see `docs/bottlenecks.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Sustained KV-cache usage from which MEMORY_PRESSURE is MEDIUM (seed: 0.8).
    pub memory_usage_ratio: f64,
    /// … HIGH.
    pub memory_high_ratio: f64,
    /// … CRITICAL (preemptions while above `memory_usage_ratio` are CRITICAL too).
    pub memory_critical_ratio: f64,
    /// Time to first token, 95th percentile over the window (seed: 100 ms).
    pub ttft_p95_s: f64,
    /// Inter-token latency, 95th percentile over the window.
    pub inter_token_p95_s: f64,
    /// Generated tokens per second below which a *busy* server has LOW_THROUGHPUT (seed: 100).
    pub throughput_tokens_per_s: f64,
    /// Sustained waiting requests from which QUEUE_BUILDUP fires (seed: 10).
    pub queue_depth_requests: f64,
    /// Prefix-cache hit ratio (hit tokens / looked-up tokens) below which CACHE_INEFFICIENCY fires (seed: 0.7).
    pub cache_hit_ratio: f64,
    /// A gauge condition needs at least this many points in the window …
    pub min_gauge_points: usize,
    /// … and must hold on at least this fraction of them.
    pub sustained_fraction: f64,
    /// A latency quantile needs at least this many observations in the window.
    pub min_latency_observations: f64,
    /// A rate needs a window at least this long.
    pub min_rate_window_s: f64,
    /// A hit ratio needs at least this many looked-up prompt tokens in the window.
    pub min_prefix_cache_query_tokens: f64,
    /// How far ahead a trend is extrapolated.
    pub forecast_horizon_s: f64,
    /// A trend needs at least this many points …
    pub forecast_min_points: usize,
    /// … and a line fitting them at least this well.
    pub forecast_min_r_squared: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            memory_usage_ratio: 0.8,
            memory_high_ratio: 0.9,
            memory_critical_ratio: 0.95,
            ttft_p95_s: 0.1,
            inter_token_p95_s: 0.1,
            throughput_tokens_per_s: 100.0,
            queue_depth_requests: 10.0,
            cache_hit_ratio: 0.7,
            min_gauge_points: 3,
            sustained_fraction: 0.8,
            min_latency_observations: 20.0,
            min_rate_window_s: 60.0,
            min_prefix_cache_query_tokens: 10_000.0,
            forecast_horizon_s: 1800.0,
            forecast_min_points: 5,
            forecast_min_r_squared: 0.7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("thresholds.{field}: {reason}")]
pub struct InvalidThresholds {
    pub field: &'static str,
    pub reason: &'static str,
}

impl Thresholds {
    /// Checks an override before it is stored: a threshold that can never (or always) fire is a
    /// configuration mistake, not a policy.
    pub fn validate(&self) -> Result<(), InvalidThresholds> {
        let err = |field, reason| Err(InvalidThresholds { field, reason });
        let fraction = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
        let positive = |v: f64| v.is_finite() && v > 0.0;
        for (field, v) in [
            ("memory_usage_ratio", self.memory_usage_ratio),
            ("memory_high_ratio", self.memory_high_ratio),
            ("memory_critical_ratio", self.memory_critical_ratio),
            ("cache_hit_ratio", self.cache_hit_ratio),
            ("sustained_fraction", self.sustained_fraction),
        ] {
            if !fraction(v) {
                return err(field, "must be a fraction in (0, 1]");
            }
        }
        if !(self.memory_usage_ratio <= self.memory_high_ratio
            && self.memory_high_ratio <= self.memory_critical_ratio)
        {
            return err(
                "memory_high_ratio",
                "memory tiers must not decrease: usage <= high <= critical",
            );
        }
        for (field, v) in [
            ("ttft_p95_s", self.ttft_p95_s),
            ("inter_token_p95_s", self.inter_token_p95_s),
            ("throughput_tokens_per_s", self.throughput_tokens_per_s),
            ("queue_depth_requests", self.queue_depth_requests),
            ("min_latency_observations", self.min_latency_observations),
            ("min_rate_window_s", self.min_rate_window_s),
            (
                "min_prefix_cache_query_tokens",
                self.min_prefix_cache_query_tokens,
            ),
            ("forecast_horizon_s", self.forecast_horizon_s),
        ] {
            if !positive(v) {
                return err(field, "must be a positive number");
            }
        }
        if self.min_gauge_points == 0 {
            return err("min_gauge_points", "must be at least 1");
        }
        if self.forecast_min_points < 3 {
            return err(
                "forecast_min_points",
                "must be at least 3 (two points always fit a line perfectly)",
            );
        }
        if !(0.0..=1.0).contains(&self.forecast_min_r_squared) {
            return err("forecast_min_r_squared", "must be in [0, 1]");
        }
        Ok(())
    }

    /// MEMORY_PRESSURE severity for a sustained KV usage level; `None` below the threshold.
    /// `preempted` (the engine evicted requests in the window) makes it at least HIGH, and
    /// CRITICAL when usage is also above the threshold.
    pub fn memory_severity(&self, level: Option<f64>, preempted: bool) -> Option<Severity> {
        let above = level.is_some_and(|l| l >= self.memory_usage_ratio);
        match level {
            _ if preempted && above => Some(Severity::Critical),
            Some(l) if l >= self.memory_critical_ratio => Some(Severity::Critical),
            Some(l) if l >= self.memory_high_ratio => Some(Severity::High),
            _ if preempted => Some(Severity::High),
            Some(_) if above => Some(Severity::Medium),
            _ => None,
        }
    }

    /// HIGH_LATENCY severity for `p95 / threshold`; `None` unless strictly above 1.
    pub fn latency_severity(ratio: f64) -> Option<Severity> {
        use tiers::*;
        match ratio {
            r if r >= LATENCY_CRITICAL_FROM_X => Some(Severity::Critical),
            r if r >= LATENCY_HIGH_FROM_X => Some(Severity::High),
            r if r >= LATENCY_MEDIUM_FROM_X => Some(Severity::Medium),
            r if r > 1.0 => Some(Severity::Low),
            _ => None,
        }
    }

    /// LOW_THROUGHPUT severity for `tokens_per_s / threshold`; `None` unless strictly below 1.
    pub fn throughput_severity(fraction: f64) -> Option<Severity> {
        use tiers::*;
        match fraction {
            f if f < THROUGHPUT_CRITICAL_BELOW_X => Some(Severity::Critical),
            f if f < THROUGHPUT_HIGH_BELOW_X => Some(Severity::High),
            f if f < THROUGHPUT_MEDIUM_BELOW_X => Some(Severity::Medium),
            f if f < 1.0 => Some(Severity::Low),
            _ => None,
        }
    }

    /// QUEUE_BUILDUP severity for `sustained waiting / threshold`; `None` below 1.
    pub fn queue_severity(ratio: f64) -> Option<Severity> {
        use tiers::*;
        match ratio {
            r if r >= QUEUE_CRITICAL_FROM_X => Some(Severity::Critical),
            r if r >= QUEUE_HIGH_FROM_X => Some(Severity::High),
            r if r >= 1.0 => Some(Severity::Medium),
            _ => None,
        }
    }

    /// CACHE_INEFFICIENCY severity for `hit ratio / threshold`; `None` unless strictly below 1.
    pub fn cache_severity(fraction: f64) -> Option<Severity> {
        use tiers::*;
        match fraction {
            f if f < CACHE_HIGH_BELOW_X => Some(Severity::High),
            f if f < CACHE_MEDIUM_BELOW_X => Some(Severity::Medium),
            f if f < 1.0 => Some(Severity::Low),
            _ => None,
        }
    }
}
