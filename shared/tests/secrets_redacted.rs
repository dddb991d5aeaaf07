//! No secret or token in what the agent prints: the configuration's `Debug` (what a log line of
//! the config would show) never holds `ORCHESTRATOR_SECRET`, and the workflow as the API shows it
//! (`Workflow::redacted`, the body of every workflow route) holds no Step Functions task token,
//! neither serialized nor debug-printed. The logs' filter, which keeps dependencies from logging
//! raw events and SDK requests, is proven on the `api` binary itself
//! (`functions/tests/api_function.rs`, `no_secret_or_token_reaches_the_logs_even_at_trace`).

use perfagent::config::Config;
use perfagent::instance::Id;
use perfagent::optimize::Recommendation;
use perfagent::workflow::{Params, Workflow};
use serde_json::json;
use std::collections::HashMap;

const SECRET: &str = "orchestrator-hmac-secret-0f3c";
const TOKEN: &str = "AQCEAAAAKgAAAAMAAAAAAAAAAb0Xs-task-token-7e1d";

fn id(s: &str) -> Id {
    Id::parse("id", s).unwrap()
}

#[test]
fn the_configuration_never_prints_the_orchestrator_secret() {
    let vars: HashMap<String, String> = [
        ("TABLE_NAME", "t"),
        ("ORCHESTRATOR_URL", "https://orchestrator.example/"),
        ("ORCHESTRATOR_SECRET", SECRET),
        ("API_BASE_URL", "https://api.example/"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_map(&vars).unwrap();
    let stage = config.stage_settings().unwrap();
    assert_eq!(stage.orchestrator.secret, SECRET.as_bytes(), "it is read");
    for printed in [
        format!("{config:?}"),
        format!("{config:#?}"),
        format!("{stage:?}"),
        format!("{:?}", stage.orchestrator),
    ] {
        assert!(!printed.contains(SECRET), "{printed}");
        // Nor its bytes, as a derived Debug of the Vec<u8> would print them.
        let bytes = format!("{:?}", SECRET.as_bytes());
        assert!(!printed.contains(&bytes[1..bytes.len() - 1]), "{printed}");
        assert!(
            printed.contains("<redacted>"),
            "the field is there: {printed}"
        );
    }
}

#[test]
fn the_workflow_the_api_shows_holds_no_task_token() {
    let recommendation: Recommendation = serde_json::from_value(json!({
        "id": "r1", "engine": "vllm", "optimizer": "BATCHING", "bottleneck": "QUEUE_BUILDUP",
        "title": "t", "knob": "max_num_seqs", "flag": "--max-num-seqs",
        "current": {"value": 128, "assumed": false}, "proposed": 256,
        "changes": {"max_num_seqs": 256}, "rationale": "r", "expected_impact": [],
        "risk": {"level": "LOW", "description": "d"}, "priority": 1
    }))
    .unwrap();
    let mut workflow = Workflow::new(
        id("wf-1"),
        id("chat"),
        recommendation,
        false,
        Params::default(),
        1_800_000_000_000,
    );
    workflow.task_token = Some(TOKEN.into());
    // The stored record keeps it (the approval path needs it)...
    assert!(serde_json::to_string(&workflow).unwrap().contains(TOKEN));
    // ...what the API answers and what a log of it would print do not.
    let shown = workflow.redacted();
    let body = serde_json::to_value(&shown).unwrap();
    assert!(body.get("task_token").is_none(), "{body}");
    assert!(!body.to_string().contains(TOKEN), "{body}");
    assert!(!format!("{shown:?}").contains(TOKEN));
    assert_eq!(shown.id, workflow.id, "the rest is unchanged");
}
