//! `make demo`: the agent's loop on the local stack, told as it happens. The template is already
//! deployed into the emulator (`local/demo.sh` does that); this program plays the operator, the
//! fleet and the orchestrator: it registers the simulated servers through the signed API, lets
//! the scheduled collector run, pushes two deployment groups into a load spike, runs the
//! analyzer, reads back what the agent concluded — bottlenecks with their evidence and
//! recommendations in each engine's flags — and then rolls two recommendations out through the
//! deployed state machine: one that helps (approved through the API → canary → PASS → rollout
//! steps → COMPLETED) and one that hurts on this hardware (→ FAIL → ROLLED_BACK).
//!
//! Exits 0 only if the story ended as it should: every server collected, the spike detected as a
//! bottleneck with a recommendation, the first workflow COMPLETED with every server changed, the
//! second ROLLED_BACK with every server on its old config.

use anyhow::{bail, Context, Result};
use http::{Method, StatusCode};
use perfagent_e2e::{now_ms, pick_recommendation, rfc3339, verdicts, Orchestrator, Sim, Stack};
use perfagent_sim::orchestrator::approver::ApprovalMode;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const SPIKED_GROUP: &str = "chat-prod";
/// The second group: its recommendation is rolled out with the orchestrator's harm switch on.
const HARMED_GROUP: &str = "batch-prod";
/// Simulated seconds per wall second while workflows run (the emulator scales the state
/// machine's 60 s bake waits to 0.6 s, so one bake interval is a simulated minute).
const SPEED: f64 = 100.0;
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

    let mut affected = Vec::new();
    for group in [SPIKED_GROUP, HARMED_GROUP] {
        affected.extend(sim.scenario(&format!(
            r#"{{"name":"load_spike","group":"{group}","factor":5}}"#
        ))?);
    }
    say(
        started,
        &format!(
            "a load spike hits {SPIKED_GROUP} and {HARMED_GROUP}: 5x the arrival rate on {} servers",
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

    let (_, r) = stack
        .api
        .call(
            Method::GET,
            &format!("/api/v1/recommendations?group={HARMED_GROUP}"),
            None,
        )
        .await?;
    let harmed_recs = r["recommendations"].as_array().cloned().unwrap_or_default();

    // ------------------------------------------------------------ the workflows
    for group in [SPIKED_GROUP, HARMED_GROUP] {
        sim.scenario(&format!(
            r#"{{"name":"load_spike","group":"{group}","factor":1}}"#
        ))?;
    }
    sim.advance(600.0);
    say(
        started,
        "the spike is over: changes are judged in steady traffic, the simulator's clock now runs at 100x",
    );
    let _clock = sim.run_clock(SPEED);
    let orchestrator = Orchestrator::start(&stack, &sim, ApprovalMode::Manual).await?;
    say(
        started,
        &format!(
            "the simulated orchestrator listens at {} (manual approvals)",
            stack.var("ORCHESTRATOR_URL")
        ),
    );

    let mut rows = Vec::new();
    let good = pick_recommendation(&recs)
        .with_context(|| format!("no recommendation for {SPIKED_GROUP} to roll out"))?;
    rows.push(rollout(&stack, &sim, &orchestrator, &good, Story::Good, started).await?);
    let bad = pick_recommendation(&harmed_recs)
        .with_context(|| format!("no recommendation for {HARMED_GROUP} to roll out"))?;
    orchestrator.state.set_harm(true);
    orchestrator
        .state
        .set_mode(perfagent_sim::orchestrator::approver::ModeSettings {
            principal: "approver".into(),
            ..perfagent_sim::orchestrator::approver::ModeSettings::new(ApprovalMode::AutoApprove)
        })
        .map_err(anyhow::Error::msg)?;
    say(
        started,
        &format!("the orchestrator now approves by itself, and on {HARMED_GROUP}'s hardware the next change runs 1.8x slower"),
    );
    rows.push(rollout(&stack, &sim, &orchestrator, &bad, Story::Harmful, started).await?);

    stack.clear_registry().await?;
    println!();
    println!(
        "    {:<26} {:<11} {:<34} {:<22} {:<12} {:>8}",
        "workflow", "group", "recommendation", "verdicts", "final state", "duration"
    );
    for r in &rows {
        println!(
            "    {:<26} {:<11} {:<34} {:<22} {:<12} {:>7.1}s",
            r.id, r.group, r.recommendation, r.verdicts, r.state, r.seconds
        );
    }
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
    if let Some(r) = rows.iter().find(|r| !r.as_expected) {
        bail!(
            "the demo did not end as it should: workflow {} on {} ended {} ({})",
            r.id,
            r.group,
            r.state,
            r.verdicts
        );
    }
    say(started, "demo complete");
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Story {
    /// Approved by the operator through the API; must end COMPLETED with every server changed.
    Good,
    /// Approved by the orchestrator; must end ROLLED_BACK with every server on its old config.
    Harmful,
}

struct Row {
    id: String,
    group: String,
    recommendation: String,
    verdicts: String,
    state: String,
    seconds: f64,
    as_expected: bool,
}

/// Starts a workflow for `rec`, tells its audit trail as it grows, and checks how it ended.
async fn rollout(
    stack: &Stack,
    sim: &Sim,
    orchestrator: &Orchestrator,
    rec: &Value,
    story: Story,
    started: Instant,
) -> Result<Row> {
    let group = rec["group"].as_str().unwrap_or_default().to_string();
    let r = &rec["recommendation"];
    let change = format!(
        "{} {} → {}",
        r["flag"].as_str().unwrap_or(""),
        r["current"]["value"],
        r["proposed"]
    );
    let before = sim.group_configs(&group)?;
    let t0 = Instant::now();
    let (status, w) = stack
        .start_workflow(rec["id"].as_str().unwrap_or_default(), &json!({}))
        .await?;
    if status != StatusCode::CREATED {
        bail!("starting a workflow on {group}: {status} {w}");
    }
    let id = w["id"].as_str().unwrap_or_default().to_string();
    say(
        started,
        &format!("workflow {id} started on {group}: {change} (POST /api/v1/workflows)"),
    );
    if story == Story::Good {
        // The approval request reaches the orchestrator, which waits for a person: the demo
        // plays the operator and approves through the API, signed as the approver.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !orchestrator
            .state
            .calls()
            .iter()
            .any(|c| c.workflow_id.as_deref() == Some(id.as_str()) && c.status == 202)
        {
            if Instant::now() > deadline {
                bail!("the approval request of {id} never reached the orchestrator");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        say(
            started,
            "the approval request reached the orchestrator (signed webhook with the approve/reject routes)",
        );
        let (status, body) = stack.approve_when_ready(&id).await?;
        if status != StatusCode::OK {
            bail!("approving {id}: {status} {body}");
        }
        say(
            started,
            &format!(
                "approved by {} (POST /api/v1/workflows/{id}/approve → SendTaskSuccess)",
                stack.var("APPROVER_PRINCIPALS")
            ),
        );
    }
    // Tell the audit trail as it grows, until the workflow ends.
    let mut shown = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let w = stack.workflow(&id).await?;
        let audit = w["audit"].as_array().cloned().unwrap_or_default();
        for e in audit.iter().skip(shown) {
            say(
                started,
                &format!(
                    "  {:<16} {:<11} {}",
                    e["actor"]
                        .as_str()
                        .unwrap_or("")
                        .rsplit(['/', ':'])
                        .next()
                        .unwrap_or(""),
                    e["to"].as_str().unwrap_or(""),
                    e["reason"].as_str().unwrap_or("")
                ),
            );
        }
        shown = audit.len();
        if perfagent_e2e::TERMINAL.contains(&w["state"].as_str().unwrap_or("")) {
            break w;
        }
        if Instant::now() > deadline {
            bail!("workflow {id} did not end within 300 s: {}", w["state"]);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let verdict_list = verdicts(&done);
    // The evidence of the last judgement: each metric's medians and the test's p-value.
    if let Some(last) = done["verdicts"].as_array().and_then(|v| v.last()) {
        println!(
            "    evidence of the last verdict ({}, score {}; rates per wall second, the simulator runs at 100x):",
            last["report"]["verdict"].as_str().unwrap_or(""),
            last["report"]["score"]
        );
        println!(
            "    {:<24} {:>12} {:>12} {:>9} {:>9}  result",
            "metric", "canary", "baseline", "change", "p"
        );
        for m in last["report"]["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            println!(
                "    {:<24} {:>12} {:>12} {:>8}% {:>9}  {}",
                m["metric"].as_str().unwrap_or(""),
                num(&m["canary_median"], 4),
                num(&m["baseline_median"], 4),
                m["relative_change"]
                    .as_f64()
                    .map_or_else(|| "—".into(), |x| format!("{:+.1}", x * 100.0)),
                num(&m["p_value"], 4),
                m["classification"].as_str().unwrap_or("")
            );
        }
    }
    let state = done["state"].as_str().unwrap_or("").to_string();
    let after = sim.group_configs(&group)?;
    let as_expected = match story {
        Story::Good => state == "COMPLETED" && after.iter().all(|(i, c)| before.get(i) != Some(c)),
        Story::Harmful => state == "ROLLED_BACK" && after == before,
    };
    say(
        started,
        &match story {
            Story::Good => format!(
                "{id} ended {state}: {} of {} servers of {group} run the new config",
                after
                    .iter()
                    .filter(|(i, c)| before.get(*i) != Some(*c))
                    .count(),
                after.len()
            ),
            Story::Harmful => format!(
                "{id} ended {state}: {} of {} servers of {group} are back on their old config",
                after
                    .iter()
                    .filter(|(i, c)| before.get(*i) == Some(*c))
                    .count(),
                after.len()
            ),
        },
    );
    Ok(Row {
        id,
        group,
        recommendation: change,
        verdicts: verdict_list.join(" "),
        state,
        seconds: t0.elapsed().as_secs_f64(),
        as_expected,
    })
}
