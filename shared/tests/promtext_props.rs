//! Properties of the parser: random samples survive text → parse → `write_sample` → parse
//! unchanged, no input of any kind makes it panic, and lenient mode accepts whatever strict mode
//! accepts.

use perfagent::promtext::{parse, write_sample, Format, Mode};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Model {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn metric_name() -> impl Strategy<Value = String> {
    // Colons included: every `vllm:`/`sglang:` name has one.
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,24}"
}

fn label_value() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just('\\'),
        Just('"'),
        Just('\n'),
        Just('#'),
        Just('}'),
        Just(','),
        Just('='),
        Just(' '),
    ];
    prop::collection::vec(prop_oneof![any::<char>(), special], 0..16)
        .prop_map(|chars| chars.into_iter().collect())
}

fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,12}", label_value(), 0..6).prop_map(
        |map| {
            map.into_iter()
                .filter(|(name, _)| name != "__name__")
                .collect()
        },
    )
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        (0u32..1_000_000).prop_map(f64::from),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    (metric_name(), labels(), value(), any::<Option<i64>>()).prop_map(
        |(name, labels, value, timestamp_ms)| Model {
            name,
            labels,
            value,
            timestamp_ms,
        },
    )
}

/// The model as a text line, written independently of `write_sample`.
fn to_text(m: &Model) -> String {
    let mut out = m.name.clone();
    if !m.labels.is_empty() {
        let pairs: Vec<String> = m
            .labels
            .iter()
            .map(|(n, v)| {
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{n}=\"{escaped}\"")
            })
            .collect();
        out.push('{');
        out.push_str(&pairs.join(","));
        out.push('}');
    }
    let value = if m.value.is_nan() {
        "NaN".to_owned()
    } else if m.value.is_infinite() {
        if m.value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{:e}", m.value)
    };
    out.push(' ');
    out.push_str(&value);
    if let Some(ts) = m.timestamp_ms {
        out.push_str(&format!(" {ts}"));
    }
    out.push('\n');
    out
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fn assert_matches(text: &str, mode: Mode, m: &Model) -> Result<(), TestCaseError> {
    let e = parse(text.as_bytes(), mode)
        .map_err(|err| TestCaseError::fail(format!("{mode:?} rejected {text:?}: {err}")))?;
    let samples: Vec<_> = e.samples().collect();
    prop_assert_eq!(samples.len(), 1);
    let s = samples[0];
    prop_assert_eq!(s.name, m.name.as_str());
    let labels: Vec<(String, String)> = s
        .labels
        .iter()
        .map(|(n, v)| (n.to_owned(), v.into_owned()))
        .collect();
    prop_assert_eq!(&labels, &m.labels);
    prop_assert!(same_value(s.value, m.value), "{} != {}", s.value, m.value);
    prop_assert_eq!(s.timestamp_ms, m.timestamp_ms);
    Ok(())
}

/// Fragments that reach deep into the grammar when glued together at random.
const FRAGMENTS: &[&str] = &[
    "# HELP ",
    "# TYPE ",
    "# UNIT ",
    "# EOF",
    "#",
    "a",
    "vllm:x",
    "_bucket",
    "_sum",
    "_count",
    "_total",
    "_created",
    "_gsum",
    "_gcount",
    "_info",
    "{",
    "}",
    "=",
    "\"",
    ",",
    " ",
    "  ",
    "\t",
    "\n",
    "\r\n",
    "\\",
    "\\n",
    "\\\"",
    "le",
    "quantile",
    "=\"+Inf\"",
    "=\"0.5\"",
    "1",
    "-1",
    "0.5",
    "1e+010",
    "NaN",
    "+Inf",
    "-Inf",
    "counter",
    "gauge",
    "histogram",
    "summary",
    "gaugehistogram",
    "stateset",
    "info",
    "untyped",
    "unknown",
    " # {",
    "} ",
    "\0",
    "\u{e9}",
    "\u{fffd}",
];

fn fragment_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(FRAGMENTS).prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 1..4),
        ],
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

