//! Trend forecasts: a least-squares line through KV usage and queue depth, extrapolated to the
//! MEMORY_PRESSURE / QUEUE_BUILDUP thresholds within the horizon, only when the fit is good.

use perfagent::analysis::{
    analyze_instance, fit_line, forecast, BottleneckType, Forecast, ForecastOutcome, Thresholds,
};
use perfagent::snapshot::{Canonical, Engine, MetricValue, ModelMetrics};
use perfagent::window::Point;

const T0_MS: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 60_000;

fn series(values: &[(Canonical, Vec<f64>)]) -> Vec<(i64, ModelMetrics)> {
    let n = values.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let metrics = values
                .iter()
                .filter_map(|(c, v)| Some((*c, MetricValue::Number(*v.get(i)?))))
                .collect();
            (
                T0_MS + i as i64 * STEP_MS,
                ModelMetrics {
                    model: "m".into(),
                    metrics,
                },
            )
        })
        .collect()
}

fn run(values: &[(Canonical, Vec<f64>)]) -> Vec<Forecast> {
    let s = series(values);
    let pts: Vec<Point<'_>> = s
        .iter()
        .map(|(at_ms, metrics)| Point {
            at_ms: *at_ms,
            metrics,
        })
        .collect();
    forecast(&pts, &Thresholds::default())
}

fn kv(values: Vec<f64>) -> Forecast {
    run(&[(Canonical::KvCacheUsageRatio, values)])
        .into_iter()
        .next()
        .expect("a KV forecast")
}

#[test]
fn a_rising_kv_usage_is_predicted_to_cross_the_memory_threshold() {
    // +0.02 per minute from 0.5: 0.68 at the tenth minute, 0.8 six minutes later.
    let f = kv((0..10).map(|i| 0.5 + 0.02 * i as f64).collect());
    assert_eq!(f.outcome, ForecastOutcome::WillCross, "{}", f.explanation);
    assert_eq!(f.kind, BottleneckType::MemoryPressure);
    assert_eq!(f.threshold, 0.8);
    let fit = f.fit.expect("fit");
    assert!((fit.slope_per_s - 0.02 / 60.0).abs() < 1e-12);
    assert!((fit.intercept - 0.5).abs() < 1e-9);
    assert!((fit.r_squared - 1.0).abs() < 1e-9);
    assert_eq!(fit.points, 10);
    assert_eq!(fit.origin_ms, T0_MS);
    let until = f.seconds_until.expect("time to crossing");
    assert!((until - 360.0).abs() < 1e-6, "{until}");
    let last_ms = T0_MS + 9 * STEP_MS;
    assert_eq!(f.predicted_at_ms, Some(last_ms + 360_000));
    assert!(f.explanation.contains("within the 1800 s horizon"));
}

#[test]
fn a_flat_series_is_not_rising() {
    let f = kv(vec![0.6; 10]);
    assert_eq!(f.outcome, ForecastOutcome::NotRising);
    assert_eq!(f.predicted_at_ms, None);
    let fit = f.fit.expect("fit");
    assert_eq!(fit.slope_per_s, 0.0);
}

#[test]
fn a_falling_series_is_not_rising() {
    let f = kv((0..10).map(|i| 0.7 - 0.01 * i as f64).collect());
    assert_eq!(f.outcome, ForecastOutcome::NotRising);
}

#[test]
fn a_noisy_series_with_a_poor_fit_is_not_extrapolated() {
    // Swinging between 0.2 and 0.7 with a slight upward drift: R² far below 0.7.
    let f = kv((0..12)
        .map(|i| if i % 2 == 0 { 0.2 } else { 0.7 } + 0.002 * i as f64)
        .collect());
    assert_eq!(f.outcome, ForecastOutcome::PoorFit, "{}", f.explanation);
    assert!(f.fit.expect("fit").r_squared < 0.7);
    assert_eq!(f.predicted_at_ms, None);
}

