//! `make demo`: the agent's loop on the local stack, told as it happens. The template is already
//! deployed into the emulator (`local/demo.sh` does that); this program plays the operator and the
//! fleet: it registers the simulated servers through the signed API, lets the scheduled collector
//! run, pushes one deployment group into a load spike, runs the analyzer, and reads back what the
//! agent concluded — bottlenecks with their evidence and recommendations in each engine's flags.
//!
//! Exits 0 only if the story ended as it should: every server collected, the spike detected as a
//! bottleneck of the spiked group, and a recommendation made for it.

use anyhow::{bail, Context, Result};
use http::Method;
use perfagent_e2e::{now_ms, rfc3339, Sim, Stack};
use serde_json::{json, Value};
use std::time::Instant;

const SPIKED_GROUP: &str = "chat-prod";
const TICK_S: i64 = 30;

fn say(started: Instant, text: &str) {
    println!("[{:>5.1}s] {text}", started.elapsed().as_secs_f64());
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "—".to_string(), |x| format!("{x:.digits$}"))
}

/// Runs one scheduled collection tick at `at_ms` and returns (collected, instances).
async fn tick(stack: &Stack, at_ms: i64) -> Result<(u64, u64)> {
    let out = stack
        .invoke_collector(&json!({"time": rfc3339(at_ms), "passes": 1}))
        .await?;
    let p = &out["passes"][0];
    Ok((
        p["collected"].as_u64().unwrap_or(0) + p["partial"].as_u64().unwrap_or(0),
        p["instances"].as_u64().unwrap_or(0),
    ))
}

