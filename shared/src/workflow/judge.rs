//! The canary judge: canary against baseline over one bake, in the manner of Kayenta's
//! NetflixACAJudge. Each metric is classified Pass / High / Low / NoData with a Mann-Whitney U test
//! and an allowed change; the score is the share of metrics (with data) that pass; thresholds turn
//! the score into PASS / FAIL / INCONCLUSIVE. No data is never a pass.
//!
//! Observations come from samples: for each instance, each pair of consecutive samples is one
//! interval, summarized like a Grafana panel (`window::summarize`: histogram p95 from bucket
//! deltas, counter rates with resets handled). Every (instance, model, interval) gives one value
//! per metric, pooled per side; an interval in which no request finished is skipped (an idle
//! canary is no evidence, and must not pass on throughputs of 0 against 0).

use super::model::{Role, Sample};
use super::stats::{self, MannWhitney, TestMethod};
use crate::snapshot::Canonical;
use crate::window::{self, Point};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The metrics the judge compares.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMetric {
    /// Time to first token, p95 of the interval, seconds.
    TtftP95,
    /// Inter-token latency, p95 of the interval, seconds.
    InterTokenP95,
    /// End-to-end request latency, p95 of the interval, seconds.
    E2eP95,
    /// Failed / all finished requests in the interval.
    ErrorRatio,
    /// Generated tokens per second.
    GenerationTokensPerS,
    /// Preemptions per second.
    PreemptionsPerS,
}

impl JudgeMetric {
    pub const ALL: [JudgeMetric; 6] = [
        JudgeMetric::TtftP95,
        JudgeMetric::InterTokenP95,
        JudgeMetric::E2eP95,
        JudgeMetric::ErrorRatio,
        JudgeMetric::GenerationTokensPerS,
        JudgeMetric::PreemptionsPerS,
    ];

    /// The metric's value over one interval, if the interval has it.
    fn of(self, w: &window::WindowStats) -> Option<f64> {
        match self {
            JudgeMetric::TtftP95 => w.quantile(Canonical::TtftSeconds, "p95"),
            JudgeMetric::InterTokenP95 => w.quantile(Canonical::InterTokenLatencySeconds, "p95"),
            JudgeMetric::E2eP95 => w.quantile(Canonical::E2eLatencySeconds, "p95"),
            JudgeMetric::ErrorRatio => w.error_ratio(),
            JudgeMetric::GenerationTokensPerS => w.generation_tokens_per_s(),
            JudgeMetric::PreemptionsPerS => w.rate(Canonical::PreemptionsTotal),
        }
    }
}

/// Which way is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = JudgeDirection)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsWorse,
    HigherIsBetter,
}

/// How one metric is judged. A change is harmful when it is statistically significant *and*
/// larger than `max(allowed_relative_change × |baseline median|, allowed_absolute_change)` in the
/// bad direction; the absolute floor keeps a 0 → 0.001 change of a near-zero metric from counting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricSpec {
    pub metric: JudgeMetric,
    pub direction: Direction,
    pub allowed_relative_change: f64,
    pub allowed_absolute_change: f64,
    /// A critical metric that fails fails the verdict whatever the score.
    #[serde(default)]
    pub critical: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JudgeParams {
    /// Significance level of the two-sided test.
    pub alpha: f64,
    /// Score (0–100) from which the verdict is PASS.
    pub pass_score: f64,
    /// Score below which the verdict is FAIL; between the two it is INCONCLUSIVE.
    pub marginal_score: f64,
    /// Observations needed on each side for a metric to be judged. At 4 against 4 the smallest
    /// exact two-sided p-value is 2/70 ≈ 0.029; at 3 against 3 it is 0.1, a test that could never
    /// reject at α = 0.05.
    pub min_observations: usize,
    /// Metrics with data needed for any verdict but INCONCLUSIVE.
    pub min_metrics: usize,
    /// Fraction trimmed from each end of each side's values (0 = none) against outliers.
    pub trim_fraction: f64,
    /// Share of canary scrapes that may fail beyond the baseline's share before the canary is
    /// judged unhealthy (a changed server that stops answering is a failure, not missing data).
    pub max_scrape_failure_excess: f64,
    pub metrics: Vec<MetricSpec>,
}

