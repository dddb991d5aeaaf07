//! Inputs the fuzz targets (`fuzz/`, `make fuzz`) found failing, kept as tests once fixed. Each
//! input is the one libFuzzer wrote (minimized by `-minimize_crash` where it says so).

use perfagent::collect::normalize_body;
use perfagent::engine::normalize;
use perfagent::promtext::{parse, write_sample, Format, Mode};
use perfagent::snapshot::{Engine, Snapshot};

fn labels_of(input: &[u8], mode: Mode) -> Vec<Vec<(String, String)>> {
    let exp = parse(input, mode).unwrap_or_else(|e| panic!("{mode:?} rejects {input:?}: {e}"));
    exp.samples()
        .map(|s| {
            s.labels
                .iter()
                .map(|(n, v)| (n.to_owned(), v.into_owned()))
                .collect()
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|&(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// parse_lenient, minimized. Lenient mode takes `\r` for a blank between tokens, but reading the
/// labels back skipped only spaces and tabs, so the second label was named `"\r,f"` (and printed
/// back as text no mode accepts).
#[test]
fn a_carriage_return_between_labels_is_a_blank_in_lenient_mode() {
    let input = b"f{a=\"\"\r,f=\"\"}0";
    assert_eq!(
        labels_of(input, Mode::Lenient),
        vec![pairs(&[("a", ""), ("f", "")])]
    );

    // The fuzzer's original input: CRs inside a value (kept) and before a comma (a blank).
    let original = b"#'TYPE a info\n# o\n# HEL' a help\na_info{a=\"1etric{\r\r\r\r\r\r\r\r\r\r\r\",foo=\"bar\"} 1 1\naInf_info{a=\"2\",foo=\"bar\"} 1 0\n# EOFHEL' a help\na_info{a=\"1etric{\r\r\r\r\r\r\"\r\r\r\r\r,foo=\"bar\"} 1 1\naInf_info{a=\"2\",foo=\"bar\"} 1 0\n# EOF\n";
    let cr_value = "1etric{\r\r\r\r\r\r\r\r\r\r\r";
    let short_value = "1etric{\r\r\r\r\r\r";
    assert_eq!(
        labels_of(original, Mode::Lenient),
        vec![
            pairs(&[("a", cr_value), ("foo", "bar")]),
            pairs(&[("a", short_value), ("foo", "bar")]),
            pairs(&[("a", "2"), ("foo", "bar")]),
            pairs(&[("a", "2"), ("foo", "bar")]),
        ]
    );

    // And what is printed back parses to the same labels.
    let exp = parse(original, Mode::Lenient).unwrap_or_default();
    let mut printed = String::new();
    for s in exp.samples() {
        write_sample(&mut printed, s);
    }
    assert_eq!(
        labels_of(printed.as_bytes(), Mode::Lenient),
        labels_of(original, Mode::Lenient)
    );
}

/// parse_strict, as found. Prometheus text has no `# UNIT`: strict Prometheus mode reads this
/// line as a comment, where any bytes are allowed, while lenient mode rejected the whole body for
/// the unit's invalid UTF-8. A unit that is not text is now a comment in lenient mode too.
#[test]
fn a_unit_that_is_not_utf8_is_a_comment_in_lenient_mode() {
    let input = b"# UNIT metric s\xacuffix\n#EOF\n";
    assert!(parse(input, Mode::Strict(Format::Prometheus)).is_ok());
    let exp = parse(input, Mode::Lenient).unwrap_or_else(|e| panic!("lenient rejects: {e}"));
    assert!(exp.families.iter().all(|f| f.unit.is_none()));
    assert_eq!(exp.sample_count(), 0);

    // A unit that is text is still read.
    let exp = parse(b"# UNIT metric seconds\nmetric 1\n", Mode::Lenient).unwrap_or_default();
    assert_eq!(exp.family("metric").and_then(|f| f.unit), Some("seconds"));
}

/// parse_strict, as found (two inputs, the second after the first was fixed). Lenient mode takes
/// `\r` for a blank, so it read `TYPE` as a keyword and rejected what followed; strict Prometheus,
/// where `\r` is no blank, reads the keyword `TYPE\r` (`\r\r\rTYPE`) and the line as a comment. A
/// metadata keyword is now set off by spaces or tabs only.
#[test]
fn a_carriage_return_around_a_metadata_keyword_makes_a_comment_in_lenient_mode() {
    let after = b"#\tTYPE\r c count)r\n".as_slice();
    let before = b"#\r\r\rTYPE \r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\x0f\r\r\r\r\r EOF\n".as_slice();
    for input in [after, before] {
        for mode in [Mode::Strict(Format::Prometheus), Mode::Lenient] {
            let exp = parse(input, mode).unwrap_or_else(|e| panic!("{mode:?} rejects: {e}"));
            assert!(exp.families.is_empty(), "{mode:?}: {:?}", exp.families);
        }
    }
    // A keyword before a space or tab is still metadata, and `\r\n` line ends still work.
    let exp = parse(b"# TYPE c counter\r\nc_total 1\r\n", Mode::Lenient).unwrap_or_default();
    assert_eq!(
        exp.family("c").map(|f| (f.kind, f.samples.len())),
        Some((perfagent::promtext::MetricType::Counter, 1))
    );
}

fn assert_same_through_json(snapshot: &Snapshot) {
    let json = serde_json::to_string(snapshot).unwrap_or_default();
    let back: Option<Snapshot> = serde_json::from_str(&json).ok();
    assert_eq!(back.as_ref(), Some(snapshot), "{json}");
}

/// engine_normalize, minimized. serde_json's default float reader can be one unit in the last
/// place off: `3e66` came back as another number. The API serves snapshots as JSON and its
/// client reads them back, so the exact reader (`float_roundtrip`) is enabled.
#[test]
fn a_snapshot_number_reads_back_from_json_exactly() {
    let input = b"sglang:e2e_request_latency_seconds_sum{}3e66";
    let exp = parse(input, Mode::Lenient).unwrap_or_default();
    let snapshot = normalize(&exp, None).unwrap_or_else(|e| panic!("{e}"));
    let sum = snapshot
        .models
        .first()
        .and_then(|m| m.histogram(perfagent::snapshot::Canonical::E2eLatencySeconds))
        .map(|h| h.sum);
    assert_eq!(sum, Some(3e66));
    assert_same_through_json(&snapshot);
}

/// collect_normalize_body, minimized: the same inexact read, on a bucket count.
#[test]
fn a_snapshot_bucket_count_reads_back_from_json_exactly() {
    let input = b"sglang:time_to_first_token_seconds_bucket{le=\"2\"}7507552643049313";
    let (snapshot, partial) =
        normalize_body(input, Engine::Sglang).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(partial, None);
    assert_same_through_json(&snapshot);
}

/// The two tests above pass in any test build: the dev-dependency `jsonschema` turns
/// `float_roundtrip` on too. The binaries (and the fuzz targets, which found it) have no
/// dev-dependencies: only the workspace's own `serde_json` line gives it to them.
#[test]
fn the_exact_float_reader_is_enabled_for_builds_without_dev_dependencies() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml"))
        .unwrap_or_default();
    let line = manifest
        .lines()
        .find(|l| l.starts_with("serde_json ="))
        .unwrap_or_default();
    assert!(line.contains("\"float_roundtrip\""), "{line:?}");
}
