//! The Step Functions adapter of the [`WorkflowEngine`] port: `StartExecution` of the optimization
//! state machine (`statemachine/optimization.asl.json`) named after the workflow, and
//! `SendTaskSuccess` / `SendTaskFailure` for the approval task's token.

use crate::instance::Id;
use crate::workflow::engine::{EngineError, WorkflowEngine};
use async_trait::async_trait;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::Client;
use serde_json::{json, Value};

/// Step Functions' limit on a task failure's `cause`, in characters.
const CAUSE_MAX_CHARS: usize = 32_768;
/// Step Functions' limit on a task failure's `error`, in characters.
const ERROR_MAX_CHARS: usize = 256;

/// The optimization state machine on Step Functions.
#[derive(Clone)]
pub struct StepFunctionsEngine {
    client: Client,
    /// `None` until the state machine is deployed with the agent: every call is then
    /// `Unavailable`, saying so.
    state_machine_arn: Option<String>,
}

impl StepFunctionsEngine {
    pub fn new(client: Client, state_machine_arn: Option<String>) -> Self {
        StepFunctionsEngine {
            client,
            state_machine_arn,
        }
    }
}

/// Sorts an SDK error into the port's three kinds by its error code: the wait is over, try again,
/// or refused for good.
fn classify<E>(e: SdkError<E, HttpResponse>) -> EngineError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = DisplayErrorContext(&e).to_string();
    let Some(service) = e.as_service_error() else {
        // Dispatch, timeout or an unreadable answer: nothing was refused.
        return EngineError::Unavailable(message);
    };
    match service.code() {
        Some("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken") => {
            EngineError::TaskGone(message)
        }
        Some(
            "ThrottlingException"
            | "ServiceUnavailable"
            | "InternalServerError"
            | "KmsThrottlingException"
            | "RequestTimeout",
        ) => EngineError::Unavailable(message),
        _ if e
            .raw_response()
            .is_some_and(|r| r.status().is_server_error()) =>
        {
            EngineError::Unavailable(message)
        }
        _ => EngineError::Rejected(message),
    }
}

/// `s` cut to at most `max` characters.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The execution's input: what `Init` in the state machine reads.
pub fn execution_input(workflow: &Id) -> Value {
    json!({ "workflow_id": workflow })
}

#[async_trait]
impl WorkflowEngine for StepFunctionsEngine {
    async fn start_execution(&self, workflow: &Id) -> Result<String, EngineError> {
        let arn = self.state_machine_arn.as_deref().ok_or_else(|| {
            EngineError::Unavailable("STATE_MACHINE_ARN is not configured".into())
        })?;
        // Named after the workflow: Step Functions refuses a second execution of that name, and
        // a repeated call with the same name and input while it runs returns the same one.
        let out = self
            .client
            .start_execution()
            .state_machine_arn(arn)
            .name(workflow.as_str())
            .input(execution_input(workflow).to_string())
            .send()
            .await
            .map_err(classify)?;
        Ok(out.execution_arn)
    }

    async fn send_task_success(&self, task_token: &str, output: &Value) -> Result<(), EngineError> {
        self.client
            .send_task_success()
            .task_token(task_token)
            .output(output.to_string())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn send_task_failure(
        &self,
        task_token: &str,
        error: &str,
        cause: &str,
    ) -> Result<(), EngineError> {
        self.client
            .send_task_failure()
            .task_token(task_token)
            .error(clip(error, ERROR_MAX_CHARS))
            .cause(clip(cause, CAUSE_MAX_CHARS))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::error::ErrorMetadata;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessError;

    #[test]
    fn the_execution_input_is_what_the_state_machine_reads() {
        let id = Id::parse("id", "wf-1").unwrap();
        assert_eq!(execution_input(&id), json!({"workflow_id": "wf-1"}));
    }

    fn service_error(code: &str, status: u16) -> SdkError<SendTaskSuccessError, HttpResponse> {
        let raw = HttpResponse::new(
            http::StatusCode::from_u16(status).unwrap().into(),
            "".into(),
        );
        SdkError::service_error(
            SendTaskSuccessError::generic(ErrorMetadata::builder().code(code).build()),
            raw,
        )
    }

    #[test]
    fn a_closed_wait_throttling_and_refusals_are_told_apart() {
        for code in ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"] {
            assert!(
                matches!(classify(service_error(code, 400)), EngineError::TaskGone(_)),
                "{code}"
            );
        }
        assert!(matches!(
            classify(service_error("ThrottlingException", 400)),
            EngineError::Unavailable(_)
        ));
        assert!(matches!(
            classify(service_error("Whatever", 503)),
            EngineError::Unavailable(_)
        ));
        assert!(matches!(
            classify(service_error("InvalidOutput", 400)),
            EngineError::Rejected(_)
        ));
    }

    #[test]
    fn clipping_counts_characters_not_bytes() {
        assert_eq!(clip("ééé", 2), "éé");
        assert_eq!(clip("abc", 10), "abc");
    }
}
