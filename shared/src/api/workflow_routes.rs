//! The workflow routes under `/api/v1/workflows`: start the rollout of a group recommendation, list
//! and read workflows, and an approver's decision, handed to the state machine execution waiting
//! for it. The rules live in `crate::workflow::stages`; this module parses, authorizes, delivers
//! decisions to the [`WorkflowEngine`] and maps errors to statuses.

use super::body::{DecisionRequest, DecisionResult, ErrorBody, StartWorkflow, WorkflowList};
use super::error::parse_body;
use super::routes::{path_id, reply, Routed};
use super::telemetry;
use super::{ApiContext, ApiError, ApiRequest};
use crate::analyzer::AnalysisStore;
use crate::instance::Id;
use crate::store::{InstanceStore, SnapshotStore};
use crate::workflow::engine::{EngineError, MemoryEngine, WorkflowEngine, REJECTED_ERROR};
use crate::workflow::memory::{
    Behaviour, MemoryDirectory, MemoryOrchestrator, MemoryWorkflowStore, SimulatedFleet,
};
use crate::workflow::{
    self, AuditEntry, DecisionError, Deps, Event, NewWorkflow, Params, StageError, State,
    SystemClock, Workflow, WorkflowFilter,
};
use http::StatusCode;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// The most workflows one listing returns (and the default).
pub const WORKFLOW_LIST_MAX: usize = 100;
/// The longest reason an approver may give, in characters.
pub const DECISION_REASON_MAX_CHARS: usize = 1000;
/// Attempts to hand a decision to the engine while it is unavailable, 100 ms apart and doubling.
const DELIVERY_ATTEMPTS: u32 = 3;
/// The non-terminal states: what `performance_agent_workflows_active` counts.
const LIVE_STATES: [State; 3] = [State::PendingApproval, State::Approved, State::InProgress];

/// What the workflow routes need, built once per process.
pub struct WorkflowApi {
    /// The stores, orchestrator and clock the decisions run on (the same ones the stage function
    /// uses; the sampler is never called from the API).
    pub deps: Deps,
    pub engine: Arc<dyn WorkflowEngine>,
    /// IAM principal ARNs allowed to approve or reject (`APPROVER_PRINCIPALS`). An IAM role's ARN
    /// admits every session of that role (`arn:aws:sts::<account>:assumed-role/<name>/<session>`).
    pub approvers: Vec<String>,
    /// Each new workflow's parameters before the request's own; `approval_timeout_s` is the
    /// deployment's (the state machine's approval wait, `APPROVAL_TIMEOUT_SECONDS`) and a
    /// request may shorten it, not lengthen it.
    pub defaults: Params,
}

impl WorkflowApi {
    /// In-memory parts with no approver, for tests and in-process runs that do not exercise the
    /// workflow routes.
    pub fn in_memory() -> Self {
        let store = Arc::new(MemoryWorkflowStore::new());
        let orchestrator = Arc::new(MemoryOrchestrator::default());
        let clock = Arc::new(SystemClock);
        let fleet = SimulatedFleet::new(orchestrator.clone(), clock.clone(), |_, _| {
            Behaviour::default()
        });
        WorkflowApi {
            deps: Deps {
                workflows: store.clone(),
                samples: store,
                orchestrator,
                sampler: Arc::new(fleet),
                directory: Arc::new(MemoryDirectory::default()),
                clock,
                api_base_url: "http://127.0.0.1".into(),
            },
            engine: Arc::new(MemoryEngine::new()),
            approvers: Vec::new(),
            defaults: Params::default(),
        }
    }
}

fn stage_error(e: StageError) -> ApiError {
    let message = e.to_string();
    match e {
        StageError::GroupBusy { group, active } => {
            ApiError::new(StatusCode::CONFLICT, "group_busy", message)
                .with_details(json!({"group": group, "active_workflow_id": active}))
        }
        StageError::ValidationFailed(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        ),
        StageError::WorkflowNotFound(id) => ApiError::not_found(format!("workflow {id}")),
        StageError::InvalidState(_) => {
            ApiError::new(StatusCode::CONFLICT, "invalid_state", message)
        }
        StageError::StoreCorrupt(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store_corrupt", message)
        }
        StageError::StoreUnavailable(_) | StageError::StoreConflict(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            message,
        ),
        StageError::OrchestratorUnavailable(_)
        | StageError::OrchestratorRejected(_)
        | StageError::RollbackIncomplete { .. } => {
            ApiError::new(StatusCode::BAD_GATEWAY, "orchestrator_failed", message)
        }
    }
}

