//! The workflow's stages end to end over the in-memory ports, driven the way
//! `statemachine/optimization.asl.json` drives them (retry on transient error names, Catch →
//! Rollback after the canary started), against a simulated fleet whose metrics follow each
//! instance's live config.

use perfagent::instance::{EngineConfig, Id, Instance};
use perfagent::optimize::Recommendation;
use perfagent::snapshot::Engine;
use perfagent::workflow::memory::{
    Behaviour, ManualClock, MemoryDirectory, MemoryOrchestrator, MemoryWorkflowStore,
    SimulatedFleet,
};
use perfagent::workflow::stages::{
    approve, collect_sample, complete, create_workflow, expire, fail, judge, make_plan, reject,
    request_approval, rollback, rollout_step, run_stage, start_canary, DecisionError, Deps,
    NewWorkflow, StageError, StageOutput, StageRequest,
};
use perfagent::workflow::{
    CanarySize, Classification, Event, JudgeMetric, Next, Params, SampleStore, Stage, State,
    Verdict, Workflow, WorkflowStore,
};
use serde_json::json;
use std::sync::Arc;

const GROUP: &str = "chat-prod";
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const KNOB: &str = "max_num_seqs";
const OLD: i64 = 256;
/// A value the fleet serves better with.
const GOOD: i64 = 512;
/// A value the fleet serves much worse with.
const HARMFUL: i64 = 1024;
const BAKE_INTERVAL_MS: i64 = 60_000;

fn id(s: &str) -> Id {
    Id::parse("id", s).expect("valid id")
}

fn approvers() -> Vec<String> {
    vec![
        ALICE.to_string(),
        "arn:aws:iam::123456789012:role/oncall".to_string(),
    ]
}

fn knob(config: &EngineConfig) -> Option<i64> {
    config.get(KNOB).and_then(serde_json::Value::as_i64)
}

/// The fleet's behaviour by config: 512 lowers TTFT, 1024 makes every latency much worse.
fn behaviour(_: &Id, config: &EngineConfig) -> Behaviour {
    let base = Behaviour::default();
    match knob(config) {
        Some(GOOD) => Behaviour {
            ttft_s: base.ttft_s * 0.75,
            ..base
        },
        Some(HARMFUL) => Behaviour {
            ttft_s: base.ttft_s * 1.8,
            itl_s: base.itl_s * 1.5,
            e2e_s: base.e2e_s * 1.6,
            ..base
        },
        _ => base,
    }
}

fn recommendation(value: i64) -> Recommendation {
    serde_json::from_value(json!({
        "id": format!("rec-{value}"),
        "engine": "vllm",
        "optimizer": "BATCHING",
        "bottleneck": "QUEUE_BUILDUP",
        "title": "more concurrent sequences",
        "knob": KNOB,
        "flag": "--max-num-seqs",
        "current": {"value": OLD, "assumed": false},
        "proposed": value,
        "changes": {KNOB: value},
        "rationale": "QUEUE_BUILDUP (HIGH): 40 requests waiting",
        "expected_impact": [],
        "risk": {"level": "MEDIUM", "description": "more KV cache per step"},
        "priority": 1
    }))
    .expect("a valid recommendation")
}

struct World {
    deps: Deps,
    store: Arc<MemoryWorkflowStore>,
    orchestrator: Arc<MemoryOrchestrator>,
    directory: Arc<MemoryDirectory>,
    fleet: Arc<SimulatedFleet>,
    clock: Arc<ManualClock>,
}

