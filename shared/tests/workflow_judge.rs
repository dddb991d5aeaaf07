//! The canary judge: Mann-Whitney U against reference values, per-metric classification, the
//! score and verdict rules, and observations built from bake samples.
//!
//! Reference values were computed with SciPy 1.17.1, `scipy.stats.mannwhitneyu(x, y,
//! alternative="two-sided", method=…)`, in a scratch virtualenv; the smallest one is also checked
//! by hand below.

use perfagent::instance::Id;
use perfagent::snapshot::{Canonical, Histogram, MetricValue, ModelMetrics};
use perfagent::workflow::judge::{
    classify, judge, observations, Classification, Direction, JudgeMetric, JudgeParams, MetricSpec,
    Observations, Verdict,
};
use perfagent::workflow::stats::{mann_whitney_u, TestMethod};
use perfagent::workflow::{Role, Sample};
use std::collections::BTreeMap;

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs().max(1e-300) || (got - want).abs() < 1e-15
}

fn check(x: &[f64], y: &[f64], u: f64, p: f64, method: TestMethod) {
    let r = mann_whitney_u(x, y).expect("non-empty finite samples");
    assert_eq!(r.method, method, "{x:?} vs {y:?}");
    assert!(close(r.u, u), "U = {}, want {u}", r.u);
    assert!(close(r.p_value, p), "p = {}, want {p}", r.p_value);
}

#[test]
fn four_against_four_fully_separated_is_the_hand_computed_exact_p() {
    // Every canary value is below every baseline value: U1 = 0, U2 = 16. Of the C(8,4) = 70
    // equally likely orderings exactly one gives U ≥ 16, so p = 2 · 1/70.
    check(
        &[1.1, 2.2, 3.3, 4.4],
        &[5.5, 6.6, 7.7, 8.8],
        0.0,
        2.0 / 70.0,
        TestMethod::Exact,
    );
}

#[test]
fn small_samples_without_ties_use_the_exact_distribution() {
    check(
        &[1.0, 2.0, 3.0, 4.0, 5.0],
        &[3.5, 6.0, 7.0, 8.0, 9.0, 10.0, 0.5],
        7.0,
        0.10606060606060606,
        TestMethod::Exact,
    );
    let x: Vec<f64> = (0..20).map(|i| f64::from(i) * 0.01).collect();
    let y: Vec<f64> = (0..20).map(|i| f64::from(i) * 0.01 + 0.0753).collect();
    check(&x, &y, 78.0, 0.0006675619675571311, TestMethod::Exact);
}

#[test]
fn ties_use_the_normal_approximation_with_tie_and_continuity_correction() {
    check(
        &[1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0],
        &[3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 6.0, 7.0],
        7.5,
        0.010515245935858907,
        TestMethod::Normal,
    );
    check(
        &[0.1, 0.1, 0.2, 0.2, 0.3],
        &[0.1, 0.2, 0.2, 0.3, 0.3, 0.3],
        9.5,
        0.33347033826188743,
        TestMethod::Normal,
    );
}

#[test]
fn large_samples_use_the_normal_approximation() {
    let x: Vec<f64> = (0..30).map(|i| f64::from(i) * 0.01).collect();
    let y: Vec<f64> = (0..30).map(|i| f64::from(i) * 0.01 + 0.0753).collect();
    check(&x, &y, 253.0, 0.003670893392450653, TestMethod::Normal);
}

#[test]
fn identical_values_everywhere_give_no_evidence() {
    check(&[2.0; 4], &[2.0; 3], 6.0, 1.0, TestMethod::Normal);
}

#[test]
fn an_empty_or_non_finite_sample_has_no_test() {
    assert!(mann_whitney_u(&[], &[1.0]).is_none());
    assert!(mann_whitney_u(&[f64::NAN, 1.0], &[1.0]).is_none());
}

fn latency_spec() -> MetricSpec {
    MetricSpec {
        metric: JudgeMetric::TtftP95,
        direction: Direction::HigherIsWorse,
        allowed_relative_change: 0.10,
        allowed_absolute_change: 0.0,
        critical: false,
    }
}