fn decision_error(e: DecisionError) -> ApiError {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = e.to_string();
    match e {
        DecisionError::NotAnApprover(_) => ApiError::new(status, "not_an_approver", message),
        DecisionError::NotFound(_) => ApiError::new(status, "not_found", message),
        DecisionError::AlreadyDecided { state } => {
            ApiError::new(status, "already_decided", message).with_details(json!({"state": state}))
        }
        DecisionError::NotReady => ApiError::new(status, "not_ready", message),
        DecisionError::Expired => ApiError::new(status, "expired", message),
        // The domain's status (503 when worth retrying, else 500) with the stage error's code.
        DecisionError::Stage(e) => ApiError {
            status,
            ..stage_error(e)
        },
    }
}

fn invalid_params(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
        message,
    )
    .with_details(json!({"field": "params"}))
}

/// The parameters: the defaults with the caller's fields on top (`judge` merged field by field).
/// An unknown name is refused rather than ignored, so a typo does not silently keep a default.
/// The approval wait may be shortened, never made longer than the deployment's: the state
/// machine's wait would end it first.
fn params_from(defaults: &Params, patch: Option<Value>) -> Result<Params, ApiError> {
    let Some(patch) = patch else {
        return Ok(defaults.clone());
    };
    let Value::Object(patch) = patch else {
        return Err(invalid_params("params must be an object"));
    };
    let mut merged = match serde_json::to_value(defaults) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (name, value) in patch {
        match (merged.get_mut(&name), value) {
            (None, _) => return Err(invalid_params(format!("unknown parameter {name:?}"))),
            (Some(Value::Object(judge)), Value::Object(fields)) if name == "judge" => {
                for (field, v) in fields {
                    if !judge.contains_key(&field) {
                        return Err(invalid_params(format!(
                            "unknown parameter \"judge.{field}\""
                        )));
                    }
                    judge.insert(field, v);
                }
            }
            (Some(slot), value) => *slot = value,
        }
    }
    let params: Params = serde_json::from_value(Value::Object(merged))
        .map_err(|e| invalid_params(format!("params: {e}")))?;
    let mut problems = params.validate().err().unwrap_or_default();
    if params.approval_timeout_s > defaults.approval_timeout_s {
        problems.push(format!(
            "approval_timeout_s must be at most {} (the deployment's approval wait)",
            defaults.approval_timeout_s
        ));
    }
    if !problems.is_empty() {
        return Err(invalid_params(problems.join("; "))
            .with_details(json!({"field": "params", "problems": problems})));
    }
    Ok(params)
}

/// Whether `principal` is one of `approvers`: the same ARN, or a session of an approver role.
/// A role's path is not part of its sessions' ARNs, so roles are matched by partition, account and
/// name (a role's name is unique in its account whatever its path).
pub fn is_approver(principal: &str, approvers: &[String]) -> bool {
    if principal.is_empty() {
        return false;
    }
    approvers
        .iter()
        .any(|a| a == principal || session_of_role(principal, a))
}

fn session_of_role(principal: &str, approver: &str) -> bool {
    let p: Vec<&str> = principal.splitn(6, ':').collect();
    let a: Vec<&str> = approver.splitn(6, ':').collect();
    let (
        ["arn", p_part, "sts", "", p_account, p_res],
        ["arn", a_part, "iam", "", a_account, a_res],
    ) = (p.as_slice(), a.as_slice())
    else {
        return false;
    };
    let session_role = p_res
        .strip_prefix("assumed-role/")
        .and_then(|r| r.split('/').next());
    let role = a_res
        .strip_prefix("role/")
        .and_then(|r| r.rsplit('/').next());
    p_part == a_part
        && p_account == a_account
        && !p_account.is_empty()
        && session_role.is_some_and(|s| !s.is_empty() && Some(s) == role)
}

