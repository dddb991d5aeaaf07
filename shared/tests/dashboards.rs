//! The two dashboards — `infra/grafana-dashboard.json` and the template's `AWS::CloudWatch::Dashboard`
//! — are valid JSON and query only metrics that exist: the agent's own, exactly as
//! `perfagent::api::telemetry::EMF_GROUPS` declares them (namespace, name, dimensions), and a short
//! list of standard AWS metrics, each on a resource of the stack. Every agent metric is on both
//! dashboards and every function of the template on the CloudWatch one.

use perfagent::api::telemetry::{EMF_GROUPS, EMF_NAMESPACE};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Standard AWS metrics the dashboards may query: the namespace, its metrics, the dimension that
/// names our resource, and the template type of that resource.
const AWS_METRICS: &[(&str, &[&str], &str, &str)] = &[
    (
        "AWS/Lambda",
        &["Invocations", "Errors", "Throttles", "Duration"],
        "FunctionName",
        "AWS::Serverless::Function",
    ),
    (
        "AWS/DynamoDB",
        &[
            "ConsumedReadCapacityUnits",
            "ConsumedWriteCapacityUnits",
            "ReadThrottleEvents",
            "WriteThrottleEvents",
        ],
        "TableName",
        "AWS::DynamoDB::Table",
    ),
    (
        "AWS/States",
        &[
            "ExecutionsStarted",
            "ExecutionsSucceeded",
            "ExecutionsFailed",
            "ExecutionsTimedOut",
            "ExecutionsAborted",
            "ExecutionTime",
        ],
        "StateMachineArn",
        "AWS::Serverless::StateMachine",
    ),
    (
        "AWS/ApiGateway",
        &["Count", "4xx", "5xx", "Latency", "IntegrationLatency"],
        "ApiId",
        "AWS::ApiGatewayV2::Api",
    ),
];

/// One metric a dashboard queries: namespace, name, and each dimension with the value queried.
#[derive(Debug)]
struct Query {
    namespace: String,
    name: String,
    dimensions: BTreeMap<String, String>,
}

fn infra(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../infra")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The dimension names an agent metric is written with; `None` for a name the agent never writes.
fn agent_dimensions(name: &str) -> Option<BTreeSet<String>> {
    EMF_GROUPS.iter().find_map(|g| {
        g.metrics
            .iter()
            .any(|(n, _)| *n == name)
            .then(|| g.dimensions.iter().map(|d| d.to_string()).collect())
    })
}

fn agent_metric_names() -> BTreeSet<&'static str> {
    EMF_GROUPS
        .iter()
        .flat_map(|g| g.metrics.iter().map(|(n, _)| *n))
        .collect()
}

/// Checks a query against what exists; for an AWS metric, returns the dimension value naming the
/// resource and the template type that resource must have.
fn check(q: &Query) -> Option<(String, &'static str)> {
    let dims: BTreeSet<String> = q.dimensions.keys().cloned().collect();
    if q.namespace == EMF_NAMESPACE {
        let declared = agent_dimensions(&q.name)
            .unwrap_or_else(|| panic!("{} is not a metric the agent writes", q.name));
        assert_eq!(
            dims, declared,
            "{}: the dimensions it is written with",
            q.name
        );
        return None;
    }
    let (_, names, dimension, kind) = AWS_METRICS
        .iter()
        .find(|(ns, ..)| *ns == q.namespace)
        .unwrap_or_else(|| panic!("{q:?}: a namespace neither the agent's nor a known AWS one"));
    assert!(
        names.contains(&q.name.as_str()),
        "{q:?}: not a known {} metric",
        q.namespace
    );
    assert_eq!(dims, BTreeSet::from([dimension.to_string()]), "{q:?}");
    Some((q.dimensions[*dimension].clone(), kind))
}

// ------------------------------------------------------------------ the template's dashboard

/// The template's resources: logical id → type.
fn resources(template: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_resources = false;
    let mut current: Option<String> = None;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
            in_resources = line == "Resources:";
            continue;
        }
        if !in_resources {
            continue;
        }
        if let Some(id) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            if !id.starts_with([' ', '#']) {
                current = Some(id.to_string());
            }
        } else if let Some(kind) = line.strip_prefix("    Type: ") {
            if let Some(id) = current.take() {
                out.insert(id, kind.trim().to_string());
            }
        }
    }
    out
}

