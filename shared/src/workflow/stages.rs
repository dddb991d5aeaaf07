//! The workflow's stage functions: one plain async function per state-machine task, over the
//! ports, each idempotent (a retried or re-delivered stage never changes an instance twice), each
//! failing with a [`StageError`] whose [`StageError::error_name`] is the stable name the ASL's
//! `Retry`/`Catch` match. Also the API-side decisions (approve, reject) and creation.
//!
//! Idempotency rests on three things: the workflow record says what was already done (applied
//! and restored sets, bake progress, verdicts per step and sample count); every orchestrator call
//! carries a key `"{workflow_id}:{stage}:{step}"` (rollback: `"{workflow_id}:rollback:{instance}"`)
//! so a call whose answer was lost is answered again without redoing it; and every write is
//! conditional on the record's version.

use super::judge::{self, Verdict};
use super::model::AuditEntry;
use super::model::{Bake, CanarySize, Next, Params, Plan, Role, Sample, VerdictRecord, Workflow};
use super::ports::{
    ApplyConfig, ApprovalRequest, Clock, InstanceDirectory, Orchestrator, OrchestratorError,
    RollbackConfigs, SampleStore, Sampler, StatusReport, WorkflowStore, WorkflowStoreError,
};
use super::state::{transition, Event, InvalidTransition, Stage, State};
use crate::instance::{Id, Instance};
use crate::optimize::Recommendation;
use crate::store::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Everything the stages need, built once per process.
#[derive(Clone)]
pub struct Deps {
    pub workflows: Arc<dyn WorkflowStore>,
    pub samples: Arc<dyn SampleStore>,
    pub orchestrator: Arc<dyn Orchestrator>,
    pub sampler: Arc<dyn Sampler>,
    pub directory: Arc<dyn InstanceDirectory>,
    pub clock: Arc<dyn Clock>,
    /// Our HTTP API's base URL (no trailing slash), for the approve/reject links.
    pub api_base_url: String,
}

/// Why a stage failed. The names are a contract with the state machine: see [`Self::error_name`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StageError {
    #[error("the orchestrator is unavailable: {0}")]
    OrchestratorUnavailable(String),
    #[error("the orchestrator refused: {0}")]
    OrchestratorRejected(String),
    #[error("the workflow was changed concurrently: {0}")]
    StoreConflict(String),
    #[error("the store is unavailable: {0}")]
    StoreUnavailable(String),
    #[error("a stored item is corrupt: {0}")]
    StoreCorrupt(String),
    #[error("workflow {0} was not found")]
    WorkflowNotFound(Id),
    #[error("deployment group {group} already has an active workflow ({active})")]
    GroupBusy { group: Id, active: Id },
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("validation failed: {0}")]
    ValidationFailed(String),
    #[error("rollback incomplete: {} instance(s) not restored ({})", failed.len(), summarize_failures(failed))]
    RollbackIncomplete { failed: BTreeMap<Id, String> },
}

fn summarize_failures(failed: &BTreeMap<Id, String>) -> String {
    failed
        .iter()
        .map(|(id, why)| format!("{id}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl StageError {
    /// The stable name Step Functions sees as the task's error (`ErrorEquals` in the ASL).
    pub fn error_name(&self) -> &'static str {
        match self {
            StageError::OrchestratorUnavailable(_) => "OrchestratorUnavailable",
            StageError::OrchestratorRejected(_) => "OrchestratorRejected",
            StageError::StoreConflict(_) => "StoreConflict",
            StageError::StoreUnavailable(_) => "StoreUnavailable",
            StageError::StoreCorrupt(_) => "StoreCorrupt",
            StageError::WorkflowNotFound(_) => "WorkflowNotFound",
            StageError::GroupBusy { .. } => "GroupBusy",
            StageError::InvalidState(_) => "InvalidState",
            StageError::ValidationFailed(_) => "ValidationFailed",
            StageError::RollbackIncomplete { .. } => "RollbackIncomplete",
        }
    }

    /// Worth retrying as is (the ASL retries exactly these names, with backoff).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StageError::OrchestratorUnavailable(_)
                | StageError::StoreConflict(_)
                | StageError::StoreUnavailable(_)
                | StageError::RollbackIncomplete { .. }
        )
    }
}

/// Every stable error name a stage can fail with.
pub const STAGE_ERROR_NAMES: [&str; 10] = [
    "OrchestratorUnavailable",
    "OrchestratorRejected",
    "StoreConflict",
    "StoreUnavailable",
    "StoreCorrupt",
    "WorkflowNotFound",
    "GroupBusy",
    "InvalidState",
    "ValidationFailed",
    "RollbackIncomplete",
];

impl From<WorkflowStoreError> for StageError {
    fn from(e: WorkflowStoreError) -> Self {
        match e {
            WorkflowStoreError::GroupBusy { group, active } => {
                StageError::GroupBusy { group, active }
            }
            WorkflowStoreError::Conflict { .. } => StageError::StoreConflict(e.to_string()),
            WorkflowStoreError::NotFound(id) => StageError::WorkflowNotFound(id),
            WorkflowStoreError::AlreadyExists(_) => StageError::InvalidState(e.to_string()),
            WorkflowStoreError::Unavailable(_) => StageError::StoreUnavailable(e.to_string()),
            WorkflowStoreError::Corrupt(_) => StageError::StoreCorrupt(e.to_string()),
        }
    }
}

