//! The optimization workflow end to end: recommendations made by the deployed analyzer from the
//! simulated fleet, started through the signed API, driven by the deployed state machine (task
//! token approval, canary, bake, judge, rollout, rollback) and its stage function, applied by the
//! simulated orchestrator to the simulated fleet.

use anyhow::{bail, Context, Result};
use http::{Method, StatusCode};
use perfagent_e2e::{pick_recommendation, verdicts, Clock, Orchestrator, Sim, Stack};
use perfagent_sim::orchestrator::approver::ApprovalMode;
use perfagent_sim::orchestrator::faults::FailRequest;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Simulated seconds per wall second while a workflow runs: the emulator scales the state
/// machine's 60 s bake waits by 0.01, so one bake interval is a simulated minute.
const SPEED: f64 = 100.0;
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// One test's world: the stack, a fresh fleet registered with the agent, a recommendation for
/// `group` from the analyzer, the fleet's clock running and the orchestrator listening.
struct World {
    stack: Stack,
    sim: Sim,
    orchestrator: Orchestrator,
    recommendation: Value,
    _clock: Clock,
}

impl World {
    async fn new(group: &str, mode: ApprovalMode) -> Result<World> {
        let stack = Stack::connect().await?;
        stack.settle_workflows().await?;
        let sim = Sim::start().await?;
        stack.clear_registry().await?;
        stack.register_fleet(&sim).await?;
        let recs = stack.spike_and_recommend(&sim, group, 5.0, 9).await?;
        let recommendation = pick_recommendation(&recs)
            .with_context(|| format!("no applicable recommendation for {group}: {recs:?}"))?;
        // The change is judged in steady traffic: the spike ends and the queues drain first.
        sim.scenario(&format!(
            r#"{{"name":"load_spike","group":"{group}","factor":1}}"#
        ))?;
        sim.advance(600.0);
        let orchestrator = Orchestrator::start(&stack, &sim, mode).await?;
        let clock = sim.run_clock(SPEED);
        Ok(World {
            stack,
            sim,
            orchestrator,
            recommendation,
            _clock: clock,
        })
    }

    fn group(&self) -> &str {
        self.recommendation["group"].as_str().unwrap_or_default()
    }

    /// Every instance of the group with its current config.
    fn configs(&self) -> Result<BTreeMap<String, Value>> {
        self.sim.group_configs(self.group())
    }

    async fn start(&self, params: Value) -> Result<(StatusCode, Value)> {
        let id = self.recommendation["id"].as_str().unwrap_or_default();
        self.stack.start_workflow(id, &params).await
    }

    async fn started(&self, params: Value) -> Result<String> {
        let (status, w) = self.start(params).await?;
        if status != StatusCode::CREATED {
            bail!("starting a workflow: {status} {w}");
        }
        Ok(w["id"].as_str().unwrap_or_default().to_string())
    }

    /// Apply calls the orchestrator executed, per idempotency key.
    fn applies_per_key(&self) -> BTreeMap<String, usize> {
        let mut n = BTreeMap::new();
        for a in self.orchestrator.state.applies() {
            if a.status == 200 {
                *n.entry(a.idempotency_key).or_default() += 1;
            }
        }
        n
    }
}

fn states_of(w: &Value) -> Vec<String> {
    w["audit"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["to"].as_str().map(String::from))
        .collect()
}

/// The knobs a recommendation changes, as the simulator holds them.
fn changed(before: &Value, after: &Value) -> Vec<String> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return Vec::new();
    };
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

#[tokio::test]
async fn a_good_change_is_approved_by_an_approver_canaried_judged_and_rolled_out() -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::Manual).await?;
    let before = world.configs()?;
    let id = world.started(json!({})).await?;

    // One active workflow per group.
    let (status, second) = world.start(json!({})).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{second}");
    assert_eq!(second["code"], "group_busy", "{second}");

    // The approval request reached the orchestrator.
    let notified = wait_until(Duration::from_secs(30), || {
        world
            .orchestrator
            .state
            .calls()
            .iter()
            .any(|c| c.workflow_id.as_deref() == Some(id.as_str()) && c.status == 202)
    })
    .await;
    assert!(notified, "no approval notification for {id}");

    // Only an approver decides: the root identity is refused.
    let approve = format!("/api/v1/workflows/{id}/approve");
    let (status, refused) = world.stack.api.call(Method::POST, &approve, None).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, approved) = world.stack.approve_when_ready(&id).await?;
    assert_eq!(status, StatusCode::OK, "{approved}");
    let (status, again) = world
        .stack
        .approver()?
        .call(Method::POST, &approve, None)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    let done = world.stack.wait_ended(&id, RUN_TIMEOUT).await?;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    let v = verdicts(&done);
    assert!(
        v.len() >= 2,
        "a canary and at least one rollout step: {v:?}"
    );
    assert_eq!(v.last().map(String::as_str), Some("PASS"), "{v:?}");
    assert!(states_of(&done).contains(&"APPROVED".to_string()), "{done}");
    assert!(
        done["decided_by"]
            .as_str()
            .is_some_and(|p| p.ends_with(":user/perfagent-approver")),
        "{done}"
    );

    // The whole group runs the new config, and each change was applied exactly once.
    let after = world.configs()?;
    for (instance, config) in &after {
        assert!(
            !changed(&before[instance], config).is_empty(),
            "{instance} was not changed: {config}"
        );
    }
    for (key, n) in world.applies_per_key() {
        assert_eq!(n, 1, "{key} applied {n} times");
    }
    Ok(())
}