fn instance(i: usize, engine: Engine) -> Instance {
    Instance {
        id: id(&format!("vllm-{i}")),
        engine,
        metrics_url: format!("http://10.0.0.{i}:8000/metrics"),
        model: None,
        group: id(GROUP),
        labels: Default::default(),
        config: EngineConfig::from([(KNOB.to_string(), json!(OLD))]),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn world_of(instances: Vec<Instance>) -> World {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store = Arc::new(MemoryWorkflowStore::new());
    let orchestrator = Arc::new(MemoryOrchestrator::new(
        instances.iter().map(|i| (i.id.clone(), i.config.clone())),
    ));
    let directory = Arc::new(MemoryDirectory::new(instances));
    let fleet = Arc::new(SimulatedFleet::new(
        orchestrator.clone(),
        clock.clone(),
        behaviour,
    ));
    let deps = Deps {
        workflows: store.clone(),
        samples: store.clone(),
        orchestrator: orchestrator.clone(),
        sampler: fleet.clone(),
        directory: directory.clone(),
        clock: clock.clone(),
        api_base_url: "https://api.example.test/".into(),
    };
    World {
        deps,
        store,
        orchestrator,
        directory,
        fleet,
        clock,
    }
}

fn world(n: usize) -> World {
    world_of((1..=n).map(|i| instance(i, Engine::Vllm)).collect())
}

fn params() -> Params {
    Params::default()
}

async fn load(w: &World, wf: &Id) -> Workflow {
    w.store
        .get(wf)
        .await
        .ok()
        .flatten()
        .expect("the workflow exists")
}

/// Creates a workflow and sends the approval request (the state machine's first task).
async fn requested(w: &World, value: i64, advisory: bool, params: Params) -> Id {
    let wf = create_workflow(
        &w.deps,
        NewWorkflow {
            group: id(GROUP),
            recommendation: recommendation(value),
            advisory,
            params,
        },
        "api",
    )
    .await
    .expect("created");
    request_approval(&w.deps, &wf.id, "token-1")
        .await
        .expect("approval requested");
    wf.id
}

async fn approved(w: &World, value: i64, advisory: bool, params: Params) -> Id {
    let wf = requested(w, value, advisory, params).await;
    let decision = approve(&w.deps, &wf, ALICE, &approvers())
        .await
        .expect("approved");
    assert_eq!(decision.task_token, "token-1");
    wf
}

/// Retries a stage while it fails with a transient error, as the ASL's Retry does.
macro_rules! retried {
    ($attempts:expr, $call:expr) => {{
        let mut tries = 1;
        loop {
            match $call.await {
                Err(e) if e.is_transient() && tries < $attempts => tries += 1,
                other => break other,
            }
        }
    }};
}

/// What the state machine does after the approval: StartCanary, the bake loop (Wait, then
/// CollectSample), Judge, rollout steps, Complete; any error left after retries → Rollback.
async fn drive(w: &World, wf: &Id) -> Result<StageOutput, StageError> {
    let mut result = retried!(3, start_canary(&w.deps, wf));
    loop {
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let why = format!("{}: {e}", e.error_name());
                return retried!(3, rollback(&w.deps, wf, Some(why.clone())));
            }
        };
        result = match out.next {
            Next::Bake => {
                w.clock.advance_ms(BAKE_INTERVAL_MS);
                retried!(3, collect_sample(&w.deps, wf))
            }
            Next::Judge => retried!(3, judge(&w.deps, wf)),
            Next::Rollout => retried!(3, rollout_step(&w.deps, wf, out.next_step.unwrap_or(0))),
            Next::Complete => retried!(3, complete(&w.deps, wf)),
            Next::Rollback => return retried!(3, rollback(&w.deps, wf, None)),
            Next::Done => return Ok(out),
        };
    }
}