/// The text of the `DashboardBody: !Sub |` block scalar of the `AWS::CloudWatch::Dashboard`.
fn dashboard_body(template: &str) -> String {
    let lines: Vec<&str> = template.lines().collect();
    let resource = lines
        .iter()
        .position(|l| l.trim() == "Type: AWS::CloudWatch::Dashboard")
        .expect("the template has a CloudWatch dashboard");
    let key = resource
        + lines[resource..]
            .iter()
            .position(|l| l.trim() == "DashboardBody: !Sub |")
            .expect("its body is one !Sub block");
    let key_indent = lines[key].len() - lines[key].trim_start().len();
    let block: Vec<&str> = lines[key + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .copied()
        .collect();
    let indent = block
        .iter()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .expect("a body");
    block
        .iter()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `${...}` of a `!Sub` string.
fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let end = rest[i..].find('}').expect("a closed ${...}");
        out.push(rest[i + 2..i + end].to_string());
        rest = &rest[i + end..];
    }
    out
}

/// A CloudWatch `SEARCH('{Namespace,Dim,...} MetricName="name"', 'Stat', period)` expression.
fn search(expression: &str) -> Query {
    let schema = expression
        .strip_prefix("SEARCH('{")
        .and_then(|s| s.split_once('}'))
        .unwrap_or_else(|| panic!("not a SEARCH the test knows: {expression}"));
    let mut parts = schema.0.split(',');
    let namespace = parts.next().unwrap().to_string();
    let name = schema
        .1
        .split_once("MetricName=\"")
        .and_then(|(_, n)| n.split_once('"'))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| panic!("a SEARCH of one MetricName: {expression}"));
    Query {
        namespace,
        name,
        dimensions: parts.map(|d| (d.to_string(), "*".to_string())).collect(),
    }
}

/// Every metric of a CloudWatch dashboard body: `[namespace, name, dim, value, ..., {options}]`
/// entries (no `"."` shorthand) and SEARCH expressions.
fn cloudwatch_queries(body: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        if widget["type"] != "metric" {
            continue;
        }
        for entry in widget["properties"]["metrics"].as_array().expect("metrics") {
            let entry = entry.as_array().expect("a metric is an array");
            if let Some(expression) = entry[0].get("expression") {
                out.push(search(expression.as_str().unwrap()));
                continue;
            }
            let strings: Vec<&str> = entry.iter().filter_map(Value::as_str).collect();
            assert!(
                !strings.contains(&".") && strings.len() % 2 == 0,
                "{entry:?}: spelled out, name/value pairs"
            );
            out.push(Query {
                namespace: strings[0].to_string(),
                name: strings[1].to_string(),
                dimensions: strings[2..]
                    .chunks(2)
                    .map(|p| (p[0].to_string(), p[1].to_string()))
                    .collect(),
            });
        }
    }
    out
}

#[test]
fn the_cloudwatch_dashboard_queries_only_emitted_metrics_of_the_stacks_resources() {
    let template = infra("template.yaml");
    let resources = resources(&template);
    let text = dashboard_body(&template);
    for p in placeholders(&text) {
        let ok = p.starts_with("AWS::")
            || resources.contains_key(p.split('.').next().unwrap_or_default());
        assert!(ok, "${{{p}}} is neither a pseudo parameter nor a resource");
    }
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the DashboardBody is not JSON: {e}\n{text}"));
    let queries = cloudwatch_queries(&body);
    assert!(!queries.is_empty());

    let mut functions = BTreeSet::new();
    for q in &queries {
        if let Some((value, kind)) = check(q) {
            let id = value
                .strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'))
                .unwrap_or_else(|| panic!("{q:?}: the resource is named by ${{LogicalId}}"));
            assert_eq!(resources.get(id).map(String::as_str), Some(kind), "{q:?}");
            if kind == "AWS::Serverless::Function" {
                functions.insert(id.to_string());
            }
        }
    }
    let all_functions: BTreeSet<String> = resources
        .iter()
        .filter(|(_, kind)| kind.as_str() == "AWS::Serverless::Function")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        functions, all_functions,
        "every function is on the dashboard"
    );
    let shown: BTreeSet<&str> = queries
        .iter()
        .filter(|q| q.namespace == EMF_NAMESPACE)
        .map(|q| q.name.as_str())
        .collect();
    assert_eq!(
        shown,
        agent_metric_names(),
        "every agent metric is on the dashboard"
    );
}

// ------------------------------------------------------------------ Grafana

fn grafana_panels(panels: &Value, out: &mut Vec<Value>) {
    for p in panels.as_array().expect("panels") {
        if let Some(inner) = p.get("panels") {
            grafana_panels(inner, out);
        }
        out.push(p.clone());
    }
}

