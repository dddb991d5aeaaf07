//! Glue shared by the Lambda binaries: structured JSON logs and the cold-start flag. Everything
//! else lives in the `perfagent` library; a binary only reads config, builds clients once, and runs.

use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

static WARM: AtomicBool = AtomicBool::new(false);

/// JSON logs, one object a line, with the fields of every span the event sits in (request id,
/// service, cold start, ...) flattened into the line next to the level, the message and the
/// event's own fields, as Powertools does, so CloudWatch Logs Insights filters on `request_id`
/// rather than on a nested object. `functions/tests/api_function.rs` reads them back, and proves
/// that no secret or token reaches them (`log_filter`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_env_filter(log_filter(std::env::var("LOG_LEVEL").ok().as_deref()))
        .init();
}

/// `LOG_LEVEL` (`error` … `trace`, default `info`) for the agent's own code; every dependency at
/// `debug` at most. At `trace`, dependencies log what must never reach a log: the Lambda runtime
/// each raw event (a workflow stage's task token; an API request's headers, the caller's session
/// token among them), the AWS SDK each request and response (task tokens sent to Step Functions,
/// workflow items read from the table). The agent itself logs nothing below `debug`.
pub fn log_filter(level: Option<&str>) -> EnvFilter {
    let level = level
        .and_then(|l| l.trim().parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let dependencies = level.min(LevelFilter::DEBUG);
    EnvFilter::new(format!(
        "{dependencies},perfagent={level},perfagent_functions={level}"
    ))
}

/// The line format of `init_logging`: span fields from the outermost span in, then the event's
/// fields, a later field of the same name replacing an earlier one.
struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = Map::new();
        line.insert("level".into(), event.metadata().level().as_str().into());
        for span in ctx.event_scope().into_iter().flat_map(|s| s.from_root()) {
            if let Some(fields) = span.extensions().get::<FormattedFields<JsonFields>>() {
                merge(&mut line, fields);
            }
        }
        let mut fields = String::new();
        ctx.format_fields(Writer::new(&mut fields), event)?;
        merge(&mut line, &fields);
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Adds the fields `JsonFields` wrote as a JSON object (a span without fields wrote nothing).
fn merge(line: &mut Map<String, Value>, json: &str) {
    if let Ok(Value::Object(fields)) = serde_json::from_str(json) {
        line.extend(fields);
    }
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
