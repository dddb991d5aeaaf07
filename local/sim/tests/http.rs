//! The HTTP surface: per-instance `/metrics`, the admin API's status codes and bodies, the fault
//! modes, and the `fleetsim` binary's READY handshake.

mod common;

use common::*;
use perfagent::promtext::{parse, Mode};
use perfagent_sim::config::EngineKind;
use perfagent_sim::fleet::Fleet;
use perfagent_sim::server::{router, AppState};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Serves `fleet` on an ephemeral port; returns its base URL.
async fn spawn(fleet: Fleet) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(AppState::new(fleet))).await;
    });
    format!("http://{addr}")
}

fn mixed_fleet() -> Fleet {
    let mut f = fleet_of(
        vec![
            spec("v", EngineKind::Vllm, "v1", 5.0),
            spec("t", EngineKind::Tgi, "v3", 5.0),
            spec("s", EngineKind::Sglang, "current", 5.0),
        ],
        1,
    );
    f.advance(10.0);
    f
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json::<Value>().await.expect("json body")
}

#[tokio::test]
async fn metrics_are_served_per_instance_with_the_engines_content_type() {
    let base = spawn(mixed_fleet()).await;
    let c = reqwest::Client::new();
    for (id, ct) in [
        ("v", "text/plain; version=0.0.4; charset=utf-8"),
        ("s", "text/plain; version=0.0.4; charset=utf-8"),
        ("t", "text/plain; charset=utf-8"),
    ] {
        let r = c
            .get(format!("{base}/instances/{id}/metrics"))
            .send()
            .await
            .expect("reply");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], ct);
        let body = r.bytes().await.expect("body");
        parse(&body, Mode::Lenient).expect("valid exposition");
    }
    let missing = c
        .get(format!("{base}/instances/nope/metrics"))
        .send()
        .await
        .expect("reply");
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn put_config_returns_the_previous_config_and_refuses_unknown_keys() {
    let base = spawn(mixed_fleet()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/admin/instances/v/config");
    let before = json_of(c.get(&url).send().await.expect("reply")).await;
    let r = c
        .put(&url)
        .json(&json!({"max_num_seqs": 64}))
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 200);
    let body = json_of(r).await;
    assert_eq!(body["previous"], before);
    assert_eq!(body["current"]["max_num_seqs"], 64);

    let bad = c
        .put(&url)
        .json(&json!({"max_num_seq": 64}))
        .send()
        .await
        .expect("reply");
    assert_eq!(bad.status(), 400);
    let err = json_of(bad).await;
    let msg = err["error"].as_str().expect("error message");
    assert!(
        msg.contains("max_num_seq") && msg.contains("max_num_seqs"),
        "{msg}"
    );

    let out_of_range = c
        .put(&url)
        .json(&json!({"block_size": 7}))
        .send()
        .await
        .expect("reply");
    assert_eq!(out_of_range.status(), 400);
}

#[tokio::test]
async fn instances_can_be_listed_added_and_removed() {
    let base = spawn(mixed_fleet()).await;
    let c = reqwest::Client::new();
    let list = json_of(
        c.get(format!("{base}/admin/instances"))
            .send()
            .await
            .expect("reply"),
    )
    .await;
    assert_eq!(list.as_array().map(Vec::len), Some(3));
    assert!(list[0]["state"]["running"].is_u64());

    let new = json!({"id": "n1", "engine": "sglang", "generation": "0.4",
                     "model": "m", "group": "g2", "workload": {"rate_rps": 2}});
    let r = c
        .post(format!("{base}/admin/instances"))
        .json(&new)
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 201);
    let again = c
        .post(format!("{base}/admin/instances"))
        .json(&new)
        .send()
        .await
        .expect("reply");
    assert_eq!(again.status(), 409);
    let one = json_of(
        c.get(format!("{base}/admin/instances/n1"))
            .send()
            .await
            .expect("reply"),
    )
    .await;
    assert_eq!(one["generation"], "0.4");
    let del = c
        .delete(format!("{base}/admin/instances/n1"))
        .send()
        .await
        .expect("reply");
    assert_eq!(del.status(), 204);
    let gone = c
        .get(format!("{base}/admin/instances/n1"))
        .send()
        .await
        .expect("reply");
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn scenarios_and_the_manual_clock_move_the_fleet() {
    let base = spawn(mixed_fleet()).await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/admin/scenario"))
        .json(&json!({"name": "load_spike", "group": "g1", "factor": 5.0}))
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 200);
    assert_eq!(
        json_of(r).await["affected"].as_array().map(Vec::len),
        Some(3)
    );
    let adv = json_of(
        c.post(format!("{base}/admin/advance"))
            .json(&json!({"seconds": 5}))
            .send()
            .await
            .expect("reply"),
    )
    .await;
    assert_eq!(adv["steps"], 50);
    let health = json_of(
        c.get(format!("{base}/admin/health"))
            .send()
            .await
            .expect("reply"),
    )
    .await;
    assert_eq!(health["status"], "ok");
    assert!(health["sim_time_s"].as_f64().expect("number") > 14.9);
    let unknown = c
        .post(format!("{base}/admin/scenario"))
        .json(&json!({"name": "nope"}))
        .send()
        .await
        .expect("reply");
    assert_eq!(unknown.status(), 400);
}