async fn fleet_table(stack: &Stack, ids: &[(String, String, String, String)]) -> Result<()> {
    println!(
        "    {:<16} {:<7} {:<10} {:>7} {:>7} {:>6} {:>9} {:>10}",
        "instance", "engine", "group", "running", "waiting", "kv", "tokens/s", "ttft p95 s"
    );
    for (id, engine, group, _) in ids {
        let (_, w) = stack
            .api
            .call(
                Method::GET,
                &format!("/api/v1/instances/{id}/window?minutes=3"),
                None,
            )
            .await?;
        let m = &w["models"][0];
        let g = &m["window"]["gauges"];
        println!(
            "    {:<16} {:<7} {:<10} {:>7} {:>7} {:>6} {:>9} {:>10}",
            id,
            engine,
            group,
            num(&g["requests_running"]["last"], 0),
            num(&g["requests_waiting"]["last"], 0),
            num(&g["kv_cache_usage_ratio"]["last"], 2),
            num(&m["generation_tokens_per_s"], 0),
            num(
                &m["window"]["histograms"]["ttft_seconds"]["quantiles"]["p95"],
                3
            ),
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let started = Instant::now();
    let stack = Stack::connect().await?;
    let sim = Sim::start().await?;
    let fleet = sim.instances();
    say(
        started,
        &format!(
            "the simulated fleet is up: {} servers (vLLM V0/0.10/V1, TGI, SGLang) at {}",
            fleet.len(),
            sim.base_url
        ),
    );

    stack.clear_registry().await?;
    stack.register_fleet(&sim).await?;
    say(
        started,
        "registered every server through the signed API (POST /api/v1/instances)",
    );

    // Collection runs on the schedule; the demo replays ticks 30 s apart so a few minutes of the
    // fleet's life fit in seconds (the simulator's clock moves with them).
    let mut at = now_ms() - 10 * TICK_S * 1000;
    for _ in 0..4 {
        let (collected, total) = tick(&stack, at).await?;
        if collected != total {
            bail!("only {collected} of {total} servers were collected");
        }
        sim.advance(TICK_S as f64);
        at += TICK_S * 1000;
    }
    say(
        started,
        "collected 4 scheduled passes: every server scraped, normalized and stored",
    );
    fleet_table(&stack, &fleet).await?;

    let affected = sim.scenario(&format!(
        r#"{{"name":"load_spike","group":"{SPIKED_GROUP}","factor":4}}"#
    ))?;
    say(
        started,
        &format!(
            "a load spike hits {SPIKED_GROUP}: 4x the arrival rate on {} servers",
            affected.len()
        ),
    );
    for _ in 0..6 {
        tick(&stack, at).await?;
        sim.advance(TICK_S as f64);
        at += TICK_S * 1000;
    }
    say(started, "collected 6 more passes during the spike");
    fleet_table(&stack, &fleet).await?;

    let report = stack
        .invoke_analyzer()
        .await
        .context("running the analyzer")?;
    say(
        started,
        &format!(
            "the analyzer ran: {} bottlenecks, {} group recommendations, {} SLO burn-rate alerts firing",
            report["bottlenecks"], report["recommendations"], report["slo_alerts_firing"]
        ),
    );

    let (_, b) = stack
        .api
        .call(
            Method::GET,
            &format!("/api/v1/bottlenecks?group={SPIKED_GROUP}"),
            None,
        )
        .await?;
    let bottlenecks = b["bottlenecks"].as_array().cloned().unwrap_or_default();
    println!("    bottlenecks in {SPIKED_GROUP} (GET /api/v1/bottlenecks):");
    for x in &bottlenecks {
        let bn = &x["bottleneck"];
        println!(
            "    - {:<16} {:<18} {:<8} {}",
            x["instance_id"].as_str().unwrap_or(""),
            bn["type"].as_str().unwrap_or(""),
            bn["severity"].as_str().unwrap_or(""),
            bn["description"].as_str().unwrap_or("")
        );
    }

    let (_, g) = stack
        .api
        .call(
            Method::GET,
            &format!("/api/v1/groups/{SPIKED_GROUP}/analysis"),
            None,
        )
        .await?;
    for r in g["slo"].as_array().cloned().unwrap_or_default() {
        println!(
            "    SLO {:<14} compliance {:>7} (target {}), budget remaining {:>7}",
            r["objective"].as_str().unwrap_or(""),
            num(&r["compliance"], 4),
            r["target"],
            num(&r["budget_remaining"], 2),
        );
    }

    let (_, r) = stack
        .api
        .call(
            Method::GET,
            &format!("/api/v1/recommendations?group={SPIKED_GROUP}"),
            None,
        )
        .await?;
    let recs = r["recommendations"].as_array().cloned().unwrap_or_default();
    println!("    recommendations for {SPIKED_GROUP} (GET /api/v1/recommendations):");
    for x in &recs {
        let rec = &x["recommendation"];
        println!(
            "    - [{}] {} {} → {}  ({}; risk {}; for {} of {} {} servers)",
            rec["bottleneck"].as_str().unwrap_or(""),
            rec["flag"].as_str().unwrap_or(""),
            rec["current"]["value"],
            rec["proposed"],
            rec["title"].as_str().unwrap_or(""),
            rec["risk"]["level"].as_str().unwrap_or(""),
            x["proposed_for"].as_array().map_or(0, Vec::len),
            x["eligible_instances"],
            x["engine"].as_str().unwrap_or(""),
        );
    }

    stack.clear_registry().await?;
    println!();
    println!("    {:<40} result", "step");
    println!(
        "    {:<40} {} servers each pass",
        "collection (10 passes)",
        fleet.len()
    );
    println!(
        "    {:<40} {}",
        "bottlenecks found in the spiked group",
        bottlenecks.len()
    );
    println!(
        "    {:<40} {}",
        "recommendations for the spiked group",
        recs.len()
    );
    println!(
        "    {:<40} {:.1} s",
        "duration",
        started.elapsed().as_secs_f64()
    );
    if bottlenecks.is_empty() || recs.is_empty() {
        bail!("the demo did not end as it should: the spike must show as a bottleneck with a recommendation");
    }
    say(started, "demo complete");
    Ok(())
}