impl Default for JudgeParams {
    fn default() -> Self {
        let spec = |metric, direction, rel, abs, critical| MetricSpec {
            metric,
            direction,
            allowed_relative_change: rel,
            allowed_absolute_change: abs,
            critical,
        };
        use Direction::*;
        use JudgeMetric::*;
        JudgeParams {
            alpha: 0.05,
            pass_score: 95.0,
            marginal_score: 75.0,
            min_observations: 4,
            min_metrics: 2,
            trim_fraction: 0.0,
            max_scrape_failure_excess: 0.5,
            metrics: vec![
                spec(TtftP95, HigherIsWorse, 0.10, 0.005, false),
                spec(InterTokenP95, HigherIsWorse, 0.10, 0.001, false),
                spec(E2eP95, HigherIsWorse, 0.10, 0.010, false),
                spec(ErrorRatio, HigherIsWorse, 0.50, 0.010, true),
                spec(GenerationTokensPerS, HigherIsBetter, 0.10, 0.0, false),
                spec(PreemptionsPerS, HigherIsWorse, 0.25, 0.05, false),
            ],
        }
    }
}

impl JudgeParams {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            errs.push(format!("judge.alpha {} must be in (0, 1)", self.alpha));
        }
        if !(0.0..=100.0).contains(&self.marginal_score)
            || !(0.0..=100.0).contains(&self.pass_score)
            || self.marginal_score > self.pass_score
        {
            errs.push(format!(
                "judge scores must satisfy 0 ≤ marginal ({}) ≤ pass ({}) ≤ 100",
                self.marginal_score, self.pass_score
            ));
        }
        if self.min_observations < 2 {
            errs.push("judge.min_observations must be at least 2".into());
        }
        if self.min_metrics == 0 || self.min_metrics > self.metrics.len() {
            errs.push(format!(
                "judge.min_metrics {} must be between 1 and the number of metrics ({})",
                self.min_metrics,
                self.metrics.len()
            ));
        }
        if !(0.0..0.5).contains(&self.trim_fraction) {
            errs.push("judge.trim_fraction must be in [0, 0.5)".into());
        }
        for m in &self.metrics {
            if !(m.allowed_relative_change >= 0.0 && m.allowed_absolute_change >= 0.0) {
                errs.push(format!(
                    "judge metric {:?}: allowed changes must be ≥ 0",
                    m.metric
                ));
            }
        }
        errs
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Classification {
    Pass,
    /// Significantly higher than allowed.
    High,
    /// Significantly lower than allowed.
    Low,
    NoData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

/// The evidence for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MetricResult {
    pub metric: JudgeMetric,
    pub direction: Direction,
    pub critical: bool,
    pub classification: Classification,
    /// Whether the classification counts as passing (`None` for NoData: not counted).
    pub passed: Option<bool>,
    pub canary_n: usize,
    pub baseline_n: usize,
    pub canary_median: Option<f64>,
    pub baseline_median: Option<f64>,
    /// (canary − baseline) / |baseline|, when the baseline median is not 0.
    pub relative_change: Option<f64>,
    /// The largest change in the bad direction that is still allowed, in the metric's unit.
    pub allowed_change: Option<f64>,
    pub u: Option<f64>,
    pub p_value: Option<f64>,
    pub method: Option<TestMethod>,
    pub reason: String,
}

/// The judgement of one bake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JudgeReport {
    pub verdict: Verdict,
    /// 0–100: metrics passing / metrics with data; 0 when none had data.
    pub score: f64,
    pub metrics: Vec<MetricResult>,
    pub canary_scrapes: ScrapeCounts,
    pub baseline_scrapes: ScrapeCounts,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScrapeCounts {
    pub ok: usize,
    pub failed: usize,
}