#[tokio::test]
async fn a_good_change_completes_with_every_instance_on_the_new_config() {
    let w = world(8);
    let wf = approved(&w, GOOD, false, params()).await;
    let out = drive(&w, &wf).await.expect("the workflow ends");
    assert_eq!(out.state, State::Completed);
    let record = load(&w, &wf).await;
    let plan = record.plan.clone().expect("a plan");
    assert_eq!(plan.canary.len(), 1);
    assert_eq!(
        plan.batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 3]
    );
    for i in 1..=8 {
        let inst = id(&format!("vllm-{i}"));
        assert_eq!(
            knob(&w.orchestrator.config(&inst).unwrap_or_default()),
            Some(GOOD)
        );
        assert_eq!(
            knob(&w.directory.config(&inst).unwrap_or_default()),
            Some(GOOD)
        );
        assert_eq!(w.orchestrator.applications(&inst), 1, "{inst} changed once");
        assert_eq!(knob(&record.previous_configs[&inst]), Some(OLD));
    }
    // Canary and three rollout steps, each judged PASS.
    let verdicts: Vec<(Stage, u32, Verdict)> = record
        .verdicts
        .iter()
        .map(|v| (v.stage, v.step, v.report.verdict))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (Stage::Canary, 0, Verdict::Pass),
            (Stage::Rollout, 1, Verdict::Pass),
            (Stage::Rollout, 2, Verdict::Pass),
            (Stage::Rollout, 3, Verdict::Pass),
        ]
    );
    // The canary's judgement rests on real evidence: TTFT measurably better, the rest unchanged.
    let canary = &record.verdicts[0].report;
    let ttft = canary
        .metrics
        .iter()
        .find(|m| m.metric == JudgeMetric::TtftP95)
        .expect("TTFT judged");
    assert_eq!(ttft.classification, Classification::Low);
    assert_eq!(ttft.canary_n, 5);
    assert!(canary.metrics.iter().all(|m| m.passed == Some(true)));
    assert_eq!(w.store.active(&id(GROUP)).await, Ok(None), "group released");
    assert!(w
        .orchestrator
        .reports()
        .iter()
        .any(|r| r.state == State::Completed));
    // The audit trail holds every transition with its actor.
    let events: Vec<(Event, &str)> = record
        .audit
        .iter()
        .filter(|a| a.event != Event::Note)
        .map(|a| (a.event, a.actor.as_str()))
        .collect();
    assert_eq!(
        events,
        vec![
            (Event::Create, "api"),
            (Event::Approve, ALICE),
            (Event::Start, "start_canary"),
            (Event::Advance, "rollout_step"),
            (Event::Advance, "rollout_step"),
            (Event::Advance, "rollout_step"),
            (Event::Complete, "complete"),
        ]
    );
    assert!(record.audit.iter().all(|a| !a.reason.is_empty()));
}

#[tokio::test]
async fn a_harmful_change_fails_the_canary_and_every_canary_instance_gets_its_old_config_back() {
    let w = world(8);
    let p = Params {
        canary_size: CanarySize::Count(2),
        ..params()
    };
    let wf = approved(&w, HARMFUL, false, p).await;
    let out = drive(&w, &wf).await.expect("the workflow ends");
    assert_eq!(out.state, State::RolledBack);
    let record = load(&w, &wf).await;
    let verdict = record.verdicts.last().expect("judged");
    assert_eq!(
        verdict.report.verdict,
        Verdict::Fail,
        "{}",
        verdict.report.reason
    );
    assert_eq!(verdict.decision, Next::Rollback);
    let canary = record.plan.clone().unwrap_or_default().canary;
    assert_eq!(canary.len(), 2);
    for inst in &canary {
        assert_eq!(
            knob(&w.orchestrator.config(inst).unwrap_or_default()),
            Some(OLD)
        );
        assert_eq!(
            knob(&w.directory.config(inst).unwrap_or_default()),
            Some(OLD)
        );
        assert_eq!(w.orchestrator.applications(inst), 1);
    }
    assert_eq!(w.orchestrator.restore_log().len(), 2);
    for i in 1..=8 {
        let inst = id(&format!("vllm-{i}"));
        if !canary.contains(&inst) {
            assert_eq!(w.orchestrator.applications(&inst), 0, "{inst} untouched");
        }
    }
    assert!(record.error.unwrap_or_default().contains("judge"));
    assert_eq!(w.store.active(&id(GROUP)).await, Ok(None));
}

#[tokio::test]
async fn a_rejection_ends_rejected_and_changes_nothing() {
    let w = world(4);
    let wf = requested(&w, GOOD, false, params()).await;
    let decision = reject(
        &w.deps,
        &wf,
        ALICE,
        &approvers(),
        Some("not during the launch"),
    )
    .await
    .expect("rejected");
    assert_eq!(decision.task_token, "token-1");
    assert_eq!(decision.workflow.state, State::Rejected);
    assert_eq!(decision.workflow.task_token, None);
    assert!(w.orchestrator.apply_log().is_empty());
    assert_eq!(w.store.active(&id(GROUP)).await, Ok(None));
    assert!(matches!(
        start_canary(&w.deps, &wf).await,
        Err(StageError::InvalidState(_))
    ));
    assert!(w.orchestrator.apply_log().is_empty());
    let again = approve(&w.deps, &wf, ALICE, &approvers()).await;
    assert_eq!(
        again.map(|_| ()),
        Err(DecisionError::AlreadyDecided {
            state: State::Rejected
        })
    );
}

