//! The optimization workflow: how an approved recommendation reaches a deployment group without
//! ever leaving it half-changed. States and their transitions ([`state`]), the workflow record
//! ([`model`]), the ports it runs on ([`ports`]), the stage functions the state machine calls
//! ([`stages`]), the canary judge ([`judge`], [`stats`]), in-memory ports for tests
//! ([`memory`]), the engine that runs them ([`engine`]; Step Functions in `crate::sfn`) and the
//! deployed sampler and directory ([`adapters`]). `docs/workflow.md` explains the whole;
//! `statemachine/optimization.asl.json` is the state machine that calls the stages.

pub mod adapters;
pub mod engine;
pub mod judge;
pub mod memory;
pub mod model;
pub mod ports;
pub mod stages;
pub mod state;
pub mod stats;

pub use judge::{Classification, Direction, JudgeMetric, JudgeParams, MetricSpec, Verdict};
pub use model::{
    AuditEntry, Bake, CanarySize, Next, Params, Plan, Role, Sample, VerdictRecord, Workflow,
    DEFAULT_APPROVAL_TIMEOUT_S,
};
pub use ports::{
    Clock, InstanceDirectory, Orchestrator, OrchestratorError, SampleStore, Sampler, SystemClock,
    WorkflowFilter, WorkflowStore, WorkflowStoreError,
};
pub use stages::{
    approve, collect_sample, complete, create_workflow, expire, fail, judge as judge_stage, reject,
    request_approval, rollback, rollout_step, run_stage, start_canary, Decision, DecisionError,
    Deps, NewWorkflow, StageError, StageOutput, StageRequest,
};
pub use state::{transition, Event, InvalidTransition, Stage, State};