#[test]
fn a_clearly_slower_canary_is_high_with_its_evidence() {
    let canary = [0.52, 0.55, 0.61, 0.58, 0.66, 0.59];
    let baseline = [0.41, 0.44, 0.40, 0.47, 0.43, 0.45];
    let r = classify(&latency_spec(), &canary, &baseline, &JudgeParams::default());
    assert_eq!(r.classification, Classification::High);
    assert_eq!(r.passed, Some(false));
    assert_eq!(r.u, Some(36.0));
    assert!(close(r.p_value.unwrap_or(1.0), 0.0021645021645021645));
    assert!(close(r.canary_median.unwrap_or(0.0), 0.585));
    assert!(close(r.baseline_median.unwrap_or(0.0), 0.435));
    // (0.585 − 0.435) / 0.435
    assert!(close(r.relative_change.unwrap_or(0.0), 0.15 / 0.435));
}

#[test]
fn a_faster_canary_is_low_and_passes_a_higher_is_worse_metric() {
    let canary = [0.41, 0.44, 0.40, 0.47, 0.43, 0.45];
    let baseline = [0.52, 0.55, 0.61, 0.58, 0.66, 0.59];
    let r = classify(&latency_spec(), &canary, &baseline, &JudgeParams::default());
    assert_eq!(r.classification, Classification::Low);
    assert_eq!(r.passed, Some(true));
}

#[test]
fn a_lower_throughput_fails_a_higher_is_better_metric() {
    let spec = MetricSpec {
        metric: JudgeMetric::GenerationTokensPerS,
        direction: Direction::HigherIsBetter,
        ..latency_spec()
    };
    let r = classify(
        &spec,
        &[300.0, 310.0, 305.0, 298.0, 302.0],
        &[400.0, 395.0, 410.0, 405.0, 398.0],
        &JudgeParams::default(),
    );
    assert_eq!(r.classification, Classification::Low);
    assert_eq!(r.passed, Some(false));
}

#[test]
fn a_significant_change_within_the_allowed_change_passes() {
    // Canary 7% slower, every value above every baseline value: significant, but inside the
    // 10% allowed.
    let baseline = [1.00, 1.01, 1.02, 1.03, 1.04, 1.05];
    let canary: Vec<f64> = baseline.iter().map(|v| v + 0.07).collect();
    let r = classify(&latency_spec(), &canary, &baseline, &JudgeParams::default());
    assert!(r.p_value.unwrap_or(1.0) < 0.05);
    assert_eq!(r.classification, Classification::Pass);
}

#[test]
fn too_few_observations_are_no_data_not_a_pass() {
    let r = classify(
        &latency_spec(),
        &[9.0, 9.5, 9.9],
        &[0.1, 0.2, 0.3],
        &JudgeParams::default(),
    );
    assert_eq!(r.classification, Classification::NoData);
    assert_eq!(r.passed, None);
    assert!(r.reason.contains("too few"), "{}", r.reason);
}

#[test]
fn nan_values_are_dropped_before_the_test() {
    let canary = [f64::NAN, 0.52, 0.55, f64::NAN, 0.61, 0.58, 0.66, 0.59];
    let baseline = [0.41, 0.44, f64::INFINITY, 0.40, 0.47, 0.43, 0.45];
    let r = classify(&latency_spec(), &canary, &baseline, &JudgeParams::default());
    assert_eq!((r.canary_n, r.baseline_n), (6, 6));
    assert_eq!(r.classification, Classification::High);
}

#[test]
fn trimming_removes_an_outlier_from_each_end() {
    let params = JudgeParams {
        trim_fraction: 0.1,
        ..JudgeParams::default()
    };
    let baseline: Vec<f64> = (0..10).map(|i| 1.0 + f64::from(i) * 0.01).collect();
    let mut canary = baseline.clone();
    canary[9] = 1000.0;
    let r = classify(&latency_spec(), &canary, &baseline, &params);
    assert_eq!((r.canary_n, r.baseline_n), (8, 8));
    assert_eq!(r.classification, Classification::Pass);
}

fn obs(pairs: &[(Role, JudgeMetric, Vec<f64>)]) -> Observations {
    let mut o = Observations::default();
    for (role, metric, v) in pairs {
        o.values.insert((*role, *metric), v.clone());
    }
    o
}

fn same_on_both_sides(metric: JudgeMetric, v: &[f64]) -> [(Role, JudgeMetric, Vec<f64>); 2] {
    [
        (Role::Canary, metric, v.to_vec()),
        (Role::Baseline, metric, v.to_vec()),
    ]
}