/// The template variables a string uses (`$name`, `${name}`; not CloudWatch's `${PROP(...)}`).
fn variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices('$') {
        let rest = &text[i + 1..];
        let name: String = rest
            .strip_prefix('{')
            .unwrap_or(rest)
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name != "PROP" {
            out.push(name);
        }
    }
    out
}

fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_queries_only_emitted_metrics_through_its_variables() {
    let dash: Value = serde_json::from_str(&infra("grafana-dashboard.json"))
        .expect("infra/grafana-dashboard.json is JSON");
    let defined: BTreeSet<String> = dash["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let datasource = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a data source variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "cloudwatch");
    let mut all = Vec::new();
    strings(&dash["panels"], &mut all);
    for s in &all {
        for v in variables(s) {
            assert!(
                defined.contains(&v),
                "${v} in {s:?} is not a dashboard variable"
            );
        }
    }

    let mut panels = Vec::new();
    grafana_panels(&dash["panels"], &mut panels);
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");

    let template = infra("template.yaml");
    let function_names: BTreeSet<String> = template
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("FunctionName: !Sub \"${AWS::StackName}")
        })
        .map(|suffix| format!("${{stack}}{}", suffix.trim_end_matches('"')))
        .collect();
    let mut functions = BTreeSet::new();
    let mut shown = BTreeSet::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["type"], "cloudwatch", "{t}");
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{t}");
            assert_eq!(t["queryMode"], "Metrics", "{t}");
            assert_eq!(t["metricQueryType"], 0, "a metric search: {t}");
            assert_eq!(t["matchExact"], true, "{t}");
            let q = Query {
                namespace: t["namespace"].as_str().unwrap().to_string(),
                name: t["metricName"].as_str().unwrap().to_string(),
                dimensions: t["dimensions"]
                    .as_object()
                    .expect("dimensions")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
            };
            match check(&q) {
                None => {
                    shown.insert(q.name.clone());
                }
                Some((value, kind)) => {
                    assert!(!variables(&value).is_empty(), "{q:?}: a stack variable");
                    if kind == "AWS::Serverless::Function" {
                        functions.insert(value);
                    }
                }
            }
        }
    }
    assert_eq!(functions, function_names, "every function of the template");
    let expected: BTreeSet<String> = agent_metric_names().into_iter().map(String::from).collect();
    assert_eq!(shown, expected, "every agent metric is on the dashboard");
}

#[test]
fn the_body_reader_follows_the_block_scalar() {
    let template =
        "Resources:\n  D:\n    Type: AWS::CloudWatch::Dashboard\n    Properties:\n      \
                    DashboardBody: !Sub |\n        {\"a\": [\n          1]}\n\n        \
                    \n  Next:\n    Type: X\n";
    assert_eq!(dashboard_body(template), "{\"a\": [\n  1]}\n\n");
    assert_eq!(
        resources(template),
        BTreeMap::from([
            ("D".to_string(), "AWS::CloudWatch::Dashboard".to_string()),
            ("Next".to_string(), "X".to_string())
        ])
    );
    assert_eq!(
        placeholders("a ${X} b ${AWS::Region}"),
        ["X", "AWS::Region"]
    );
    assert_eq!(
        variables("${stack}-api $table ${PROP('Dim.Route')}"),
        ["stack", "table"]
    );
}

#[test]
fn a_metric_the_agent_does_not_write_or_a_wrong_dimension_is_refused() {
    let q = |namespace: &str, name: &str, dims: &[&str]| Query {
        namespace: namespace.to_string(),
        name: name.to_string(),
        dimensions: dims
            .iter()
            .map(|d| (d.to_string(), "${X}".to_string()))
            .collect(),
    };
    let requests = "performance_agent_requests_total";
    assert!(check(&q(EMF_NAMESPACE, requests, &["Route", "Method"])).is_none());
    assert_eq!(
        check(&q("AWS/Lambda", "Errors", &["FunctionName"])),
        Some(("${X}".to_string(), "AWS::Serverless::Function"))
    );
    for bad in [
        q(
            EMF_NAMESPACE,
            "performance_agent_request_total",
            &["Route", "Method"],
        ),
        q(EMF_NAMESPACE, requests, &["Route"]),
        q(
            EMF_NAMESPACE,
            "performance_agent_workflows_active",
            &["Route"],
        ),
        q("AWS/Lambda", "Invocation", &["FunctionName"]),
        q("AWS/Lambda", "Errors", &["FunctionName", "Resource"]),
        q("AWS/EC2", "CPUUtilization", &["InstanceId"]),
    ] {
        assert!(
            std::panic::catch_unwind(|| check(&bad)).is_err(),
            "{bad:?} was accepted"
        );
    }
}
