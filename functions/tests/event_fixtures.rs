//! Every event fixture in `local/events/` (the edit loop's `cargo lambda invoke --data-file` and
//! `aws lambda invoke --payload file://` inputs) parses as the event of the function it is named
//! after, so the fixtures cannot drift from the code.

use lambda_http::request::LambdaRequest;
use perfagent::dispatch::CollectorEvent;
use perfagent::workflow::stages::StageRequest;
use serde_json::Value;
use std::path::PathBuf;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local/events")
}

#[test]
fn every_fixture_parses_as_its_functions_event() {
    let mut seen = 0;
    for entry in std::fs::read_dir(events_dir()).expect("local/events") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name")
            .to_string();
        let text = std::fs::read_to_string(&path).expect("a readable fixture");
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        let parsed = if name.starts_with("collector-") {
            serde_json::from_value::<CollectorEvent>(json).map(|_| ())
        } else if name.starts_with("api-") {
            serde_json::from_value::<LambdaRequest>(json).map(|_| ())
        } else if name.starts_with("workflow-stage-") {
            serde_json::from_value::<StageRequest>(json).map(|_| ())
        } else if name.starts_with("analyzer-") {
            // The analyzer reads nothing from its event; the fixture is what EventBridge sends.
            assert_eq!(json["detail-type"], "Scheduled Event", "{name}");
            Ok(())
        } else {
            panic!("{name}: name a fixture after its function (collector-, api-, analyzer-, workflow-stage-)");
        };
        parsed.unwrap_or_else(|e| panic!("{name} does not parse as its function's event: {e}"));
        seen += 1;
    }
    assert!(seen >= 7, "only {seen} fixtures in local/events");
}
