//! The optimization state machine's one task function: each event is a `StageRequest` (tagged by
//! `stage`), answered with a `StageOutput`; a failure reaches Step Functions as a `Diagnostic`
//! whose `error_type` is the stable name the state machine's `Retry`/`Catch` match.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use perfagent::config::Config;
use perfagent::orchestrator::HttpOrchestrator;
use perfagent::scrape::Scraper;
use perfagent::store::dynamo::DynamoStore;
use perfagent::workflow::adapters::{ScrapeSampler, StoreDirectory};
use perfagent::workflow::{run_stage, Clock, Deps, StageError, StageRequest, SystemClock};
use serde_json::Value;
use std::sync::Arc;
use tracing::{info, warn, Instrument};

fn diagnostic(e: &StageError) -> Diagnostic {
    Diagnostic {
        error_type: e.error_name().to_string(),
        error_message: e.to_string(),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    perfagent_functions::init_logging();
    let config = Config::from_env()?;
    let settings = config.stage_settings()?;
    let sdk = perfagent_functions::aws_config().await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        &config.table_name,
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deps = Deps {
        workflows: store.clone(),
        samples: store.clone(),
        orchestrator: Arc::new(HttpOrchestrator::new(settings.orchestrator, clock.clone())?),
        sampler: Arc::new(ScrapeSampler::new(
            Scraper::new(config.guard.clone(), config.scrape)?,
            config.collector.concurrency,
        )),
        directory: Arc::new(StoreDirectory::new(store, clock.clone())),
        clock,
        api_base_url: settings.api_base_url,
    };
    let deps = &deps;
    let service = config.service_name.as_str();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let field = |name: &str| {
            event
                .payload
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let span = tracing::info_span!(
            "stage",
            request_id = %event.context.request_id,
            service = service,
            cold_start = perfagent_functions::take_cold_start(),
            workflow = %field("workflow_id"),
            stage = %field("stage"),
        );
        async move {
            // Parsed here rather than by the runtime, so a malformed event fails with a name the
            // state machine knows.
            let request: StageRequest = serde_json::from_value(event.payload).map_err(|e| {
                diagnostic(&StageError::ValidationFailed(format!(
                    "the event is not a stage request: {e}"
                )))
            })?;
            match run_stage(deps, request).await {
                Ok(out) => {
                    info!(
                        state = %out.state,
                        at = ?out.stage,
                        step = out.step,
                        next = ?out.next,
                        "stage done"
                    );
                    Ok(serde_json::json!(out))
                }
                Err(e) => {
                    warn!(error_type = e.error_name(), error = %e, transient = e.is_transient(), "stage failed");
                    Err(diagnostic(&e))
                }
            }
        }
        .instrument(span)
    }))
    .await
}
