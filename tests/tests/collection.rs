//! Scheduled collection end to end: the template deployed into the emulator, the simulated fleet
//! registered through the signed API, the deployed collector invoked as EventBridge would, and
//! snapshots and windows read back through the API and straight from the emulated DynamoDB.
//!
//! The tests share one deployed stack and its one table, so they run one at a time
//! (`--test-threads=1`) and each removes the instances it registered.

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use http::{Method, StatusCode};
use perfagent_e2e::{now_ms, rfc3339, Sim, Stack};
use serde_json::{json, Value};
use std::time::Duration;

/// An instance's outcome in a pass report (`collected`, `failed`, `skipped`, ...).
fn outcome<'a>(report: &'a Value, id: &str) -> &'a str {
    report["details"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["id"] == id))
        .and_then(|x| x["outcome"].as_str())
        .unwrap_or("")
}

fn inline_report(out: &Value, pass: usize) -> &Value {
    let p = &out["passes"][pass];
    assert_eq!(p["mode"], "inline", "{out}");
    p
}

#[tokio::test]
async fn the_simulated_fleet_is_collected_into_dynamodb_and_read_back_as_windows() -> Result<()> {
    let stack = Stack::connect().await?;
    let sim = Sim::start().await?;
    stack.clear_registry().await?;

    let instances = sim.instances();
    assert!(instances.len() >= 6);
    stack.register_fleet(&sim).await?;
    let (status, list) = stack
        .api
        .call(Method::GET, "/api/v1/instances", None)
        .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["count"], instances.len());

    // Three scheduled ticks, 30 s apart, as EventBridge would deliver them (one pass each), with
    // the simulated servers living through the same 30 s between them.
    let base = now_ms() - 120_000;
    for tick in 0..3 {
        let time = rfc3339(base + tick * 30_000);
        let out = stack
            .invoke_collector(&json!({"time": time, "passes": 1}))
            .await?;
        let report = inline_report(&out, 0);
        assert_eq!(report["instances"], instances.len(), "{out}");
        assert_eq!(report["collected"], instances.len(), "{out}");
        sim.advance(30.0);
    }

    let ours = |snaps: &Value| -> Vec<Value> {
        // The slots this test wrote; the live schedule or other tests may have added others.
        snaps["snapshots"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| {
                let slot = s["slot_ms"].as_i64().unwrap_or(0);
                (0..3).any(|k| slot == (base + k * 30_000) / 30_000 * 30_000)
            })
            .collect()
    };
    for (id, engine, _, model) in &instances {
        let (status, snaps) = stack
            .api
            .call(
                Method::GET,
                &format!("/api/v1/instances/{id}/snapshots?minutes=10"),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{snaps}");
        let mine = ours(&snaps);
        assert_eq!(mine.len(), 3, "{id}: {snaps}");
        let first = &mine[0];
        assert_eq!(first["engine"], engine.as_str(), "{id}");
        assert_eq!(first["models"][0]["model"], model.as_str(), "{id}");

        let (status, window) = stack
            .api
            .call(
                Method::GET,
                &format!("/api/v1/instances/{id}/window?minutes=10"),
                None,
            )
            .await?;
        assert_eq!(status, StatusCode::OK, "{window}");
        // This test's model: another test may have left snapshots of the instance under another name.
        let w = window["models"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["model"] == model.as_str()))
            .unwrap_or(&Value::Null);
        let tokens = w["generation_tokens_per_s"].as_f64().unwrap_or(0.0);
        assert!(tokens > 0.0, "{id} generated no tokens: {window}");
        assert!(
            w["window"]["histograms"]["e2e_latency_seconds"]["quantiles"]["p95"]
                .as_f64()
                .is_some(),
            "{id}: {window}"
        );
        if engine != "tgi" {
            assert!(
                w["window"]["histograms"]["ttft_seconds"]["quantiles"]["p50"]
                    .as_f64()
                    .is_some(),
                "{id}: {window}"
            );
        }
    }

    // Straight from the table: the items are there, compact, and expire.
    let (id, ..) = &instances[0];
    let items = stack
        .dynamodb
        .query()
        .table_name(stack.var("TABLE_NAME"))
        .key_condition_expression("pk = :pk AND begins_with(sk, :s)")
        .expression_attribute_values(":pk", AttributeValue::S(format!("INST#{id}")))
        .expression_attribute_values(":s", AttributeValue::S("SNAP#".into()))
        .send()
        .await?
        .items
        .unwrap_or_default();
    assert!(items.len() >= 3, "{} snapshot items", items.len());
    for item in &items {
        let size: usize = item
            .iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        AttributeValue::S(s) | AttributeValue::N(s) => s.len(),
                        AttributeValue::B(b) => b.as_ref().len(),
                        _ => 8,
                    }
            })
            .sum();
        assert!(size <= 1024, "snapshot item of {size} bytes");
        assert!(item.contains_key("expires_at"));
    }

    // A retried tick (same scheduled time) overwrites instead of duplicating.
    stack
        .invoke_collector(&json!({"time": rfc3339(base), "passes": 1}))
        .await?;
    let (_, snaps) = stack
        .api
        .call(
            Method::GET,
            &format!("/api/v1/instances/{id}/snapshots?minutes=10"),
            None,
        )
        .await?;
    assert_eq!(ours(&snaps).len(), 3, "{snaps}");

    stack.clear_registry().await
}

