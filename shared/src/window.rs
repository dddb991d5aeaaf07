//! Windows over consecutive snapshots of one (instance, model): counter rates with resets handled,
//! gauge summaries, and histogram quantiles from bucket deltas — what PromQL's
//! `rate(x[w])` and `histogram_quantile(q, rate(x_bucket[w]))` give, so numbers match a Grafana panel.
//!
//! A window with fewer than two snapshots, or a histogram with no observation inside it, says so
//! instead of inventing a number.

use crate::snapshot::{Canonical, CanonicalKind, Histogram, ModelMetrics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The quantiles every latency histogram is summarized with.
pub const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// One point of a series: a snapshot's metrics for one model at a time.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    pub at_ms: i64,
    pub metrics: &'a ModelMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GaugeSummary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
    /// Fraction of the window's points at or above a threshold is asked by analysis; keeping the
    /// points' count lets it judge how solid the summary is.
    pub points: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistogramWindow {
    /// Observations that fell inside the window.
    pub count: f64,
    /// Mean of those observations (sum delta / count delta).
    pub mean: f64,
    /// `p50`, `p90`, `p95`, `p99` when computable.
    pub quantiles: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowStats {
    pub start_ms: i64,
    pub end_ms: i64,
    pub points: usize,
    /// Per-second rates of counters present at both ends.
    pub rates: BTreeMap<Canonical, f64>,
    pub gauges: BTreeMap<Canonical, GaugeSummary>,
    pub histograms: BTreeMap<Canonical, HistogramWindow>,
    /// Why some or all of the window could not be computed (too few points, no observations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

impl WindowStats {
    pub fn rate(&self, c: Canonical) -> Option<f64> {
        self.rates.get(&c).copied()
    }

    /// Tokens generated per second.
    pub fn generation_tokens_per_s(&self) -> Option<f64> {
        self.rate(Canonical::GenerationTokensTotal)
    }

    /// Failed / (succeeded + failed) over the window; `None` without traffic or without the counters.
    pub fn error_ratio(&self) -> Option<f64> {
        let ok = self.rate(Canonical::RequestSuccessTotal)?;
        let bad = self.rate(Canonical::RequestFailureTotal).unwrap_or(0.0);
        let total = ok + bad;
        (total > 0.0).then(|| bad / total)
    }

    /// Prefix-cache hits / queries over the window.
    pub fn prefix_cache_hit_ratio(&self) -> Option<f64> {
        let q = self.rate(Canonical::PrefixCacheQueriesTotal)?;
        let h = self.rate(Canonical::PrefixCacheHitsTotal)?;
        (q > 0.0).then(|| (h / q).clamp(0.0, 1.0))
    }

    pub fn quantile(&self, c: Canonical, q: &str) -> Option<f64> {
        self.histograms.get(&c)?.quantiles.get(q).copied()
    }
}

/// Summarizes `points` (any order; sorted here by time).
pub fn summarize(points: &[Point<'_>]) -> WindowStats {
    let mut pts: Vec<Point<'_>> = points.to_vec();
    pts.sort_by_key(|p| p.at_ms);
    let mut out = WindowStats {
        start_ms: pts.first().map_or(0, |p| p.at_ms),
        end_ms: pts.last().map_or(0, |p| p.at_ms),
        points: pts.len(),
        rates: BTreeMap::new(),
        gauges: BTreeMap::new(),
        histograms: BTreeMap::new(),
        gaps: Vec::new(),
    };
    for c in Canonical::ALL {
        if c.kind() == CanonicalKind::Gauge {
            if let Some(g) = gauge_summary(&pts, c) {
                out.gauges.insert(c, g);
            }
        }
    }
    if pts.len() < 2 {
        out.gaps.push(format!(
            "{} snapshot(s) in the window: rates and quantiles need at least 2",
            pts.len()
        ));
        return out;
    }
    let secs = (out.end_ms - out.start_ms) as f64 / 1000.0;
    if secs <= 0.0 {
        out.gaps
            .push("the window's snapshots share one timestamp".to_string());
        return out;
    }
    for c in Canonical::ALL {
        match c.kind() {
            CanonicalKind::Counter => {
                let series: Vec<f64> = pts.iter().filter_map(|p| p.metrics.number(c)).collect();
                if series.len() >= 2 {
                    out.rates.insert(c, increase(&series) / secs);
                }
            }
            CanonicalKind::Histogram => {
                let series: Vec<&Histogram> =
                    pts.iter().filter_map(|p| p.metrics.histogram(c)).collect();
                if series.len() < 2 {
                    continue;
                }
                let delta = histogram_increase(&series);
                if delta.count <= 0.0 {
                    out.gaps.push(format!("{c}: no observations in the window"));
                    continue;
                }
                let mut quantiles = BTreeMap::new();
                for q in QUANTILES {
                    if let Some(v) = histogram_quantile(q, &delta.buckets) {
                        quantiles.insert(format!("p{}", (q * 100.0).round() as u32), v);
                    }
                }
                if quantiles.is_empty() {
                    out.gaps.push(format!(
                        "{c}: buckets lack a +Inf bound, quantiles cannot be computed"
                    ));
                }
                out.histograms.insert(
                    c,
                    HistogramWindow {
                        count: delta.count,
                        mean: delta.sum / delta.count,
                        quantiles,
                    },
                );
            }
            CanonicalKind::Gauge => {}
        }
    }
    out
}

fn gauge_summary(pts: &[Point<'_>], c: Canonical) -> Option<GaugeSummary> {
    let vals: Vec<f64> = pts
        .iter()
        .filter_map(|p| p.metrics.number(c))
        .filter(|v| v.is_finite())
        .collect();
    let last = *vals.last()?;
    Some(GaugeSummary {
        min: vals.iter().copied().fold(f64::INFINITY, f64::min),
        max: vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        mean: vals.iter().sum::<f64>() / vals.len() as f64,
        last,
        points: vals.len(),
    })
}

/// A counter's increase over consecutive values, as PromQL's `increase`: a drop means the process
/// restarted and counted again from zero, so the new value is all increase.
pub fn increase(series: &[f64]) -> f64 {
    series
        .windows(2)
        .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
        .filter(|d| d.is_finite())
        .sum()
}

/// The histogram of observations made between the first and last snapshot, pair by pair so that a
/// reset (count going down, or the bucket layout changing) in the middle is handled like a counter's.
pub fn histogram_increase(series: &[&Histogram]) -> Histogram {
    let mut acc = Histogram {
        count: 0.0,
        sum: 0.0,
        buckets: series
            .last()
            .map(|h| h.buckets.iter().map(|&(le, _)| (le, 0.0)).collect())
            .unwrap_or_default(),
    };
    for pair in series.windows(2) {
        let (prev, cur) = (pair[0], pair[1]);
        let same_layout = prev.buckets.len() == cur.buckets.len()
            && prev
                .buckets
                .iter()
                .zip(&cur.buckets)
                .all(|(a, b)| same_bound(a.0, b.0));
        let reset = cur.count < prev.count || !same_layout;
        let layout_matches_acc = acc.buckets.len() == cur.buckets.len()
            && acc
                .buckets
                .iter()
                .zip(&cur.buckets)
                .all(|(a, b)| same_bound(a.0, b.0));
        if !layout_matches_acc {
            // The layout changed after this pair; only pairs in the final layout can be added up.
            continue;
        }
        if reset {
            acc.count += cur.count;
            acc.sum += cur.sum;
            for (a, b) in acc.buckets.iter_mut().zip(&cur.buckets) {
                a.1 += b.1;
            }
        } else {
            acc.count += cur.count - prev.count;
            acc.sum += cur.sum - prev.sum;
            for ((a, b), p) in acc.buckets.iter_mut().zip(&cur.buckets).zip(&prev.buckets) {
                a.1 += (b.1 - p.1).max(0.0);
            }
        }
    }
    acc
}

fn same_bound(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// PromQL's `histogram_quantile` over cumulative buckets: linear interpolation inside the bucket the
/// rank falls in, the first bucket's lower bound taken as 0, and a rank in the `+Inf` bucket answered
/// with the highest finite bound. `None` without a `+Inf` bucket or without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) {
        return None;
    }
    let &(last_le, total) = buckets.last()?;
    // `total` may be NaN: only a positive count has a quantile.
    if last_le != f64::INFINITY || total.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    // Cumulative counts can come out non-monotonic through float noise; fix as PromQL does.
    let mut fixed: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    let mut running_max = 0.0f64;
    for &(le, c) in buckets {
        running_max = running_max.max(c);
        fixed.push((le, running_max));
    }
    let rank = q * total;
    let idx = fixed.iter().position(|&(_, c)| c >= rank)?;
    if idx == fixed.len() - 1 {
        return Some(if fixed.len() >= 2 {
            fixed[fixed.len() - 2].0
        } else {
            f64::INFINITY
        });
    }
    let (upper, count_upto) = fixed[idx];
    let (lower, count_below) = if idx == 0 {
        (0.0f64.min(upper), 0.0)
    } else {
        fixed[idx - 1]
    };
    let in_bucket = count_upto - count_below;
    if in_bucket <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - count_below) / in_bucket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::MetricValue;

    fn mm(pairs: &[(Canonical, MetricValue)]) -> ModelMetrics {
        ModelMetrics {
            model: "m".into(),
            metrics: pairs.iter().cloned().collect(),
        }
    }

    fn h(count: f64, sum: f64, buckets: &[(f64, f64)]) -> MetricValue {
        MetricValue::Histogram(Histogram {
            count,
            sum,
            buckets: buckets.to_vec(),
        })
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn a_counter_reset_between_scrapes_is_not_a_negative_rate() {
        assert_eq!(increase(&[100.0, 160.0, 10.0, 40.0]), 60.0 + 10.0 + 30.0);
    }

    #[test]
    fn rates_are_per_second_over_the_window() {
        let a = mm(&[(
            Canonical::GenerationTokensTotal,
            MetricValue::Number(1000.0),
        )]);
        let b = mm(&[(
            Canonical::GenerationTokensTotal,
            MetricValue::Number(4000.0),
        )]);
        let w = summarize(&[
            Point {
                at_ms: 30_000,
                metrics: &b,
            },
            Point {
                at_ms: 0,
                metrics: &a,
            },
        ]);
        assert_eq!(w.generation_tokens_per_s(), Some(100.0));
        assert!(w.gaps.is_empty());
    }

    #[test]
    fn a_single_snapshot_says_it_is_not_enough_for_rates() {
        let a = mm(&[
            (
                Canonical::GenerationTokensTotal,
                MetricValue::Number(1000.0),
            ),
            (Canonical::RequestsWaiting, MetricValue::Number(3.0)),
        ]);
        let w = summarize(&[Point {
            at_ms: 0,
            metrics: &a,
        }]);
        assert!(w.rates.is_empty());
        assert_eq!(w.gauges[&Canonical::RequestsWaiting].last, 3.0);
        assert!(w.gaps[0].contains("at least 2"));
    }

    #[test]
    fn quantiles_come_from_bucket_deltas_not_lifetime_totals() {
        // Lifetime: 100 fast observations; in the window: 10 slow ones.
        let before = mm(&[(
            Canonical::TtftSeconds,
            h(100.0, 5.0, &[(0.1, 100.0), (1.0, 100.0), (INF, 100.0)]),
        )]);
        let after = mm(&[(
            Canonical::TtftSeconds,
            h(110.0, 10.0, &[(0.1, 100.0), (1.0, 110.0), (INF, 110.0)]),
        )]);
        let w = summarize(&[
            Point {
                at_ms: 0,
                metrics: &before,
            },
            Point {
                at_ms: 60_000,
                metrics: &after,
            },
        ]);
        let hw = &w.histograms[&Canonical::TtftSeconds];
        assert_eq!(hw.count, 10.0);
        assert!((hw.mean - 0.5).abs() < 1e-12);
        // All 10 in (0.1, 1.0]: the median interpolates to the middle of that bucket.
        assert!((hw.quantiles["p50"] - 0.55).abs() < 1e-12);
    }

    #[test]
    fn a_histogram_without_observations_in_the_window_is_a_gap_not_zero() {
        let a = mm(&[(
            Canonical::TtftSeconds,
            h(5.0, 1.0, &[(1.0, 5.0), (INF, 5.0)]),
        )]);
        let w = summarize(&[
            Point {
                at_ms: 0,
                metrics: &a,
            },
            Point {
                at_ms: 1000,
                metrics: &a,
            },
        ]);
        assert!(w.histograms.is_empty());
        assert!(w.gaps.iter().any(|g| g.contains("no observations")));
    }

    #[test]
    fn histogram_quantile_matches_promql_edge_cases() {
        let b = [(0.5, 0.0), (1.0, 10.0), (2.0, 20.0), (INF, 30.0)];
        // Rank in +Inf bucket → highest finite bound.
        assert_eq!(histogram_quantile(0.99, &b), Some(2.0));
        assert_eq!(histogram_quantile(0.5, &b), Some(1.5));
        // First bucket interpolates from 0.
        assert_eq!(
            histogram_quantile(0.5, &[(2.0, 10.0), (INF, 10.0)]),
            Some(1.0)
        );
        // No +Inf bucket, no observations, q out of range.
        assert_eq!(histogram_quantile(0.5, &[(1.0, 10.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (INF, 0.0)]), None);
        assert_eq!(histogram_quantile(1.5, &b), None);
        // Non-monotonic noise is smoothed.
        let noisy = [(1.0, 10.0), (2.0, 9.999), (INF, 20.0)];
        assert_eq!(histogram_quantile(0.5, &noisy), Some(1.0));
    }

    #[test]
    fn a_histogram_reset_in_the_window_counts_the_new_observations() {
        let a = Histogram {
            count: 50.0,
            sum: 5.0,
            buckets: vec![(1.0, 50.0), (INF, 50.0)],
        };
        let b = Histogram {
            count: 4.0,
            sum: 8.0,
            buckets: vec![(1.0, 0.0), (INF, 4.0)],
        };
        let d = histogram_increase(&[&a, &b]);
        assert_eq!(d.count, 4.0);
        assert_eq!(d.buckets, vec![(1.0, 0.0), (INF, 4.0)]);
    }

    #[test]
    fn error_and_cache_ratios_need_traffic() {
        let a = mm(&[
            (Canonical::RequestSuccessTotal, MetricValue::Number(0.0)),
            (Canonical::RequestFailureTotal, MetricValue::Number(0.0)),
            (Canonical::PrefixCacheQueriesTotal, MetricValue::Number(0.0)),
            (Canonical::PrefixCacheHitsTotal, MetricValue::Number(0.0)),
        ]);
        let b = mm(&[
            (Canonical::RequestSuccessTotal, MetricValue::Number(90.0)),
            (Canonical::RequestFailureTotal, MetricValue::Number(10.0)),
            (
                Canonical::PrefixCacheQueriesTotal,
                MetricValue::Number(1000.0),
            ),
            (Canonical::PrefixCacheHitsTotal, MetricValue::Number(250.0)),
        ]);
        let w = summarize(&[
            Point {
                at_ms: 0,
                metrics: &a,
            },
            Point {
                at_ms: 10_000,
                metrics: &b,
            },
        ]);
        assert_eq!(w.error_ratio(), Some(0.1));
        assert_eq!(w.prefix_cache_hit_ratio(), Some(0.25));
        let idle = summarize(&[
            Point {
                at_ms: 0,
                metrics: &a,
            },
            Point {
                at_ms: 10_000,
                metrics: &a,
            },
        ]);
        assert_eq!(idle.error_ratio(), None);
        assert_eq!(idle.prefix_cache_hit_ratio(), None);
    }
}
