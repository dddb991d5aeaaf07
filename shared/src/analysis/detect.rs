//! The bottleneck rules: each reads what the engine really exports over a window, fires only on a
//! sustained condition or enough observations, and otherwise says why it could not run.

use super::capability::{support, Support};
use super::forecast::forecast;
use super::{
    prioritize, AnalysisBasis, Bottleneck, BottleneckType, Comparison, Confidence, Evidence,
    InstanceAnalysis, LatencySummary, NotEvaluated, NotEvaluatedCause, Severity, Statistic,
    Thresholds, WindowSummary,
};
use crate::snapshot::{Canonical, Engine, ModelMetrics};
use crate::window::{increase, summarize, HistogramWindow, Point, WindowStats};

/// Analyzes one (instance, model) series: `points` in any order, `engine` the instance's engine.
pub fn analyze_instance(
    points: &[Point<'_>],
    engine: Engine,
    thresholds: &Thresholds,
) -> InstanceAnalysis {
    let mut pts = points.to_vec();
    pts.sort_by_key(|p| p.at_ms);
    let stats = summarize(&pts);
    let ctx = Ctx {
        engine,
        t: thresholds,
        pts: &pts,
        stats: &stats,
    };
    let mut f = Findings::default();
    ctx.memory(&mut f);
    ctx.queue(&mut f);
    ctx.latency(&mut f);
    ctx.throughput(&mut f);
    ctx.cache(&mut f);
    prioritize(&mut f.bottlenecks);
    InstanceAnalysis {
        engine,
        basis: AnalysisBasis::Window,
        summary: summary(&pts, &stats),
        bottlenecks: f.bottlenecks,
        evaluated: f.evaluated,
        not_evaluated: f.not_evaluated,
        forecasts: forecast(&pts, thresholds),
        thresholds: thresholds.clone(),
    }
}

/// Judges one posted snapshot on its gauges only (KV usage, waiting requests): every finding is
/// LOW confidence and the basis SINGLE_SAMPLE; rates, quantiles and ratios need a window and are
/// listed as not evaluated. A snapshot carries no time, so windows read `[0, 0]`.
pub fn detect_from_snapshot(
    metrics: &ModelMetrics,
    engine: Engine,
    thresholds: &Thresholds,
) -> InstanceAnalysis {
    let t = thresholds;
    let pts = [Point { at_ms: 0, metrics }];
    let stats = summarize(&pts);
    let mut f = Findings::default();
    let single = |metric: Canonical, value: f64, threshold: f64| Evidence {
        metric,
        statistic: Statistic::SingleSample,
        value,
        threshold: Some(threshold),
        comparison: Comparison::Gte,
        window_start_ms: 0,
        window_end_ms: 0,
        samples: 1.0,
    };
    let gauge = |c: Canonical| metrics.number(c).filter(|v| v.is_finite());

    let kind = BottleneckType::MemoryPressure;
    match gauge(Canonical::KvCacheUsageRatio) {
        Some(kv) => {
            f.evaluated.push(kind);
            if let Some(severity) = t.memory_severity(Some(kv), false) {
                f.bottlenecks.push(Bottleneck {
                    kind,
                    severity,
                    priority: 0,
                    confidence: Confidence::Low,
                    description: format!(
                        "KV-cache usage {} in a single snapshot (threshold {}); one sample, \
                         confirm over a window",
                        pct(kv),
                        pct(t.memory_usage_ratio)
                    ),
                    evidence: vec![single(
                        Canonical::KvCacheUsageRatio,
                        kv,
                        t.memory_usage_ratio,
                    )],
                });
            }
        }
        None => f.not_evaluated.push(absent(
            engine,
            kind,
            Canonical::KvCacheUsageRatio,
            "this snapshot",
        )),
    }

    let kind = BottleneckType::QueueBuildup;
    match gauge(Canonical::RequestsWaiting) {
        Some(waiting) => {
            f.evaluated.push(kind);
            if let Some(severity) = Thresholds::queue_severity(waiting / t.queue_depth_requests) {
                f.bottlenecks.push(Bottleneck {
                    kind,
                    severity,
                    priority: 0,
                    confidence: Confidence::Low,
                    description: format!(
                        "{waiting:.0} requests waiting in a single snapshot (threshold {}); one \
                         sample, confirm over a window",
                        t.queue_depth_requests
                    ),
                    evidence: vec![single(
                        Canonical::RequestsWaiting,
                        waiting,
                        t.queue_depth_requests,
                    )],
                });
            }
        }
        None => f.not_evaluated.push(absent(
            engine,
            kind,
            Canonical::RequestsWaiting,
            "this snapshot",
        )),
    }

    for (kind, metric) in [
        (BottleneckType::HighLatency, Canonical::TtftSeconds),
        (
            BottleneckType::HighLatency,
            Canonical::InterTokenLatencySeconds,
        ),
        (
            BottleneckType::LowThroughput,
            Canonical::GenerationTokensTotal,
        ),
        (
            BottleneckType::CacheInefficiency,
            Canonical::PrefixCacheQueriesTotal,
        ),
    ] {
        f.not_evaluated.push(match support(engine, metric) {
            Support::NotExported(why) => NotEvaluated {
                kind,
                metric: Some(metric),
                cause: NotEvaluatedCause::NotExported,
                reason: why.to_string(),
            },
            _ => NotEvaluated {
                kind,
                metric: Some(metric),
                cause: NotEvaluatedCause::InsufficientData,
                reason: format!(
                    "a single snapshot holds lifetime totals: {metric} needs a window of at least \
                     two snapshots"
                ),
            },
        });
    }
    prioritize(&mut f.bottlenecks);
    InstanceAnalysis {
        engine,
        basis: AnalysisBasis::SingleSample,
        summary: summary(&pts, &stats),
        bottlenecks: f.bottlenecks,
        evaluated: f.evaluated,
        not_evaluated: f.not_evaluated,
        forecasts: Vec::new(),
        thresholds: thresholds.clone(),
    }
}

#[derive(Default)]
struct Findings {
    bottlenecks: Vec<Bottleneck>,
    evaluated: Vec<BottleneckType>,
    not_evaluated: Vec<NotEvaluated>,
}

struct Ctx<'a> {
    engine: Engine,
    t: &'a Thresholds,
    /// Sorted by time.
    pts: &'a [Point<'a>],
    stats: &'a WindowStats,
}

