//! Checks shared by the fuzz targets in `fuzz_targets/`: what every parse result and every
//! snapshot must satisfy, whatever the input. A failed check panics, which libFuzzer reports as a
//! crash and saves the input under `fuzz/artifacts/<target>/`.

use perfagent::promtext::{parse, write_sample, Exposition, Mode, ParseError, Sample};
use perfagent::snapshot::{MetricValue, Snapshot};

/// An error names a line of the input (or the one just past its end) and a column inside that
/// line (or just past its end), both 1-based.
pub fn check_error_position(input: &[u8], err: &ParseError) {
    let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    assert!(
        err.line >= 1 && err.line <= lines.len() + 1,
        "error line out of range ({} lines): {err}",
        lines.len()
    );
    let line_len = lines.get(err.line - 1).map_or(0, |l| l.len());
    assert!(
        err.column >= 1 && err.column <= line_len + 1,
        "error column out of range (line of {line_len} bytes): {err}"
    );
}

/// One sample as owned values, for comparing samples of two parses.
#[derive(Debug, PartialEq)]
pub struct Plain {
    name: String,
    labels: Vec<(String, String)>,
    value: Value,
    timestamp_ms: Option<i64>,
}

/// A sample value compared bit for bit, every NaN equal to every other.
#[derive(Debug)]
struct Value(f64);

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        (self.0.is_nan() && other.0.is_nan()) || self.0.to_bits() == other.0.to_bits()
    }
}

impl Plain {
    fn of(s: &Sample<'_>) -> Self {
        Plain {
            name: s.name.to_owned(),
            labels: s
                .labels
                .iter()
                .map(|(n, v)| (n.to_owned(), v.into_owned()))
                .collect(),
            value: Value(s.value),
            timestamp_ms: s.timestamp_ms,
        }
    }
}

/// Every sample of an exposition, grouped by name (stable: input order within a name), so that two
/// expositions that group the same lines into families differently still compare equal.
pub fn samples_by_name(exp: &Exposition<'_>) -> Vec<Plain> {
    let mut all: Vec<Plain> = exp.samples().map(Plain::of).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// What lenient mode accepted prints back (`write_sample`) as text that lenient mode reads as the
/// same samples.
pub fn check_print_round_trip(exp: &Exposition<'_>) {
    let mut printed = String::new();
    for s in exp.samples() {
        write_sample(&mut printed, s);
    }
    let again = match parse(printed.as_bytes(), Mode::Lenient) {
        Ok(again) => again,
        Err(e) => panic!("printed samples do not parse: {e}\n{printed}"),
    };
    assert_eq!(
        samples_by_name(exp),
        samples_by_name(&again),
        "printed samples parse back differently:\n{printed}"
    );
}

/// What any snapshot must satisfy: models sorted by name, each once; every number finite
/// (a non-finite one would be written `null` in JSON and poison every window it joins); buckets
/// sorted by bound; and the whole snapshot reads back from its JSON unchanged.
pub fn check_snapshot(s: &Snapshot) {
    assert!(
        s.models.windows(2).all(|w| w[0].model < w[1].model),
        "models not sorted and unique: {:?}",
        s.models.iter().map(|m| &m.model).collect::<Vec<_>>()
    );
    for m in &s.models {
        for (canonical, value) in &m.metrics {
            match value {
                MetricValue::Number(x) => {
                    assert!(x.is_finite(), "{}/{canonical} = {x}", m.model)
                }
                MetricValue::Histogram(h) => {
                    assert!(
                        h.count.is_finite() && h.sum.is_finite(),
                        "{}/{canonical}: count {} sum {}",
                        m.model,
                        h.count,
                        h.sum
                    );
                    assert!(
                        h.buckets
                            .iter()
                            .all(|&(le, c)| !le.is_nan() && c.is_finite()),
                        "{}/{canonical}: buckets {:?}",
                        m.model,
                        h.buckets
                    );
                    assert!(
                        h.buckets.windows(2).all(|w| w[0].0 < w[1].0),
                        "{}/{canonical}: buckets not sorted by bound: {:?}",
                        m.model,
                        h.buckets
                    );
                }
            }
        }
    }
    let json = match serde_json::to_string(s) {
        Ok(json) => json,
        Err(e) => panic!("snapshot does not serialize: {e}"),
    };
    match serde_json::from_str::<Snapshot>(&json) {
        Ok(back) => assert_eq!(&back, s, "snapshot changes through JSON: {json}"),
        Err(e) => panic!("snapshot JSON does not read back: {e}: {json}"),
    }
}
