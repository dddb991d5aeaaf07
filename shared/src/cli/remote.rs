//! The commands against a deployed agent: instances, bottlenecks, recommendations and workflows,
//! over the agent's HTTP API, every request SigV4-signed by [`ApiClient`] with the usual AWS
//! credentials. Tables for people by default; `--json` prints the API's JSON for scripts.

use super::table::Table;
use super::{json, CliError, Io, EXIT_CODES_HELP};
use crate::analyzer::GroupRecommendation;
use crate::api::body::{
    BottleneckList, DecisionResult, ErrorBody, InstanceList, RecommendationList, WorkflowList,
};
use crate::client::ApiClient;
use crate::instance::Id;
use crate::optimize::Recommendation;
use crate::workflow::{State, Workflow};
use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::io::Write;

/// Where the agent is and how to print; part of every command that calls the API.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The agent's API base URL (the stack's `ApiUrl` output)
    #[arg(long, env = "PERFAGENT_API_URL", value_name = "URL")]
    pub api_url: String,
    /// Print the API's JSON answer instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// Only this deployment group's instances
    #[arg(long, value_parser = parse_id)]
    pub group: Option<Id>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct BottlenecksArgs {
    /// Only this deployment group's instances
    #[arg(long, value_parser = parse_id, conflicts_with = "instance")]
    pub group: Option<Id>,
    /// Only this instance's bottlenecks
    #[arg(long, value_parser = parse_id)]
    pub instance: Option<Id>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RecommendationsArgs {
    /// Only this deployment group's recommendations
    #[arg(long, value_parser = parse_id, conflicts_with = "instance")]
    pub group: Option<Id>,
    /// Only the recommendations this instance's analysis proposed
    #[arg(long, value_parser = parse_id)]
    pub instance: Option<Id>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct WorkflowsArgs {
    #[command(subcommand)]
    pub command: WorkflowCommand,
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// The workflows, newest first
    #[command(after_help = EXIT_CODES_HELP)]
    List(ListWorkflowsArgs),
    /// Start rolling out a group recommendation (it then waits for an approver)
    #[command(after_help = EXIT_CODES_HELP)]
    Start(StartArgs),
    /// One workflow: its change, plan, verdicts and audit trail
    #[command(after_help = EXIT_CODES_HELP)]
    Show(WorkflowIdArgs),
    /// Approve a workflow waiting for approval (the caller must be an approver)
    #[command(after_help = EXIT_CODES_HELP)]
    Approve(ApproveArgs),
    /// Reject a workflow waiting for approval (the caller must be an approver)
    #[command(after_help = EXIT_CODES_HELP)]
    Reject(RejectArgs),
}

#[derive(Debug, Args)]
pub struct ListWorkflowsArgs {
    /// Only this deployment group's workflows
    #[arg(long, value_parser = parse_id)]
    pub group: Option<Id>,
    /// Only workflows in this state (e.g. PENDING_APPROVAL)
    #[arg(long)]
    pub state: Option<State>,
    /// At most this many
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The group recommendation's id (`perfagent recommendations`)
    #[arg(long, value_name = "ID")]
    pub recommendation: String,
    /// Refuse to start unless the recommendation is this deployment group's
    #[arg(long, value_parser = parse_id)]
    pub group: Option<Id>,
    /// Approve and plan only: no instance is ever changed
    #[arg(long)]
    pub advisory: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct WorkflowIdArgs {
    /// The workflow's id
    #[arg(value_parser = parse_id)]
    pub id: Id,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The workflow's id
    #[arg(value_parser = parse_id)]
    pub id: Id,
    /// Why (kept in the audit trail)
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The workflow's id
    #[arg(value_parser = parse_id)]
    pub id: Id,
    /// Why (kept in the audit trail and given to the state machine as the failure's cause)
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub api: ApiArgs,
}

fn parse_id(s: &str) -> Result<Id, String> {
    Id::parse("id", s).map_err(|e| e.to_string())
}

/// An answer of the API that is not a success: its status and, when the body is the API's error
/// JSON, its stable `code`, `message` and `details`.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: Option<String>,
    pub message: String,
    pub details: Value,
}

impl ApiFailure {
    /// The failure an error answer describes. API Gateway answers some errors itself (a missing
    /// or refused signature) with `{"message": ...}` instead of the agent's error body.
    fn from_answer(status: StatusCode, body: Value) -> Self {
        match serde_json::from_value::<ErrorBody>(body.clone()) {
            Ok(e) => ApiFailure {
                status,
                code: Some(e.code),
                message: e.message,
                details: e.details,
            },
            Err(_) => ApiFailure {
                status,
                code: None,
                message: ["message", "Message"]
                    .iter()
                    .find_map(|k| body.get(k).and_then(Value::as_str))
                    .map_or_else(|| body.to_string(), str::to_string),
                details: Value::Null,
            },
        }
    }
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the API answered {}: ", self.status)?;
        if let Some(code) = &self.code {
            write!(f, "{code}: ")?;
        }
        write!(f, "{}", self.message)?;
        if !self.details.is_null() {
            write!(f, " (details: {})", self.details)?;
        }
        Ok(())
    }
}

async fn connect(api: &ApiArgs) -> Result<ApiClient, CliError> {
    ApiClient::from_env(&api.api_url)
        .await
        .map_err(CliError::Api)
}

/// Sends one request; a success's JSON, or the failure the API answered with.
async fn call(
    client: &ApiClient,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, CliError> {
    let (status, answer) = client
        .call(method, path, body)
        .await
        .map_err(CliError::Api)?;
    if status.is_success() {
        Ok(answer)
    } else {
        Err(CliError::ApiFailure(ApiFailure::from_answer(
            status, answer,
        )))
    }
}

async fn get(client: &ApiClient, path: &str) -> Result<Value, CliError> {
    call(client, Method::GET, path, None).await
}

/// `path` with the query parameters that are set.
fn with_query(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(v) = value {
            query.append_pair(name, v);
        }
    }
    match query.finish() {
        q if q.is_empty() => path.to_string(),
        q => format!("{path}?{q}"),
    }
}

/// A recommendation id as one path segment (ids are `<group>.<id>`, but the API does not promise
/// that they stay URL-safe).
fn recommendation_path(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The answer as the type the API documents for it.
fn typed<T: DeserializeOwned>(answer: Value, what: &'static str) -> Result<T, CliError> {
    serde_json::from_value(answer).map_err(|error| CliError::UnexpectedAnswer { what, error })
}

fn print_json(answer: &Value, out: &mut dyn Write) -> Result<(), CliError> {
    json::write_pretty(answer, out).map_err(CliError::Output)
}

/// Keeps the entries of the answer's `list` that `keep` accepts, and its `count` in step.
fn retain(answer: &mut Value, list: &str, keep: impl Fn(&Value) -> bool) {
    if let Some(items) = answer.get_mut(list).and_then(Value::as_array_mut) {
        items.retain(keep);
        let count = items.len();
        answer["count"] = count.into();
    }
}

/// The group of an instance, which must exist (a 404 otherwise).
async fn group_of(client: &ApiClient, instance: &Id) -> Result<Id, CliError> {
    let answer = get(client, &format!("/api/v1/instances/{instance}")).await?;
    let group = answer.get("group").cloned().unwrap_or(Value::Null);
    typed(group, "instance")
}

pub async fn instances(args: InstancesArgs, io: Io<'_>) -> Result<(), CliError> {
    let client = connect(&args.api).await?;
    let group = args.group.as_ref().map(Id::as_str);
    let answer = get(
        &client,
        &with_query("/api/v1/instances", &[("group", group)]),
    )
    .await?;
    if args.api.json {
        return print_json(&answer, io.stdout);
    }
    let list: InstanceList = typed(answer, "instance list")?;
    let mut t = Table::new(&[
        "ID",
        "GROUP",
        "ENGINE",
        "MODEL",
        "METRICS URL",
        "BREAKER",
        "LAST ERROR",
    ]);
    for r in &list.instances {
        let h = &r.health;
        let last_error = match (&h.last_error_kind, &h.last_error) {
            (Some(kind), Some(e)) => format!("{kind}: {e}"),
            (None, Some(e)) => e.clone(),
            (Some(kind), None) => kind.clone(),
            (None, None) => "-".into(),
        };
        let breaker = match h.breaker.consecutive_failures {
            0 => label(&h.breaker.state),
            n => format!("{} ({n} failures)", label(&h.breaker.state)),
        };
        t.row([
            r.instance.id.to_string(),
            r.instance.group.to_string(),
            r.instance.engine.to_string(),
            r.instance.model.clone().unwrap_or_else(|| "-".into()),
            r.instance.metrics_url.clone(),
            breaker,
            last_error,
        ]);
    }
    write_table(&t, io.stdout, "No instances registered.")
}

pub async fn bottlenecks(args: BottlenecksArgs, io: Io<'_>) -> Result<(), CliError> {
    let client = connect(&args.api).await?;
    let group = match &args.instance {
        Some(instance) => Some(group_of(&client, instance).await?),
        None => args.group,
    };
    let path = with_query(
        "/api/v1/bottlenecks",
        &[("group", group.as_ref().map(Id::as_str))],
    );
    let mut answer = get(&client, &path).await?;
    if let Some(instance) = &args.instance {
        retain(&mut answer, "bottlenecks", |b| {
            b["instance_id"] == instance.as_str()
        });
    }
    if args.api.json {
        return print_json(&answer, io.stdout);
    }
    let list: BottleneckList = typed(answer, "bottleneck list")?;
    let mut t = Table::new(&[
        "INSTANCE",
        "GROUP",
        "MODEL",
        "PRIORITY",
        "SEVERITY",
        "TYPE",
        "CONFIDENCE",
        "ANALYZED",
        "DESCRIPTION",
    ]);
    for e in &list.bottlenecks {
        let b = &e.bottleneck;
        t.row([
            e.instance_id.to_string(),
            e.group.to_string(),
            e.model.clone(),
            b.priority.to_string(),
            b.severity.as_str().to_string(),
            b.kind.as_str().to_string(),
            label(&b.confidence),
            time(e.analyzed_at_ms),
            b.description.clone(),
        ]);
    }
    write_table(&t, io.stdout, "No bottlenecks in the latest analyses.")
}

pub async fn recommendations(args: RecommendationsArgs, io: Io<'_>) -> Result<(), CliError> {
    let client = connect(&args.api).await?;
    let group = match &args.instance {
        Some(instance) => Some(group_of(&client, instance).await?),
        None => args.group,
    };
    let path = with_query(
        "/api/v1/recommendations",
        &[("group", group.as_ref().map(Id::as_str))],
    );
    let mut answer = get(&client, &path).await?;
    if let Some(instance) = &args.instance {
        retain(&mut answer, "recommendations", |r| {
            r["proposed_for"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == instance.as_str()))
        });
    }
    if args.api.json {
        return print_json(&answer, io.stdout);
    }
    let list: RecommendationList = typed(answer, "recommendation list")?;
    let mut t = Table::new(&[
        "ID",
        "GROUP",
        "ENGINE",
        "STATUS",
        "CHANGE",
        "RISK",
        "PROPOSED FOR",
        "WORKFLOW",
        "TITLE",
    ]);
    for r in &list.recommendations {
        t.row([
            r.id.clone(),
            r.group.to_string(),
            r.engine.to_string(),
            label(&r.status),
            change(&r.recommendation),
            label(&r.recommendation.risk.level),
            format!("{} of {}", r.proposed_for.len(), r.eligible_instances),
            r.workflow_id.clone().unwrap_or_else(|| "-".into()),
            r.recommendation.title.clone(),
        ]);
    }
    write_table(&t, io.stdout, "No recommendations.")
}

pub async fn workflows(args: WorkflowsArgs, io: Io<'_>) -> Result<(), CliError> {
    match args.command {
        WorkflowCommand::List(a) => list_workflows(a, io).await,
        WorkflowCommand::Start(a) => start_workflow(a, io).await,
        WorkflowCommand::Show(a) => show_workflow(a, io).await,
        WorkflowCommand::Approve(a) => decide(a.api, a.id, Decision::Approve, a.reason, io).await,
        WorkflowCommand::Reject(a) => {
            decide(a.api, a.id, Decision::Reject, Some(a.reason), io).await
        }
    }
}

async fn list_workflows(args: ListWorkflowsArgs, io: Io<'_>) -> Result<(), CliError> {
    let client = connect(&args.api).await?;
    let limit = args.limit.map(|l| l.to_string());
    let path = with_query(
        "/api/v1/workflows",
        &[
            ("group", args.group.as_ref().map(Id::as_str)),
            ("state", args.state.map(State::as_str)),
            ("limit", limit.as_deref()),
        ],
    );
    let answer = get(&client, &path).await?;
    if args.api.json {
        return print_json(&answer, io.stdout);
    }
    let list: WorkflowList = typed(answer, "workflow list")?;
    let mut t = Table::new(&[
        "ID", "GROUP", "STATE", "STAGE", "STEP", "ADVISORY", "CHANGE", "UPDATED",
    ]);
    for w in &list.workflows {
        t.row([
            w.id.to_string(),
            w.group.to_string(),
            w.state.to_string(),
            label(&w.stage),
            w.step.to_string(),
            yes_no(w.advisory),
            change(&w.recommendation),
            time(w.updated_at_ms),
        ]);
    }
    write_table(&t, io.stdout, "No workflows.")
}

async fn start_workflow(args: StartArgs, io: Io<'_>) -> Result<(), CliError> {
    let client = connect(&args.api).await?;
    if let Some(expected) = args.group {
        let path = format!(
            "/api/v1/recommendations/{}",
            recommendation_path(&args.recommendation)
        );
        let rec: GroupRecommendation = typed(get(&client, &path).await?, "recommendation")?;
        if rec.group != expected {
            return Err(CliError::WrongGroup {
                recommendation: args.recommendation,
                group: rec.group,
                expected,
            });
        }
    }
    let body = serde_json::json!({
        "recommendation_id": args.recommendation,
        "advisory": args.advisory,
    });
    let answer = call(&client, Method::POST, "/api/v1/workflows", Some(&body)).await?;
    if args.api.json {
        return print_json(&answer, io.stdout);
    }
    let wf: Workflow = typed(answer, "workflow")?;
    writeln!(
        io.stdout,
        "Started workflow {id} ({state}): approve it with `perfagent workflows approve {id}`.\n",
        id = wf.id,
        state = wf.state
    )
    .map_err(CliError::Output)?;
    write_workflow(&wf, io.stdout)
}

async fn show_workflow(args: WorkflowIdArgs, io: Io<'_>) -> Result<(), CliError> {
    let client = connect(&args.api).await?;
    let answer = get(&client, &format!("/api/v1/workflows/{}", args.id)).await?;
    if args.api.json {
        return print_json(&answer, io.stdout);
    }
    write_workflow(&typed(answer, "workflow")?, io.stdout)
}

#[derive(Debug, Clone, Copy)]
enum Decision {
    Approve,
    Reject,
}

impl Decision {
    fn verb(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

async fn decide(
    api: ApiArgs,
    id: Id,
    decision: Decision,
    reason: Option<String>,
    io: Io<'_>,
) -> Result<(), CliError> {
    let client = connect(&api).await?;
    let body = reason.map(|r| serde_json::json!({ "reason": r }));
    let path = format!("/api/v1/workflows/{id}/{}", decision.verb());
    let answer = call(&client, Method::POST, &path, body.as_ref()).await?;
    if api.json {
        return print_json(&answer, io.stdout);
    }
    let result: DecisionResult = typed(answer, "decision")?;
    let wf = &result.workflow;
    let told = match (decision, result.delivered) {
        (Decision::Approve, _) => "the state machine goes on to the canary",
        (Decision::Reject, true) => "the state machine's execution ends",
        (Decision::Reject, false) => {
            "the state machine could not be told: its execution ends at the approval timeout"
        }
    };
    writeln!(
        io.stdout,
        "Workflow {} of group {} is {}; {told}.",
        wf.id, wf.group, wf.state
    )
    .map_err(CliError::Output)
}

fn write_workflow(wf: &Workflow, out: &mut dyn Write) -> Result<(), CliError> {
    let r = &wf.recommendation;
    let mut f = Table::fields();
    f.row(["Workflow".into(), wf.id.to_string()]);
    f.row(["Group".into(), wf.group.to_string()]);
    f.row([
        "State".into(),
        format!(
            "{} (stage {}, step {})",
            wf.state,
            label(&wf.stage),
            wf.step
        ),
    ]);
    f.row(["Advisory".into(), yes_no(wf.advisory)]);
    f.row(["Engine".into(), r.engine.to_string()]);
    f.row(["Change".into(), change(r)]);
    f.row(["Recommendation".into(), format!("{}: {}", r.id, r.title)]);
    f.row(["Created".into(), time(wf.created_at_ms)]);
    f.row(["Updated".into(), time(wf.updated_at_ms)]);
    match &wf.decided_by {
        Some(who) => f.row(["Decided by".into(), who.clone()]),
        None if wf.state == State::PendingApproval => {
            f.row(["Approve by".into(), time(wf.approval_deadline_ms)])
        }
        None => {}
    }
    if let Some(plan) = &wf.plan {
        let batches: Vec<String> = plan.batches.iter().map(ids).collect();
        f.row([
            "Plan".into(),
            format!(
                "canary {}; baseline {}; rollout {}",
                ids(&plan.canary),
                ids(&plan.baseline),
                if batches.is_empty() {
                    "-".to_string()
                } else {
                    batches.join(" | ")
                }
            ),
        ]);
    }
    if wf.bake.samples_target > 0 {
        f.row([
            "Bake".into(),
            format!(
                "{} of {} samples, {} extension(s)",
                wf.bake.samples_taken, wf.bake.samples_target, wf.bake.extensions
            ),
        ]);
    }
    if !wf.applied.is_empty() {
        f.row(["Applied".into(), ids(&wf.applied)]);
    }
    if !wf.restored.is_empty() {
        f.row(["Restored".into(), ids(&wf.restored)]);
    }
    for (instance, why) in &wf.rollback_failures {
        f.row(["Not restored".into(), format!("{instance}: {why}")]);
    }
    if let Some(e) = &wf.error {
        f.row(["Error".into(), e.clone()]);
    }
    f.write(out, "").map_err(CliError::Output)?;

    writeln!(out, "\nVerdicts").map_err(CliError::Output)?;
    let mut v = Table::new(&[
        "TIME", "STAGE", "STEP", "SAMPLES", "VERDICT", "SCORE", "DECISION", "REASON",
    ]);
    for r in &wf.verdicts {
        v.row([
            time(r.at_ms),
            label(&r.stage),
            r.step.to_string(),
            r.samples.to_string(),
            label(&r.report.verdict),
            format!("{:.0}", r.report.score),
            label(&r.decision),
            r.report.reason.clone(),
        ]);
    }
    write_table(&v, out, "(none yet)")?;

    writeln!(out, "\nAudit trail").map_err(CliError::Output)?;
    let mut a = Table::new(&["TIME", "ACTOR", "EVENT", "STATE", "STAGE", "STEP", "REASON"]);
    for e in &wf.audit {
        let state = if e.from == e.to {
            e.to.to_string()
        } else {
            format!("{} → {}", e.from, e.to)
        };
        a.row([
            time(e.at_ms),
            e.actor.clone(),
            e.event.to_string(),
            state,
            label(&e.stage),
            e.step.to_string(),
            e.reason.clone(),
        ]);
    }
    write_table(&a, out, "(empty)")
}

fn write_table(t: &Table, out: &mut dyn Write, empty: &str) -> Result<(), CliError> {
    t.write(out, empty).map_err(CliError::Output)
}

/// A value's name as the API spells it in JSON (`HALF_OPEN`, `IN_WORKFLOW`, ...).
fn label<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// A configuration value: a string as it is, else its JSON.
fn value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `--flag current → proposed`; a current value the config does not set is the engine's default
/// (`unset` when the engine derives it).
fn change(r: &Recommendation) -> String {
    let current = match (&r.current.value, r.current.assumed) {
        (Value::Null, _) => "unset".to_string(),
        (v, true) => format!("{} (default)", value(v)),
        (v, false) => value(v),
    };
    format!("{} {current} → {}", r.flag, value(&r.proposed))
}

fn ids<'a>(list: impl IntoIterator<Item = &'a Id>) -> String {
    let names: Vec<&str> = list.into_iter().map(Id::as_str).collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(", ")
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// An epoch-ms instant as RFC 3339 UTC to the second.
fn time(ms: i64) -> String {
    DateTime::from_secs(ms.div_euclid(1000))
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_body_keeps_its_code_and_details() {
        let f = ApiFailure::from_answer(
            StatusCode::CONFLICT,
            json!({"code": "already_decided", "message": "workflow w was already decided",
                   "details": {"state": "APPROVED"}}),
        );
        assert_eq!(f.code.as_deref(), Some("already_decided"));
        assert_eq!(
            f.to_string(),
            "the API answered 409 Conflict: already_decided: workflow w was already decided \
             (details: {\"state\":\"APPROVED\"})"
        );
    }

    #[test]
    fn a_gateway_error_without_the_agents_body_is_still_readable() {
        let f = ApiFailure::from_answer(StatusCode::FORBIDDEN, json!({"message": "Forbidden"}));
        assert_eq!(f.code, None);
        assert_eq!(f.to_string(), "the API answered 403 Forbidden: Forbidden");
        let odd = ApiFailure::from_answer(StatusCode::BAD_GATEWAY, json!([1]));
        assert_eq!(odd.message, "[1]");
    }

    #[test]
    fn queries_carry_only_what_is_set_and_ids_are_one_segment() {
        assert_eq!(
            with_query("/w", &[("group", None), ("state", Some("IN_PROGRESS"))]),
            "/w?state=IN_PROGRESS"
        );
        assert_eq!(with_query("/w", &[("group", None)]), "/w");
        assert_eq!(recommendation_path("chat.a/b c"), "chat.a%2Fb%20c");
    }

    #[test]
    fn retain_keeps_the_count_in_step() {
        let mut answer = json!({"count": 3, "items": [1, 2, 3]});
        retain(&mut answer, "items", |v| v.as_i64() != Some(2));
        assert_eq!(answer, json!({"count": 2, "items": [1, 3]}));
    }

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(time(1_800_000_000_999), "2027-01-15T08:00:00Z");
    }
}