impl From<StoreError> for StageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => StageError::StoreUnavailable(e.to_string()),
            StoreError::Corrupt(_) => StageError::StoreCorrupt(e.to_string()),
            StoreError::NotFound(_) => StageError::ValidationFailed(e.to_string()),
            StoreError::AlreadyExists(_) => StageError::InvalidState(e.to_string()),
        }
    }
}

impl From<OrchestratorError> for StageError {
    fn from(e: OrchestratorError) -> Self {
        match e {
            OrchestratorError::Unavailable(_) => StageError::OrchestratorUnavailable(e.to_string()),
            OrchestratorError::Rejected { .. } | OrchestratorError::BadResponse(_) => {
                StageError::OrchestratorRejected(e.to_string())
            }
        }
    }
}

impl From<InvalidTransition> for StageError {
    fn from(e: InvalidTransition) -> Self {
        StageError::InvalidState(e.to_string())
    }
}

/// What a stage tells the state machine. Every field is always present, so a Choice state never
/// reads a missing path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageOutput {
    pub workflow_id: Id,
    pub state: State,
    pub stage: Stage,
    pub step: u32,
    pub advisory: bool,
    pub next: Next,
    /// The rollout step to run when `next` is `ROLLOUT`.
    pub next_step: Option<u32>,
    pub bake_done: bool,
    pub samples_taken: u32,
    pub samples_target: u32,
    /// The current step's latest verdict.
    pub verdict: Option<Verdict>,
    pub score: Option<f64>,
}

fn output(wf: &Workflow, next: Next) -> StageOutput {
    let verdict = wf.current_verdict();
    StageOutput {
        workflow_id: wf.id.clone(),
        state: wf.state,
        stage: wf.stage,
        step: wf.step,
        advisory: wf.advisory,
        next,
        next_step: (next == Next::Rollout).then_some(wf.step + 1),
        bake_done: wf.bake.samples_target > 0 && wf.bake.samples_taken >= wf.bake.samples_target,
        samples_taken: wf.bake.samples_taken,
        samples_target: wf.bake.samples_target,
        verdict: verdict.map(|v| v.report.verdict),
        score: verdict.map(|v| v.report.score),
    }
}

/// The error a Catch hands on (`{"Error": …, "Cause": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl TaskError {
    fn describe(&self) -> String {
        if self.cause.is_empty() {
            self.error.clone()
        } else {
            format!("{}: {}", self.error, self.cause)
        }
    }
}

/// One state-machine task's input: `{"stage": "StartCanary", "workflow_id": "…", …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage")]
pub enum StageRequest {
    RequestApproval {
        workflow_id: Id,
        task_token: String,
    },
    Expire {
        workflow_id: Id,
    },
    StartCanary {
        workflow_id: Id,
    },
    CollectSample {
        workflow_id: Id,
    },
    Judge {
        workflow_id: Id,
    },
    RolloutStep {
        workflow_id: Id,
        step: u32,
    },
    Rollback {
        workflow_id: Id,
        #[serde(default)]
        error: Option<TaskError>,
    },
    Complete {
        workflow_id: Id,
    },
    Fail {
        workflow_id: Id,
        #[serde(default)]
        error: Option<TaskError>,
    },
}

/// Runs the stage a request names (the one Lambda function of the state machine calls this).
pub async fn run_stage(deps: &Deps, request: StageRequest) -> Result<StageOutput, StageError> {
    match request {
        StageRequest::RequestApproval {
            workflow_id,
            task_token,
        } => request_approval(deps, &workflow_id, &task_token).await,
        StageRequest::Expire { workflow_id } => expire(deps, &workflow_id).await,
        StageRequest::StartCanary { workflow_id } => start_canary(deps, &workflow_id).await,
        StageRequest::CollectSample { workflow_id } => collect_sample(deps, &workflow_id).await,
        StageRequest::Judge { workflow_id } => judge(deps, &workflow_id).await,
        StageRequest::RolloutStep { workflow_id, step } => {
            rollout_step(deps, &workflow_id, step).await
        }
        StageRequest::Rollback { workflow_id, error } => {
            rollback(deps, &workflow_id, error.map(|e| e.describe())).await
        }
        StageRequest::Complete { workflow_id } => complete(deps, &workflow_id).await,
        StageRequest::Fail { workflow_id, error } => {
            fail(
                deps,
                &workflow_id,
                &error.map_or_else(|| "failed".to_string(), |e| e.describe()),
            )
            .await
        }
    }
}

/// The idempotency key of a stage's orchestrator call.
pub fn idempotency_key(workflow: &Id, stage: Stage, step: u32) -> String {
    format!("{workflow}:{stage}:{step}")
}

async fn load(deps: &Deps, id: &Id) -> Result<Workflow, StageError> {
    deps.workflows
        .get(id)
        .await?
        .ok_or_else(|| StageError::WorkflowNotFound(id.clone()))
}