async fn set_fault(c: &reqwest::Client, base: &str, body: Value) {
    let r = c
        .put(format!("{base}/admin/instances/v/fault"))
        .json(&body)
        .send()
        .await
        .expect("reply");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn faults_break_the_metrics_endpoint_in_each_way() {
    let base = spawn(mixed_fleet()).await;
    let c = reqwest::Client::new();
    let url = format!("{base}/instances/v/metrics");

    set_fault(&c, &base, json!({"fault": "down"})).await;
    assert_eq!(c.get(&url).send().await.expect("reply").status(), 503);

    set_fault(&c, &base, json!({"fault": "garbage"})).await;
    let r = c.get(&url).send().await.expect("reply");
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.expect("body");
    assert!(
        parse(&body, Mode::Lenient).is_err(),
        "random bytes do not parse"
    );

    set_fault(&c, &base, json!({"fault": "huge", "huge_mb": 1})).await;
    let body = c
        .get(&url)
        .send()
        .await
        .expect("reply")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body.len(), 1024 * 1024);

    set_fault(&c, &base, json!({"fault": "flap", "flap_every": 2})).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(c.get(&url).send().await.expect("reply").status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 503, 503, 200]);

    set_fault(&c, &base, json!({"fault": "slow", "slow_seconds": 30})).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let err = impatient.get(&url).send().await.expect_err("times out");
    assert!(err.is_timeout());

    set_fault(&c, &base, json!({"fault": null})).await;
    assert_eq!(c.get(&url).send().await.expect("reply").status(), 200);

    let bad = c
        .put(format!("{base}/admin/instances/v/fault"))
        .json(&json!({"fault": "meteor"}))
        .send()
        .await
        .expect("reply");
    assert_eq!(bad.status(), 400);
}

#[test]
fn the_binary_announces_ready_and_serves_the_default_fleet() {
    let ready_file = std::env::temp_dir().join(format!("fleetsim-ready-{}", std::process::id()));
    let fleet = concat!(env!("CARGO_MANIFEST_DIR"), "/../fleet.json");
    let spec: Value = serde_json::from_slice(&std::fs::read(fleet).expect("the fleet file"))
        .expect("the fleet file is JSON");
    let instances = spec["instances"].as_array().map_or(0, Vec::len);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetsim"))
        .args([
            "--fleet",
            fleet,
            "--port",
            "0",
            "--no-clock",
            "--ready-file",
        ])
        .arg(&ready_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("reads");
    let outcome = (|| {
        let port: u16 = line
            .trim()
            .strip_prefix("READY port=")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad READY line {line:?}"))?;
        assert!(line.contains(&format!("instances={instances}")), "{line}");
        let written = std::fs::read_to_string(&ready_file).map_err(|e| e.to_string())?;
        assert_eq!(written.trim(), line.trim());
        let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        rt.block_on(async {
            let health: Value = reqwest::get(format!("http://127.0.0.1:{port}/admin/health"))
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            assert_eq!(health["instances"], instances);
            Ok::<(), String>(())
        })
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&ready_file);
    outcome.expect("binary works");
}
