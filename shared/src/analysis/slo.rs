//! SLO monitoring per deployment group: good/total events from histogram bucket deltas (latency)
//! or success/failure counters (errors), compliance and error budget over the period, and the
//! Google SRE workbook's multi-window, multi-burn-rate alerts for a 30-day budget.
//!
//! The caller computes each window's counts from two snapshots (window start and end) with
//! [`window_counts`]; this module never reads a clock.

use crate::snapshot::{Canonical, CanonicalKind, Histogram, ModelMetrics};
use crate::window::{histogram_increase, increase};
use serde::{Deserialize, Serialize};

/// The budget period the burn-rate factors below are derived for.
pub const BUDGET_PERIOD_S: u64 = 30 * 86_400;

/// What makes an event good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Sli {
    /// A request is good when `metric` (a latency histogram) observed at most `threshold_s`.
    Latency { metric: Canonical, threshold_s: f64 },
    /// A request is good when it succeeded (`request_success_total` vs `request_failure_total`).
    ErrorRatio,
}

/// "At least `target` of events are good over the budget period".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SloObjective {
    pub name: String,
    pub sli: Sli,
    /// e.g. 0.99
    pub target: f64,
}

/// A deployment group's objectives.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SloPolicy {
    #[serde(default)]
    pub objectives: Vec<SloObjective>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SloError {
    #[error("objective {name:?}: target must be strictly between 0 and 1, got {target}")]
    InvalidTarget { name: String, target: f64 },
    #[error("objective {name:?}: {metric} is not a latency histogram (use ttft_seconds, inter_token_latency_seconds, e2e_latency_seconds or queue_time_seconds)")]
    NotALatency { name: String, metric: Canonical },
    #[error("latency threshold must be a positive number of seconds, got {0}")]
    InvalidThreshold(f64),
    #[error("objective names must be unique and non-empty: {0:?}")]
    DuplicateName(String),
    #[error("the latency histogram has no finite buckets (e.g. TGI's estimated TTFT, or an engine exporting summaries): good events cannot be counted")]
    NoBuckets,
    #[error("{0} is absent from a snapshot of the window")]
    Missing(Canonical),
}

impl SloObjective {
    pub fn validate(&self) -> Result<(), SloError> {
        if !(self.target > 0.0 && self.target < 1.0) {
            return Err(SloError::InvalidTarget {
                name: self.name.clone(),
                target: self.target,
            });
        }
        if let Sli::Latency {
            metric,
            threshold_s,
        } = &self.sli
        {
            if metric.kind() != CanonicalKind::Histogram {
                return Err(SloError::NotALatency {
                    name: self.name.clone(),
                    metric: *metric,
                });
            }
            if !(threshold_s.is_finite() && *threshold_s > 0.0) {
                return Err(SloError::InvalidThreshold(*threshold_s));
            }
        }
        Ok(())
    }
}

impl SloPolicy {
    pub fn validate(&self) -> Result<(), SloError> {
        let mut names = std::collections::BTreeSet::new();
        for o in &self.objectives {
            if o.name.is_empty() || !names.insert(o.name.as_str()) {
                return Err(SloError::DuplicateName(o.name.clone()));
            }
            o.validate()?;
        }
        Ok(())
    }
}

/// How good events were counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Counting {
    /// The threshold is a bucket bound (or the SLI is a counter): exact.
    #[default]
    Exact,
    /// The threshold lies inside a bucket: linear interpolation between its bounds.
    Interpolated,
    /// The threshold is above the highest finite bound: counted up to that bound, so good events
    /// (and compliance) are understated.
    LowerBound,
}

/// Good and total events of one latency histogram delta.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoodEvents {
    pub good: f64,
    pub total: f64,
    pub counting: Counting,
}