/// Applies `event` and stores the record with its audit entry (conditional on the version).
async fn save(
    deps: &Deps,
    wf: &mut Workflow,
    event: Event,
    actor: &str,
    reason: String,
) -> Result<(), StageError> {
    let from = wf.state;
    let to = transition(from, event)?;
    let now = deps.clock.now_ms();
    wf.state = to;
    wf.updated_at_ms = now;
    let entry = AuditEntry {
        at_ms: now,
        actor: actor.to_string(),
        event,
        from,
        to,
        stage: wf.stage,
        step: wf.step,
        reason,
    };
    *wf = deps.workflows.update(wf, &[entry]).await?;
    Ok(())
}

/// Stores progress that needs no audit entry (bake counters).
async fn persist(deps: &Deps, wf: &mut Workflow) -> Result<(), StageError> {
    wf.updated_at_ms = deps.clock.now_ms();
    *wf = deps.workflows.update(wf, &[]).await?;
    Ok(())
}

/// Tells the orchestrator where the workflow is. Best effort: a terminal state must not wait on a
/// status webhook; a failed report is noted in the audit trail instead.
async fn report(deps: &Deps, wf: &Workflow, actor: &str, message: &str) {
    let status = StatusReport {
        workflow_id: wf.id.clone(),
        group: wf.group.clone(),
        state: wf.state,
        stage: wf.stage,
        step: wf.step,
        message: message.to_string(),
        at_ms: deps.clock.now_ms(),
    };
    let key = format!("{}:status:{}", wf.id, wf.version);
    if let Err(e) = deps.orchestrator.report_status(&status, &key).await {
        tracing::warn!(workflow = %wf.id, error = %e, "status report failed");
        let note = AuditEntry {
            at_ms: deps.clock.now_ms(),
            actor: actor.to_string(),
            event: Event::Note,
            from: wf.state,
            to: wf.state,
            stage: wf.stage,
            step: wf.step,
            reason: format!("status report not delivered: {e}"),
        };
        if let Err(e) = deps.workflows.append_audit(&wf.id, &note).await {
            tracing::warn!(workflow = %wf.id, error = %e, "audit note failed");
        }
    }
}

/// Ends the workflow's hold on its group and tells the orchestrator. Safe to repeat.
async fn finish(deps: &Deps, wf: &Workflow, actor: &str, message: &str) -> Result<(), StageError> {
    deps.workflows.release_group(&wf.group, &wf.id).await?;
    report(deps, wf, actor, message).await;
    Ok(())
}

fn list(ids: &[Id]) -> String {
    ids.iter().map(Id::as_str).collect::<Vec<_>>().join(", ")
}

/// What the API needs to create a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewWorkflow {
    pub group: Id,
    pub recommendation: Recommendation,
    #[serde(default)]
    pub advisory: bool,
    #[serde(default)]
    pub params: Params,
}

/// Creates a workflow (PENDING_APPROVAL) holding its group: `GroupBusy` if the group has an
/// active one. The caller then starts the state machine with `{"workflow_id": id}`; if that
/// fails, it must call [`fail`] so the group is released.
pub async fn create_workflow(
    deps: &Deps,
    new: NewWorkflow,
    actor: &str,
) -> Result<Workflow, StageError> {
    new.params
        .validate()
        .map_err(|errs| StageError::ValidationFailed(errs.join("; ")))?;
    if new.recommendation.changes.is_empty() {
        return Err(StageError::ValidationFailed(
            "the recommendation changes nothing".into(),
        ));
    }
    let now = deps.clock.now_ms();
    let id = Id::parse(
        "workflow id",
        &format!("wf-{now:x}-{:08x}", rand::random::<u32>()),
    )
    .map_err(|e| StageError::ValidationFailed(e.to_string()))?;
    let mut wf = Workflow::new(
        id,
        new.group,
        new.recommendation,
        new.advisory,
        new.params,
        now,
    );
    wf.audit.push(AuditEntry {
        at_ms: now,
        actor: actor.to_string(),
        event: Event::Create,
        from: State::PendingApproval,
        to: State::PendingApproval,
        stage: Stage::Approval,
        step: 0,
        reason: format!(
            "{}recommendation {} ({}: {})",
            if wf.advisory { "advisory " } else { "" },
            wf.recommendation.id,
            wf.recommendation.knob,
            wf.recommendation.proposed
        ),
    });
    Ok(deps.workflows.create(&wf).await?)
}

/// Stage 1: tells the orchestrator an approval is wanted, then stores the task token. In that
/// order: a stored token always belongs to an invocation that succeeded, so an approver can only
/// answer a live wait.
pub async fn request_approval(
    deps: &Deps,
    id: &Id,
    task_token: &str,
) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    if wf.state != State::PendingApproval {
        return Err(StageError::InvalidState(format!(
            "approval can only be requested while PENDING_APPROVAL, not {}",
            wf.state
        )));
    }
    let base = deps.api_base_url.trim_end_matches('/');
    let request = ApprovalRequest {
        workflow_id: wf.id.clone(),
        group: wf.group.clone(),
        advisory: wf.advisory,
        recommendation: wf.recommendation.clone(),
        approve_url: format!("{base}/api/v1/workflows/{}/approve", wf.id),
        reject_url: format!("{base}/api/v1/workflows/{}/reject", wf.id),
        expires_at_ms: wf.approval_deadline_ms,
    };
    deps.orchestrator
        .notify_approval(&request, &idempotency_key(&wf.id, Stage::Approval, 0))
        .await?;
    if wf.task_token.as_deref() != Some(task_token) {
        wf.task_token = Some(task_token.to_string());
        save(
            deps,
            &mut wf,
            Event::Note,
            "request_approval",
            "approval requested from the orchestrator; waiting for a decision".into(),
        )
        .await?;
    }
    Ok(output(&wf, Next::Done))
}