#[tokio::test]
async fn dead_slow_garbage_and_huge_servers_are_marked_and_the_rest_collected() -> Result<()> {
    let stack = Stack::connect().await?;
    let sim = Sim::start().await?;
    stack.clear_registry().await?;
    let instances = sim.instances();
    let mut faulty = Vec::new();
    stack.register_fleet(&sim).await?;
    for (i, (id, ..)) in instances.iter().enumerate() {
        let fault = match i {
            0 => r#"{"fault":"down"}"#,
            1 => r#"{"fault":"slow","slow_seconds":30}"#,
            2 => r#"{"fault":"garbage"}"#,
            3 => r#"{"fault":"huge","huge_mb":50}"#,
            _ => continue,
        };
        sim.set_fault(id, fault)?;
        faulty.push(id.clone());
    }
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead_url = format!("http://{}/metrics", closed.local_addr()?);
    drop(closed);
    stack
        .register("nobody-home", "vllm", "chat-prod", &dead_url, None)
        .await?;

    let out = stack
        .invoke_collector(&json!({"time": rfc3339(now_ms()), "passes": 1}))
        .await?;
    let report = inline_report(&out, 0);
    let healthy = instances.len() - faulty.len();
    assert_eq!(report["collected"], healthy, "{out}");
    assert_eq!(report["failed"], faulty.len() + 1, "{out}");
    let kind_of = |id: &str| -> String {
        report["details"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["id"] == id))
            .map(|x| x["kind"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    assert_eq!(kind_of(&faulty[0]), "status");
    assert_eq!(kind_of(&faulty[1]), "timeout");
    assert_eq!(kind_of(&faulty[2]), "unparseable");
    assert_eq!(kind_of(&faulty[3]), "too_large");
    assert_eq!(kind_of("nobody-home"), "connect");

    // The failure is recorded with the instance, for operators.
    let (_, inst) = stack
        .api
        .call(Method::GET, "/api/v1/instances/nobody-home", None)
        .await?;
    assert_eq!(inst["health"]["last_error_kind"], "connect", "{inst}");
    assert_eq!(inst["health"]["breaker"]["consecutive_failures"], 1);

    stack.clear_registry().await
}

#[tokio::test]
async fn a_fleet_larger_than_a_shard_is_fanned_out_and_every_instance_collected() -> Result<()> {
    let stack = Stack::connect().await?;
    let sim = Sim::start().await?;
    stack.clear_registry().await?;
    let instances = sim.instances();
    for (id, engine, group, _) in &instances {
        stack
            .register(id, engine, group, &sim.metrics_url(id), None)
            .await?;
    }
    let slot = now_ms() / 30_000 * 30_000;
    let out = stack
        .invoke_collector(&json!({"time": rfc3339(slot), "passes": 1, "shard_size": 3}))
        .await?;
    let pass = &out["passes"][0];
    assert_eq!(pass["mode"], "dispatched", "{out}");
    let shards = instances.len().div_ceil(3);
    assert_eq!(pass["shards"], shards);

    // The shards run as asynchronous invokes: wait until each instance has its snapshot of the slot.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String> = instances.iter().map(|i| i.0.clone()).collect();
    while !missing.is_empty() && std::time::Instant::now() < deadline {
        let mut still = Vec::new();
        for id in &missing {
            let got = stack
                .dynamodb
                .get_item()
                .table_name(stack.var("TABLE_NAME"))
                .key("pk", AttributeValue::S(format!("INST#{id}")))
                .key("sk", AttributeValue::S(format!("SNAP#{slot:015}")))
                .send()
                .await?;
            if got.item.is_none() {
                still.push(id.clone());
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(missing.is_empty(), "never collected: {missing:?}");
    stack.clear_registry().await
}

#[tokio::test]
async fn the_api_refuses_unsigned_requests_and_bad_input_with_clear_errors() -> Result<()> {
    let stack = Stack::connect().await?;
    let (status, _) = stack
        .unsigned_api
        .call(Method::GET, "/api/v1/instances", None)
        .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = stack
        .unsigned_api
        .call(Method::GET, "/api/v1/health", None)
        .await?;
    assert_eq!(status, StatusCode::OK, "liveness is open: {body}");

    let (status, err) = stack
        .api
        .call(
            Method::POST,
            "/api/v1/instances",
            Some(&json!({"id": "imds", "engine": "vllm", "metrics_url": "http://169.254.169.254/latest/meta-data/"})),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["details"]["field"], "metrics_url");
    let (status, err) = stack
        .api
        .call(Method::POST, "/api/v1/instances", Some(&json!({"id": 7})))
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["code"], "invalid_json");
    Ok(())
}

#[tokio::test]
async fn a_flapping_instance_opens_its_breaker_and_closes_it_again_and_loses_no_snapshot(
) -> Result<()> {
    let stack = Stack::connect().await?;
    let sim = Sim::start().await?;
    stack.clear_registry().await?;
    stack.register_fleet(&sim).await?;
    let (id, ..) = sim.instances().into_iter().next().expect("a fleet");
    // Nine good scrapes, then nine failing ones (a pass tries three times: 3 failed passes).
    sim.set_fault(&id, r#"{"fault":"flap","flap_every":9}"#)?;
    let breaker = || async {
        let (_, inst) = stack
            .api
            .call(Method::GET, &format!("/api/v1/instances/{id}"), None)
            .await?;
        anyhow::Ok(
            inst["health"]["breaker"]["state"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    };
    // Slots three days back, which no other test writes: the count below is this test's own.
    let start = now_ms() - 3 * 86_400_000;
    let mut collected = 0;
    let mut states = Vec::new();
    for i in 0..14 {
        let out = stack
            .invoke_collector(&json!({"time": rfc3339(start + i * 30_000), "passes": 1}))
            .await?;
        let report = inline_report(&out, 0);
        if outcome(report, &id) == "collected" {
            collected += 1;
        }
        states.push(breaker().await?);
    }
    assert!(states.iter().any(|s| s == "OPEN"), "{states:?}");
    assert_eq!(
        states.last().map(String::as_str),
        Some("OPEN"),
        "{states:?}"
    );
    // After the cool-down (60 s) the breaker lets a probe through; the instance answers again.
    tokio::time::sleep(Duration::from_secs(62)).await;
    let out = stack
        .invoke_collector(&json!({"time": rfc3339(start + 14 * 30_000), "passes": 1}))
        .await?;
    let report = inline_report(&out, 0);
    assert_eq!(outcome(report, &id), "collected", "the probe failed: {out}");
    collected += 1;
    assert_eq!(breaker().await?, "CLOSED");

    // Every pass that collected the instance stored its snapshot.
    let stored = stack
        .dynamodb
        .query()
        .table_name(stack.var("TABLE_NAME"))
        .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
        .expression_attribute_values(":pk", AttributeValue::S(format!("INST#{id}")))
        .expression_attribute_values(
            ":from",
            AttributeValue::S(format!("SNAP#{:015}", start - 30_000)),
        )
        .expression_attribute_values(
            ":to",
            AttributeValue::S(format!("SNAP#{:015}", start + 15 * 30_000)),
        )
        .send()
        .await?
        .count;
    assert_eq!(stored as usize, collected, "{states:?}");
    stack.clear_registry().await
}