#[test]
fn all_nan_metrics_are_no_data_and_the_verdict_is_inconclusive() {
    let nan = vec![f64::NAN; 8];
    let pairs: Vec<_> = JudgeMetric::ALL
        .iter()
        .flat_map(|m| same_on_both_sides(*m, &nan))
        .collect();
    let report = judge(&obs(&pairs), &JudgeParams::default());
    assert_eq!(report.verdict, Verdict::Inconclusive);
    assert_eq!(report.score, 0.0);
    assert!(report
        .metrics
        .iter()
        .all(|m| m.classification == Classification::NoData));
}

#[test]
fn no_data_at_all_is_inconclusive_never_pass() {
    let report = judge(&Observations::default(), &JudgeParams::default());
    assert_eq!(report.verdict, Verdict::Inconclusive);
}

#[test]
fn an_equal_canary_passes_with_a_full_score() {
    let lat = [0.40, 0.41, 0.43, 0.44, 0.42, 0.45];
    let mut pairs: Vec<_> = same_on_both_sides(JudgeMetric::TtftP95, &lat).to_vec();
    pairs.extend(same_on_both_sides(
        JudgeMetric::E2eP95,
        &[2.0, 2.1, 2.05, 1.98, 2.02],
    ));
    pairs.extend(same_on_both_sides(JudgeMetric::ErrorRatio, &[0.0; 5]));
    let report = judge(&obs(&pairs), &JudgeParams::default());
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.reason);
    assert_eq!(report.score, 100.0);
}

#[test]
fn a_clearly_worse_canary_fails() {
    let pairs = vec![
        (
            Role::Canary,
            JudgeMetric::TtftP95,
            vec![0.52, 0.55, 0.61, 0.58, 0.66, 0.59],
        ),
        (
            Role::Baseline,
            JudgeMetric::TtftP95,
            vec![0.41, 0.44, 0.40, 0.47, 0.43, 0.45],
        ),
        (
            Role::Canary,
            JudgeMetric::E2eP95,
            vec![3.1, 3.3, 3.2, 3.4, 3.0],
        ),
        (
            Role::Baseline,
            JudgeMetric::E2eP95,
            vec![2.0, 2.1, 2.05, 1.98, 2.02],
        ),
        (Role::Canary, JudgeMetric::ErrorRatio, vec![0.0; 5]),
        (Role::Baseline, JudgeMetric::ErrorRatio, vec![0.0; 5]),
    ];
    let report = judge(&obs(&pairs), &JudgeParams::default());
    assert_eq!(report.verdict, Verdict::Fail, "{}", report.reason);
    assert!((report.score - 100.0 / 3.0).abs() < 1e-9);
}

#[test]
fn one_failing_metric_of_six_is_marginal_and_inconclusive() {
    let mut pairs = vec![
        (
            Role::Canary,
            JudgeMetric::TtftP95,
            vec![0.52, 0.55, 0.61, 0.58, 0.66, 0.59],
        ),
        (
            Role::Baseline,
            JudgeMetric::TtftP95,
            vec![0.41, 0.44, 0.40, 0.47, 0.43, 0.45],
        ),
    ];
    for m in [
        JudgeMetric::InterTokenP95,
        JudgeMetric::E2eP95,
        JudgeMetric::ErrorRatio,
        JudgeMetric::GenerationTokensPerS,
        JudgeMetric::PreemptionsPerS,
    ] {
        pairs.extend(same_on_both_sides(m, &[1.0, 2.0, 3.0, 4.0, 5.0]));
    }
    let report = judge(&obs(&pairs), &JudgeParams::default());
    // 5 of 6 pass: 83.3, between marginal 75 and pass 95.
    assert_eq!(report.verdict, Verdict::Inconclusive, "{}", report.reason);
}

#[test]
fn a_failing_critical_metric_fails_whatever_the_score() {
    let mut pairs = vec![
        (
            Role::Canary,
            JudgeMetric::ErrorRatio,
            vec![0.08, 0.1, 0.12, 0.09, 0.11],
        ),
        (
            Role::Baseline,
            JudgeMetric::ErrorRatio,
            vec![0.0, 0.0, 0.001, 0.0, 0.0],
        ),
    ];
    for m in [
        JudgeMetric::TtftP95,
        JudgeMetric::InterTokenP95,
        JudgeMetric::E2eP95,
        JudgeMetric::GenerationTokensPerS,
        JudgeMetric::PreemptionsPerS,
    ] {
        pairs.extend(same_on_both_sides(m, &[1.0, 2.0, 3.0, 4.0, 5.0]));
    }
    let report = judge(&obs(&pairs), &JudgeParams::default());
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(report.reason.contains("ErrorRatio"), "{}", report.reason);
}