/// Why an approval or rejection was refused; [`Self::status_code`] is the HTTP answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    #[error("{0} is not an approver of this deployment")]
    NotAnApprover(String),
    #[error("workflow {0} was not found")]
    NotFound(Id),
    #[error("the workflow was already decided: it is {state}")]
    AlreadyDecided { state: State },
    #[error("the approval request is still being sent; try again shortly")]
    NotReady,
    #[error("the approval window has closed")]
    Expired,
    #[error(transparent)]
    Stage(StageError),
}

impl DecisionError {
    pub fn status_code(&self) -> u16 {
        match self {
            DecisionError::NotAnApprover(_) => 403,
            DecisionError::NotFound(_) => 404,
            DecisionError::AlreadyDecided { .. } | DecisionError::NotReady => 409,
            DecisionError::Expired => 410,
            DecisionError::Stage(e) if e.is_transient() => 503,
            DecisionError::Stage(_) => 500,
        }
    }

    pub fn error_name(&self) -> &'static str {
        match self {
            DecisionError::NotAnApprover(_) => "NotAnApprover",
            DecisionError::NotFound(_) => "WorkflowNotFound",
            DecisionError::AlreadyDecided { .. } => "AlreadyDecided",
            DecisionError::NotReady => "NotReady",
            DecisionError::Expired => "Expired",
            DecisionError::Stage(e) => e.error_name(),
        }
    }
}

/// An accepted decision: the token the API hands to `SendTaskSuccess` (approve) or
/// `SendTaskFailure` with error `Rejected` (reject), and the workflow as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub task_token: String,
    pub workflow: Workflow,
}

/// How many times a decision re-reads the record after losing a race with another writer.
const DECISION_ATTEMPTS: usize = 3;

async fn decide(
    deps: &Deps,
    id: &Id,
    principal: &str,
    approvers: &[String],
    approve: bool,
    reason: Option<&str>,
) -> Result<Decision, DecisionError> {
    if principal.is_empty() || !approvers.iter().any(|a| a == principal) {
        return Err(DecisionError::NotAnApprover(principal.to_string()));
    }
    let mut last = None;
    for _ in 0..DECISION_ATTEMPTS {
        let mut wf = match deps.workflows.get(id).await {
            Ok(Some(wf)) => wf,
            Ok(None) => return Err(DecisionError::NotFound(id.clone())),
            Err(e) => return Err(DecisionError::Stage(e.into())),
        };
        match wf.state {
            State::Expired => return Err(DecisionError::Expired),
            State::PendingApproval if deps.clock.now_ms() > wf.approval_deadline_ms => {
                return Err(DecisionError::Expired)
            }
            State::PendingApproval => {}
            state => return Err(DecisionError::AlreadyDecided { state }),
        }
        let Some(token) = wf.task_token.clone() else {
            return Err(DecisionError::NotReady);
        };
        wf.decided_by = Some(principal.to_string());
        let (event, why) = if approve {
            (Event::Approve, "approved".to_string())
        } else {
            // The token is handed back to the caller; a terminal record keeps no live token.
            wf.task_token = None;
            wf.stage = Stage::Done;
            (
                Event::Reject,
                format!("rejected: {}", reason.unwrap_or("no reason given")),
            )
        };
        match save(deps, &mut wf, event, principal, why.clone()).await {
            Ok(()) => {
                if !approve {
                    // The decision stands and its token must reach the caller: a group lock that
                    // could not be freed now is freed by the Expire stage the timeout runs.
                    if let Err(e) = finish(deps, &wf, principal, &why).await {
                        tracing::warn!(workflow = %wf.id, error = %e, "group release after rejection failed");
                    }
                }
                return Ok(Decision {
                    task_token: token,
                    workflow: wf,
                });
            }
            Err(e @ StageError::StoreConflict(_)) => last = Some(e),
            Err(e) => return Err(DecisionError::Stage(e)),
        }
    }
    Err(DecisionError::Stage(last.unwrap_or_else(|| {
        StageError::StoreConflict("the workflow kept changing".into())
    })))
}

/// Stage 2 (API side): an approver says yes. Advisory workflows can be approved too.
pub async fn approve(
    deps: &Deps,
    id: &Id,
    principal: &str,
    approvers: &[String],
) -> Result<Decision, DecisionError> {
    decide(deps, id, principal, approvers, true, None).await
}

/// Stage 2 (API side): an approver says no. The workflow ends REJECTED and frees its group.
pub async fn reject(
    deps: &Deps,
    id: &Id,
    principal: &str,
    approvers: &[String],
    reason: Option<&str>,
) -> Result<Decision, DecisionError> {
    decide(deps, id, principal, approvers, false, reason).await
}