#[test]
fn a_slow_rise_beyond_the_horizon_is_not_a_warning() {
    // +0.001 per minute from 0.5: the threshold is 291 minutes after the last point.
    let f = kv((0..10).map(|i| 0.5 + 0.001 * i as f64).collect());
    assert_eq!(
        f.outcome,
        ForecastOutcome::NotWithinHorizon,
        "{}",
        f.explanation
    );
    assert_eq!(f.predicted_at_ms, None);
}

#[test]
fn a_line_already_above_the_threshold_is_reported_as_such() {
    let f = kv((0..10).map(|i| 0.75 + 0.01 * i as f64).collect());
    assert_eq!(
        f.outcome,
        ForecastOutcome::AlreadyAbove,
        "{}",
        f.explanation
    );
}

#[test]
fn too_few_points_give_no_trend() {
    let f = kv(vec![0.5, 0.6, 0.7, 0.75]);
    assert_eq!(f.outcome, ForecastOutcome::InsufficientData);
    assert!(f.fit.is_none());
    assert!(f.explanation.contains("at least 5"));
}

#[test]
fn a_growing_queue_is_predicted_to_cross_the_queue_threshold() {
    let fs = run(&[
        (
            Canonical::RequestsWaiting,
            (0..8).map(|i| i as f64).collect(),
        ),
        (Canonical::KvCacheUsageRatio, vec![0.4; 8]),
    ]);
    let q = fs
        .iter()
        .find(|f| f.metric == Canonical::RequestsWaiting)
        .expect("queue forecast");
    assert_eq!(q.kind, BottleneckType::QueueBuildup);
    assert_eq!(q.outcome, ForecastOutcome::WillCross);
    // 7 waiting at the last point, +1 per minute: 10 three minutes later.
    assert!((q.seconds_until.expect("until") - 180.0).abs() < 1e-6);
    let k = fs
        .iter()
        .find(|f| f.metric == Canonical::KvCacheUsageRatio)
        .expect("kv forecast");
    assert_eq!(k.outcome, ForecastOutcome::NotRising);
}

#[test]
fn an_engine_without_kv_usage_gets_no_kv_forecast() {
    let fs = run(&[(Canonical::RequestsWaiting, vec![1.0; 6])]);
    assert_eq!(fs.len(), 1);
    assert_eq!(fs[0].metric, Canonical::RequestsWaiting);
}

#[test]
fn the_fit_is_exact_on_a_line_and_undefined_on_one_timestamp() {
    let fit = fit_line(&[(0, 1.0), (2_000, 2.0), (4_000, 3.0), (6_000, f64::NAN)]).expect("fit");
    assert!((fit.slope_per_s - 0.5).abs() < 1e-12);
    assert!((fit.intercept - 1.0).abs() < 1e-12);
    assert_eq!(fit.points, 3, "the NaN is skipped");
    assert!((fit.value_at_ms(10_000) - 6.0).abs() < 1e-12);
    assert!(fit_line(&[(5, 1.0), (5, 2.0)]).is_none());
    assert!(fit_line(&[(5, 1.0)]).is_none());
    assert!(fit_line(&[]).is_none());
}

#[test]
fn the_instance_analysis_carries_its_forecasts() {
    let s = series(&[(
        Canonical::KvCacheUsageRatio,
        (0..10).map(|i| 0.5 + 0.02 * i as f64).collect(),
    )]);
    let pts: Vec<Point<'_>> = s
        .iter()
        .map(|(at_ms, metrics)| Point {
            at_ms: *at_ms,
            metrics,
        })
        .collect();
    let a = analyze_instance(&pts, Engine::Vllm, &Thresholds::default());
    assert_eq!(a.forecasts.len(), 1);
    assert_eq!(a.forecasts[0].outcome, ForecastOutcome::WillCross);
    let json = serde_json::to_value(&a.forecasts[0]).expect("json");
    assert_eq!(json["outcome"], "WILL_CROSS");
    assert_eq!(json["type"], "MEMORY_PRESSURE");
    assert!(json["fit"]["r_squared"].is_number());
}