impl ScrapeCounts {
    fn failure_ratio(self) -> f64 {
        let total = self.ok + self.failed;
        if total == 0 {
            0.0
        } else {
            self.failed as f64 / total as f64
        }
    }
}

/// Values of each metric per side, one per (instance, model, interval).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    pub values: BTreeMap<(Role, JudgeMetric), Vec<f64>>,
    pub scrapes: BTreeMap<Role, ScrapeCounts>,
}

impl Observations {
    pub fn get(&self, role: Role, metric: JudgeMetric) -> &[f64] {
        self.values
            .get(&(role, metric))
            .map_or(&[][..], Vec::as_slice)
    }
}

/// Turns one step's samples into per-interval observations.
pub fn observations(samples: &[Sample]) -> Observations {
    let mut out = Observations::default();
    let mut by_instance: BTreeMap<&crate::instance::Id, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let counts = out.scrapes.entry(s.role).or_default();
        if s.error.is_some() {
            counts.failed += 1;
        } else {
            counts.ok += 1;
        }
        by_instance.entry(&s.instance).or_default().push(s);
    }
    for series in by_instance.values_mut() {
        series.sort_by_key(|s| s.round);
        for pair in series.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.error.is_some() || b.error.is_some() || b.at_ms <= a.at_ms {
                continue;
            }
            for mb in &b.models {
                let Some(ma) = a.models.iter().find(|m| m.model == mb.model) else {
                    continue;
                };
                let w = window::summarize(&[
                    Point {
                        at_ms: a.at_ms,
                        metrics: ma,
                    },
                    Point {
                        at_ms: b.at_ms,
                        metrics: mb,
                    },
                ]);
                if idle(&w) {
                    continue;
                }
                for metric in JudgeMetric::ALL {
                    if let Some(v) = metric.of(&w).filter(|v| v.is_finite()) {
                        out.values.entry((b.role, metric)).or_default().push(v);
                    }
                }
            }
        }
    }
    out
}

/// An interval in which the engine's request counters say nothing finished: it says nothing
/// about serving either (its throughput and preemptions are 0 on any config), so it is not an
/// observation. Without request counters the interval is kept.
fn idle(w: &window::WindowStats) -> bool {
    let ok = w.rate(Canonical::RequestSuccessTotal);
    let bad = w.rate(Canonical::RequestFailureTotal);
    match (ok, bad) {
        (None, None) => false,
        (ok, bad) => ok.unwrap_or(0.0) + bad.unwrap_or(0.0) <= 0.0,
    }
}

/// Classifies one metric from the two sides' raw values.
pub fn classify(
    spec: &MetricSpec,
    canary: &[f64],
    baseline: &[f64],
    params: &JudgeParams,
) -> MetricResult {
    let c = stats::clean(canary, params.trim_fraction);
    let b = stats::clean(baseline, params.trim_fraction);
    let mut r = MetricResult {
        metric: spec.metric,
        direction: spec.direction,
        critical: spec.critical,
        classification: Classification::NoData,
        passed: None,
        canary_n: c.len(),
        baseline_n: b.len(),
        canary_median: stats::median(&c),
        baseline_median: stats::median(&b),
        relative_change: None,
        allowed_change: None,
        u: None,
        p_value: None,
        method: None,
        reason: String::new(),
    };
    if c.len() < params.min_observations || b.len() < params.min_observations {
        r.reason = format!(
            "too few observations: canary {}, baseline {} (need {} each)",
            c.len(),
            b.len(),
            params.min_observations
        );
        return r;
    }
    let (Some(cm), Some(bm)) = (r.canary_median, r.baseline_median) else {
        r.reason = "no median".into();
        return r;
    };
    if bm != 0.0 {
        r.relative_change = Some((cm - bm) / bm.abs());
    }
    let allowed = (spec.allowed_relative_change * bm.abs()).max(spec.allowed_absolute_change);
    r.allowed_change = Some(allowed);
    if c == b {
        r.classification = Classification::Pass;
        r.passed = Some(true);
        r.reason = "all values equal".into();
        return r;
    }
    let Some(MannWhitney { u, p_value, method }) = stats::mann_whitney_u(&c, &b) else {
        r.reason = "the test could not be computed".into();
        return r;
    };
    r.u = Some(u);
    r.p_value = Some(p_value);
    r.method = Some(method);
    let delta = cm - bm;
    let significant = p_value < params.alpha;
    r.classification = if significant && delta > allowed {
        Classification::High
    } else if significant && -delta > allowed {
        Classification::Low
    } else {
        Classification::Pass
    };
    let bad = match spec.direction {
        Direction::HigherIsWorse => Classification::High,
        Direction::HigherIsBetter => Classification::Low,
    };
    r.passed = Some(r.classification != bad);
    r.reason = match (significant, r.classification) {
        (false, _) => format!("no significant difference (p = {p_value:.4} ≥ {})", params.alpha),
        (true, Classification::Pass) => format!(
            "significant (p = {p_value:.4}) but within the allowed change of {allowed:.4}"
        ),
        (true, k) if k == bad => format!(
            "worse: median {cm:.4} against {bm:.4}, beyond the allowed {allowed:.4} (p = {p_value:.4})"
        ),
        (true, _) => format!("better: median {cm:.4} against {bm:.4} (p = {p_value:.4})"),
    };
    r
}