/// Stage 3: the approval wait timed out. Idempotent; a workflow that ended otherwise meanwhile
/// (a rejection whose `SendTaskFailure` was lost) is left as it is.
pub async fn expire(deps: &Deps, id: &Id) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    match wf.state {
        State::PendingApproval | State::Approved => {
            let reason = if wf.state == State::Approved {
                "approved, but the state machine never received the decision before the timeout"
            } else {
                "nobody decided before the approval timeout"
            };
            wf.task_token = None;
            wf.stage = Stage::Done;
            save(deps, &mut wf, Event::Expire, "expire", reason.into()).await?;
            finish(deps, &wf, "expire", reason).await?;
        }
        s if s.is_terminal() => finish(deps, &wf, "expire", "already ended").await?,
        s => {
            return Err(StageError::InvalidState(format!(
                "an approval cannot expire in state {s}"
            )))
        }
    }
    Ok(output(&wf, Next::Done))
}

/// FNV-1a, 64 bits: a stable hash for the canary choice (the same on every retry and host).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Chooses canary, baseline and rollout batches. The order is a hash of the workflow and the
/// instance ids: deterministic for one workflow (a retried stage plans the same), different
/// between workflows (the same instance is not always the canary).
pub fn make_plan(
    workflow: &Id,
    instances: &[Id],
    canary_size: CanarySize,
    rollout_percent: &[u32],
) -> Plan {
    let mut order: Vec<&Id> = instances.iter().collect();
    order.sort_by_key(|i| (fnv1a64(format!("{workflow}/{i}").as_bytes()), (*i).clone()));
    order.dedup();
    let n = canary_size.resolve(order.len()).min(order.len());
    let (canary, rest) = order.split_at(n);
    let baseline: Vec<Id> = rest.iter().take(n).map(|i| (*i).clone()).collect();
    let mut batches = Vec::new();
    let mut done = 0usize;
    for &p in rollout_percent {
        let upto = ((p as usize * rest.len()).div_ceil(100)).min(rest.len());
        if upto > done {
            batches.push(
                rest.get(done..upto)
                    .unwrap_or_default()
                    .iter()
                    .map(|i| (*i).clone())
                    .collect(),
            );
            done = upto;
        }
    }
    if done < rest.len() {
        // A percentage list that does not reach 100 still changes everyone at the end.
        batches.push(rest.iter().skip(done).map(|i| (*i).clone()).collect());
    }
    Plan {
        canary: canary.iter().map(|i| (*i).clone()).collect(),
        baseline,
        batches,
    }
}

/// Stage 4: picks canary and baseline, records every canary instance's config, then asks the
/// orchestrator to apply the change to the canary. Advisory: records the plan, changes nothing.
pub async fn start_canary(deps: &Deps, id: &Id) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    if wf.state == State::Approved {
        let instances = deps.directory.group_instances(&wf.group).await?;
        check_group(&wf, &instances)?;
        let ids: Vec<Id> = instances.iter().map(|i| i.id.clone()).collect();
        let plan = make_plan(
            &wf.id,
            &ids,
            wf.params.canary_size,
            &wf.params.rollout_percent,
        );
        wf.canary = plan.canary.clone();
        wf.baseline = plan.baseline.clone();
        wf.stage = Stage::Canary;
        wf.step = 0;
        wf.task_token = None;
        wf.bake = Bake {
            samples_taken: 0,
            samples_target: wf.params.bake_samples,
            extensions: 0,
        };
        let batches = plan
            .batches
            .iter()
            .map(|b| format!("[{}]", list(b)))
            .collect::<Vec<_>>()
            .join(" → ");
        let changes = serde_json::to_string(&wf.recommendation.changes).unwrap_or_default();
        wf.plan = Some(plan);
        let reason = if wf.advisory {
            format!(
                "advisory: would apply {changes} to canary [{}] against baseline [{}], then {batches}; nothing is changed",
                list(&wf.canary),
                list(&wf.baseline)
            )
        } else {
            for inst in instances.iter().filter(|i| wf.canary.contains(&i.id)) {
                wf.previous_configs
                    .entry(inst.id.clone())
                    .or_insert_with(|| inst.config.clone());
            }
            format!(
                "canary [{}] against baseline [{}], then {batches}; previous configs recorded",
                list(&wf.canary),
                list(&wf.baseline)
            )
        };
        save(deps, &mut wf, Event::Start, "start_canary", reason).await?;
    }
    if !(wf.state == State::InProgress && wf.stage == Stage::Canary && wf.step == 0) {
        return Err(StageError::InvalidState(format!(
            "the canary cannot start in state {} at {} step {}",
            wf.state, wf.stage, wf.step
        )));
    }
    if wf.advisory {
        return Ok(output(&wf, Next::Complete));
    }
    apply_pending(deps, &mut wf, "start_canary").await?;
    Ok(output(&wf, Next::Bake))
}

