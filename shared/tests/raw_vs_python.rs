//! `perfagent parse --raw` against Python's `prometheus_client` (the parser vLLM and SGLang export
//! with) on every real capture in `../shared/fixtures/metrics/`: both must see exactly the same
//! multiset of samples — name, labels, value (NaN equal to NaN) and timestamp.
//!
//! No normalization is needed for these captures: `prometheus_client` drops `_total` from a
//! counter's *family* name but reports each *sample* under the name written in the text, and it
//! keeps `_created` samples as written too. Labels are compared as sets (their order is the
//! text's in both), values as `f64` (`"NaN"`, `"+Inf"`, `"-Inf"` spelled as strings by both).
//!
//! Needs the project's pinned Python venv: `bash local/venv.sh` creates `.venv`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One sample, comparable and sortable: the value as bits with every NaN made one NaN and -0 made 0.
type Key = (String, Vec<(String, String)>, u64, Option<i64>);

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash local/venv.sh` (from the repository root) to create the \
         project's pinned Python venv with prometheus-client",
        python.display()
    );
    python
}

fn captures() -> Vec<PathBuf> {
    let dir = repo_root().join("../shared/fixtures/metrics");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "prom"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .prom capture in {}", dir.display());
    files
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "+Inf" => f64::INFINITY,
        Value::String(s) if s == "-Inf" => f64::NEG_INFINITY,
        other => panic!("not a sample value: {other}"),
    }
}

fn key(line: &str) -> Key {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let name = v["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no name: {line}"));
    let mut labels: Vec<(String, String)> = v["labels"]
        .as_object()
        .unwrap_or_else(|| panic!("no labels: {line}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    labels.sort();
    let value = number(&v["value"]);
    let bits = if value.is_nan() {
        f64::NAN.to_bits()
    } else if value == 0.0 {
        0f64.to_bits()
    } else {
        value.to_bits()
    };
    (name.to_string(), labels, bits, v["timestamp_ms"].as_i64())
}

fn samples(mut cmd: Command, what: &str, capture: &Path) -> Vec<Key> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed on {}: {}",
        capture.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut keys: Vec<Key> = text.lines().map(key).collect();
    keys.sort();
    keys
}

#[test]
fn raw_samples_match_python_prometheus_client_on_every_capture() {
    let python = python();
    let script = repo_root().join("local/bench/prom_client_raw.py");
    for capture in captures() {
        let mut ours = Command::new(env!("CARGO_BIN_EXE_perfagent"));
        ours.args(["parse", "--raw"]).arg(&capture);
        let mut theirs = Command::new(&python);
        theirs.arg(&script).arg(&capture);

        let ours = samples(ours, "perfagent parse --raw", &capture);
        let theirs = samples(theirs, "prom_client_raw.py", &capture);
        assert!(!ours.is_empty(), "{}: no samples", capture.display());
        let only_ours: Vec<&Key> = ours.iter().filter(|k| !theirs.contains(k)).collect();
        let only_theirs: Vec<&Key> = theirs.iter().filter(|k| !ours.contains(k)).collect();
        assert!(
            ours == theirs,
            "{}: {} samples here, {} in Python; only here: {:?}; only in Python: {:?}",
            capture.display(),
            ours.len(),
            theirs.len(),
            only_ours.iter().take(5).collect::<Vec<_>>(),
            only_theirs.iter().take(5).collect::<Vec<_>>()
        );
    }
}