/// The principal the decision is recorded under, and the approver list the domain checks it
/// against: the caller alone when the API recognized it as an approver, nobody otherwise.
fn authorize<'a>(req: &'a ApiRequest, api: &WorkflowApi) -> (&'a str, Vec<String>) {
    let principal = req.principal.as_deref().unwrap_or_default();
    let approvers = if is_approver(principal, &api.approvers) {
        vec![principal.to_string()]
    } else {
        Vec::new()
    };
    (principal, approvers)
}

fn decision_body(body: &[u8]) -> Result<DecisionRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DecisionRequest::default());
    }
    let req: DecisionRequest = parse_body(body)?;
    if req
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > DECISION_REASON_MAX_CHARS)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("reason is limited to {DECISION_REASON_MAX_CHARS} characters"),
        )
        .with_details(json!({"field": "reason"})));
    }
    Ok(req)
}

/// Calls the engine until it answers, or it stays unavailable for every attempt.
async fn deliver<F, Fut>(mut send: F) -> Result<(), EngineError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), EngineError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send().await {
            Err(EngineError::Unavailable(_)) if attempt < DELIVERY_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
            }
            other => return other,
        }
    }
}

fn engine_error(e: EngineError, what: &str) -> ApiError {
    match e {
        EngineError::Unavailable(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_unavailable",
            format!("{what}: {m}"),
        ),
        EngineError::TaskGone(m) => {
            ApiError::new(StatusCode::GONE, "expired", format!("{what}: {m}"))
        }
        EngineError::Rejected(m) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "engine_refused",
            format!("{what}: {m}"),
        ),
    }
}

/// Starts rolling out a group recommendation: creates the workflow (PENDING_APPROVAL, holding the
/// recommendation's deployment group), marks the recommendation, and starts the state machine,
/// which asks the orchestrator for approval.
#[utoipa::path(
    post,
    path = "/api/v1/workflows",
    tag = "workflows",
    operation_id = "startWorkflow",
    request_body = StartWorkflow,
    responses(
        (status = 201, description = "Created and started; it waits for an approver", body = Workflow),
        (status = 400, description = "No body, invalid JSON, or a `recommendation_id` that is not 1 to 200 characters", body = ErrorBody),
        (status = 404, description = "No such recommendation", body = ErrorBody),
        (status = 409, description = "The group already has an active workflow (`group_busy`, `details.active_workflow_id`)", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "Invalid parameters (`validation_failed`, `details.problems`), or a recommendation that changes nothing", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt, or the state machine refused to start (`engine_refused`); the workflow was ended FAILED", body = ErrorBody),
        (status = 503, description = "The store is unavailable, or the state machine could not be started (`engine_unavailable`; the workflow was ended FAILED and the group freed)", body = ErrorBody),
    ),
)]
pub(super) async fn start_workflow<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let body: StartWorkflow = parse_body(&req.body)?;
    if body.recommendation_id.is_empty() || body.recommendation_id.len() > 200 {
        return Err(ApiError::bad_request(
            "recommendation_id must be 1 to 200 characters",
        ));
    }
    let params = params_from(&ctx.workflows.defaults, body.params)?;
    let rec = ctx
        .store
        .recommendation(&body.recommendation_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("recommendation {}", body.recommendation_id)))?;
    let api = &ctx.workflows;
    let actor = req.principal.as_deref().unwrap_or("api");
    let mut wf = workflow::create_workflow(
        &api.deps,
        NewWorkflow {
            group: rec.group.clone(),
            recommendation: rec.recommendation.clone(),
            advisory: body.advisory,
            params,
        },
        actor,
    )
    .await
    .map_err(stage_error)?;
    // The recommendation's status is bookkeeping for people: the workflow holds what it rolls
    // out, so failing to mark it is not worth failing the start.
    if let Err(e) = ctx.store.mark_recommendation(&rec.id, wf.id.as_str()).await {
        tracing::warn!(workflow = %wf.id, recommendation = %rec.id, error = %e, "marking the recommendation failed");
    }
    match api.engine.start_execution(&wf.id).await {
        Ok(execution) => {
            tracing::info!(workflow = %wf.id, group = %wf.group, execution = %execution, "workflow started");
            let note = AuditEntry {
                at_ms: api.deps.clock.now_ms(),
                actor: actor.to_string(),
                event: Event::Note,
                from: wf.state,
                to: wf.state,
                stage: wf.stage,
                step: wf.step,
                reason: format!("state machine execution {execution} started"),
            };
            match api.deps.workflows.append_audit(&wf.id, &note).await {
                Ok(()) => wf.audit.push(note),
                Err(e) => tracing::warn!(workflow = %wf.id, error = %e, "audit note failed"),
            }
            reply(StatusCode::CREATED, &wf.redacted())
        }
        Err(e) => {
            // Nothing runs this workflow: end it, so its group is free for another.
            let why = format!("the state machine could not be started: {e}");
            if let Err(fail) = workflow::fail(&api.deps, &wf.id, &why).await {
                tracing::error!(workflow = %wf.id, error = %fail, "ending an unstarted workflow failed: its group stays held");
            }
            Err(engine_error(e, "the state machine could not be started")
                .with_details(json!({"workflow_id": wf.id})))
        }
    }
}

