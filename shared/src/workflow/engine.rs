//! The port to the engine that runs workflows (Step Functions in the cloud, `crate::sfn`): start an
//! execution for a workflow, and hand an approver's decision to the execution waiting for it. An
//! in-memory engine that records what it was asked stands in for it in tests.

use crate::instance::Id;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::{Mutex, MutexGuard};

/// The error `send_task_failure` carries for a rejection: the state machine's approval task
/// catches exactly this name.
pub const REJECTED_ERROR: &str = "Rejected";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// Not reached, throttled, or failing on its side: try again.
    #[error("the workflow engine is unavailable: {0}")]
    Unavailable(String),
    /// The wait this token belonged to is over (timed out, already answered, or no such task).
    #[error("the execution is no longer waiting for this decision: {0}")]
    TaskGone(String),
    /// Refused for good (e.g. an execution of that name exists, an unknown state machine, no
    /// permission).
    #[error("the workflow engine refused: {0}")]
    Rejected(String),
}

/// Runs workflows.
#[async_trait]
pub trait WorkflowEngine: Send + Sync {
    /// Starts the state machine with input `{"workflow_id": id}`, the execution named after the
    /// workflow (so it cannot be started twice); returns the execution's id (an ARN on AWS).
    async fn start_execution(&self, workflow: &Id) -> Result<String, EngineError>;
    /// Ends the approval wait successfully, with `output` as the task's result.
    async fn send_task_success(&self, task_token: &str, output: &Value) -> Result<(), EngineError>;
    /// Ends the approval wait with an error (a rejection: [`REJECTED_ERROR`]).
    async fn send_task_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), EngineError>;
}

/// One call the in-memory engine received.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineCall {
    Start {
        workflow: Id,
    },
    Success {
        task_token: String,
        output: Value,
    },
    Failure {
        task_token: String,
        error: String,
        cause: String,
    },
}

#[derive(Default)]
struct MemoryEngineInner {
    calls: Vec<EngineCall>,
    fail_next: Option<EngineError>,
}

/// An engine that records every call and fails when told to (tests).
#[derive(Default)]
pub struct MemoryEngine {
    inner: Mutex<MemoryEngineInner>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, oldest first (failed ones included).
    pub fn calls(&self) -> Vec<EngineCall> {
        self.lock().calls.clone()
    }

    /// The next call fails with `error`.
    pub fn fail_next(&self, error: EngineError) {
        self.lock().fail_next = Some(error);
    }

    /// A panic cannot leave a push half-done, so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, MemoryEngineInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, call: EngineCall) -> Result<(), EngineError> {
        let mut g = self.lock();
        g.calls.push(call);
        g.fail_next.take().map_or(Ok(()), Err)
    }
}

#[async_trait]
impl WorkflowEngine for MemoryEngine {
    async fn start_execution(&self, workflow: &Id) -> Result<String, EngineError> {
        self.record(EngineCall::Start {
            workflow: workflow.clone(),
        })?;
        Ok(format!("memory:execution:{workflow}"))
    }

    async fn send_task_success(&self, task_token: &str, output: &Value) -> Result<(), EngineError> {
        self.record(EngineCall::Success {
            task_token: task_token.to_string(),
            output: output.clone(),
        })
    }

    async fn send_task_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), EngineError> {
        self.record(EngineCall::Failure {
            task_token: task_token.to_string(),
            error: error.to_string(),
            cause: cause.to_string(),
        })
    }
}
