//! The scheduled analyzer: bottlenecks, SLO state and recommendations for the whole fleet, from
//! the snapshots the collector stored.

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use perfagent::analyzer;
use perfagent::api::telemetry;
use perfagent::config::Config;
use perfagent::store::dynamo::DynamoStore;
use perfagent::store::StoreError;
use serde_json::Value;
use tracing::{info, Instrument};

fn diagnostic(e: StoreError) -> Diagnostic {
    let error_type = match &e {
        StoreError::Unavailable(_) => "StoreUnavailable",
        StoreError::Corrupt(_) => "StoreCorrupt",
        StoreError::AlreadyExists(_) | StoreError::NotFound(_) => "StoreConflict",
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
    let store = &store;
    let window_ms = config.analysis_window_minutes * 60_000;
    let service = config.service_name.as_str();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let span = tracing::info_span!(
            "analyze",
            request_id = %event.context.request_id,
            service = service,
            cold_start = perfagent_functions::take_cold_start()
        );
        async move {
            let report = analyzer::run(store, perfagent::clock::now_ms(), window_ms)
                .await
                .map_err(diagnostic)?;
            info!(
                instances = report.instances,
                groups = report.groups,
                bottlenecks = report.bottlenecks,
                recommendations = report.recommendations,
                slo_alerts_firing = report.slo_alerts_firing,
                "analysis stored"
            );
            // The run's findings as CloudWatch metrics (EMF), for the dashboards.
            println!("{}", telemetry::emf_analysis(&report));
            Ok::<_, Diagnostic>(serde_json::json!(report))
        }
        .instrument(span)
    }))
    .await
}
