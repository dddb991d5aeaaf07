//! SLO monitoring: good events from histogram bucket deltas (exact on a bound, interpolated inside
//! a bucket), compliance and error budget, and the four multi-window burn-rate alerts.

use perfagent::analysis::slo::{
    burn_rate_alerts, evaluate_slo, latency_good_events, threshold_warning, window_counts,
    AlertSeverity, AlertState, Counting, Sli, SloError, SloObjective, SloPolicy, WindowCounts,
    BURN_RATE_RULES, BURN_RATE_WINDOWS_S,
};
use perfagent::snapshot::{Canonical, Histogram, MetricValue, ModelMetrics};

const INF: f64 = f64::INFINITY;

fn hist(buckets: &[(f64, f64)]) -> Histogram {
    Histogram {
        count: buckets.last().map_or(0.0, |b| b.1),
        sum: 0.0,
        buckets: buckets.to_vec(),
    }
}

const DELTA: [(f64, f64); 4] = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (INF, 120.0)];

fn ttft_objective(threshold_s: f64, target: f64) -> SloObjective {
    SloObjective {
        name: "ttft".into(),
        sli: Sli::Latency {
            metric: Canonical::TtftSeconds,
            threshold_s,
        },
        target,
    }
}

fn errors(target: f64) -> SloObjective {
    SloObjective {
        name: "errors".into(),
        sli: Sli::ErrorRatio,
        target,
    }
}

// ---------------------------------------------------------------- good events

#[test]
fn a_threshold_on_a_bucket_bound_counts_that_bucket_exactly() {
    let g = latency_good_events(&hist(&DELTA), 0.2).expect("count");
    assert_eq!(
        (g.good, g.total, g.counting),
        (90.0, 120.0, Counting::Exact)
    );
}

#[test]
fn a_threshold_inside_a_bucket_is_interpolated_linearly() {
    let g = latency_good_events(&hist(&DELTA), 0.15).expect("count");
    assert_eq!(g.counting, Counting::Interpolated);
    assert!((g.good - 70.0).abs() < 1e-9, "{}", g.good);
    let g = latency_good_events(&hist(&DELTA), 0.35).expect("count");
    assert!((g.good - 95.0).abs() < 1e-9, "{}", g.good);
}

#[test]
fn a_threshold_below_the_first_bound_interpolates_from_zero() {
    let g = latency_good_events(&hist(&DELTA), 0.05).expect("count");
    assert_eq!(g.counting, Counting::Interpolated);
    assert!((g.good - 25.0).abs() < 1e-9);
}

#[test]
fn a_threshold_above_the_last_finite_bound_is_a_lower_bound() {
    let g = latency_good_events(&hist(&DELTA), 2.0).expect("count");
    assert_eq!(
        (g.good, g.total, g.counting),
        (100.0, 120.0, Counting::LowerBound)
    );
}

#[test]
fn float_noise_in_bounds_still_matches_the_threshold() {
    // TGI's bounds: 0.00015 × 1.5ⁿ printed with noise.
    let b = [(0.00015, 1.0), (0.00022500000000000002, 4.0), (INF, 5.0)];
    let g = latency_good_events(&hist(&b), 0.000225).expect("count");
    assert_eq!((g.good, g.counting), (4.0, Counting::Exact));
}

#[test]
fn non_monotonic_counts_are_smoothed_before_counting() {
    let b = [(0.1, 10.0), (0.2, 9.999), (INF, 20.0)];
    let g = latency_good_events(&hist(&b), 0.2).expect("count");
    assert_eq!(g.good, 10.0);
}

#[test]
fn a_histogram_without_buckets_cannot_be_counted() {
    // What the TGI adapter produces for its TTFT estimate: count and sum only.
    let estimate = Histogram {
        count: 10.0,
        sum: 3.0,
        buckets: vec![],
    };
    assert_eq!(
        latency_good_events(&estimate, 0.5),
        Err(SloError::NoBuckets)
    );
    let only_inf = hist(&[(INF, 10.0)]);
    assert_eq!(
        latency_good_events(&only_inf, 0.5),
        Err(SloError::NoBuckets)
    );
}