/// A group the recommendation can be canaried on: two instances at least (a canary needs a
/// baseline), all of the recommendation's engine (its knob is that engine's).
fn check_group(wf: &Workflow, instances: &[Instance]) -> Result<(), StageError> {
    if instances.len() < 2 {
        return Err(StageError::ValidationFailed(format!(
            "deployment group {} has {} instance(s): a canary needs at least one other instance as its baseline",
            wf.group,
            instances.len()
        )));
    }
    let others: Vec<String> = instances
        .iter()
        .filter(|i| i.engine != wf.recommendation.engine)
        .map(|i| format!("{} ({})", i.id, i.engine))
        .collect();
    if !others.is_empty() {
        return Err(StageError::ValidationFailed(format!(
            "the recommendation is for {} but the group also holds {}",
            wf.recommendation.engine,
            others.join(", ")
        )));
    }
    Ok(())
}

/// Applies the change to the current step's instances not yet confirmed, then records them and
/// the directory's configs. Never asks for a change without a recorded previous config.
async fn apply_pending(deps: &Deps, wf: &mut Workflow, actor: &str) -> Result<(), StageError> {
    let pending: Vec<Id> = wf
        .canary
        .iter()
        .filter(|i| !wf.applied.contains(*i))
        .cloned()
        .collect();
    if !pending.is_empty() {
        if let Some(unrecorded) = pending
            .iter()
            .find(|i| !wf.previous_configs.contains_key(*i))
        {
            return Err(StageError::InvalidState(format!(
                "no previous config recorded for {unrecorded}: refusing to change it"
            )));
        }
        let request = ApplyConfig {
            workflow_id: wf.id.clone(),
            group: wf.group.clone(),
            stage: wf.stage,
            step: wf.step,
            instances: pending.clone(),
            changes: wf.recommendation.changes.clone(),
        };
        let key = idempotency_key(&wf.id, wf.stage, wf.step);
        let reported = deps.orchestrator.apply_config(&request, &key).await?;
        // The orchestrator knows what actually ran: where it disagrees with the registry, its
        // answer is what a rollback must restore.
        let mut corrected = Vec::new();
        for id in &pending {
            if let Some(cfg) = reported.get(id) {
                if wf.previous_configs.get(id) != Some(cfg) {
                    wf.previous_configs.insert(id.clone(), cfg.clone());
                    corrected.push(id.clone());
                }
            }
        }
        wf.applied.extend(pending.iter().cloned());
        let mut reason = format!(
            "applied {} to [{}] (key {key})",
            serde_json::to_string(&wf.recommendation.changes).unwrap_or_default(),
            list(&pending)
        );
        if !corrected.is_empty() {
            reason.push_str(&format!(
                "; previous config taken from the orchestrator for [{}]",
                list(&corrected)
            ));
        }
        save(deps, wf, Event::Note, actor, reason).await?;
    }
    // Idempotent: on a retry after a crash here, the registry is brought up to date again.
    for id in wf.canary.iter().filter(|i| wf.applied.contains(*i)) {
        if let Some(prev) = wf.previous_configs.get(id) {
            deps.directory
                .set_config(id, &wf.target_config(prev))
                .await?;
        }
    }
    Ok(())
}

fn require_bake(wf: &Workflow, what: &str) -> Result<(), StageError> {
    if wf.state == State::InProgress
        && matches!(wf.stage, Stage::Canary | Stage::Rollout)
        && !wf.advisory
    {
        Ok(())
    } else {
        Err(StageError::InvalidState(format!(
            "cannot {what} in state {} at {}{}",
            wf.state,
            wf.stage,
            if wf.advisory { " (advisory)" } else { "" }
        )))
    }
}

/// Stage 5: scrapes the current step's canary and baseline now and stores the samples (one round
/// per call; a re-delivered call rewrites its round).
pub async fn collect_sample(deps: &Deps, id: &Id) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    require_bake(&wf, "collect a sample")?;
    if wf.bake.samples_taken >= wf.bake.samples_target {
        return Ok(output(&wf, Next::Judge));
    }
    let round = wf.bake.samples_taken;
    let roles: Vec<(&Id, Role)> = wf
        .canary
        .iter()
        .map(|i| (i, Role::Canary))
        .chain(wf.baseline.iter().map(|i| (i, Role::Baseline)))
        .collect();
    let wanted: BTreeSet<&Id> = roles.iter().map(|(i, _)| *i).collect();
    let instances: Vec<Instance> = deps
        .directory
        .group_instances(&wf.group)
        .await?
        .into_iter()
        .filter(|i| wanted.contains(&i.id))
        .collect();
    let mut results = deps.sampler.sample(&instances).await;
    let at_ms = deps.clock.now_ms();
    let samples: Vec<Sample> = roles
        .iter()
        .map(|(inst, role)| {
            let (models, error) = match results.remove(*inst) {
                Some(Ok(models)) => (models, None),
                Some(Err(e)) => (Vec::new(), Some(e)),
                None => (
                    Vec::new(),
                    Some("not in the group's registry any more".to_string()),
                ),
            };
            Sample {
                step: wf.step,
                round,
                instance: (*inst).clone(),
                role: *role,
                at_ms,
                models,
                error,
            }
        })
        .collect();
    deps.samples.put_samples(&wf.id, &samples).await?;
    wf.bake.samples_taken = round + 1;
    persist(deps, &mut wf).await?;
    let next = if wf.bake.samples_taken >= wf.bake.samples_target {
        Next::Judge
    } else {
        Next::Bake
    };
    Ok(output(&wf, next))
}