/// The workflows, newest first, each with its audit trail (task tokens are never shown).
#[utoipa::path(
    get,
    path = "/api/v1/workflows",
    tag = "workflows",
    operation_id = "listWorkflows",
    params(
        ("group" = Option<Id>, Query, description = "Only this deployment group's workflows"),
        ("state" = Option<State>, Query, description = "Only workflows in this state (e.g. `PENDING_APPROVAL`)"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "At most this many (default 100)"),
    ),
    responses(
        (status = 200, description = "The workflows", body = WorkflowList),
        (status = 400, description = "`group` is not a valid id, `state` is not a state, or `limit` is not from 1 to 100", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn list_workflows<S>(ctx: &ApiContext<S>, req: &ApiRequest) -> Routed {
    let group = req
        .query_param("group")
        .map(|g| path_id("group", g))
        .transpose()?;
    let state = req
        .query_param("state")
        .map(|s| s.parse::<State>().map_err(ApiError::bad_request))
        .transpose()?;
    let limit = match req.query_param("limit") {
        None => WORKFLOW_LIST_MAX,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=WORKFLOW_LIST_MAX).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {WORKFLOW_LIST_MAX}"
                ))
            })?,
    };
    let workflows: Vec<Workflow> = ctx
        .workflows
        .deps
        .workflows
        .list(&WorkflowFilter {
            group,
            state,
            limit: Some(limit),
        })
        .await
        .map_err(|e| stage_error(e.into()))?
        .iter()
        .map(Workflow::redacted)
        .collect();
    let count = workflows.len();
    reply(StatusCode::OK, &WorkflowList { workflows, count })
}