#[test]
fn no_observations_are_zero_of_zero() {
    let g = latency_good_events(&hist(&[(0.1, 0.0), (INF, 0.0)]), 0.1).expect("count");
    assert_eq!((g.good, g.total), (0.0, 0.0));
}

#[test]
fn a_threshold_must_be_positive_and_finite() {
    for bad in [0.0, -1.0, f64::NAN, INF] {
        assert!(matches!(
            latency_good_events(&hist(&DELTA), bad),
            Err(SloError::InvalidThreshold(_))
        ));
    }
}

// ---------------------------------------------------------------- window counts

fn mm(pairs: &[(Canonical, MetricValue)]) -> ModelMetrics {
    ModelMetrics {
        model: "m".into(),
        metrics: pairs.iter().cloned().collect(),
    }
}

#[test]
fn window_counts_come_from_bucket_deltas_between_two_snapshots() {
    let start = mm(&[(
        Canonical::TtftSeconds,
        MetricValue::Histogram(hist(&[(0.1, 1000.0), (0.5, 1000.0), (INF, 1000.0)])),
    )]);
    let end = mm(&[(
        Canonical::TtftSeconds,
        MetricValue::Histogram(hist(&[(0.1, 1090.0), (0.5, 1100.0), (INF, 1100.0)])),
    )]);
    let w = window_counts(&ttft_objective(0.1, 0.9), 3600, &start, &end).expect("counts");
    assert_eq!((w.window_s, w.good, w.total), (3600, 90.0, 100.0));
    assert_eq!(w.counting, Counting::Exact);
    // Reset in between (end below start): the end values are all new observations.
    let w = window_counts(&ttft_objective(0.1, 0.9), 3600, &end, &start).expect("counts");
    assert_eq!((w.good, w.total), (1000.0, 1000.0));
    assert_eq!(
        window_counts(&ttft_objective(0.1, 0.9), 3600, &start, &mm(&[])),
        Err(SloError::Missing(Canonical::TtftSeconds))
    );
}

#[test]
fn error_counts_are_success_over_success_plus_failure() {
    let start = mm(&[
        (Canonical::RequestSuccessTotal, MetricValue::Number(100.0)),
        (Canonical::RequestFailureTotal, MetricValue::Number(1.0)),
    ]);
    let end = mm(&[
        (Canonical::RequestSuccessTotal, MetricValue::Number(1090.0)),
        (Canonical::RequestFailureTotal, MetricValue::Number(11.0)),
    ]);
    let w = window_counts(&errors(0.99), 300, &start, &end).expect("counts");
    assert_eq!((w.good, w.total), (990.0, 1000.0));
    let no_failures = mm(&[(Canonical::RequestSuccessTotal, MetricValue::Number(5.0))]);
    assert_eq!(
        window_counts(&errors(0.99), 300, &no_failures, &no_failures),
        Err(SloError::Missing(Canonical::RequestFailureTotal))
    );
}

// ---------------------------------------------------------------- compliance and budget

fn counts(window_s: u64, good: f64, total: f64) -> WindowCounts {
    WindowCounts {
        window_s,
        good,
        total,
        counting: Counting::Exact,
    }
}

#[test]
fn compliance_and_remaining_error_budget_over_the_period() {
    let o = errors(0.999);
    let half = evaluate_slo(&o, &counts(2_592_000, 99_950.0, 100_000.0), &[]);
    assert!((half.compliance.expect("c") - 0.9995).abs() < 1e-12);
    assert_eq!(half.met, Some(true));
    assert!((half.budget_consumed.expect("consumed") - 0.5).abs() < 1e-9);
    assert!((half.budget_remaining.expect("remaining") - 0.5).abs() < 1e-9);
    assert!((half.error_budget - 0.001).abs() < 1e-15);

    let over = evaluate_slo(&o, &counts(2_592_000, 99_800.0, 100_000.0), &[]);
    assert_eq!(over.met, Some(false));
    assert!((over.budget_remaining.expect("remaining") + 1.0).abs() < 1e-9);

    let idle = evaluate_slo(&o, &counts(2_592_000, 0.0, 0.0), &[]);
    assert_eq!(
        (idle.compliance, idle.met, idle.budget_remaining),
        (None, None, None)
    );
}