#[tokio::test]
async fn an_approval_that_times_out_expires_and_late_decisions_are_gone() {
    let w = world(4);
    let wf = requested(&w, GOOD, false, params()).await;
    w.clock
        .advance_ms(i64::try_from(params().approval_timeout_s).unwrap_or(0) * 1000 + 1);
    // Past the deadline the API refuses even before the state machine expires the workflow.
    let late = approve(&w.deps, &wf, ALICE, &approvers()).await;
    assert_eq!(late.as_ref().map(|_| ()), Err(&DecisionError::Expired));
    assert_eq!(late.err().map(|e| e.status_code()), Some(410));
    let out = expire(&w.deps, &wf).await.expect("expired");
    assert_eq!(out.state, State::Expired);
    assert_eq!(load(&w, &wf).await.task_token, None);
    let again = expire(&w.deps, &wf).await.expect("idempotent");
    assert_eq!(again.state, State::Expired);
    assert_eq!(
        reject(&w.deps, &wf, ALICE, &approvers(), None)
            .await
            .map(|_| ()),
        Err(DecisionError::Expired)
    );
    assert!(w.orchestrator.apply_log().is_empty());
    assert_eq!(w.store.active(&id(GROUP)).await, Ok(None));
}

#[tokio::test]
async fn a_second_decision_is_already_decided_and_strangers_cannot_decide() {
    let w = world(4);
    let wf = create_workflow(
        &w.deps,
        NewWorkflow {
            group: id(GROUP),
            recommendation: recommendation(GOOD),
            advisory: false,
            params: params(),
        },
        "api",
    )
    .await
    .expect("created");
    // No token yet: the approval request is still on its way.
    let early = approve(&w.deps, &wf.id, ALICE, &approvers()).await;
    assert_eq!(early.map(|_| ()), Err(DecisionError::NotReady));
    request_approval(&w.deps, &wf.id, "token-1")
        .await
        .expect("requested");
    let stranger = approve(
        &w.deps,
        &wf.id,
        "arn:aws:iam::123456789012:user/mallory",
        &approvers(),
    )
    .await;
    assert_eq!(
        stranger.as_ref().err().map(DecisionError::status_code),
        Some(403)
    );
    approve(&w.deps, &wf.id, ALICE, &approvers())
        .await
        .expect("first decision");
    let second = approve(
        &w.deps,
        &wf.id,
        "arn:aws:iam::123456789012:role/oncall",
        &approvers(),
    )
    .await;
    let err = second.expect_err("refused");
    assert_eq!(
        err,
        DecisionError::AlreadyDecided {
            state: State::Approved
        }
    );
    assert_eq!(
        (err.status_code(), err.error_name()),
        (409, "AlreadyDecided")
    );
    let rejected_after = reject(&w.deps, &wf.id, ALICE, &approvers(), None).await;
    assert!(matches!(
        rejected_after,
        Err(DecisionError::AlreadyDecided { .. })
    ));
    let record = load(&w, &wf.id).await;
    assert_eq!(record.decided_by.as_deref(), Some(ALICE));
    assert_eq!(record.task_token.as_deref(), Some("token-1"));
    assert_eq!(
        record.redacted().task_token,
        None,
        "the API never shows the token"
    );
    // The orchestrator was told once, with the approve and reject routes.
    let notes = w.orchestrator.approvals();
    assert_eq!(notes.len(), 1);
    assert_eq!(
        notes[0].approve_url,
        format!(
            "https://api.example.test/api/v1/workflows/{}/approve",
            wf.id
        )
    );
}

#[tokio::test]
async fn a_second_workflow_on_a_busy_group_is_refused_until_the_first_ends() {
    let w = world(4);
    let first = requested(&w, GOOD, false, params()).await;
    let second = create_workflow(
        &w.deps,
        NewWorkflow {
            group: id(GROUP),
            recommendation: recommendation(HARMFUL),
            advisory: true,
            params: params(),
        },
        "api",
    )
    .await;
    let err = second.expect_err("refused");
    assert_eq!(err.error_name(), "GroupBusy");
    assert!(matches!(err, StageError::GroupBusy { ref active, .. } if active == &first));
    reject(&w.deps, &first, ALICE, &approvers(), None)
        .await
        .expect("rejected");
    let third = requested(&w, HARMFUL, true, params()).await;
    assert_ne!(third, first);
}