#[tokio::test]
async fn a_harmful_change_fails_its_canary_and_every_canary_is_restored() -> Result<()> {
    let world = World::new("batch-prod", ApprovalMode::AutoApprove).await?;
    world.orchestrator.state.set_harm(true);
    let before = world.configs()?;
    let id = world.started(json!({})).await?;
    let done = world.stack.wait_ended(&id, RUN_TIMEOUT).await?;
    assert_eq!(done["state"], "ROLLED_BACK", "{done}");
    assert_eq!(
        verdicts(&done).first().map(String::as_str),
        Some("FAIL"),
        "{done}"
    );
    assert!(
        done["error"].as_str().is_some_and(|e| !e.is_empty()),
        "a rollback says why: {done}"
    );
    // Every instance is on its old config again, the harm undone with it.
    assert_eq!(world.configs()?, before);
    let rollbacks = world.orchestrator.state.rollbacks();
    assert!(!rollbacks.is_empty(), "nothing was rolled back");
    Ok(())
}

#[tokio::test]
async fn a_rejected_workflow_changes_nothing() -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::AutoReject).await?;
    let before = world.configs()?;
    let id = world.started(json!({})).await?;
    let done = world.stack.wait_ended(&id, Duration::from_secs(60)).await?;
    assert_eq!(done["state"], "REJECTED", "{done}");
    assert!(world.orchestrator.state.applies().is_empty());
    assert_eq!(world.configs()?, before);
    // The group is free again.
    let next = world.started(json!({})).await?;
    assert_ne!(next, id);
    Ok(())
}

#[tokio::test]
async fn an_unanswered_approval_expires_and_a_late_approval_is_gone() -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::Manual).await?;
    let before = world.configs()?;
    let id = world.started(json!({})).await?;
    // The local stack's approval wait is 20 s (local/deploy.sh).
    let done = world.stack.wait_ended(&id, Duration::from_secs(90)).await?;
    assert_eq!(done["state"], "EXPIRED", "{done}");
    let (status, late) = world
        .stack
        .approver()?
        .call(
            Method::POST,
            &format!("/api/v1/workflows/{id}/approve"),
            None,
        )
        .await?;
    assert_eq!(status, StatusCode::GONE, "{late}");
    assert_eq!(world.configs()?, before);
    Ok(())
}

#[tokio::test]
async fn an_orchestrator_down_during_the_canary_is_retried_then_rolled_back() -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::AutoApprove).await?;
    let before = world.configs()?;
    world
        .orchestrator
        .state
        .set_failure(&serde_json::from_value::<FailRequest>(
            json!({"operation": "apply", "mode": "down"}),
        )?)
        .map_err(anyhow::Error::msg)?;
    let id = world.started(json!({})).await?;
    let done = world.stack.wait_ended(&id, RUN_TIMEOUT).await?;
    assert_eq!(done["state"], "ROLLED_BACK", "{done}");
    let tries = world
        .orchestrator
        .state
        .calls()
        .iter()
        .filter(|c| c.workflow_id.as_deref() == Some(id.as_str()))
        .filter(|c| c.idempotency_key.as_deref() == Some(&format!("{id}:canary:0")))
        .count();
    assert!(tries >= 3, "the canary's apply was tried {tries} times");
    assert_eq!(world.configs()?, before);
    Ok(())
}