/// Relative tolerance for "the threshold is this bucket's bound": bounds printed by Prometheus
/// clients carry float noise (TGI's 0.00015 × 1.5ⁿ).
fn same_bound(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Counts observations at most `threshold_s` in a cumulative histogram (a window's delta): the
/// cumulative count at the bucket whose bound equals the threshold, else linearly interpolated
/// inside the bucket that contains it (the first bucket's lower bound taken as 0, as PromQL does).
pub fn latency_good_events(delta: &Histogram, threshold_s: f64) -> Result<GoodEvents, SloError> {
    if !(threshold_s.is_finite() && threshold_s > 0.0) {
        return Err(SloError::InvalidThreshold(threshold_s));
    }
    let mut buckets: Vec<(f64, f64)> = delta
        .buckets
        .iter()
        .copied()
        .filter(|(le, _)| !le.is_nan())
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Cumulative counts can come out non-monotonic through float noise; fix as PromQL does.
    let mut running = 0.0f64;
    for b in &mut buckets {
        running = running.max(if b.1.is_finite() { b.1 } else { 0.0 });
        b.1 = running;
    }
    let finite: Vec<(f64, f64)> = buckets
        .iter()
        .copied()
        .filter(|(le, _)| le.is_finite())
        .collect();
    let Some(&(last_le, last_count)) = finite.last() else {
        return Err(SloError::NoBuckets);
    };
    let total = match buckets.last() {
        Some(&(le, c)) if le == f64::INFINITY => c,
        _ => delta.count.max(last_count),
    };
    // NaN counts as no events.
    if total.is_nan() || total <= 0.0 {
        return Ok(GoodEvents {
            good: 0.0,
            total: 0.0,
            counting: Counting::Exact,
        });
    }
    if let Some(&(_, c)) = finite.iter().find(|(le, _)| same_bound(*le, threshold_s)) {
        return Ok(GoodEvents {
            good: c.min(total),
            total,
            counting: Counting::Exact,
        });
    }
    let Some(idx) = finite.iter().position(|(le, _)| *le > threshold_s) else {
        return Ok(GoodEvents {
            good: last_count.min(total),
            total,
            counting: Counting::LowerBound,
        });
    };
    let (upper, count_upper) = finite.get(idx).copied().unwrap_or((last_le, last_count));
    let (lower, count_lower) = match idx.checked_sub(1).and_then(|i| finite.get(i)) {
        Some(&b) => b,
        None => (0.0f64.min(upper), 0.0),
    };
    let good = if upper > lower && threshold_s > lower {
        count_lower + (count_upper - count_lower) * (threshold_s - lower) / (upper - lower)
    } else {
        count_lower
    };
    Ok(GoodEvents {
        good: good.clamp(0.0, total),
        total,
        counting: Counting::Interpolated,
    })
}

/// Good/total events over one window, as the caller computed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCounts {
    pub window_s: u64,
    pub good: f64,
    pub total: f64,
    #[serde(default)]
    pub counting: Counting,
}

impl WindowCounts {
    /// Bad events / total over the error budget `1 − target`; 0 without events (no event spent
    /// any budget).
    pub fn burn_rate(&self, target: f64) -> f64 {
        if self.total.is_nan() || self.total <= 0.0 {
            return 0.0;
        }
        let bad_ratio = ((self.total - self.good) / self.total).clamp(0.0, 1.0);
        bad_ratio / (1.0 - target)
    }
}

/// The objective's counts between two snapshots taken `window_s` apart (`start`, `end` of the same
/// instance and model): histogram bucket deltas for a latency SLI, counter increases for errors.
/// Counter and histogram resets between the two are handled as in PromQL.
pub fn window_counts(
    objective: &SloObjective,
    window_s: u64,
    start: &ModelMetrics,
    end: &ModelMetrics,
) -> Result<WindowCounts, SloError> {
    match &objective.sli {
        Sli::Latency {
            metric,
            threshold_s,
        } => {
            let (Some(a), Some(b)) = (start.histogram(*metric), end.histogram(*metric)) else {
                return Err(SloError::Missing(*metric));
            };
            let delta = histogram_increase(&[a, b]);
            let g = latency_good_events(&delta, *threshold_s)?;
            Ok(WindowCounts {
                window_s,
                good: g.good,
                total: g.total,
                counting: g.counting,
            })
        }
        Sli::ErrorRatio => {
            let counter = |c: Canonical| -> Result<f64, SloError> {
                match (start.number(c), end.number(c)) {
                    (Some(a), Some(b)) => Ok(increase(&[a, b])),
                    _ => Err(SloError::Missing(c)),
                }
            };
            let ok = counter(Canonical::RequestSuccessTotal)?;
            let bad = counter(Canonical::RequestFailureTotal)?;
            Ok(WindowCounts {
                window_s,
                good: ok,
                total: ok + bad,
                counting: Counting::Exact,
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertSeverity {
    Page,
    Ticket,
}

/// One multi-window rule: fires when both windows burn budget faster than `burn_rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRateRule {
    pub name: &'static str,
    pub severity: AlertSeverity,
    pub long_window_s: u64,
    pub short_window_s: u64,
    pub burn_rate: f64,
}

/// The SRE workbook's rules for a 30-day budget: 14.4× over 1 h spends 2% of it, 6× over 6 h 5%,
/// 3× over 1 d 10%, 1× over 3 d 10%; each long window is paired with a short one (1/12 of it) so
/// an alert stops soon after the burning does.
pub const BURN_RATE_RULES: [BurnRateRule; 4] = [
    BurnRateRule {
        name: "page_1h_5m",
        severity: AlertSeverity::Page,
        long_window_s: 3_600,
        short_window_s: 300,
        burn_rate: 14.4,
    },
    BurnRateRule {
        name: "page_6h_30m",
        severity: AlertSeverity::Page,
        long_window_s: 21_600,
        short_window_s: 1_800,
        burn_rate: 6.0,
    },
    BurnRateRule {
        name: "ticket_1d_2h",
        severity: AlertSeverity::Ticket,
        long_window_s: 86_400,
        short_window_s: 7_200,
        burn_rate: 3.0,
    },
    BurnRateRule {
        name: "ticket_3d_6h",
        severity: AlertSeverity::Ticket,
        long_window_s: 259_200,
        short_window_s: 21_600,
        burn_rate: 1.0,
    },
];

/// The distinct windows the rules read (6 h serves two rules): compute counts for each.
pub const BURN_RATE_WINDOWS_S: [u64; 7] = [300, 1_800, 3_600, 7_200, 21_600, 86_400, 259_200];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertState {
    Firing,
    Ok,
    /// A window's counts were not supplied.
    NoData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BurnRateAlert {
    pub name: String,
    pub severity: AlertSeverity,
    pub long_window_s: u64,
    pub short_window_s: u64,
    pub burn_rate_threshold: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_burn_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_burn_rate: Option<f64>,
    pub state: AlertState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_windows_s: Vec<u64>,
}

/// Evaluates the burn-rate rules over the supplied windows (looked up by `window_s`).
pub fn burn_rate_alerts(target: f64, windows: &[WindowCounts]) -> Vec<BurnRateAlert> {
    let find = |s: u64| windows.iter().find(|w| w.window_s == s);
    BURN_RATE_RULES
        .iter()
        .map(|rule| {
            let long = find(rule.long_window_s).map(|w| w.burn_rate(target));
            let short = find(rule.short_window_s).map(|w| w.burn_rate(target));
            let missing: Vec<u64> = [(rule.long_window_s, long), (rule.short_window_s, short)]
                .into_iter()
                .filter(|(_, b)| b.is_none())
                .map(|(s, _)| s)
                .collect();
            let state = match (long, short) {
                (Some(l), Some(s)) if l > rule.burn_rate && s > rule.burn_rate => {
                    AlertState::Firing
                }
                (Some(_), Some(_)) => AlertState::Ok,
                _ => AlertState::NoData,
            };
            BurnRateAlert {
                name: rule.name.to_string(),
                severity: rule.severity,
                long_window_s: rule.long_window_s,
                short_window_s: rule.short_window_s,
                burn_rate_threshold: rule.burn_rate,
                long_burn_rate: long,
                short_burn_rate: short,
                state,
                missing_windows_s: missing,
            }
        })
        .collect()
}

/// One objective's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SloReport {
    pub objective: String,
    pub target: f64,
    /// `1 − target`: the share of events allowed to be bad.
    pub error_budget: f64,
    pub period_s: u64,
    pub good: f64,
    pub total: f64,
    /// good / total over the period; absent without events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compliance: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
    /// Share of the budget spent (1 = exhausted, above 1 = overspent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_consumed: Option<f64>,
    /// `1 − budget_consumed`; negative once overspent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_remaining: Option<f64>,
    pub alerts: Vec<BurnRateAlert>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Compliance over `period` and the burn-rate alerts over `windows`.
pub fn evaluate_slo(
    objective: &SloObjective,
    period: &WindowCounts,
    windows: &[WindowCounts],
) -> SloReport {
    let budget = 1.0 - objective.target;
    let compliance = (period.total > 0.0).then(|| (period.good / period.total).clamp(0.0, 1.0));
    let consumed = compliance.map(|c| (1.0 - c) / budget);
    let mut warnings = Vec::new();
    if let Sli::Latency {
        metric,
        threshold_s,
    } = &objective.sli
    {
        let countings = std::iter::once(period).chain(windows).map(|w| w.counting);
        if countings.clone().any(|c| c == Counting::Interpolated) {
            warnings.push(format!(
                "the {threshold_s} s threshold is not a bucket bound of {metric}: good events \
                 were interpolated linearly inside the bucket that contains it (approximate); \
                 choose a threshold on a bucket bound for exact counts"
            ));
        }
        if countings.clone().any(|c| c == Counting::LowerBound) {
            warnings.push(format!(
                "the {threshold_s} s threshold is above {metric}'s highest finite bucket bound: \
                 good events were counted up to that bound, so compliance is understated"
            ));
        }
    }
    SloReport {
        objective: objective.name.clone(),
        target: objective.target,
        error_budget: budget,
        period_s: period.window_s,
        good: period.good,
        total: period.total,
        compliance,
        met: compliance.map(|c| c >= objective.target),
        budget_consumed: consumed,
        budget_remaining: consumed.map(|c| 1.0 - c),
        alerts: burn_rate_alerts(objective.target, windows),
        warnings,
    }
}

/// A warning for an objective whose latency threshold does not sit on one of `buckets`' bounds
/// (to show when the objective is created, before any count is interpolated).
pub fn threshold_warning(objective: &SloObjective, buckets: &[(f64, f64)]) -> Option<String> {
    let Sli::Latency {
        metric,
        threshold_s,
    } = &objective.sli
    else {
        return None;
    };
    let bounds: Vec<f64> = buckets
        .iter()
        .map(|b| b.0)
        .filter(|le| le.is_finite())
        .collect();
    if bounds.iter().any(|le| same_bound(*le, *threshold_s)) {
        return None;
    }
    let nearest = bounds
        .iter()
        .copied()
        .min_by(|a, b| (a - threshold_s).abs().total_cmp(&(b - threshold_s).abs()));
    Some(match nearest {
        Some(n) => format!(
            "{threshold_s} s is not a bucket bound of {metric} (nearest {n} s): good events will \
             be interpolated linearly inside the bucket"
        ),
        None => format!("{metric} has no finite buckets: good events cannot be counted"),
    })
}
