//! The raw view of an exposition: every sample as one JSON object per line, `{"name", "labels",
//! "value"}` (+ `timestamp_ms`), the same shape `local/bench/prom_client_raw.py` prints from
//! Python's `prometheus_client`, so the two parsers can be compared sample for sample.

use crate::promtext::{Exposition, Labels, Sample};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::io::{self, Write};

/// Writes every sample of `exp`, in input order, one JSON object per line.
pub fn write_samples(exp: &Exposition<'_>, out: &mut dyn Write) -> io::Result<()> {
    for sample in exp.samples() {
        serde_json::to_writer(&mut *out, &RawSample(sample)).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

struct RawSample<'s, 'a>(&'s Sample<'a>);

impl Serialize for RawSample<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let sample = self.0;
        let fields = if sample.timestamp_ms.is_some() { 4 } else { 3 };
        let mut map = s.serialize_map(Some(fields))?;
        map.serialize_entry("name", sample.name)?;
        map.serialize_entry("labels", &RawLabels(&sample.labels))?;
        map.serialize_entry("value", &RawValue(sample.value))?;
        if let Some(ts) = sample.timestamp_ms {
            map.serialize_entry("timestamp_ms", &ts)?;
        }
        map.end()
    }
}

/// Labels as a JSON object in input order, values decoded.
struct RawLabels<'s, 'a>(&'s Labels<'a>);

impl Serialize for RawLabels<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (name, value) in self.0.iter() {
            map.serialize_entry(name, &*value)?;
        }
        map.end()
    }
}

/// A sample value: a JSON number, or the Prometheus spelling as a string for what JSON lacks.
struct RawValue(f64);

impl Serialize for RawValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("NaN"),
            v if v > 0.0 => s.serialize_str("+Inf"),
            _ => s.serialize_str("-Inf"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promtext::{parse, Mode};

    fn raw(text: &str) -> String {
        let exp = parse(text.as_bytes(), Mode::Lenient).expect("parses");
        let mut out = Vec::new();
        write_samples(&exp, &mut out).expect("writes");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn non_finite_values_are_spelled_as_prometheus_strings() {
        assert_eq!(
            raw("a NaN\nb +Inf\nc -Inf\nd 1.5\n"),
            "{\"name\":\"a\",\"labels\":{},\"value\":\"NaN\"}\n\
             {\"name\":\"b\",\"labels\":{},\"value\":\"+Inf\"}\n\
             {\"name\":\"c\",\"labels\":{},\"value\":\"-Inf\"}\n\
             {\"name\":\"d\",\"labels\":{},\"value\":1.5}\n"
        );
    }

    #[test]
    fn labels_are_decoded_and_a_timestamp_is_kept() {
        assert_eq!(
            raw("x{a=\"q\\\"uote\",b=\"l\\nf\"} 2 1700000000000\n"),
            "{\"name\":\"x\",\"labels\":{\"a\":\"q\\\"uote\",\"b\":\"l\\nf\"},\"value\":2.0,\
             \"timestamp_ms\":1700000000000}\n"
        );
    }
}
