//! Prints samples back as Prometheus text, for tests and tools that need a parse → print → parse
//! round trip.

use super::Sample;
use std::fmt::Write;

/// Appends one sample line (`name{labels} value [timestamp_ms]\n`) in Prometheus text 0.0.4:
/// label values escaped, `NaN`/`+Inf`/`-Inf` spelled as the format wants, other values printed
/// so that they parse back to the same `f64`.
pub fn write_sample(out: &mut String, sample: &Sample<'_>) {
    out.push_str(sample.name);
    if !sample.labels.is_empty() {
        out.push('{');
        for (i, (name, value)) in sample.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push_str("=\"");
            escape_label_value(out, &value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    write_value(out, sample.value);
    if let Some(ts) = sample.timestamp_ms {
        // Writing to a String cannot fail.
        let _ = write!(out, " {ts}");
    }
    out.push('\n');
}

fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        // `{:?}` is the shortest text that parses back to the same bits.
        let _ = write!(out, "{value:?}");
    }
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}
