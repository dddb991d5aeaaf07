//! The agent's own metrics, named as the seed names them: `performance_agent_requests_total`,
//! `performance_agent_request_duration_seconds`, `performance_agent_errors_total`,
//! `performance_agent_workflows_active`; and the fleet's signals, written by the collector after
//! each pass and by the analyzer after each run.
//!
//! Each request is written as one CloudWatch Embedded Metric Format line (CloudWatch aggregates
//! those across every Lambda instance: the fleet-wide numbers), and counted in this process's
//! registry, served as Prometheus text at `/api/v1/metrics` (one instance's view, for scrapers that
//! want it; on Lambda, prefer the EMF metrics).
//!
//! [`EMF_GROUPS`] declares every EMF metric with its unit and dimensions; the lines are built from
//! it, and the dashboards (`infra/grafana-dashboard.json`, the template's `Dashboard`) are checked
//! against it by `shared/tests/dashboards.rs`.

use crate::analyzer::AnalyzerReport;
use crate::collect::PassReport;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};

/// Request duration buckets, seconds: fine below 10 ms, where a warm request should sit.
pub const DURATION_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The CloudWatch namespace of the EMF metrics (the template's dashboard reads it).
pub const EMF_NAMESPACE: &str = "PerformanceAgent";

pub const REQUESTS_TOTAL: &str = "performance_agent_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "performance_agent_request_duration_seconds";
pub const ERRORS_TOTAL: &str = "performance_agent_errors_total";
pub const WORKFLOWS_ACTIVE: &str = "performance_agent_workflows_active";

/// Metrics written together in one EMF line, all declared with the same dimensions.
#[derive(Debug)]
pub struct EmfGroup {
    /// The dimension names of every metric of the group (none: the metric has no dimension).
    pub dimensions: &'static [&'static str],
    /// Each metric's name and CloudWatch unit.
    pub metrics: &'static [(&'static str, &'static str)],
}

/// One line per API request (the line also carries the answer's `Status`, not a dimension).
pub const REQUEST_METRICS: EmfGroup = EmfGroup {
    dimensions: &["Route", "Method"],
    metrics: &[
        (REQUESTS_TOTAL, "Count"),
        (REQUEST_DURATION_SECONDS, "Seconds"),
        (ERRORS_TOTAL, "Count"),
    ],
};

/// One line each time the API counts the workflows that have not ended (`GET /api/v1/metrics`).
pub const WORKFLOW_METRICS: EmfGroup = EmfGroup {
    dimensions: &[],
    metrics: &[(WORKFLOWS_ACTIVE, "Count")],
};

/// One line per collection pass run in an invocation (a scheduled pass, or one shard of it).
pub const COLLECTION_METRICS: EmfGroup = EmfGroup {
    dimensions: &[],
    metrics: &[
        ("performance_agent_collection_instances", "Count"),
        ("performance_agent_collection_collected", "Count"),
        ("performance_agent_collection_partial", "Count"),
        ("performance_agent_collection_failed", "Count"),
        ("performance_agent_collection_skipped", "Count"),
        ("performance_agent_collection_duration_seconds", "Seconds"),
    ],
};

/// One line per analyzer run: what the latest analysis of the whole fleet found.
pub const ANALYSIS_METRICS: EmfGroup = EmfGroup {
    dimensions: &[],
    metrics: &[
        ("performance_agent_analysis_instances", "Count"),
        ("performance_agent_analysis_groups", "Count"),
        ("performance_agent_bottlenecks", "Count"),
        ("performance_agent_recommendations", "Count"),
        ("performance_agent_slo_alerts_firing", "Count"),
    ],
};

/// Every metric the agent writes as EMF, in the namespace [`EMF_NAMESPACE`].
pub const EMF_GROUPS: [&EmfGroup; 4] = [
    &REQUEST_METRICS,
    &WORKFLOW_METRICS,
    &COLLECTION_METRICS,
    &ANALYSIS_METRICS,
];

impl EmfGroup {
    /// One EMF line: `values` are the metrics' values in the group's order; `fields` hold the
    /// dimensions' values and any other property.
    fn line(&self, now_ms: i64, values: &[Value], mut fields: Map<String, Value>) -> String {
        debug_assert_eq!(values.len(), self.metrics.len());
        let metrics: Vec<Value> = self
            .metrics
            .iter()
            .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
            .collect();
        fields.insert(
            "_aws".into(),
            json!({
                "Timestamp": now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": EMF_NAMESPACE,
                    "Dimensions": [self.dimensions],
                    "Metrics": metrics,
                }]
            }),
        );
        for ((name, _), value) in self.metrics.iter().zip(values) {
            fields.insert((*name).to_string(), value.clone());
        }
        Value::Object(fields).to_string()
    }
}

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(String, String, u16), u64>,
    errors: BTreeMap<(String, String), u64>,
    durations: BTreeMap<String, (Vec<u64>, u64, f64)>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry() -> MutexGuard<'static, Option<Registry>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The route template of a path (ids replaced), so label values stay few.