#[tokio::test]
async fn an_orchestrator_down_at_the_canary_is_transient_then_the_rollback_ends_the_workflow() {
    let w = world(4);
    let wf = approved(&w, GOOD, false, params()).await;
    w.orchestrator.set_down(true);
    let err = start_canary(&w.deps, &wf).await.expect_err("unavailable");
    assert_eq!(err.error_name(), "OrchestratorUnavailable");
    assert!(err.is_transient());
    // The previous config was recorded before the change was asked for.
    let record = load(&w, &wf).await;
    assert_eq!(record.state, State::InProgress);
    assert_eq!(record.previous_configs.len(), 1);
    assert!(record.applied.is_empty());
    // It stays down: the state machine's retries run out and it catches into Rollback, which
    // cannot reach it either and is retried in turn.
    let err = rollback(&w.deps, &wf, Some("OrchestratorUnavailable".into()))
        .await
        .expect_err("incomplete");
    assert_eq!(err.error_name(), "RollbackIncomplete");
    assert!(err.is_transient());
    assert_eq!(load(&w, &wf).await.stage, Stage::RollingBack);
    w.orchestrator.set_down(false);
    let out = rollback(&w.deps, &wf, None).await.expect("restored");
    assert_eq!(out.state, State::RolledBack);
    for i in 1..=4 {
        let inst = id(&format!("vllm-{i}"));
        assert_eq!(
            knob(&w.orchestrator.config(&inst).unwrap_or_default()),
            Some(OLD)
        );
    }
    assert!(w.orchestrator.apply_log().is_empty());
    assert!(load(&w, &wf)
        .await
        .error
        .unwrap_or_default()
        .contains("OrchestratorUnavailable"));
}

#[tokio::test]
async fn an_orchestrator_lost_during_the_rollout_leads_to_a_rollback_of_every_touched_instance() {
    let w = world(8);
    let wf = approved(&w, GOOD, false, params()).await;
    // Canary applied, baked and judged; rollout step 1 cannot reach the orchestrator.
    let mut out = start_canary(&w.deps, &wf).await.expect("canary");
    while out.next == Next::Bake {
        w.clock.advance_ms(BAKE_INTERVAL_MS);
        out = collect_sample(&w.deps, &wf).await.expect("sample");
    }
    let verdict = judge(&w.deps, &wf).await.expect("judged");
    assert_eq!(verdict.next, Next::Rollout);
    w.orchestrator.set_down(true);
    let err = retried!(3, rollout_step(&w.deps, &wf, 1)).expect_err("down");
    assert_eq!(err.error_name(), "OrchestratorUnavailable");
    let touched = load(&w, &wf).await.previous_configs.len();
    assert_eq!(touched, 3, "canary and the first batch were recorded");
    assert!(rollback(&w.deps, &wf, Some(err.to_string())).await.is_err());
    w.orchestrator.set_down(false);
    let end = rollback(&w.deps, &wf, None).await.expect("rolled back");
    assert_eq!(end.state, State::RolledBack);
    for i in 1..=8 {
        let inst = id(&format!("vllm-{i}"));
        assert_eq!(
            knob(&w.orchestrator.config(&inst).unwrap_or_default()),
            Some(OLD)
        );
    }
}

#[tokio::test]
async fn a_stage_retried_after_a_crash_between_apply_and_record_does_not_apply_twice() {
    let w = world(4);
    let wf = approved(&w, GOOD, false, params()).await;
    // The orchestrator applies, but its answer never reaches us.
    w.orchestrator.lose_next_responses(1);
    let err = start_canary(&w.deps, &wf).await.expect_err("answer lost");
    assert_eq!(err.error_name(), "OrchestratorUnavailable");
    let canary = load(&w, &wf).await.canary;
    assert_eq!(w.orchestrator.applications(&canary[0]), 1);
    assert!(load(&w, &wf).await.applied.is_empty(), "not recorded");
    // The retry asks again with the same key: the first answer, no second change.
    start_canary(&w.deps, &wf).await.expect("retried");
    assert_eq!(w.orchestrator.applications(&canary[0]), 1);
    assert!(load(&w, &wf).await.applied.contains(&canary[0]));
    // The store fails right after the next apply (the record write is lost instead).
    let mut out = collect_sample(&w.deps, &wf).await.expect("sample");
    while out.next == Next::Bake {
        w.clock.advance_ms(BAKE_INTERVAL_MS);
        out = collect_sample(&w.deps, &wf).await.expect("sample");
    }
    judge(&w.deps, &wf).await.expect("judged");
    // The first write (entering the step) succeeds; the one recording the apply fails.
    let before = w.orchestrator.apply_log().len();
    let entered = rollout_step_with_failing_record(&w, &wf).await;
    assert_eq!(entered.error_name(), "StoreUnavailable");
    let batch = load(&w, &wf).await.canary;
    assert_eq!(w.orchestrator.apply_log().len(), before + 1);
    rollout_step(&w.deps, &wf, 1).await.expect("retried");
    assert_eq!(
        w.orchestrator.apply_log().len(),
        before + 1,
        "replayed, not reapplied"
    );
    for inst in &batch {
        assert_eq!(w.orchestrator.applications(inst), 1);
    }
    // A re-delivered stage after it fully succeeded calls nobody.
    rollout_step(&w.deps, &wf, 1).await.expect("re-delivered");
    start_canary(&w.deps, &wf)
        .await
        .expect_err("the canary is over");
    assert_eq!(w.orchestrator.apply_log().len(), before + 1);
}

