//! Indented JSON for people: like `serde_json`'s pretty printer, except that an array inside an
//! array (a histogram's `[bound, count]` pair) stays on one line, so a snapshot reads one bucket
//! per line instead of five lines per bucket.

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};
use std::io::{self, Write};

/// Writes `value` indented, inner arrays on one line, and a final newline.
pub fn write_pretty<T: Serialize>(value: &T, out: &mut dyn Write) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, PairsInline::default());
    value.serialize(&mut ser).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
    /// An array inside an array: written on one line.
    InlineArray,
}

#[derive(Default)]
struct PairsInline {
    pretty: PrettyFormatter<'static>,
    open: Vec<Container>,
}

impl PairsInline {
    fn inline(&self) -> bool {
        self.open.last() == Some(&Container::InlineArray)
    }
}

impl Formatter for PairsInline {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if matches!(
            self.open.last(),
            Some(Container::Array | Container::InlineArray)
        ) {
            self.open.push(Container::InlineArray);
            w.write_all(b"[")
        } else {
            self.open.push(Container::Array);
            self.pretty.begin_array(w)
        }
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        match self.open.pop() {
            Some(Container::InlineArray) => w.write_all(b"]"),
            _ => self.pretty.end_array(w),
        }
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if self.inline() {
            if first {
                Ok(())
            } else {
                w.write_all(b", ")
            }
        } else {
            self.pretty.begin_array_value(w, first)
        }
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.inline() {
            Ok(())
        } else {
            self.pretty.end_array_value(w)
        }
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open.push(Container::Object);
        self.pretty.begin_object(w)
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open.pop();
        self.pretty.end_object(w)
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_object_key(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_inside_a_list_stay_on_one_line_and_the_json_is_unchanged() {
        let value = serde_json::json!({"a": [[0.5, 1.0], [2.0, 3.0]], "b": {"c": []}});
        let mut out = Vec::new();
        write_pretty(&value, &mut out).expect("writes");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            "{\n  \"a\": [\n    [0.5, 1.0],\n    [2.0, 3.0]\n  ],\n  \"b\": {\n    \"c\": []\n  }\n}\n"
        );
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, value);
    }
}
