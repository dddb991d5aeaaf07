//! The scheduled collector: a schedule tick becomes one or two collection passes (or shards fanned
//! out to other invocations); a shard event is collected directly.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use perfagent::api::telemetry;
use perfagent::config::Config;
use perfagent::dispatch::{Collector, CollectorEvent, DispatchError, PassSummary};
use perfagent::lambda_invoke::LambdaShardInvoker;
use perfagent::scrape::Scraper;
use perfagent::store::dynamo::DynamoStore;
use tracing::{info, Instrument};

/// Stable error names for the function's callers (and any Step Functions `Retry`).
fn diagnostic(e: DispatchError) -> Diagnostic {
    let error_type = match &e {
        DispatchError::Store(_) => "StoreUnavailable",
        DispatchError::Invoke { .. } => "ShardInvokeFailed",
        DispatchError::BadEvent(_) => "BadEvent",
    };
    Diagnostic {
        error_type: error_type.to_string(),
        error_message: e.to_string(),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    perfagent_functions::init_logging();
    let config = Config::from_env()?;
    let sdk = perfagent_functions::aws_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &config.table_name);
    let scraper = Scraper::new(config.guard.clone(), config.scrape)?;
    let invoker = LambdaShardInvoker::new(
        aws_sdk_lambda::Client::new(&sdk),
        config.collector_function_name.clone().unwrap_or_default(),
    );
    let collector = Collector {
        store: &store,
        scraper: &scraper,
        invoker: &invoker,
        config: &config.collector,
        interval_ms: config.collection_interval_seconds as i64 * 1000,
        shard_size: config.shard_size,
        now_ms: &perfagent::clock::now_ms,
    };
    let collector = &collector;
    let service = config.service_name.as_str();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<CollectorEvent>| {
        let span = tracing::info_span!(
            "collect",
            request_id = %event.context.request_id,
            service = service,
            cold_start = perfagent_functions::take_cold_start()
        );
        async move {
            let passes = collector.run(event.payload).await.map_err(diagnostic)?;
            for p in &passes {
                match p {
                    PassSummary::Inline(r) => {
                        info!(
                            slot_ms = r.slot_ms,
                            instances = r.instances,
                            collected = r.collected,
                            partial = r.partial,
                            failed = r.failed,
                            skipped = r.skipped,
                            duration_ms = r.duration_ms,
                            "pass collected"
                        );
                        // The pass's counts as CloudWatch metrics (EMF), for the dashboards.
                        println!(
                            "{}",
                            telemetry::emf_collection_pass(r, perfagent::clock::now_ms())
                        );
                    }
                    PassSummary::Dispatched {
                        slot_ms,
                        instances,
                        shards,
                    } => info!(slot_ms, instances, shards, "pass dispatched"),
                }
            }
            Ok::<_, Diagnostic>(serde_json::json!({ "passes": passes }))
        }
        .instrument(span)
    }))
    .await
}