/// Runs rollout step 1 with the store failing the write that records the apply: enters the step
/// (one successful write), then the orchestrator applies, then the record write fails.
async fn rollout_step_with_failing_record(w: &World, wf: &Id) -> StageError {
    // Enter the step without applying: the orchestrator is down for the apply, so the entry write
    // happens and the apply fails.
    w.orchestrator.set_down(true);
    let first = rollout_step(&w.deps, wf, 1).await.expect_err("down");
    assert_eq!(first.error_name(), "OrchestratorUnavailable");
    w.orchestrator.set_down(false);
    w.store.fail_next_updates(1);
    rollout_step(&w.deps, wf, 1).await.expect_err("record lost")
}

#[tokio::test]
async fn advisory_mode_plans_and_completes_without_changing_anything() {
    let w = world(6);
    let wf = approved(&w, HARMFUL, true, params()).await;
    let out = drive(&w, &wf).await.expect("ended");
    assert_eq!(out.state, State::Completed);
    assert!(out.advisory);
    assert!(w.orchestrator.apply_log().is_empty());
    for i in 1..=6 {
        let inst = id(&format!("vllm-{i}"));
        assert_eq!(
            knob(&w.orchestrator.config(&inst).unwrap_or_default()),
            Some(OLD)
        );
        assert_eq!(
            knob(&w.directory.config(&inst).unwrap_or_default()),
            Some(OLD)
        );
    }
    let record = load(&w, &wf).await;
    assert!(record.plan.is_some());
    assert!(record.previous_configs.is_empty());
    assert!(record
        .audit
        .iter()
        .any(|a| a.event == Event::Start && a.reason.starts_with("advisory: would apply")));
    assert_eq!(w.store.samples(&wf, 0).await.map(|s| s.len()), Ok(0));
    assert!(matches!(
        collect_sample(&w.deps, &wf).await,
        Err(StageError::InvalidState(_))
    ));
}

#[tokio::test]
async fn a_rollback_continues_past_an_unreachable_instance_and_restores_each_only_once() {
    let w = world(6);
    let p = Params {
        canary_size: CanarySize::Count(2),
        ..params()
    };
    let wf = approved(&w, HARMFUL, false, p).await;
    start_canary(&w.deps, &wf).await.expect("canary");
    let canary = load(&w, &wf).await.canary;
    w.orchestrator.set_instance_failing(&canary[0], true);
    let err = rollback(&w.deps, &wf, Some("operator abort".into()))
        .await
        .expect_err("one failed");
    let StageError::RollbackIncomplete { failed } = &err else {
        panic!("unexpected {err:?}");
    };
    assert_eq!(failed.keys().collect::<Vec<_>>(), vec![&canary[0]]);
    let record = load(&w, &wf).await;
    assert!(record.restored.contains(&canary[1]));
    assert!(record.rollback_failures.contains_key(&canary[0]));
    assert_eq!(
        knob(&w.orchestrator.config(&canary[1]).unwrap_or_default()),
        Some(OLD)
    );
    w.orchestrator.set_instance_failing(&canary[0], false);
    let out = rollback(&w.deps, &wf, None).await.expect("done");
    assert_eq!(out.state, State::RolledBack);
    let restores: Vec<Id> = w
        .orchestrator
        .restore_log()
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(restores.len(), 2, "{restores:?}");
    assert!(canary.iter().all(|c| restores.contains(c)));
    assert_eq!(load(&w, &wf).await.error.as_deref(), Some("operator abort"));
    // Rolling back an ended workflow changes nothing.
    rollback(&w.deps, &wf, None).await.expect("idempotent");
    assert_eq!(w.orchestrator.restore_log().len(), 2);
}