/// One workflow with its plan, verdicts and audit trail (its task token is never shown).
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{id}",
    tag = "workflows",
    operation_id = "getWorkflow",
    params(("id" = Id, Path, description = "The workflow's id")),
    responses(
        (status = 200, description = "The workflow", body = Workflow),
        (status = 400, description = "`id` is not a valid id", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn get_workflow<S>(ctx: &ApiContext<S>, id: &str) -> Routed {
    let id = path_id("id", id)?;
    match ctx
        .workflows
        .deps
        .workflows
        .get(&id)
        .await
        .map_err(|e| stage_error(e.into()))?
    {
        Some(wf) => reply(StatusCode::OK, &wf.redacted()),
        None => Err(ApiError::not_found(format!("workflow {id}"))),
    }
}

/// An approver says yes: the workflow is APPROVED and the state machine starts the canary.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{id}/approve",
    tag = "workflows",
    operation_id = "approveWorkflow",
    params(("id" = Id, Path, description = "The workflow's id")),
    request_body(content = Option<DecisionRequest>, description = "Optional: why"),
    responses(
        (status = 200, description = "Approved and handed to the state machine", body = DecisionResult),
        (status = 400, description = "`id` is not a valid id, or a body that is not this JSON", body = ErrorBody),
        (status = 403, description = "The caller's IAM principal is not an approver (`not_an_approver`)", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "Already decided (`already_decided`, `details.state`), or the approval request is still being sent (`not_ready`: try again shortly)", body = ErrorBody),
        (status = 410, description = "The approval window has closed (`expired`)", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "`reason` is over 1000 characters", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt, or the state machine refused the decision", body = ErrorBody),
        (status = 503, description = "The store is unavailable, or the approval is recorded but the state machine could not be reached (`engine_unavailable`): the workflow then expires at its approval timeout", body = ErrorBody),
    ),
)]
pub(super) async fn approve_workflow<S>(ctx: &ApiContext<S>, req: &ApiRequest, id: &str) -> Routed {
    let id = path_id("id", id)?;
    let body = decision_body(&req.body)?;
    let api = &ctx.workflows;
    let (principal, approvers) = authorize(req, api);
    let decision = workflow::approve(&api.deps, &id, principal, &approvers)
        .await
        .map_err(decision_error)?;
    let output = json!({
        "decision": "APPROVED",
        "principal": principal,
        "workflow_id": id,
        "reason": body.reason,
    });
    deliver(|| api.engine.send_task_success(&decision.task_token, &output))
        .await
        .map_err(|e| {
            tracing::error!(workflow = %id, error = %e, "approval recorded but not delivered");
            // A retried call can also meet a wait that its own lost first attempt ended: the
            // record then moves on to IN_PROGRESS rather than EXPIRED.
            engine_error(
                e,
                "the approval is recorded, but the state machine did not take it (GET the \
                 workflow: it ends EXPIRED if the execution stopped waiting)",
            )
        })?;
    tracing::info!(workflow = %id, principal = %principal, "approved");
    reply(
        StatusCode::OK,
        &DecisionResult {
            workflow: decision.workflow.redacted(),
            delivered: true,
        },
    )
}

/// An approver says no: the workflow ends REJECTED, its group is freed, and the state machine's
/// execution ends.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{id}/reject",
    tag = "workflows",
    operation_id = "rejectWorkflow",
    params(("id" = Id, Path, description = "The workflow's id")),
    request_body(content = Option<DecisionRequest>, description = "Optional: why"),
    responses(
        (status = 200, description = "Rejected (`delivered` says whether the execution was told at once)", body = DecisionResult),
        (status = 400, description = "`id` is not a valid id, or a body that is not this JSON", body = ErrorBody),
        (status = 403, description = "The caller's IAM principal is not an approver (`not_an_approver`)", body = ErrorBody),
        (status = 404, description = "No such workflow", body = ErrorBody),
        (status = 409, description = "Already decided (`already_decided`, `details.state`), or the approval request is still being sent (`not_ready`: try again shortly)", body = ErrorBody),
        (status = 410, description = "The approval window has closed (`expired`)", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 422, description = "`reason` is over 1000 characters", body = ErrorBody),
        (status = 500, description = "A stored item is corrupt", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
)]
pub(super) async fn reject_workflow<S>(ctx: &ApiContext<S>, req: &ApiRequest, id: &str) -> Routed {
    let id = path_id("id", id)?;
    let body = decision_body(&req.body)?;
    let api = &ctx.workflows;
    let (principal, approvers) = authorize(req, api);
    let decision = workflow::reject(
        &api.deps,
        &id,
        principal,
        &approvers,
        body.reason.as_deref(),
    )
    .await
    .map_err(decision_error)?;
    let cause = body
        .reason
        .clone()
        .unwrap_or_else(|| format!("rejected by {principal}"));
    // The rejection is recorded and the group freed whatever happens here: an execution that
    // is not told ends at its approval timeout, and its Expire stage leaves the record as it is.
    let delivered = match deliver(|| {
        api.engine
            .send_task_failure(&decision.task_token, REJECTED_ERROR, &cause)
    })
    .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(workflow = %id, error = %e, "rejection recorded but not delivered");
            false
        }
    };
    tracing::info!(workflow = %id, principal = %principal, delivered, "rejected");
    reply(
        StatusCode::OK,
        &DecisionResult {
            workflow: decision.workflow.redacted(),
            delivered,
        },
    )
}

