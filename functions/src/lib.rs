//! Glue shared by the Lambda binaries: structured JSON logs and the cold-start flag. Everything
//! else lives in the `perfagent` library; a binary only reads config, builds clients once, and runs.

use std::sync::atomic::{AtomicBool, Ordering};

static WARM: AtomicBool = AtomicBool::new(false);

/// JSON logs with the span fields (request id, service, cold start) flattened into each line, as
/// Powertools does, so CloudWatch Logs Insights can filter on them.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .without_time()
        .init();
}

/// True for the first invocation this process handles.
pub fn take_cold_start() -> bool {
    !WARM.swap(true, Ordering::Relaxed)
}

/// The AWS SDK configuration, from the usual environment (`AWS_ENDPOINT_URL` points it at the
/// local emulator; nothing else differs between local and cloud).
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