#[tokio::test]
async fn a_stage_that_loses_the_orchestrators_answer_is_retried_without_a_second_apply(
) -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::AutoApprove).await?;
    // The first apply is carried out, but its answer comes after the agent's 10 s call timeout:
    // the stage fails OrchestratorUnavailable and is retried with the same idempotency key.
    world
        .orchestrator
        .state
        .set_failure(&serde_json::from_value::<FailRequest>(
            json!({"operation": "apply", "mode": "slow", "seconds": 15, "fail_next": 1}),
        )?)
        .map_err(anyhow::Error::msg)?;
    let id = world.started(json!({})).await?;
    let done = world.stack.wait_ended(&id, RUN_TIMEOUT).await?;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    let canary_calls = world
        .orchestrator
        .state
        .calls()
        .iter()
        .filter(|c| c.idempotency_key.as_deref() == Some(&format!("{id}:canary:0")))
        .count();
    assert!(canary_calls >= 2, "the canary's apply was not retried");
    for (key, n) in world.applies_per_key() {
        assert_eq!(n, 1, "{key} reached the fleet {n} times");
    }
    Ok(())
}

async fn wait_until(timeout: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn an_orchestrator_that_never_takes_the_approval_request_ends_the_workflow_untouched(
) -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::AutoApprove).await?;
    let before = world.configs()?;
    world
        .orchestrator
        .state
        .set_failure(&serde_json::from_value::<FailRequest>(
            json!({"operation": "approvals", "mode": "error", "status": 503}),
        )?)
        .map_err(anyhow::Error::msg)?;
    let id = world.started(json!({})).await?;
    let done = world.stack.wait_ended(&id, RUN_TIMEOUT).await?;
    // On AWS the failed notification fails the task and is retried with backoff inside the
    // approval wait, then ends FAILED (or EXPIRED when the wait is shorter than the retries).
    // MiniStack 1.5.33 drops the function error of a `lambda:invoke.waitForTaskToken` task
    // (docs/local-stack.md), so here the wait simply runs out: EXPIRED. Either way nobody could
    // decide and nothing was touched.
    assert!(
        done["state"] == "EXPIRED" || done["state"] == "FAILED",
        "{done}"
    );
    let refused = world
        .orchestrator
        .state
        .calls()
        .iter()
        .filter(|c| c.workflow_id.as_deref() == Some(id.as_str()) && c.status == 503)
        .count();
    assert!(refused >= 1, "the notification was never attempted");
    assert!(world.orchestrator.state.applies().is_empty());
    assert_eq!(world.configs()?, before);
    // The group is free for the next attempt.
    let (status, _) = world.start(json!({})).await?;
    assert_eq!(status, StatusCode::CREATED);
    Ok(())
}

#[tokio::test]
async fn a_rollback_refused_once_is_retried_until_every_instance_is_restored() -> Result<()> {
    let world = World::new("batch-prod", ApprovalMode::AutoApprove).await?;
    world.orchestrator.state.set_harm(true);
    world
        .orchestrator
        .state
        .set_failure(&serde_json::from_value::<FailRequest>(
            json!({"operation": "rollback", "mode": "error", "status": 503, "fail_next": 1}),
        )?)
        .map_err(anyhow::Error::msg)?;
    let before = world.configs()?;
    let id = world.started(json!({})).await?;
    let done = world.stack.wait_ended(&id, RUN_TIMEOUT).await?;
    assert_eq!(done["state"], "ROLLED_BACK", "{done}");
    let injected = world
        .orchestrator
        .state
        .calls()
        .iter()
        .filter(|c| c.workflow_id.as_deref() == Some(id.as_str()))
        .filter(|c| c.status == 503)
        .count();
    assert_eq!(injected, 1, "the first rollback call was refused");
    assert_eq!(world.configs()?, before);
    Ok(())
}

#[tokio::test]
async fn status_reports_that_fail_do_not_hold_a_workflow_back() -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::AutoApprove).await?;
    world
        .orchestrator
        .state
        .set_failure(&serde_json::from_value::<FailRequest>(
            json!({"operation": "status", "mode": "error", "status": 500}),
        )?)
        .map_err(anyhow::Error::msg)?;
    let id = world.started(json!({})).await?;
    let done = world.stack.wait_ended(&id, RUN_TIMEOUT).await?;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    // The terminal state is written before the (best-effort) report is tried, so the note about
    // the refused report lands just after it: wait for the note rather than read it at once.
    let noted = world
        .stack
        .wait_workflow(&id, Duration::from_secs(60), |w| {
            w["audit"].as_array().is_some_and(|audit| {
                audit.iter().any(|e| {
                    e["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("status report"))
                })
            })
        })
        .await?;
    assert_eq!(noted["state"], "COMPLETED", "{noted}");
    Ok(())
}

#[tokio::test]
async fn concurrent_starts_on_one_group_make_exactly_one_workflow() -> Result<()> {
    let world = World::new("chat-prod", ApprovalMode::AutoReject).await?;
    let (a, b) = tokio::join!(world.start(json!({})), world.start(json!({})));
    let mut statuses = [a?.0, b?.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);
    Ok(())
}
