//! Analysis end to end: a load spike in the simulated fleet becomes bottlenecks, SLO state and
//! recommendations in the spiked group's engines' own flags, read back through the signed API of
//! the deployed template.

use anyhow::Result;
use http::{Method, StatusCode};
use perfagent_e2e::{now_ms, rfc3339, Sim, Stack};
use serde_json::json;

#[tokio::test]
async fn a_load_spike_becomes_bottlenecks_and_recommendations_over_the_api() -> Result<()> {
    let stack = Stack::connect().await?;
    let sim = Sim::start().await?;
    stack.clear_registry().await?;
    let fleet = sim.instances();
    stack.register_fleet(&sim).await?;

    // Nine scheduled ticks 30 s apart; the spike starts before the fourth.
    let start = now_ms() - 9 * 30_000;
    for i in 0..9 {
        if i == 3 {
            sim.scenario(r#"{"name":"load_spike","group":"chat-prod","factor":5}"#)?;
        }
        stack
            .invoke_collector(&json!({"time": rfc3339(start + i * 30_000), "passes": 1}))
            .await?;
        sim.advance(30.0);
    }
    let report = stack.invoke_analyzer().await?;
    assert_eq!(report["instances"], fleet.len(), "{report}");

    let (status, b) = stack
        .api
        .call(Method::GET, "/api/v1/bottlenecks?group=chat-prod", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    let kinds: Vec<String> = b["bottlenecks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|x| x["bottleneck"]["type"].as_str().map(String::from))
        .collect();
    assert!(
        kinds
            .iter()
            .any(|k| k == "QUEUE_BUILDUP" || k == "MEMORY_PRESSURE" || k == "HIGH_LATENCY"),
        "the spike was not seen: {b}"
    );

    let (_, g) = stack
        .api
        .call(Method::GET, "/api/v1/groups/chat-prod/analysis", None)
        .await?;
    assert!(
        !g["slo"].as_array().cloned().unwrap_or_default().is_empty(),
        "{g}"
    );

    let (_, r) = stack
        .api
        .call(Method::GET, "/api/v1/recommendations?group=chat-prod", None)
        .await?;
    let recs = r["recommendations"].as_array().cloned().unwrap_or_default();
    assert!(
        !recs.is_empty(),
        "no recommendation for the spiked group: {r}"
    );
    for rec in &recs {
        let engine = rec["engine"].as_str().unwrap_or("");
        let flag = rec["recommendation"]["flag"].as_str().unwrap_or("");
        assert!(flag.starts_with("--"), "{rec}");
        assert!(
            fleet
                .iter()
                .any(|(_, e, g, _)| e == engine && g == "chat-prod"),
            "a recommendation for an engine the group does not run: {rec}"
        );
        let id = rec["id"].as_str().unwrap_or("");
        let (status, one) = stack
            .api
            .call(Method::GET, &format!("/api/v1/recommendations/{id}"), None)
            .await?;
        assert_eq!(status, StatusCode::OK, "{one}");
    }

    // The API describes itself, without a signature.
    let (status, doc) = stack
        .unsigned_api
        .call(Method::GET, "/api/v1/openapi.json", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/recommendations"].is_object());

    stack.clear_registry().await
}