pub fn route_template(path: &str) -> String {
    let Some(rest) = path.strip_prefix("/api/v1") else {
        return "other".to_string();
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let t: Vec<&str> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| match (i, segs.first().copied()) {
            (1, Some("instances" | "recommendations" | "workflows" | "groups")) => "{id}",
            _ => s,
        })
        .collect();
    if t.is_empty() {
        "/api/v1".to_string()
    } else if t.len() > 4 {
        "other".to_string()
    } else {
        format!("/api/v1/{}", t.join("/"))
    }
}

/// Counts one handled request.
pub fn record(route: &str, method: &str, status: u16, error_code: Option<&str>, seconds: f64) {
    let mut g = registry();
    let r = g.get_or_insert_with(Registry::default);
    *r.requests
        .entry((route.to_string(), method.to_string(), status))
        .or_default() += 1;
    if let Some(code) = error_code {
        *r.errors
            .entry((route.to_string(), code.to_string()))
            .or_default() += 1;
    }
    let d = r
        .durations
        .entry(route.to_string())
        .or_insert_with(|| (vec![0; DURATION_BUCKETS_S.len()], 0, 0.0));
    for (i, le) in DURATION_BUCKETS_S.iter().enumerate() {
        if seconds <= *le {
            d.0[i] += 1;
        }
    }
    d.1 += 1;
    d.2 += seconds;
}

/// One EMF log line for a request.
pub fn emf_line(
    route: &str,
    method: &str,
    status: u16,
    is_error: bool,
    seconds: f64,
    now_ms: i64,
) -> String {
    let mut fields = Map::new();
    fields.insert("Route".into(), route.into());
    fields.insert("Method".into(), method.into());
    fields.insert("Status".into(), status.into());
    REQUEST_METRICS.line(
        now_ms,
        &[json!(1), json!(seconds), json!(u8::from(is_error))],
        fields,
    )
}

/// An EMF line for the active-workflow gauge.
pub fn emf_workflows_active(active: usize, now_ms: i64) -> String {
    WORKFLOW_METRICS.line(now_ms, &[json!(active)], Map::new())
}

/// An EMF line for one collection pass.
pub fn emf_collection_pass(r: &PassReport, now_ms: i64) -> String {
    COLLECTION_METRICS.line(
        now_ms,
        &[
            json!(r.instances),
            json!(r.collected),
            json!(r.partial),
            json!(r.failed),
            json!(r.skipped),
            json!(r.duration_ms as f64 / 1000.0),
        ],
        Map::new(),
    )
}