/// One sample line of a run that repeats label sets: a base set (names and values drawn from a
/// small pool, so lines share long stretches) written with lenient-mode blanks and commas, then
/// maybe broken by one byte.
fn repeating_line() -> impl Strategy<Value = String> {
    let pair = (
        prop::sample::select(&["le", "engine", "model_name", "a", "quantile"][..]),
        prop::sample::select(&["0", "0.5", "+Inf", "Qwen/Qwen3-4B", "x\\\"y", "", "}"][..]),
        prop::sample::select(&["=", " = ", "=\t"][..]),
        prop::sample::select(&[",", ", ", " ,", ",\t"][..]),
    );
    (
        prop::collection::vec(pair, 0..10),
        any::<bool>(),
        prop::option::weighted(0.15, (any::<prop::sample::Index>(), any::<u8>())),
    )
        .prop_map(|(pairs, trailing_comma, damage)| {
            let mut set = String::new();
            for (i, (name, value, eq, comma)) in pairs.iter().enumerate() {
                if i > 0 {
                    set.push_str(comma);
                }
                set.push_str(&format!("{name}{eq}\"{value}\""));
            }
            if trailing_comma && !pairs.is_empty() {
                set.push(',');
            }
            let mut line = format!("m{{{set}}} 1.0\n").into_bytes();
            if let Some((at, byte)) = damage {
                let at = at.index(line.len() - 1);
                line[at] = byte;
            }
            String::from_utf8_lossy(&line).into_owned()
        })
}

const ALL_MODES: [Mode; 3] = [
    Mode::Lenient,
    Mode::Strict(Format::Prometheus),
    Mode::Strict(Format::OpenMetrics),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_printed_sample_parses_back_to_the_same_sample(m in model()) {
        let text = to_text(&m);
        assert_matches(&text, Mode::Lenient, &m)?;
        assert_matches(&text, Mode::Strict(Format::Prometheus), &m)?;

        // And `write_sample` prints what was parsed so that it parses back the same.
        let e = parse(text.as_bytes(), Mode::Lenient).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut printed = String::new();
        for s in e.samples() {
            write_sample(&mut printed, s);
        }
        assert_matches(&printed, Mode::Strict(Format::Prometheus), &m)?;
    }

    #[test]
    fn a_printed_sample_without_timestamp_is_valid_openmetrics(m in model()) {
        let m = Model { timestamp_ms: None, ..m };
        let text = format!("{}# EOF\n", to_text(&m));
        assert_matches(&text, Mode::Strict(Format::OpenMetrics), &m)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for mode in ALL_MODES {
            let _ = parse(&bytes, mode);
        }
    }

    #[test]
    fn grammar_fragments_never_panic_and_errors_point_inside_the_input(bytes in fragment_soup()) {
        let lines = bytes.split(|&b| b == b'\n').count();
        for mode in ALL_MODES {
            if let Err(e) = parse(&bytes, mode) {
                prop_assert!(e.line >= 1 && e.line <= lines + 1, "{e} for {} lines", lines);
                prop_assert!(e.column >= 1);
            }
        }
    }

    #[test]
    fn a_label_set_parses_the_same_after_any_other(lines in prop::collection::vec(repeating_line(), 1..12)) {
        // Lenient mode skips what a label set repeats of the one before; each line alone has no
        // "before", so the two must agree on every line, accepted or not.
        let text = lines.concat();
        let alone: Vec<_> = lines.iter().map(|l| parse(l.as_bytes(), Mode::Lenient)).collect();
        match parse(text.as_bytes(), Mode::Lenient) {
            Ok(whole) => {
                // Compared as sets: a name seen again joins its first family.
                let key = |s: &perfagent::promtext::Sample<'_>| {
                    (s.name.to_owned(), s.labels.as_raw().to_owned(), s.value.to_bits())
                };
                let mut expected = Vec::new();
                for (line, result) in lines.iter().zip(&alone) {
                    let one = result.as_ref().map_err(|e| {
                        TestCaseError::fail(format!("{line:?} fails alone ({e}) but not after the others"))
                    })?;
                    expected.extend(one.samples().map(key));
                }
                let mut got: Vec<_> = whole.samples().map(key).collect();
                expected.sort();
                got.sort();
                prop_assert_eq!(got, expected);
            }
            Err(e) => {
                let first_bad = alone.iter().position(Result::is_err);
                prop_assert!(first_bad.is_some(), "the lines parse alone, together: {e}");
                let bad = first_bad.unwrap_or_default();
                let alone_err = alone[bad].as_ref().err().map(|e| (e.column, e.message.clone()));
                prop_assert_eq!(Some((e.column, e.message.clone())), alone_err);
                prop_assert_eq!(e.line, bad + 1 + lines[..bad].iter().map(|l| l.matches('\n').count() - 1).sum::<usize>());
            }
        }
    }

    #[test]
    fn lenient_mode_accepts_what_strict_prometheus_accepts(bytes in fragment_soup()) {
        let has_eof = bytes.windows(3).any(|w| w == b"EOF");
        if let (Ok(strict), false) = (parse(&bytes, Mode::Strict(Format::Prometheus)), has_eof) {
            let lenient = parse(&bytes, Mode::Lenient)
                .map_err(|e| TestCaseError::fail(format!("lenient rejected {bytes:?}: {e}")))?;
            prop_assert_eq!(lenient.sample_count(), strict.sample_count());
        }
    }
}