/// Why a metric is missing: the engine never exports it (its own reason), or this server does not.
fn absent(engine: Engine, kind: BottleneckType, metric: Canonical, scope: &str) -> NotEvaluated {
    let reason = match support(engine, metric) {
        Support::NotExported(why) => why.to_string(),
        _ => format!(
            "{scope} has no {metric} from this {engine} server (an older version, or the feature \
             is off)"
        ),
    };
    NotEvaluated {
        kind,
        metric: Some(metric),
        cause: NotEvaluatedCause::NotExported,
        reason,
    }
}

fn thin(kind: BottleneckType, metric: Canonical, reason: String) -> NotEvaluated {
    NotEvaluated {
        kind,
        metric: Some(metric),
        cause: NotEvaluatedCause::InsufficientData,
        reason,
    }
}

/// The level at least `fraction` of the values are at or above: the ⌈fraction·n⌉-th largest.
fn sustained_level(values: &[f64], fraction: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    // The epsilon keeps 0.8 × 10 from rounding up to a 9th point through float noise.
    let k = ((fraction * sorted.len() as f64 - 1e-9).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(k - 1).copied()
}

fn pct(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

fn ms(seconds: f64) -> String {
    format!("{:.0} ms", seconds * 1000.0)
}

impl Ctx<'_> {
    fn evidence(
        &self,
        metric: Canonical,
        statistic: Statistic,
        value: f64,
        threshold: Option<f64>,
        comparison: Comparison,
        samples: f64,
    ) -> Evidence {
        Evidence {
            metric,
            statistic,
            value,
            threshold,
            comparison,
            window_start_ms: self.stats.start_ms,
            window_end_ms: self.stats.end_ms,
            samples,
        }
    }

    fn window_s(&self) -> f64 {
        (self.stats.end_ms - self.stats.start_ms) as f64 / 1000.0
    }

    fn present(&self, metric: Canonical) -> bool {
        self.pts
            .iter()
            .any(|p| p.metrics.metrics.contains_key(&metric))
    }

    fn absent(&self, kind: BottleneckType, metric: Canonical) -> NotEvaluated {
        if self.pts.is_empty() && !matches!(support(self.engine, metric), Support::NotExported(_)) {
            return thin(kind, metric, "the window holds no snapshots".to_string());
        }
        absent(self.engine, kind, metric, "the window")
    }

    /// The sustained level of a gauge and its number of points, or why there is none.
    fn sustained(
        &self,
        kind: BottleneckType,
        metric: Canonical,
    ) -> Result<(f64, usize), NotEvaluated> {
        let values: Vec<f64> = self
            .pts
            .iter()
            .filter_map(|p| p.metrics.number(metric))
            .filter(|v| v.is_finite())
            .collect();
        if values.is_empty() {
            return Err(self.absent(kind, metric));
        }
        if values.len() < self.t.min_gauge_points {
            return Err(thin(
                kind,
                metric,
                format!(
                    "{} point(s) of {metric} in the window; a gauge condition needs at least {}",
                    values.len(),
                    self.t.min_gauge_points
                ),
            ));
        }
        let level = sustained_level(&values, self.t.sustained_fraction).unwrap_or(0.0);
        Ok((level, values.len()))
    }

    /// A counter's increase over the window and its number of points, or why there is none.
    fn increase(
        &self,
        kind: BottleneckType,
        metric: Canonical,
    ) -> Result<(f64, usize), NotEvaluated> {
        let series: Vec<f64> = self
            .pts
            .iter()
            .filter_map(|p| p.metrics.number(metric))
            .collect();
        match series.len() {
            0 => Err(self.absent(kind, metric)),
            1 => Err(thin(
                kind,
                metric,
                format!("{metric} at one point only; an increase needs two"),
            )),
            n => Ok((increase(&series), n)),
        }
    }

    /// The window's p95 of a latency histogram and its observation count, or why there is none.
    fn p95(&self, kind: BottleneckType, metric: Canonical) -> Result<(f64, f64), NotEvaluated> {
        if !self.present(metric) {
            return Err(self.absent(kind, metric));
        }
        let Some(hw) = self.stats.histograms.get(&metric) else {
            return Err(thin(
                kind,
                metric,
                if self.stats.points < 2 {
                    format!(
                        "{} snapshot(s) in the window; a quantile needs two",
                        self.stats.points
                    )
                } else {
                    format!("no {metric} observations in the window")
                },
            ));
        };
        if hw.count < self.t.min_latency_observations {
            return Err(thin(
                kind,
                metric,
                format!(
                    "{:.0} {metric} observation(s) in the window; a p95 needs at least {:.0}",
                    hw.count, self.t.min_latency_observations
                ),
            ));
        }
        match hw.quantiles.get("p95") {
            Some(&p95) => Ok((p95, hw.count)),
            None => Err(NotEvaluated {
                kind,
                metric: Some(metric),
                cause: NotEvaluatedCause::NotExported,
                reason: match support(self.engine, metric) {
                    Support::Estimated(note) => note.to_string(),
                    _ => format!("{metric} has no buckets here, so no quantile can be computed"),
                },
            }),
        }
    }

    fn memory(&self, f: &mut Findings) {
        let kind = BottleneckType::MemoryPressure;
        let kv = self.sustained(kind, Canonical::KvCacheUsageRatio);
        let preemptions = self.increase(kind, Canonical::PreemptionsTotal);
        if kv.is_ok() || preemptions.is_ok() {
            f.evaluated.push(kind);
        }
        let level = match &kv {
            Ok((level, _)) => Some(*level),
            Err(why) => {
                f.not_evaluated.push(why.clone());
                None
            }
        };
        let preempted = match &preemptions {
            Ok((n, _)) => *n > 0.0,
            Err(why) => {
                f.not_evaluated.push(why.clone());
                false
            }
        };
        let Some(severity) = self.t.memory_severity(level, preempted) else {
            return;
        };
        let mut evidence = Vec::new();
        let mut parts = Vec::new();
        if let Ok((level, points)) = kv {
            evidence.push(self.evidence(
                Canonical::KvCacheUsageRatio,
                Statistic::SustainedLevel,
                level,
                Some(self.t.memory_usage_ratio),
                Comparison::Gte,
                points as f64,
            ));
            let g = self.stats.gauges.get(&Canonical::KvCacheUsageRatio);
            parts.push(format!(
                "KV-cache usage at or above {} on at least {} of {points} points (mean {}, max {}; \
                 threshold {})",
                pct(level),
                pct(self.t.sustained_fraction),
                g.map_or_else(|| "?".into(), |g| pct(g.mean)),
                g.map_or_else(|| "?".into(), |g| pct(g.max)),
                pct(self.t.memory_usage_ratio),
            ));
        }
        if let Ok((n, points)) = preemptions {
            if n > 0.0 {
                evidence.push(self.evidence(
                    Canonical::PreemptionsTotal,
                    Statistic::Increase,
                    n,
                    Some(0.0),
                    Comparison::Gt,
                    points as f64,
                ));
                parts.push(format!(
                    "{n:.0} request(s) preempted for lack of KV blocks in the window"
                ));
            }
        }
        f.bottlenecks.push(Bottleneck {
            kind,
            severity,
            priority: 0,
            confidence: Confidence::High,
            description: parts.join("; "),
            evidence,
        });
    }

    fn queue(&self, f: &mut Findings) {
        let kind = BottleneckType::QueueBuildup;
        let (level, points) = match self.sustained(kind, Canonical::RequestsWaiting) {
            Ok(v) => v,
            Err(why) => return f.not_evaluated.push(why),
        };
        f.evaluated.push(kind);
        let Some(severity) = Thresholds::queue_severity(level / self.t.queue_depth_requests) else {
            return;
        };
        let mut evidence = vec![self.evidence(
            Canonical::RequestsWaiting,
            Statistic::SustainedLevel,
            level,
            Some(self.t.queue_depth_requests),
            Comparison::Gte,
            points as f64,
        )];
        let mut description = format!(
            "{level:.0} or more requests waiting on at least {} of {points} points (threshold {})",
            pct(self.t.sustained_fraction),
            self.t.queue_depth_requests
        );
        if let Some((p95, count)) = self.context_p95(Canonical::QueueTimeSeconds) {
            evidence.push(self.evidence(
                Canonical::QueueTimeSeconds,
                Statistic::P95,
                p95,
                None,
                Comparison::Context,
                count,
            ));
            description.push_str(&format!("; p95 time in queue {}", ms(p95)));
        }
        f.bottlenecks.push(Bottleneck {
            kind,
            severity,
            priority: 0,
            confidence: Confidence::High,
            description,
            evidence,
        });
    }

    /// A p95 shown for context (no threshold), when the window has one.
    fn context_p95(&self, metric: Canonical) -> Option<(f64, f64)> {
        let hw: &HistogramWindow = self.stats.histograms.get(&metric)?;
        Some((*hw.quantiles.get("p95")?, hw.count))
    }

    fn latency(&self, f: &mut Findings) {
        let kind = BottleneckType::HighLatency;
        let mut evaluated = false;
        let mut worst: Option<Severity> = None;
        let mut evidence = Vec::new();
        let mut parts = Vec::new();
        for (metric, threshold, label) in [
            (Canonical::TtftSeconds, self.t.ttft_p95_s, "TTFT"),
            (
                Canonical::InterTokenLatencySeconds,
                self.t.inter_token_p95_s,
                "inter-token latency",
            ),
        ] {
            let (p95, count) = match self.p95(kind, metric) {
                Ok(v) => v,
                Err(why) => {
                    f.not_evaluated.push(why);
                    continue;
                }
            };
            evaluated = true;
            let Some(severity) = Thresholds::latency_severity(p95 / threshold) else {
                continue;
            };
            worst = worst.max(Some(severity));
            evidence.push(self.evidence(
                metric,
                Statistic::P95,
                p95,
                Some(threshold),
                Comparison::Gt,
                count,
            ));
            parts.push(format!(
                "{label} p95 {} over {count:.0} requests ({:.1}× the {} threshold)",
                ms(p95),
                p95 / threshold,
                ms(threshold)
            ));
        }
        if evaluated {
            f.evaluated.push(kind);
        }
        let Some(severity) = worst else {
            return;
        };
        if let Some((p95, count)) = self.context_p95(Canonical::QueueTimeSeconds) {
            evidence.push(self.evidence(
                Canonical::QueueTimeSeconds,
                Statistic::P95,
                p95,
                None,
                Comparison::Context,
                count,
            ));
            parts.push(format!("p95 time in queue {}", ms(p95)));
        }
        f.bottlenecks.push(Bottleneck {
            kind,
            severity,
            priority: 0,
            confidence: Confidence::High,
            description: parts.join("; "),
            evidence,
        });
    }

    fn throughput(&self, f: &mut Findings) {
        let kind = BottleneckType::LowThroughput;
        let metric = Canonical::GenerationTokensTotal;
        if !self.present(metric) {
            return f.not_evaluated.push(self.absent(kind, metric));
        }
        let window_s = self.window_s();
        let tps = match self.stats.rate(metric) {
            Some(tps) if window_s >= self.t.min_rate_window_s => tps,
            _ => {
                return f.not_evaluated.push(thin(
                    kind,
                    metric,
                    format!(
                        "a {window_s:.0} s window with {} point(s); a rate needs two points at \
                         least {:.0} s apart",
                        self.stats.points, self.t.min_rate_window_s
                    ),
                ))
            }
        };
        // Low throughput without demand is an idle server, not a bottleneck: demand is requests
        // waiting, or a KV cache that is full.
        let waiting = self.sustained(kind, Canonical::RequestsWaiting);
        let kv = self.sustained(kind, Canonical::KvCacheUsageRatio);
        if let (Err(w), Err(k)) = (&waiting, &kv) {
            return f.not_evaluated.push(NotEvaluated {
                kind,
                metric: Some(Canonical::RequestsWaiting),
                cause: w.cause,
                reason: format!(
                    "cannot tell a busy server from an idle one: {}; {}",
                    w.reason, k.reason
                ),
            });
        }
        f.evaluated.push(kind);
        let mut evidence = Vec::new();
        let mut demand = Vec::new();
        if let Ok((level, points)) = waiting {
            if level >= 1.0 {
                evidence.push(self.evidence(
                    Canonical::RequestsWaiting,
                    Statistic::SustainedLevel,
                    level,
                    Some(1.0),
                    Comparison::Gte,
                    points as f64,
                ));
                demand.push(format!("{level:.0} or more requests waiting"));
            }
        }
        if let Ok((level, points)) = kv {
            if level >= self.t.memory_usage_ratio {
                evidence.push(self.evidence(
                    Canonical::KvCacheUsageRatio,
                    Statistic::SustainedLevel,
                    level,
                    Some(self.t.memory_usage_ratio),
                    Comparison::Gte,
                    points as f64,
                ));
                demand.push(format!("KV cache at or above {}", pct(level)));
            }
        }
        if demand.is_empty() {
            return;
        }
        let Some(severity) = Thresholds::throughput_severity(tps / self.t.throughput_tokens_per_s)
        else {
            return;
        };
        evidence.insert(
            0,
            self.evidence(
                metric,
                Statistic::RatePerS,
                tps,
                Some(self.t.throughput_tokens_per_s),
                Comparison::Lt,
                self.stats.points as f64,
            ),
        );
        f.bottlenecks.push(Bottleneck {
            kind,
            severity,
            priority: 0,
            confidence: Confidence::High,
            description: format!(
                "{tps:.1} generated tokens/s over {window_s:.0} s (threshold {}) while busy: {} on \
                 at least {} of the points",
                self.t.throughput_tokens_per_s,
                demand.join(" and "),
                pct(self.t.sustained_fraction)
            ),
            evidence,
        });
    }

    fn cache(&self, f: &mut Findings) {
        let kind = BottleneckType::CacheInefficiency;
        let queries = self.increase(kind, Canonical::PrefixCacheQueriesTotal);
        let hits = self.increase(kind, Canonical::PrefixCacheHitsTotal);
        let (q, h, points) = match (queries, hits) {
            (Ok((q, n)), Ok((h, _))) => (q, h, n),
            (Err(why), _) | (_, Err(why)) => return f.not_evaluated.push(why),
        };
        if q < self.t.min_prefix_cache_query_tokens {
            return f.not_evaluated.push(thin(
                kind,
                Canonical::PrefixCacheQueriesTotal,
                format!(
                    "{q:.0} prompt tokens looked up in the prefix cache in the window; a hit ratio \
                     needs at least {:.0} (traffic too low, or prefix caching off)",
                    self.t.min_prefix_cache_query_tokens
                ),
            ));
        }
        f.evaluated.push(kind);
        let ratio = (h / q).clamp(0.0, 1.0);
        let Some(severity) = Thresholds::cache_severity(ratio / self.t.cache_hit_ratio) else {
            return;
        };
        f.bottlenecks.push(Bottleneck {
            kind,
            severity,
            priority: 0,
            confidence: Confidence::High,
            description: format!(
                "prefix-cache hit ratio {} ({h:.0} of {q:.0} prompt tokens; threshold {})",
                pct(ratio),
                pct(self.t.cache_hit_ratio)
            ),
            evidence: vec![self.evidence(
                Canonical::PrefixCacheHitsTotal,
                Statistic::HitRatio,
                ratio,
                Some(self.t.cache_hit_ratio),
                Comparison::Lt,
                points as f64,
            )],
        });
    }
}

fn latency_summary(hw: Option<&HistogramWindow>) -> Option<LatencySummary> {
    let hw = hw?;
    Some(LatencySummary {
        count: hw.count,
        mean_s: hw.mean,
        p50_s: hw.quantiles.get("p50").copied(),
        p95_s: hw.quantiles.get("p95").copied(),
        p99_s: hw.quantiles.get("p99").copied(),
    })
}

fn summary(pts: &[Point<'_>], stats: &WindowStats) -> WindowSummary {
    let finished = match (
        stats.rate(Canonical::RequestSuccessTotal),
        stats.rate(Canonical::RequestFailureTotal),
    ) {
        (None, None) => None,
        (ok, bad) => Some(ok.unwrap_or(0.0) + bad.unwrap_or(0.0)),
    };
    let preemptions: Vec<f64> = pts
        .iter()
        .filter_map(|p| p.metrics.number(Canonical::PreemptionsTotal))
        .collect();
    WindowSummary {
        start_ms: stats.start_ms,
        end_ms: stats.end_ms,
        points: stats.points,
        generation_tokens_per_s: stats.generation_tokens_per_s(),
        prompt_tokens_per_s: stats.rate(Canonical::PromptTokensTotal),
        requests_per_s: finished,
        error_ratio: stats.error_ratio(),
        prefix_cache_hit_ratio: stats.prefix_cache_hit_ratio(),
        preemptions: (preemptions.len() >= 2).then(|| increase(&preemptions)),
        kv_cache_usage: stats.gauges.get(&Canonical::KvCacheUsageRatio).copied(),
        requests_waiting: stats.gauges.get(&Canonical::RequestsWaiting).copied(),
        requests_running: stats.gauges.get(&Canonical::RequestsRunning).copied(),
        ttft: latency_summary(stats.histograms.get(&Canonical::TtftSeconds)),
        inter_token_latency: latency_summary(
            stats.histograms.get(&Canonical::InterTokenLatencySeconds),
        ),
        e2e_latency: latency_summary(stats.histograms.get(&Canonical::E2eLatencySeconds)),
        queue_time: latency_summary(stats.histograms.get(&Canonical::QueueTimeSeconds)),
    }
}