/// An EMF line for one analyzer run, stamped with the run's time.
pub fn emf_analysis(r: &AnalyzerReport) -> String {
    ANALYSIS_METRICS.line(
        r.analyzed_at_ms,
        &[
            json!(r.instances),
            json!(r.groups),
            json!(r.bottlenecks),
            json!(r.recommendations),
            json!(r.slo_alerts_firing),
        ],
        Map::new(),
    )
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// This process's registry as Prometheus text 0.0.4.
pub fn prometheus_text(workflows_active: Option<usize>) -> String {
    let g = registry();
    let empty = Registry::default();
    let r = g.as_ref().unwrap_or(&empty);
    let mut out = String::with_capacity(2048);
    let _ = writeln!(
        out,
        "# HELP {REQUESTS_TOTAL} HTTP requests handled, by route, method and status."
    );
    let _ = writeln!(out, "# TYPE {REQUESTS_TOTAL} counter");
    for ((route, method, status), n) in &r.requests {
        let _ = writeln!(
            out,
            "{REQUESTS_TOTAL}{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
            escape(route),
            escape(method)
        );
    }
    let _ = writeln!(
        out,
        "# HELP {REQUEST_DURATION_SECONDS} Time to handle a request."
    );
    let _ = writeln!(out, "# TYPE {REQUEST_DURATION_SECONDS} histogram");
    for (route, (buckets, count, sum)) in &r.durations {
        let route = escape(route);
        for (le, n) in DURATION_BUCKETS_S.iter().zip(buckets) {
            let _ = writeln!(
                out,
                "{REQUEST_DURATION_SECONDS}_bucket{{route=\"{route}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "{REQUEST_DURATION_SECONDS}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "{REQUEST_DURATION_SECONDS}_sum{{route=\"{route}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "{REQUEST_DURATION_SECONDS}_count{{route=\"{route}\"}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP {ERRORS_TOTAL} Requests answered with an error, by route and error code."
    );
    let _ = writeln!(out, "# TYPE {ERRORS_TOTAL} counter");
    for ((route, code), n) in &r.errors {
        let _ = writeln!(
            out,
            "{ERRORS_TOTAL}{{route=\"{}\",code=\"{}\"}} {n}",
            escape(route),
            escape(code)
        );
    }
    if let Some(active) = workflows_active {
        let _ = writeln!(
            out,
            "# HELP {WORKFLOWS_ACTIVE} Optimization workflows not yet in a final state."
        );
        let _ = writeln!(out, "# TYPE {WORKFLOWS_ACTIVE} gauge");
        let _ = writeln!(out, "{WORKFLOWS_ACTIVE} {active}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promtext::{parse, Format, Mode};

    #[test]
    fn route_templates_hide_ids() {
        assert_eq!(
            route_template("/api/v1/instances/vllm-7"),
            "/api/v1/instances/{id}"
        );
        assert_eq!(
            route_template("/api/v1/workflows/wf-1/approve"),
            "/api/v1/workflows/{id}/approve"
        );
        assert_eq!(route_template("/api/v1/health"), "/api/v1/health");
        assert_eq!(route_template("/etc/passwd"), "other");
    }

    #[test]
    fn the_registry_is_valid_prometheus_text() {
        record("/api/v1/health", "GET", 200, None, 0.0007);
        record(
            "/api/v1/instances",
            "POST",
            422,
            Some("validation_failed"),
            0.002,
        );
        let text = prometheus_text(Some(2));
        parse(text.as_bytes(), Mode::Strict(Format::Prometheus)).unwrap();
        assert!(text.contains("performance_agent_workflows_active 2"));
        assert!(text.contains("code=\"validation_failed\""));
    }

    #[test]
    fn an_emf_line_names_its_metrics() {
        let v: Value =
            serde_json::from_str(&emf_line("/api/v1/health", "GET", 200, false, 0.001, 5)).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            EMF_NAMESPACE
        );
        assert_eq!(v["performance_agent_requests_total"], 1);
        assert_eq!(v["Status"], 200);
    }

    /// Each line declares exactly its group's metrics and dimensions, and carries a number for
    /// every metric and a string for every dimension.
    fn assert_line_fits(line: &str, group: &EmfGroup, now_ms: i64) {
        let v: Value = serde_json::from_str(line).unwrap();
        let decl = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], now_ms);
        assert_eq!(decl["Namespace"], EMF_NAMESPACE);
        assert_eq!(decl["Dimensions"], json!([group.dimensions]));
        let declared: Vec<(&str, &str)> = decl["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["Name"].as_str().unwrap(), m["Unit"].as_str().unwrap()))
            .collect();
        assert_eq!(declared, group.metrics);
        for (name, _) in group.metrics {
            assert!(v[name].is_number(), "{name} in {line}");
        }
        for d in group.dimensions {
            assert!(v[d].is_string(), "{d} in {line}");
        }
    }

    #[test]
    fn every_emf_line_fits_its_declared_group() {
        assert_line_fits(
            &emf_line("/api/v1/workflows", "POST", 409, true, 0.01, 7),
            &REQUEST_METRICS,
            7,
        );
        assert_line_fits(&emf_workflows_active(3, 8), &WORKFLOW_METRICS, 8);
        let pass = PassReport {
            slot_ms: 9,
            instances: 5,
            collected: 2,
            partial: 1,
            failed: 1,
            skipped: 1,
            duration_ms: 1500,
            details: Vec::new(),
        };
        let line = emf_collection_pass(&pass, 9);
        assert_line_fits(&line, &COLLECTION_METRICS, 9);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["performance_agent_collection_duration_seconds"], 1.5);
        assert_eq!(v["performance_agent_collection_failed"], 1);
        let run = AnalyzerReport {
            analyzed_at_ms: 10,
            instances: 12,
            groups: 2,
            bottlenecks: 7,
            recommendations: 3,
            slo_alerts_firing: 1,
        };
        let line = emf_analysis(&run);
        assert_line_fits(&line, &ANALYSIS_METRICS, 10);
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap()["performance_agent_bottlenecks"],
            7
        );
        let names: Vec<&str> = EMF_GROUPS
            .iter()
            .flat_map(|g| g.metrics.iter().map(|(n, _)| *n))
            .collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "a metric is declared twice");
    }
}
