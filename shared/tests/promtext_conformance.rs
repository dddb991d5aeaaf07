//! Runs the parser in strict mode over every upstream conformance case in the kit
//! (`../shared/fixtures/promtext/`) and holds it to ≥ 95% agreement, with every disagreement
//! explained in `docs/parser-conformance.md` (and nothing listed there that agrees).
//!
//! Names are validated with the legacy rule, so a case's expectation is `shouldParseLegacyNames`
//! when present, `false` when it `requiresUTF8NameValidation`, and `shouldParse` otherwise.

use perfagent::promtext::{parse, Format, Mode};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MIN_AGREEMENT: f64 = 0.95;

struct Case {
    id: String,
    set: String,
    format: Format,
    expected: bool,
    input: Vec<u8>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/promtext")
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

fn load_cases() -> Vec<Case> {
    let root = fixtures_dir();
    let mut cases = Vec::new();
    let mut sets: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("conformance cases missing at {}: {e}", root.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    sets.sort_by_key(|e| e.file_name());
    for set in sets {
        let set_name = set.file_name().to_string_lossy().into_owned();
        let mut dirs: Vec<_> = std::fs::read_dir(set.path())
            .expect("readable set directory")
            .filter_map(Result::ok)
            .collect();
        dirs.sort_by_key(|e| e.file_name());
        for dir in dirs {
            let case_name = dir.file_name().to_string_lossy().into_owned();
            let json = std::fs::read_to_string(dir.path().join("test.json")).expect("test.json");
            let meta: serde_json::Value = serde_json::from_str(&json).expect("valid test.json");
            let format = match meta["type"].as_str() {
                Some("text" | "openmetrics-text-1.0.0") => Format::OpenMetrics,
                Some("prometheus-text-0.0.4") => Format::Prometheus,
                other => panic!("{set_name}/{case_name}: unknown type {other:?}"),
            };
            let should_parse = meta["shouldParse"].as_bool().expect("shouldParse");
            let expected = match meta.get("shouldParseLegacyNames").and_then(|v| v.as_bool()) {
                Some(legacy) => legacy,
                None if meta["requiresUTF8NameValidation"].as_bool() == Some(true) => false,
                None => should_parse,
            };
            let input = std::fs::read(dir.path().join("metrics")).expect("metrics file");
            cases.push(Case {
                id: format!("{set_name}/{case_name}"),
                set: set_name.clone(),
                format,
                expected,
                input,
            });
        }
    }
    cases
}

/// The cases listed in the conformance document: the first cell of each table row that names
/// a `set/case` in backticks.
fn documented_disagreements() -> BTreeSet<String> {
    let path = repo_file("docs/parser-conformance.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} is missing: {e}", path.display()));
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(id, _)| id))
        .filter(|id| {
            id.split_once('/')
                .is_some_and(|(set, case)| !case.is_empty() && fixtures_dir().join(set).is_dir())
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn strict_mode_agrees_with_upstream_on_at_least_95_percent_and_every_difference_is_documented() {
    let cases = load_cases();
    assert!(
        cases.len() >= 400,
        "expected the 415 cases, found {}",
        cases.len()
    );

    let mut disagreements = BTreeSet::new();
    let mut per_set: Vec<(String, usize, usize)> = Vec::new();
    for case in &cases {
        let result = parse(&case.input, Mode::Strict(case.format));
        let agrees = result.is_ok() == case.expected;
        if !agrees {
            let outcome = match &result {
                Ok(_) => "accepted".to_owned(),
                Err(e) => format!("rejected ({e})"),
            };
            println!(
                "DISAGREE {}: expected {}, {}",
                case.id,
                if case.expected { "accept" } else { "reject" },
                outcome
            );
            disagreements.insert(case.id.clone());
        }
        match per_set.last_mut() {
            Some((set, total, agreed)) if *set == case.set => {
                *total += 1;
                *agreed += usize::from(agrees);
            }
            _ => per_set.push((case.set.clone(), 1, usize::from(agrees))),
        }
    }
    for (set, total, agreed) in &per_set {
        println!(
            "{set}: {agreed}/{total} agree ({:.1}%)",
            100.0 * *agreed as f64 / *total as f64
        );
    }
    let agreed = cases.len() - disagreements.len();
    let ratio = agreed as f64 / cases.len() as f64;
    println!(
        "overall: {agreed}/{} agree ({:.1}%)",
        cases.len(),
        100.0 * ratio
    );

    let documented = documented_disagreements();
    let undocumented: Vec<_> = disagreements.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&disagreements).collect();
    assert!(
        ratio >= MIN_AGREEMENT,
        "agreement {:.1}% is below {:.0}%",
        100.0 * ratio,
        100.0 * MIN_AGREEMENT
    );
    assert!(
        undocumented.is_empty(),
        "disagreements not explained in docs/parser-conformance.md: {undocumented:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/parser-conformance.md lists cases that now agree: {stale:?}"
    );
}
