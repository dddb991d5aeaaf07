//! The workflow's ports: storage of workflows and bake samples, the orchestrator that changes
//! instances, the sampler that scrapes them now, the directory of a group's instances, and the
//! clock. The domain calls only these traits; DynamoDB, HTTP and Step Functions are adapters.

use super::model::{AuditEntry, Sample, Workflow};
use super::state::{Stage, State};
use crate::instance::{EngineConfig, Id, Instance};
use crate::optimize::Recommendation;
use crate::snapshot::ModelMetrics;
use crate::store::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowStoreError {
    /// The group already has an active workflow (`active` is its id).
    #[error("deployment group {group} already has an active workflow ({active})")]
    GroupBusy { group: Id, active: Id },
    /// A stale write: the stored version is not the one the writer read.
    #[error("workflow {id} was changed concurrently (expected version {expected})")]
    Conflict { id: Id, expected: u64 },
    #[error("workflow {0} already exists")]
    AlreadyExists(Id),
    #[error("workflow {0} was not found")]
    NotFound(Id),
    #[error("the workflow store is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored workflow is corrupt: {0}")]
    Corrupt(String),
}

/// Which workflows to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowFilter {
    pub group: Option<Id>,
    pub state: Option<State>,
    /// At most this many (newest first); `None` = the store's own page limit.
    pub limit: Option<usize>,
}

/// Where workflows live.
///
/// The contract every implementation keeps:
/// - `create` stores a new workflow with version 1 **and** takes the group's lock in one atomic
///   write; it fails with `GroupBusy` while another workflow holds the group (one active workflow
///   per deployment group), `AlreadyExists` if the id is taken.
/// - `update` writes the whole record except `audit` only if the stored version equals
///   `workflow.version`, stores version + 1, appends `audit` in the same atomic write, and returns
///   the stored record; a stale write fails with `Conflict` and changes nothing.
/// - `get` and `list` return records with their full audit trail, oldest entry first.
/// - `release_group` frees the group only if `workflow` holds it; releasing a free group, or one
///   held by another workflow, is a successful no-op (so it can be retried).
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    async fn create(&self, workflow: &Workflow) -> Result<Workflow, WorkflowStoreError>;
    async fn get(&self, id: &Id) -> Result<Option<Workflow>, WorkflowStoreError>;
    /// Newest first.
    async fn list(&self, filter: &WorkflowFilter) -> Result<Vec<Workflow>, WorkflowStoreError>;
    async fn update(
        &self,
        workflow: &Workflow,
        audit: &[AuditEntry],
    ) -> Result<Workflow, WorkflowStoreError>;
    /// Appends a note that changes nothing else (e.g. a status report that could not be sent).
    async fn append_audit(&self, id: &Id, entry: &AuditEntry) -> Result<(), WorkflowStoreError>;
    async fn release_group(&self, group: &Id, workflow: &Id) -> Result<(), WorkflowStoreError>;
    /// The workflow holding the group, if any.
    async fn active(&self, group: &Id) -> Result<Option<Id>, WorkflowStoreError>;
}

/// Where bake samples live (separate from the workflow record, which must stay small).
#[async_trait]
pub trait SampleStore: Send + Sync {
    /// Stores samples keyed by (workflow, step, round, instance): writing a key again replaces it.
    async fn put_samples(
        &self,
        workflow: &Id,
        samples: &[Sample],
    ) -> Result<(), WorkflowStoreError>;
    /// One step's samples, any order.
    async fn samples(&self, workflow: &Id, step: u32) -> Result<Vec<Sample>, WorkflowStoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrchestratorError {
    /// Not reached, timed out, 5xx, 429, or a concurrent request with the same key: try again.
    #[error("the orchestrator is unavailable: {0}")]
    Unavailable(String),
    /// It answered and refused (4xx): trying again will not help.
    #[error("the orchestrator refused ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// It answered 2xx with a body that does not follow the contract.
    #[error("the orchestrator's answer does not follow the contract: {0}")]
    BadResponse(String),
}

/// The approval notification: what to decide on, and where to answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub workflow_id: Id,
    pub group: Id,
    pub advisory: bool,
    pub recommendation: Recommendation,
    /// `POST` here (SigV4-signed) to approve.
    pub approve_url: String,
    /// `POST` here (SigV4-signed) to reject.
    pub reject_url: String,
    pub expires_at_ms: i64,
}

/// Change these instances' configs: each instance's config gets `changes` on top.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyConfig {
    pub workflow_id: Id,
    pub group: Id,
    pub stage: Stage,
    pub step: u32,
    pub instances: Vec<Id>,
    pub changes: EngineConfig,
}

/// Put these instances back on exactly these configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackConfigs {
    pub workflow_id: Id,
    pub group: Id,
    pub configs: BTreeMap<Id, EngineConfig>,
    pub reason: String,
}

/// Where a workflow is, for the orchestrator's own records and dashboards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub workflow_id: Id,
    pub group: Id,
    pub state: State,
    pub stage: Stage,
    pub step: u32,
    pub message: String,
    pub at_ms: i64,
}

/// The deployment orchestrator. Every call carries an idempotency key: a repeated key returns
/// the first call's result without doing the work again.
#[async_trait]
pub trait Orchestrator: Send + Sync {
    async fn notify_approval(
        &self,
        request: &ApprovalRequest,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError>;
    /// Applies the change; returns each instance's config before it.
    async fn apply_config(
        &self,
        request: &ApplyConfig,
        idempotency_key: &str,
    ) -> Result<BTreeMap<Id, EngineConfig>, OrchestratorError>;
    async fn rollback(
        &self,
        request: &RollbackConfigs,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError>;
    async fn report_status(
        &self,
        report: &StatusReport,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError>;
}

/// Scrapes instances now. The deployed implementation fetches each `metrics_url` with the
/// project's `Scraper` and normalizes the body (`collect::normalize_body`).
#[async_trait]
pub trait Sampler: Send + Sync {
    /// One result per instance asked for: its models' canonical metrics, or why the scrape failed.
    async fn sample(
        &self,
        instances: &[Instance],
    ) -> BTreeMap<Id, Result<Vec<ModelMetrics>, String>>;
}

/// The registry of instances, as the workflow needs it.
#[async_trait]
pub trait InstanceDirectory: Send + Sync {
    /// The group's instances with their configs, ordered by id.
    async fn group_instances(&self, group: &Id) -> Result<Vec<Instance>, StoreError>;
    /// Records an instance's config after the orchestrator changed or restored it, so later
    /// analyses start from what runs.
    async fn set_config(&self, id: &Id, config: &EngineConfig) -> Result<(), StoreError>;
}

/// Time, as a port so tests can hold it still.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::clock::now_ms()
    }
}