#[tokio::test]
async fn failing_is_refused_once_an_instance_was_touched_and_allowed_before() {
    let w = world(4);
    let wf = approved(&w, GOOD, false, params()).await;
    start_canary(&w.deps, &wf).await.expect("canary");
    let err = fail(&w.deps, &wf, "boom").await.expect_err("refused");
    assert_eq!(err.error_name(), "InvalidState");
    assert_eq!(load(&w, &wf).await.state, State::InProgress);

    let w = world(4);
    let wf = requested(&w, GOOD, false, params()).await;
    let out = fail(&w.deps, &wf, "the approval request could not be sent")
        .await
        .expect("failed");
    assert_eq!(out.state, State::Failed);
    assert_eq!(w.store.active(&id(GROUP)).await, Ok(None));
}

#[tokio::test]
async fn a_group_of_one_cannot_be_canaried_and_fails_without_changes() {
    let w = world(1);
    let wf = approved(&w, GOOD, false, params()).await;
    let out = drive(&w, &wf).await.expect("ended");
    assert_eq!(out.state, State::Failed);
    let record = load(&w, &wf).await;
    assert!(record
        .error
        .unwrap_or_default()
        .contains("ValidationFailed"));
    assert!(w.orchestrator.apply_log().is_empty());
}

#[tokio::test]
async fn a_group_mixing_engines_is_refused() {
    let w = world_of(vec![
        instance(1, Engine::Vllm),
        instance(2, Engine::Vllm),
        instance(3, Engine::Tgi),
    ]);
    let wf = approved(&w, GOOD, false, params()).await;
    let err = start_canary(&w.deps, &wf).await.expect_err("refused");
    assert_eq!(err.error_name(), "ValidationFailed");
    assert!(err.to_string().contains("vllm-3 (tgi)"), "{err}");
}

#[tokio::test]
async fn an_idle_canary_is_inconclusive_extends_the_bake_then_rolls_back() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let instances: Vec<Instance> = (1..=4).map(|i| instance(i, Engine::Vllm)).collect();
    let mut w = world_of(instances.clone());
    let idle = Arc::new(SimulatedFleet::new(
        w.orchestrator.clone(),
        clock.clone(),
        |_: &Id, _: &EngineConfig| Behaviour {
            requests_per_s: 0.0,
            tokens_per_s: 0.0,
            ..Behaviour::default()
        },
    ));
    w.deps.sampler = idle;
    w.deps.clock = clock.clone();
    w.clock = clock;
    let wf = approved(&w, GOOD, false, params()).await;
    let mut out = start_canary(&w.deps, &wf).await.expect("canary");
    let mut judged = Vec::new();
    loop {
        out = match out.next {
            Next::Bake => {
                w.clock.advance_ms(BAKE_INTERVAL_MS);
                collect_sample(&w.deps, &wf).await.expect("sample")
            }
            Next::Judge => {
                let first = judge(&w.deps, &wf).await.expect("judged");
                // Judging again with the same samples neither re-judges nor extends twice.
                let again = judge(&w.deps, &wf).await.expect("judged again");
                assert_eq!(first, again);
                judged.push((first.verdict, first.next, first.samples_target));
                first
            }
            _ => break,
        };
    }
    assert_eq!(
        judged,
        vec![
            (Some(Verdict::Inconclusive), Next::Bake, 9),
            (Some(Verdict::Inconclusive), Next::Bake, 12),
            (Some(Verdict::Inconclusive), Next::Rollback, 12),
        ]
    );
    let end = rollback(&w.deps, &wf, None).await.expect("rolled back");
    assert_eq!(end.state, State::RolledBack);
    let canary = load(&w, &wf).await.canary;
    assert_eq!(
        knob(&w.orchestrator.config(&canary[0]).unwrap_or_default()),
        Some(OLD)
    );
    assert_eq!(w.store.sample_count(&wf), 12 * 2);
}

