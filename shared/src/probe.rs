//! Readiness checks of the agent's dependencies for `GET /api/v1/health/detailed`: the table and
//! the workflow state machine answer, and how fast.

use crate::store::dynamo::DynamoStore;
use async_trait::async_trait;
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DependencyCheck {
    pub name: &'static str,
    pub ok: bool,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[async_trait]
pub trait HealthProbe: Send + Sync {
    async fn checks(&self) -> Vec<DependencyCheck>;
}

/// For in-process use (tests, benchmarks): nothing to check.
pub struct NoDependencies;

#[async_trait]
impl HealthProbe for NoDependencies {
    async fn checks(&self) -> Vec<DependencyCheck> {
        Vec::new()
    }
}

/// The deployed agent's dependencies.
pub struct AwsProbe {
    pub store: DynamoStore,
    pub sfn: aws_sdk_sfn::Client,
    /// Absent until the workflow state machine is deployed with the agent.
    pub state_machine_arn: Option<String>,
}

async fn timed<F, E>(name: &'static str, f: F) -> DependencyCheck
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let start = Instant::now();
    let result = f.await;
    DependencyCheck {
        name,
        ok: result.is_ok(),
        latency_ms: start.elapsed().as_millis() as u64,
        error: result.err().map(|e| e.to_string()),
    }
}

#[async_trait]
impl HealthProbe for AwsProbe {
    async fn checks(&self) -> Vec<DependencyCheck> {
        let mut out = vec![timed("dynamodb", self.store.ping()).await];
        match &self.state_machine_arn {
            Some(arn) => out.push(
                timed("state_machine", async {
                    self.sfn
                        .describe_state_machine()
                        .state_machine_arn(arn)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_sfn::error::DisplayErrorContext(&e).to_string())
                })
                .await,
            ),
            None => out.push(DependencyCheck {
                name: "state_machine",
                ok: false,
                latency_ms: 0,
                error: Some("STATE_MACHINE_ARN is not configured".into()),
            }),
        }
        out
    }
}