/// Stage 6: judges the bake. PASS → the next rollout step or COMPLETE; FAIL → ROLLBACK;
/// INCONCLUSIVE → a longer bake while the extension budget lasts, then ROLLBACK. Judging the
/// same step with the same samples again returns the recorded decision.
pub async fn judge(deps: &Deps, id: &Id) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    require_bake(&wf, "judge")?;
    if let Some(v) = wf.current_verdict() {
        if v.samples == wf.bake.samples_taken {
            let decision = v.decision;
            return Ok(output(&wf, decision));
        }
    }
    if wf.bake.samples_taken < wf.bake.samples_target {
        return Err(StageError::InvalidState(format!(
            "the bake has {} of {} samples",
            wf.bake.samples_taken, wf.bake.samples_target
        )));
    }
    let samples = deps.samples.samples(&wf.id, wf.step).await?;
    let report = judge::judge(&judge::observations(&samples), &wf.params.judge);
    let batches = wf.plan.as_ref().map_or(0, |p| p.batches.len());
    let mut why = report.reason.clone();
    let decision = match report.verdict {
        Verdict::Pass if (wf.step as usize) < batches => Next::Rollout,
        Verdict::Pass => Next::Complete,
        Verdict::Fail => Next::Rollback,
        Verdict::Inconclusive if wf.bake.extensions < wf.params.max_extensions => {
            wf.bake.extensions += 1;
            wf.bake.samples_target += wf.params.extension_samples;
            why = format!(
                "{why}; bake extended to {} samples ({} of {} extensions)",
                wf.bake.samples_target, wf.bake.extensions, wf.params.max_extensions
            );
            Next::Bake
        }
        Verdict::Inconclusive => {
            why = format!(
                "{why}; still inconclusive after {} extension(s): counted as a failure",
                wf.bake.extensions
            );
            Next::Rollback
        }
    };
    let summary = format!(
        "judge at {} step {}: {:?} (score {:.1}) → {:?}: {why}",
        wf.stage, wf.step, report.verdict, report.score, decision
    );
    if decision == Next::Rollback && wf.error.is_none() {
        wf.error = Some(summary.clone());
    }
    wf.verdicts.push(VerdictRecord {
        stage: wf.stage,
        step: wf.step,
        samples: wf.bake.samples_taken,
        at_ms: deps.clock.now_ms(),
        report,
        decision,
    });
    save(deps, &mut wf, Event::Note, "judge", summary).await?;
    Ok(output(&wf, decision))
}

/// Stage 7: rollout step `step` (1-based) changes the next batch of the plan, after its
/// previous configs are recorded; the state machine then bakes and judges it like the canary.
pub async fn rollout_step(deps: &Deps, id: &Id, step: u32) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    require_bake(&wf, "roll out")?;
    if !(wf.stage == Stage::Rollout && wf.step == step) {
        let passed = wf
            .current_verdict()
            .is_some_and(|v| v.decision == Next::Rollout);
        if !passed || wf.step + 1 != step {
            return Err(StageError::InvalidState(format!(
                "rollout step {step} needs a passed judgement of step {}; the workflow is at {} step {}",
                step.saturating_sub(1),
                wf.stage,
                wf.step
            )));
        }
        let plan = wf
            .plan
            .clone()
            .ok_or_else(|| StageError::InvalidState("the workflow has no plan".into()))?;
        let (batch, baseline) = plan.rollout_roles(step).ok_or_else(|| {
            StageError::InvalidState(format!(
                "the plan has {} rollout step(s), not {step}",
                plan.batches.len()
            ))
        })?;
        let instances: BTreeMap<Id, Instance> = deps
            .directory
            .group_instances(&wf.group)
            .await?
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        for inst in &batch {
            let Some(found) = instances.get(inst) else {
                return Err(StageError::ValidationFailed(format!(
                    "{inst} left deployment group {} during the rollout",
                    wf.group
                )));
            };
            wf.previous_configs
                .entry(inst.clone())
                .or_insert_with(|| found.config.clone());
        }
        let reason = format!(
            "rollout step {step} of {}: changing [{}] against [{}]; previous configs recorded",
            plan.batches.len(),
            list(&batch),
            list(&baseline)
        );
        wf.stage = Stage::Rollout;
        wf.step = step;
        wf.canary = batch;
        wf.baseline = baseline;
        wf.bake = Bake {
            samples_taken: 0,
            samples_target: wf.params.bake_samples,
            extensions: 0,
        };
        save(deps, &mut wf, Event::Advance, "rollout_step", reason).await?;
    }
    apply_pending(deps, &mut wf, "rollout_step").await?;
    Ok(output(&wf, Next::Bake))
}