#[tokio::test]
async fn a_canary_that_stops_answering_after_the_change_is_rolled_back() {
    let w = world(4);
    let wf = approved(&w, GOOD, false, params()).await;
    start_canary(&w.deps, &wf).await.expect("canary");
    let canary = load(&w, &wf).await.canary;
    w.fleet.set_unreachable(&canary[0], true);
    let out = drive_from_bake(&w, &wf).await;
    assert_eq!(out.state, State::RolledBack);
    let verdict = load(&w, &wf).await.verdicts.pop().expect("judged");
    assert_eq!(verdict.report.verdict, Verdict::Fail);
    assert!(verdict.report.reason.contains("stopped answering"));
}

async fn drive_from_bake(w: &World, wf: &Id) -> StageOutput {
    let mut next = Next::Bake;
    loop {
        let out = match next {
            Next::Bake => {
                w.clock.advance_ms(BAKE_INTERVAL_MS);
                collect_sample(&w.deps, wf).await
            }
            Next::Judge => judge(&w.deps, wf).await,
            Next::Rollback => return rollback(&w.deps, wf, None).await.expect("rolled back"),
            other => panic!("unexpected {other:?}"),
        }
        .expect("stage");
        next = out.next;
    }
}

#[tokio::test]
async fn the_state_machine_payloads_reach_the_stages() {
    let w = world(4);
    let wf = create_workflow(
        &w.deps,
        NewWorkflow {
            group: id(GROUP),
            recommendation: recommendation(GOOD),
            advisory: false,
            params: params(),
        },
        "api",
    )
    .await
    .expect("created");
    let request: StageRequest = serde_json::from_value(json!({
        "stage": "RequestApproval", "workflow_id": wf.id, "task_token": "tok"
    }))
    .expect("parses");
    run_stage(&w.deps, request).await.expect("requested");
    let failed: StageRequest = serde_json::from_value(json!({
        "stage": "Fail", "workflow_id": wf.id,
        "error": {"Error": "OrchestratorRejected", "Cause": "401 bad signature"}
    }))
    .expect("parses");
    let out = run_stage(&w.deps, failed).await.expect("failed");
    assert_eq!(out.state, State::Failed);
    let record = load(&w, &wf.id).await;
    assert_eq!(
        record.error.as_deref(),
        Some("OrchestratorRejected: 401 bad signature")
    );
    // The output the Choice states read: every field present.
    let v = serde_json::to_value(&out).expect("serializes");
    for field in [
        "next",
        "next_step",
        "bake_done",
        "verdict",
        "state",
        "advisory",
    ] {
        assert!(v.get(field).is_some(), "{field} missing from {v}");
    }
    assert_eq!(v["next"], "DONE");
    assert_eq!(v["state"], "FAILED");
}

#[test]
fn the_plan_is_deterministic_per_workflow_and_covers_the_group_once() {
    let ids: Vec<Id> = (1..=10).map(|i| id(&format!("i-{i}"))).collect();
    let a = make_plan(&id("wf-1"), &ids, CanarySize::Fraction(0.2), &[25, 50, 100]);
    let b = make_plan(&id("wf-1"), &ids, CanarySize::Fraction(0.2), &[25, 50, 100]);
    assert_eq!(a, b);
    assert_eq!(a.canary.len(), 2);
    assert_eq!(a.baseline.len(), 2);
    assert!(a.baseline.iter().all(|i| !a.canary.contains(i)));
    let mut all: Vec<Id> = a.all_changed().cloned().collect();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want);
    assert_eq!(
        a.batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 2, 4]
    );
    // Another workflow, another canary order (for these ids and ids the hash spreads them).
    let others: Vec<Vec<Id>> = (2..8)
        .map(|n| make_plan(&id(&format!("wf-{n}")), &ids, CanarySize::Count(1), &[100]).canary)
        .collect();
    assert!(others.iter().any(|c| c != &others[0]));
}

#[test]
fn every_stage_error_has_a_stable_name_the_asl_knows() {
    let asl = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../statemachine/optimization.asl.json"),
    )
    .expect("the state machine definition");
    for name in perfagent::workflow::stages::STAGE_ERROR_NAMES {
        let transient = matches!(
            name,
            "OrchestratorUnavailable" | "StoreConflict" | "StoreUnavailable" | "RollbackIncomplete"
        );
        if transient {
            assert!(
                asl.contains(&format!("\"{name}\"")),
                "{name} is not retried"
            );
        }
    }
}
