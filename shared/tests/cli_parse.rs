//! The `perfagent` binary's `parse` and `check` commands, run as a user would: output, exit codes,
//! error messages (with line:column), standard input, and never a panic.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const VLLM: &str = "vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom";
const SGLANG: &str = "sglang-0.4.x-docs-production_metrics-llama3.1-8b.prom";

fn capture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/metrics")
        .join(name)
}

fn perfagent(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perfagent"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
        // A command that fails before reading closes the pipe; its exit code is what is tested.
        let _ = pipe.write_all(bytes);
    }
    let out = child.wait_with_output().expect("the binary ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "a panic: {stderr}"
    );
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON document")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn parse_prints_the_normalized_snapshot_of_a_capture() {
    let file = capture(VLLM);
    let out = perfagent(&["parse", path_str(&file)], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let snap = json(&out);
    assert_eq!(snap["engine"], "vllm");
    assert_eq!(snap["generation"], "vllm-v1");
    assert_eq!(snap["unknown_families"], 39);
    let model = &snap["models"][0];
    assert_eq!(model["model"], "Qwen/Qwen3-4B-Instruct-2507-FP8");
    assert_eq!(
        model["metrics"]["kv_cache_usage_ratio"],
        0.0011764705882353343
    );
    assert_eq!(model["metrics"]["ttft_seconds"]["count"], 6.0);
    let last_bucket = model["metrics"]["ttft_seconds"]["buckets"]
        .as_array()
        .and_then(|b| b.last())
        .cloned();
    assert_eq!(last_bucket, Some(serde_json::json!(["+Inf", 6.0])));
    assert!(snap["notes"].as_array().is_some_and(|n| !n.is_empty()));
}

#[test]
fn parse_raw_prints_every_sample_as_one_json_line() {
    let file = capture(SGLANG);
    let out = perfagent(&["parse", "--raw", path_str(&file)], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 91);
    assert_eq!(
        lines[0],
        serde_json::json!({
            "name": "sglang:prompt_tokens_total",
            "labels": {"model_name": "meta-llama/Llama-3.1-8B-Instruct"},
            "value": 8128902.0
        })
    );
}

#[test]
fn parse_raw_spells_non_finite_values_and_keeps_timestamps() {
    let out = perfagent(
        &["parse", "--raw", "-"],
        Some(b"a NaN\nb{x=\"1\"} +Inf 1700000000000\nc -Inf\n"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"name\":\"a\",\"labels\":{},\"value\":\"NaN\"}\n\
         {\"name\":\"b\",\"labels\":{\"x\":\"1\"},\"value\":\"+Inf\",\"timestamp_ms\":1700000000000}\n\
         {\"name\":\"c\",\"labels\":{},\"value\":\"-Inf\"}\n"
    );
}

#[test]
fn parse_reads_standard_input_for_a_dash() {
    let text = std::fs::read(capture(SGLANG)).expect("capture");
    let out = perfagent(&["parse", "--engine", "sglang", "-"], Some(&text));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let snap = json(&out);
    assert_eq!(snap["engine"], "sglang");
    assert_eq!(snap["models"][0]["metrics"]["requests_waiting"], 2826.0);
}

#[test]
fn parse_of_invalid_text_exits_1_with_line_and_column() {
    let out = perfagent(&["parse", "-"], Some(b"ok 1\nbroken{ 2\n"));
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(err.contains("<stdin>:2:"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn parse_of_a_missing_file_exits_3() {
    let out = perfagent(&["parse", "/nonexistent/metrics.prom"], None);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains("/nonexistent/metrics.prom: no such file"));
}

#[test]
fn parse_of_an_unreadable_input_exits_4() {
    let dir = std::env::temp_dir();
    let out = perfagent(&["parse", path_str(&dir)], None);
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

#[test]
fn parse_of_metrics_from_no_engine_exits_7() {
    let out = perfagent(&["parse", "-"], Some(b"node_load1 0.5\n"));
    assert_eq!(code(&out), 7);
    assert!(stderr(&out).contains("no vLLM, TGI or SGLang metrics"));
}

#[test]
fn parse_with_a_contradicting_engine_exits_7_naming_both() {
    let file = capture(VLLM);
    let out = perfagent(&["parse", "--engine", "tgi", path_str(&file)], None);
    assert_eq!(code(&out), 7);
    let err = stderr(&out);
    assert!(err.contains("tgi") && err.contains("vllm"), "{err}");
}

#[test]
fn parse_in_strict_format_rejects_what_lenient_accepts() {
    // The capture has no final newline: fine for a scraper, not for the 0.0.4 reference parser.
    let file = capture(VLLM);
    let lenient = perfagent(&["parse", path_str(&file)], None);
    let strict = perfagent(&["parse", "--format", "prometheus", path_str(&file)], None);
    assert_eq!(code(&lenient), 0);
    assert_eq!(code(&strict), 1);
    assert!(stderr(&strict).contains(":494:"), "{}", stderr(&strict));
}

#[test]
fn check_of_valid_text_exits_0() {
    let file = capture(SGLANG);
    let out = perfagent(&["check", "--format", "prometheus", path_str(&file)], None);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid Prometheus 0.0.4"));
}

#[test]
fn check_of_invalid_text_exits_1_with_line_and_column() {
    let text = b"# TYPE a counter\na_total 1\n# TYPE a counter\na_total 2\n";
    let out = perfagent(&["check", "--format", "prometheus", "-"], Some(text));
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("<stdin>:3:"), "{}", stderr(&out));
}

#[test]
fn check_as_openmetrics_requires_the_eof_marker() {
    let without = perfagent(&["check", "--format", "openmetrics", "-"], Some(b"a 1\n"));
    let with = perfagent(
        &["check", "--format", "openmetrics", "-"],
        Some(b"a 1\n# EOF\n"),
    );
    assert_eq!(code(&without), 1);
    assert_eq!(code(&with), 0, "{}", stderr(&with));
}

#[test]
fn a_usage_error_exits_2_and_help_documents_the_exit_codes() {
    let usage = perfagent(&["check", "-"], None);
    assert_eq!(code(&usage), 2);
    assert!(stderr(&usage).contains("--format"));
    let help = perfagent(&["--help"], None);
    assert_eq!(code(&help), 0);
    let text = String::from_utf8_lossy(&help.stdout);
    for line in [
        "Exit codes:",
        "3  the input file does not exist, or the API has no such instance",
        "5  the URL or the API cannot be reached",
        "8  the API refused the request",
    ] {
        assert!(text.contains(line), "{line:?} missing from --help:\n{text}");
    }
}