/// Judges one bake from its observations.
pub fn judge(obs: &Observations, params: &JudgeParams) -> JudgeReport {
    let metrics: Vec<MetricResult> = params
        .metrics
        .iter()
        .map(|spec| {
            classify(
                spec,
                obs.get(Role::Canary, spec.metric),
                obs.get(Role::Baseline, spec.metric),
                params,
            )
        })
        .collect();
    let canary_scrapes = obs.scrapes.get(&Role::Canary).copied().unwrap_or_default();
    let baseline_scrapes = obs
        .scrapes
        .get(&Role::Baseline)
        .copied()
        .unwrap_or_default();
    let with_data = metrics.iter().filter(|m| m.passed.is_some()).count();
    let passing = metrics.iter().filter(|m| m.passed == Some(true)).count();
    let score = if with_data == 0 {
        0.0
    } else {
        100.0 * passing as f64 / with_data as f64
    };
    let failed_critical: Vec<&MetricResult> = metrics
        .iter()
        .filter(|m| m.critical && m.passed == Some(false))
        .collect();
    let failure_excess = canary_scrapes.failure_ratio() - baseline_scrapes.failure_ratio();
    let (verdict, reason) = if canary_scrapes.failed > 0
        && failure_excess > params.max_scrape_failure_excess
    {
        (
            Verdict::Fail,
            format!(
                "the canary stopped answering: {} of {} canary scrapes failed",
                canary_scrapes.failed,
                canary_scrapes.ok + canary_scrapes.failed
            ),
        )
    } else if with_data < params.min_metrics {
        (
            Verdict::Inconclusive,
            format!(
                "only {with_data} metric(s) had enough data (need {}): no data is never a pass",
                params.min_metrics
            ),
        )
    } else if let Some(m) = failed_critical.first() {
        (
            Verdict::Fail,
            format!("critical metric {:?} failed: {}", m.metric, m.reason),
        )
    } else if score >= params.pass_score {
        (
            Verdict::Pass,
            format!("{passing} of {with_data} metrics pass (score {score:.1})"),
        )
    } else if score < params.marginal_score {
        (
            Verdict::Fail,
            format!(
                "{passing} of {with_data} metrics pass (score {score:.1} < {})",
                params.marginal_score
            ),
        )
    } else {
        (
            Verdict::Inconclusive,
            format!(
                "{passing} of {with_data} metrics pass (score {score:.1}, marginal {} ≤ score < pass {})",
                params.marginal_score, params.pass_score
            ),
        )
    };
    JudgeReport {
        verdict,
        score,
        metrics,
        canary_scrapes,
        baseline_scrapes,
        reason,
    }
}
