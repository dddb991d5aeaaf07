//! Trend forecasts: a least-squares line through KV usage and queue depth, and whether it crosses
//! the MEMORY_PRESSURE / QUEUE_BUILDUP threshold within a horizon. Deliberately simple so that
//! every prediction can be checked by hand from its slope, intercept and R².

use super::{BottleneckType, Thresholds};
use crate::snapshot::Canonical;
use crate::window::Point;
use serde::{Deserialize, Serialize};

/// `y = intercept + slope_per_s × (t − origin)`, t in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinearFit {
    /// Timestamp of the first point; x is seconds since then.
    pub origin_ms: i64,
    pub slope_per_s: f64,
    pub intercept: f64,
    /// Share of the variance the line explains; 1 for a perfectly flat series.
    pub r_squared: f64,
    pub points: usize,
}

impl LinearFit {
    pub fn value_at_ms(&self, at_ms: i64) -> f64 {
        self.intercept + self.slope_per_s * (at_ms - self.origin_ms) as f64 / 1000.0
    }
}

/// Least squares over `(at_ms, value)`; non-finite values are skipped. `None` with fewer than two
/// points or when they all share one timestamp.
pub fn fit_line(series: &[(i64, f64)]) -> Option<LinearFit> {
    let pts: Vec<(i64, f64)> = series
        .iter()
        .copied()
        .filter(|(_, y)| y.is_finite())
        .collect();
    let origin_ms = pts.iter().map(|&(t, _)| t).min()?;
    let n = pts.len() as f64;
    let xs: Vec<(f64, f64)> = pts
        .iter()
        .map(|&(t, y)| ((t - origin_ms) as f64 / 1000.0, y))
        .collect();
    let mean_x = xs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = xs.iter().map(|p| p.1).sum::<f64>() / n;
    // Centred sums: timestamps are large, and uncentred sums of their squares lose digits.
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for &(x, y) in &xs {
        let (dx, dy) = (x - mean_x, y - mean_y);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    if pts.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r_squared = if syy > 0.0 {
        (sxy * sxy / (sxx * syy)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    Some(LinearFit {
        origin_ms,
        slope_per_s: slope,
        intercept: mean_y - slope * mean_x,
        r_squared,
        points: pts.len(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ForecastOutcome {
    /// The line reaches the threshold within the horizon.
    WillCross,
    /// Rising, but not fast enough to reach the threshold within the horizon.
    NotWithinHorizon,
    /// Flat or falling.
    NotRising,
    /// The fitted line is already at or above the threshold (the bottleneck itself, if
    /// sustained, is reported by detection).
    AlreadyAbove,
    /// Rising, but the line explains too little of the series to extrapolate.
    PoorFit,
    /// Too few points (or one timestamp) to fit a line.
    InsufficientData,
}

/// A forecast for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Forecast {
    pub metric: Canonical,
    #[serde(rename = "type")]
    pub kind: BottleneckType,
    pub threshold: f64,
    pub horizon_s: f64,
    pub outcome: ForecastOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_until: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<LinearFit>,
    pub explanation: String,
}

/// Forecasts KV usage against MEMORY_PRESSURE and waiting requests against QUEUE_BUILDUP, for the
/// metrics the points carry (an engine that does not export one gets no forecast for it).
pub fn forecast(points: &[Point<'_>], thresholds: &Thresholds) -> Vec<Forecast> {
    [
        (
            Canonical::KvCacheUsageRatio,
            BottleneckType::MemoryPressure,
            thresholds.memory_usage_ratio,
        ),
        (
            Canonical::RequestsWaiting,
            BottleneckType::QueueBuildup,
            thresholds.queue_depth_requests,
        ),
    ]
    .into_iter()
    .filter_map(|(metric, kind, threshold)| {
        let series: Vec<(i64, f64)> = points
            .iter()
            .filter_map(|p| Some((p.at_ms, p.metrics.number(metric)?)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        (!series.is_empty()).then(|| forecast_series(metric, kind, &series, threshold, thresholds))
    })
    .collect()
}

fn forecast_series(
    metric: Canonical,
    kind: BottleneckType,
    series: &[(i64, f64)],
    threshold: f64,
    t: &Thresholds,
) -> Forecast {
    let horizon_s = t.forecast_horizon_s;
    let mut out = Forecast {
        metric,
        kind,
        threshold,
        horizon_s,
        outcome: ForecastOutcome::InsufficientData,
        predicted_at_ms: None,
        seconds_until: None,
        fit: None,
        explanation: String::new(),
    };
    let last_ms = series.iter().map(|&(at, _)| at).max().unwrap_or(0);
    let fit = match fit_line(series) {
        Some(fit) if series.len() >= t.forecast_min_points => fit,
        _ => {
            out.explanation = format!(
                "{} point(s) of {metric}; a trend needs at least {} at distinct times",
                series.len(),
                t.forecast_min_points
            );
            return out;
        }
    };
    out.fit = Some(fit);
    let now = fit.value_at_ms(last_ms);
    let line = format!(
        "fitted {metric} = {:.4} {:+.6}/s × t (R² {:.2}, {} points)",
        fit.intercept, fit.slope_per_s, fit.r_squared, fit.points
    );
    if fit.slope_per_s <= 0.0 {
        out.outcome = ForecastOutcome::NotRising;
        out.explanation = format!("{line}: not rising");
    } else if fit.r_squared < t.forecast_min_r_squared {
        out.outcome = ForecastOutcome::PoorFit;
        out.explanation = format!(
            "{line}: R² below {:.2}, too noisy to extrapolate",
            t.forecast_min_r_squared
        );
    } else if now >= threshold {
        out.outcome = ForecastOutcome::AlreadyAbove;
        out.explanation =
            format!("{line}: already at {now:.3} at the last point, threshold {threshold}");
    } else {
        let seconds_until = (threshold - now) / fit.slope_per_s;
        if seconds_until <= horizon_s {
            out.outcome = ForecastOutcome::WillCross;
            out.seconds_until = Some(seconds_until);
            out.predicted_at_ms =
                Some(last_ms.saturating_add((seconds_until * 1000.0).round() as i64));
            out.explanation = format!(
                "{line}: reaches {threshold} in {:.0} s, within the {horizon_s:.0} s horizon",
                seconds_until
            );
        } else {
            out.outcome = ForecastOutcome::NotWithinHorizon;
            out.explanation = format!(
                "{line}: would reach {threshold} in {:.0} s, beyond the {horizon_s:.0} s horizon",
                seconds_until
            );
        }
    }
    out
}