// --- observations from samples ---------------------------------------------------------------

const INF: f64 = f64::INFINITY;

fn id(s: &str) -> Id {
    Id::parse("id", s).expect("valid id")
}

/// A sample whose TTFT histogram holds `count` observations, all in the (0.1, 1.0] bucket after
/// `fast` in (0, 0.1], plus success/generation counters.
fn sample(inst: &str, role: Role, round: u32, at_ms: i64, fast: f64, slow: f64) -> Sample {
    let count = fast + slow;
    let metrics = BTreeMap::from([
        (
            Canonical::TtftSeconds,
            MetricValue::Histogram(Histogram {
                count,
                sum: fast * 0.05 + slow * 0.5,
                buckets: vec![(0.1, fast), (1.0, count), (INF, count)],
            }),
        ),
        (Canonical::RequestSuccessTotal, MetricValue::Number(count)),
        (Canonical::RequestFailureTotal, MetricValue::Number(0.0)),
        (
            Canonical::GenerationTokensTotal,
            MetricValue::Number(count * 100.0),
        ),
    ]);
    Sample {
        step: 0,
        round,
        instance: id(inst),
        role,
        at_ms,
        models: vec![ModelMetrics {
            model: "m".into(),
            metrics,
        }],
        error: None,
    }
}

#[test]
fn observations_come_from_deltas_between_consecutive_samples_of_one_instance() {
    // Lifetime: 1000 fast observations before the bake; inside the bake only slow ones arrive.
    let samples = vec![
        sample("c1", Role::Canary, 0, 0, 1000.0, 0.0),
        sample("c1", Role::Canary, 1, 60_000, 1000.0, 20.0),
        sample("c1", Role::Canary, 2, 120_000, 1000.0, 40.0),
        sample("b1", Role::Baseline, 0, 0, 10.0, 0.0),
        sample("b1", Role::Baseline, 1, 60_000, 30.0, 0.0),
    ];
    let o = observations(&samples);
    let ttft = o.get(Role::Canary, JudgeMetric::TtftP95);
    assert_eq!(ttft.len(), 2, "two intervals of c1");
    // 20 observations all in (0.1, 1.0]: p95 interpolates to 0.1 + 0.9 · 0.95.
    for v in ttft {
        assert!((v - 0.955).abs() < 1e-9, "{v}");
    }
    let base = o.get(Role::Baseline, JudgeMetric::TtftP95);
    assert_eq!(base.len(), 1);
    assert!((base[0] - 0.095).abs() < 1e-9);
    // 20 requests · 100 tokens in 60 s.
    let tps = o.get(Role::Canary, JudgeMetric::GenerationTokensPerS);
    assert!((tps[0] - 2000.0 / 60.0).abs() < 1e-9);
    assert_eq!(o.get(Role::Canary, JudgeMetric::ErrorRatio), &[0.0, 0.0]);
}

#[test]
fn a_failed_scrape_breaks_the_interval_instead_of_spanning_it() {
    let mut broken = sample("c1", Role::Canary, 1, 60_000, 0.0, 0.0);
    broken.models.clear();
    broken.error = Some("timed out".into());
    let samples = vec![
        sample("c1", Role::Canary, 0, 0, 0.0, 0.0),
        broken,
        sample("c1", Role::Canary, 2, 120_000, 0.0, 40.0),
    ];
    let o = observations(&samples);
    assert!(o.get(Role::Canary, JudgeMetric::TtftP95).is_empty());
    assert_eq!(o.scrapes[&Role::Canary].failed, 1);
    assert_eq!(o.scrapes[&Role::Canary].ok, 2);
}

#[test]
fn a_canary_that_stops_answering_fails_instead_of_being_no_data() {
    let mut samples = Vec::new();
    for round in 0..6u32 {
        let at = i64::from(round) * 60_000;
        let mut c = sample("c1", Role::Canary, round, at, 0.0, 0.0);
        c.models.clear();
        c.error = Some("connection refused".into());
        samples.push(c);
        samples.push(sample(
            "b1",
            Role::Baseline,
            round,
            at,
            f64::from(round) * 10.0,
            0.0,
        ));
    }
    let report = judge(&observations(&samples), &JudgeParams::default());
    assert_eq!(report.verdict, Verdict::Fail);
    assert!(
        report.reason.contains("stopped answering"),
        "{}",
        report.reason
    );
}