/// How many workflows have not ended (the `performance_agent_workflows_active` gauge), also
/// written as an EMF line when the context emits them; `None` when the store cannot say.
pub(super) async fn active_count<S>(ctx: &ApiContext<S>) -> Option<usize> {
    let mut active = 0;
    for state in LIVE_STATES {
        let filter = WorkflowFilter {
            state: Some(state),
            ..WorkflowFilter::default()
        };
        match ctx.workflows.deps.workflows.list(&filter).await {
            Ok(v) => active += v.len(),
            Err(e) => {
                tracing::warn!(error = %e, "counting active workflows failed");
                return None;
            }
        }
    }
    if ctx.emit_emf {
        println!(
            "{}",
            telemetry::emf_workflows_active(active, (ctx.now_ms)())
        );
    }
    Some(active)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::CanarySize;

    fn approvers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_session_of_an_approver_role_is_an_approver() {
        let list = approvers(&["arn:aws:iam::123456789012:role/ops/Approvers"]);
        assert!(is_approver(
            "arn:aws:sts::123456789012:assumed-role/Approvers/alice",
            &list
        ));
        assert!(!is_approver(
            "arn:aws:sts::999999999999:assumed-role/Approvers/alice",
            &list
        ));
        assert!(!is_approver(
            "arn:aws:sts::123456789012:assumed-role/ApproversX/alice",
            &list
        ));
        assert!(!is_approver(
            "arn:aws-cn:sts::123456789012:assumed-role/Approvers/alice",
            &list
        ));
    }

    #[test]
    fn users_match_exactly_and_nobody_is_an_approver_of_an_empty_list() {
        let list = approvers(&["arn:aws:iam::123456789012:user/bob"]);
        assert!(is_approver("arn:aws:iam::123456789012:user/bob", &list));
        assert!(!is_approver("arn:aws:iam::123456789012:user/bobby", &list));
        assert!(!is_approver("", &approvers(&[""])));
        assert!(!is_approver("arn:aws:iam::123456789012:user/bob", &[]));
    }

    #[test]
    fn params_override_only_what_they_name() {
        let p = params_from(
            &Params::default(),
            Some(json!({
                "bake_samples": 10,
                "canary_size": {"count": 2},
                "judge": {"alpha": 0.01}
            })),
        )
        .unwrap();
        assert_eq!(p.bake_samples, 10);
        assert_eq!(p.canary_size, CanarySize::Count(2));
        assert_eq!(p.judge.alpha, 0.01);
        let d = Params::default();
        assert_eq!(p.judge.pass_score, d.judge.pass_score);
        assert_eq!(p.rollout_percent, d.rollout_percent);
        assert_eq!(params_from(&Params::default(), None).unwrap(), d);
    }

    #[test]
    fn the_approval_wait_follows_the_deployment_and_cannot_outlast_it() {
        let deployment = Params {
            approval_timeout_s: 600,
            ..Params::default()
        };
        assert_eq!(
            params_from(&deployment, None).unwrap().approval_timeout_s,
            600
        );
        let shorter = params_from(&deployment, Some(json!({"approval_timeout_s": 60}))).unwrap();
        assert_eq!(shorter.approval_timeout_s, 60);
        let longer =
            params_from(&deployment, Some(json!({"approval_timeout_s": 601}))).unwrap_err();
        assert_eq!(longer.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(longer.message.contains("at most 600"), "{}", longer.message);
    }

    #[test]
    fn unknown_or_invalid_params_are_refused_with_every_problem() {
        let typo = params_from(&Params::default(), Some(json!({"bake_sample": 10}))).unwrap_err();
        assert_eq!(typo.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(typo.message.contains("bake_sample"), "{}", typo.message);
        assert!(params_from(&Params::default(), Some(json!({"judge": {"alfa": 0.1}}))).is_err());
        assert!(params_from(&Params::default(), Some(json!([1]))).is_err());
        let bad = params_from(
            &Params::default(),
            Some(json!({"bake_samples": 1, "rollout_percent": [50, 40]})),
        )
        .unwrap_err();
        assert_eq!(bad.details["problems"].as_array().map(Vec::len), Some(2));
        let wrong_type =
            params_from(&Params::default(), Some(json!({"bake_samples": "six"}))).unwrap_err();
        assert_eq!(wrong_type.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}