// ---------------------------------------------------------------- burn-rate alerts

/// All seven windows, none burning.
fn quiet() -> Vec<WindowCounts> {
    BURN_RATE_WINDOWS_S
        .iter()
        .map(|&s| counts(s, 10_000.0, 10_000.0))
        .collect()
}

/// Sets a window's burn rate (target 0.999, so bad ratio = burn × 0.001).
fn burn(ws: &mut [WindowCounts], window_s: u64, rate: f64) {
    for w in ws.iter_mut().filter(|w| w.window_s == window_s) {
        w.total = 100_000.0;
        w.good = 100_000.0 * (1.0 - rate * 0.001);
    }
}

fn firing(ws: &[WindowCounts]) -> Vec<String> {
    burn_rate_alerts(0.999, ws)
        .into_iter()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| a.name)
        .collect()
}

#[test]
fn the_rules_are_the_workbook_s_for_a_30_day_budget() {
    let rules: Vec<_> = BURN_RATE_RULES
        .iter()
        .map(|r| {
            (
                r.name,
                r.severity,
                r.long_window_s,
                r.short_window_s,
                r.burn_rate,
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            ("page_1h_5m", AlertSeverity::Page, 3600, 300, 14.4),
            ("page_6h_30m", AlertSeverity::Page, 21600, 1800, 6.0),
            ("ticket_1d_2h", AlertSeverity::Ticket, 86400, 7200, 3.0),
            ("ticket_3d_6h", AlertSeverity::Ticket, 259200, 21600, 1.0),
        ]
    );
    for r in BURN_RATE_RULES {
        assert!(BURN_RATE_WINDOWS_S.contains(&r.long_window_s));
        assert!(BURN_RATE_WINDOWS_S.contains(&r.short_window_s));
    }
}

#[test]
fn nothing_fires_when_nothing_burns() {
    let alerts = burn_rate_alerts(0.999, &quiet());
    assert_eq!(alerts.len(), 4);
    assert!(alerts.iter().all(|a| a.state == AlertState::Ok));
    assert!(alerts.iter().all(|a| a.long_burn_rate == Some(0.0)));
}

#[test]
fn each_alert_fires_only_when_both_of_its_windows_burn_above_its_rate() {
    let cases = [
        ("page_1h_5m", 3600, 300, 15.0),
        ("page_6h_30m", 21600, 1800, 6.5),
        ("ticket_1d_2h", 86400, 7200, 3.5),
        ("ticket_3d_6h", 259200, 21600, 1.5),
    ];
    for (name, long, short, rate) in cases {
        let mut both = quiet();
        burn(&mut both, long, rate);
        burn(&mut both, short, rate);
        assert_eq!(firing(&both), vec![name.to_string()], "{name} both");

        let mut long_only = quiet();
        burn(&mut long_only, long, rate);
        assert!(firing(&long_only).is_empty(), "{name}: long window only");

        let mut short_only = quiet();
        burn(&mut short_only, short, rate);
        assert!(firing(&short_only).is_empty(), "{name}: short window only");

        let mut below = quiet();
        let rule = BURN_RATE_RULES
            .iter()
            .find(|r| r.name == name)
            .expect("rule");
        burn(&mut below, long, rule.burn_rate * 0.9);
        burn(&mut below, short, rule.burn_rate * 0.9);
        assert!(firing(&below).is_empty(), "{name}: below its rate");
    }
}

#[test]
fn a_burn_rate_exactly_at_the_threshold_does_not_fire() {
    // Target 0.5: a bad ratio of 0.5 burns at exactly 1×.
    let ws = vec![counts(259_200, 50.0, 100.0), counts(21_600, 50.0, 100.0)];
    let alerts = burn_rate_alerts(0.5, &ws);
    let a = alerts
        .iter()
        .find(|a| a.name == "ticket_3d_6h")
        .expect("rule");
    assert_eq!(a.long_burn_rate, Some(1.0));
    assert_eq!(a.state, AlertState::Ok);
}

#[test]
fn a_missing_window_is_no_data_and_named() {
    let ws: Vec<_> = quiet().into_iter().filter(|w| w.window_s != 300).collect();
    let alerts = burn_rate_alerts(0.999, &ws);
    let page = alerts
        .iter()
        .find(|a| a.name == "page_1h_5m")
        .expect("rule");
    assert_eq!(page.state, AlertState::NoData);
    assert_eq!(page.missing_windows_s, vec![300]);
    assert_eq!(page.short_burn_rate, None);
    assert!(alerts
        .iter()
        .filter(|a| a.name != "page_1h_5m")
        .all(|a| a.state == AlertState::Ok));
}

#[test]
fn a_window_without_traffic_spends_no_budget() {
    assert_eq!(counts(300, 0.0, 0.0).burn_rate(0.999), 0.0);
    assert!((counts(300, 99.0, 100.0).burn_rate(0.99) - 1.0).abs() < 1e-9);
}

#[test]
fn the_report_warns_when_the_threshold_is_not_a_bucket_bound() {
    let o = ttft_objective(0.15, 0.99);
    let period = WindowCounts {
        counting: Counting::Interpolated,
        ..counts(2_592_000, 70.0, 120.0)
    };
    let r = evaluate_slo(&o, &period, &quiet());
    assert_eq!(r.warnings.len(), 1);
    assert!(
        r.warnings[0].contains("interpolated linearly"),
        "{}",
        r.warnings[0]
    );
    assert_eq!(r.alerts.len(), 4);

    let exact = evaluate_slo(&o, &counts(2_592_000, 70.0, 120.0), &quiet());
    assert!(exact.warnings.is_empty());

    let w = threshold_warning(&o, &DELTA).expect("warning");
    assert!(w.contains("nearest 0.1 s"), "{w}");
    assert_eq!(threshold_warning(&ttft_objective(0.2, 0.99), &DELTA), None);
    assert_eq!(threshold_warning(&errors(0.99), &DELTA), None);
}

// ---------------------------------------------------------------- objectives

#[test]
fn objectives_are_validated_and_serialize_in_snake_case() {
    assert!(ttft_objective(0.5, 0.99).validate().is_ok());
    assert!(matches!(
        ttft_objective(0.5, 1.0).validate(),
        Err(SloError::InvalidTarget { .. })
    ));
    let not_latency = SloObjective {
        name: "x".into(),
        sli: Sli::Latency {
            metric: Canonical::RequestsWaiting,
            threshold_s: 1.0,
        },
        target: 0.9,
    };
    assert!(matches!(
        not_latency.validate(),
        Err(SloError::NotALatency { .. })
    ));
    let dup = SloPolicy {
        objectives: vec![errors(0.99), errors(0.999)],
    };
    assert!(matches!(dup.validate(), Err(SloError::DuplicateName(_))));

    let json = serde_json::to_value(ttft_objective(0.5, 0.99)).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "name": "ttft",
            "sli": {"kind": "LATENCY", "metric": "ttft_seconds", "threshold_s": 0.5},
            "target": 0.99
        })
    );
    let policy: SloPolicy = serde_json::from_str(
        r#"{"objectives":[{"name":"e","sli":{"kind":"ERROR_RATIO"},"target":0.995}]}"#,
    )
    .expect("policy");
    assert!(policy.validate().is_ok());
    let report = evaluate_slo(&policy.objectives[0], &counts(2_592_000, 1.0, 1.0), &[]);
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["alerts"][0]["state"], "NO_DATA");
    assert_eq!(json["alerts"][0]["severity"], "PAGE");
}