/// Stage 8: restores every touched instance to its recorded previous config, one orchestrator
/// call per instance so one failure does not hold up the others; fails with
/// `RollbackIncomplete` (retried by the state machine) until all are restored, then ends
/// ROLLED_BACK. With nothing touched it ends FAILED instead. On an ended workflow it does nothing.
pub async fn rollback(
    deps: &Deps,
    id: &Id,
    reason: Option<String>,
) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    if wf.state.is_terminal() {
        finish(deps, &wf, "rollback", "already ended").await?;
        return Ok(output(&wf, Next::Done));
    }
    let reason = reason
        .or_else(|| wf.error.clone())
        .unwrap_or_else(|| "rollback requested".into());
    if wf.previous_configs.is_empty() {
        return end_failed(
            deps,
            wf,
            "rollback",
            &format!("nothing was changed: {reason}"),
        )
        .await;
    }
    if wf.stage != Stage::RollingBack {
        wf.error.get_or_insert_with(|| reason.clone());
        wf.stage = Stage::RollingBack;
        let touched: Vec<Id> = wf.touched().cloned().collect();
        save(
            deps,
            &mut wf,
            Event::Advance,
            "rollback",
            format!("rolling back [{}]: {reason}", list(&touched)),
        )
        .await?;
    }
    let why = wf.error.clone().unwrap_or(reason);
    let mut failures = BTreeMap::new();
    let mut restored_now = Vec::new();
    for (inst, prev) in wf.previous_configs.clone() {
        if wf.restored.contains(&inst) {
            continue;
        }
        let request = RollbackConfigs {
            workflow_id: wf.id.clone(),
            group: wf.group.clone(),
            configs: BTreeMap::from([(inst.clone(), prev.clone())]),
            reason: why.clone(),
        };
        let key = format!("{}:rollback:{inst}", wf.id);
        let restored = match deps.orchestrator.rollback(&request, &key).await {
            Ok(()) => deps
                .directory
                .set_config(&inst, &prev)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match restored {
            Ok(()) => {
                wf.restored.insert(inst.clone());
                restored_now.push(inst);
            }
            Err(e) => {
                failures.insert(inst, e);
            }
        }
    }
    wf.rollback_failures = failures.clone();
    if failures.is_empty() {
        wf.stage = Stage::Done;
        let message = format!("every touched instance restored: {why}");
        save(deps, &mut wf, Event::RollBack, "rollback", message.clone()).await?;
        finish(deps, &wf, "rollback", &message).await?;
        return Ok(output(&wf, Next::Done));
    }
    save(
        deps,
        &mut wf,
        Event::Note,
        "rollback",
        format!(
            "restored [{}]; not restored: {}",
            list(&restored_now),
            summarize_failures(&failures)
        ),
    )
    .await?;
    Err(StageError::RollbackIncomplete { failed: failures })
}

async fn end_failed(
    deps: &Deps,
    mut wf: Workflow,
    actor: &str,
    reason: &str,
) -> Result<StageOutput, StageError> {
    wf.error.get_or_insert_with(|| reason.to_string());
    wf.task_token = None;
    wf.stage = Stage::Done;
    save(deps, &mut wf, Event::Fail, actor, reason.to_string()).await?;
    finish(deps, &wf, actor, reason).await?;
    Ok(output(&wf, Next::Done))
}

/// The end of a good rollout: COMPLETED once every planned instance runs the new config and the
/// last judgement passed (advisory: once the plan was recorded). Frees the group. Idempotent.
pub async fn complete(deps: &Deps, id: &Id) -> Result<StageOutput, StageError> {
    let mut wf = load(deps, id).await?;
    if wf.state == State::Completed {
        finish(deps, &wf, "complete", "completed").await?;
        return Ok(output(&wf, Next::Done));
    }
    if wf.state != State::InProgress {
        return Err(StageError::InvalidState(format!(
            "cannot complete a workflow in state {}",
            wf.state
        )));
    }
    let message = if wf.advisory {
        "advisory: the plan is recorded, nothing was changed".to_string()
    } else {
        let plan = wf.plan.clone().unwrap_or_default();
        let missing: Vec<Id> = plan
            .all_changed()
            .filter(|i| !wf.applied.contains(*i))
            .cloned()
            .collect();
        let judged = wf
            .current_verdict()
            .is_some_and(|v| v.decision == Next::Complete);
        if !missing.is_empty() || !judged {
            return Err(StageError::InvalidState(format!(
                "not ready to complete: unchanged [{}], last step {}",
                list(&missing),
                if judged { "passed" } else { "not passed" }
            )));
        }
        format!(
            "every instance of the plan on the new config ({} instances)",
            wf.applied.len()
        )
    };
    wf.stage = Stage::Done;
    save(deps, &mut wf, Event::Complete, "complete", message.clone()).await?;
    finish(deps, &wf, "complete", &message).await?;
    Ok(output(&wf, Next::Done))
}

/// Ends a workflow FAILED. Only before any change: once an instance was touched, only a
/// rollback may end it (`InvalidState`). Idempotent on an ended workflow.
pub async fn fail(deps: &Deps, id: &Id, error: &str) -> Result<StageOutput, StageError> {
    let wf = load(deps, id).await?;
    if wf.state.is_terminal() {
        finish(deps, &wf, "fail", "already ended").await?;
        return Ok(output(&wf, Next::Done));
    }
    if !wf.previous_configs.is_empty() {
        return Err(StageError::InvalidState(
            "instances were touched: only a rollback may end this workflow".into(),
        ));
    }
    end_failed(deps, wf, "fail", error).await
}
