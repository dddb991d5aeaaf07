//! The agent's own metrics, named as the seed names them: `performance_agent_requests_total`,
//! `performance_agent_request_duration_seconds`, `performance_agent_errors_total`,
//! `performance_agent_workflows_active`.
//!
//! Each request is written as one CloudWatch Embedded Metric Format line (CloudWatch aggregates
//! those across every Lambda instance: the fleet-wide numbers), and counted in this process's
//! registry, served as Prometheus text at `/api/v1/metrics` (one instance's view, for scrapers that
//! want it; on Lambda, prefer the EMF metrics).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, MutexGuard};

/// Request duration buckets, seconds: fine below 10 ms, where a warm request should sit.
pub const DURATION_BUCKETS_S: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The CloudWatch namespace of the EMF metrics (the template's dashboard reads it).
pub const EMF_NAMESPACE: &str = "PerformanceAgent";

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
    serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": EMF_NAMESPACE,
                "Dimensions": [["Route", "Method"]],
                "Metrics": [
                    {"Name": "performance_agent_requests_total", "Unit": "Count"},
                    {"Name": "performance_agent_request_duration_seconds", "Unit": "Seconds"},
                    {"Name": "performance_agent_errors_total", "Unit": "Count"}
                ]
            }]
        },
        "Route": route,
        "Method": method,
        "Status": status,
        "performance_agent_requests_total": 1,
        "performance_agent_request_duration_seconds": seconds,
        "performance_agent_errors_total": u8::from(is_error),
    })
    .to_string()
}

/// An EMF line for the active-workflow gauge.
pub fn emf_workflows_active(active: usize, now_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": EMF_NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": "performance_agent_workflows_active", "Unit": "Count"}]
            }]
        },
        "performance_agent_workflows_active": active,
    })
    .to_string()
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
    let _ = writeln!(out, "# HELP performance_agent_requests_total HTTP requests handled, by route, method and status.");
    let _ = writeln!(out, "# TYPE performance_agent_requests_total counter");
    for ((route, method, status), n) in &r.requests {
        let _ = writeln!(
            out,
            "performance_agent_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
            escape(route),
            escape(method)
        );
    }
    let _ = writeln!(
        out,
        "# HELP performance_agent_request_duration_seconds Time to handle a request."
    );
    let _ = writeln!(
        out,
        "# TYPE performance_agent_request_duration_seconds histogram"
    );
    for (route, (buckets, count, sum)) in &r.durations {
        let route = escape(route);
        for (le, n) in DURATION_BUCKETS_S.iter().zip(buckets) {
            let _ = writeln!(
                out,
                "performance_agent_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "performance_agent_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "performance_agent_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "performance_agent_request_duration_seconds_count{{route=\"{route}\"}} {count}"
        );
    }
    let _ = writeln!(out, "# HELP performance_agent_errors_total Requests answered with an error, by route and error code.");
    let _ = writeln!(out, "# TYPE performance_agent_errors_total counter");
    for ((route, code), n) in &r.errors {
        let _ = writeln!(
            out,
            "performance_agent_errors_total{{route=\"{}\",code=\"{}\"}} {n}",
            escape(route),
            escape(code)
        );
    }
    if let Some(active) = workflows_active {
        let _ = writeln!(out, "# HELP performance_agent_workflows_active Optimization workflows not yet in a final state.");
        let _ = writeln!(out, "# TYPE performance_agent_workflows_active gauge");
        let _ = writeln!(out, "performance_agent_workflows_active {active}");
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
        let v: serde_json::Value =
            serde_json::from_str(&emf_line("/api/v1/health", "GET", 200, false, 0.001, 5)).unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            EMF_NAMESPACE
        );
        assert_eq!(v["performance_agent_requests_total"], 1);
    }
}
