//! A sample's label set, kept as the raw text between the braces (validated by the parser) and
//! decoded only when asked: most consumers look at a few labels of a few samples.

use std::borrow::Cow;

/// The labels of one sample: the raw text between `{` and `}`, validated when parsed. Iterating
/// decodes the `\\`, `\"` and `\n` escapes, allocating only for a value that has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Labels<'a> {
    raw: &'a str,
}

impl<'a> Labels<'a> {
    /// Wraps label text the parser has validated (names, `=`, quoted values, commas, blanks).
    pub(crate) fn from_validated(raw: &'a str) -> Self {
        Labels { raw }
    }

    /// `(name, decoded value)` pairs in input order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + '_ {
        self.raw_pairs()
            .map(|(name, value)| (name, unescape(value)))
    }

    /// The decoded value of the first label with this name.
    pub fn get(&self, name: &str) -> Option<Cow<'a, str>> {
        self.get_raw(name).map(unescape)
    }

    /// Whether the sample has no labels.
    pub fn is_empty(&self) -> bool {
        self.raw_pairs().next().is_none()
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.raw_pairs().count()
    }

    /// The text between the braces exactly as it appeared in the input.
    pub fn as_raw(&self) -> &'a str {
        self.raw
    }

    /// The still-escaped value of the first label with this name.
    pub(crate) fn get_raw(&self, name: &str) -> Option<&'a str> {
        self.raw_pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub(crate) fn raw_pairs(&self) -> RawPairs<'a> {
        RawPairs { rest: self.raw }
    }
}

/// What the parser may have accepted as a blank between label tokens: spaces and tabs, and in
/// lenient mode `\r` (never outside a value in text the other modes accepted).
const BLANKS: [char; 3] = [' ', '\t', '\r'];

/// Walks validated label text, yielding names and still-escaped values. Defensive: malformed
/// text (impossible after validation) ends the walk instead of panicking.
pub(crate) struct RawPairs<'a> {
    rest: &'a str,
}

impl<'a> Iterator for RawPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self
            .rest
            .trim_start_matches(|c: char| c == ',' || BLANKS.contains(&c));
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let (name, after) = s.split_once('=')?;
        let name = name.trim_end_matches(BLANKS);
        let after = after.trim_start_matches(BLANKS).strip_prefix('"')?;
        let bytes = after.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'\\' => i += 2,
                b'"' => break,
                _ => i += 1,
            }
        }
        let value = after.get(..i)?;
        self.rest = after.get(i + 1..).unwrap_or("");
        Some((name, value))
    }
}

/// Decodes `\\`, `\"` and `\n`; any other backslash pair is kept as written (OpenMetrics and
/// lenient mode accept them; strict Prometheus mode rejects them before this is reached).
pub(crate) fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_without_escapes_are_borrowed_from_the_input() {
        let labels = Labels::from_validated(r#"a="x",b="y""#);
        let pairs: Vec<_> = labels.iter().collect();
        assert_eq!(pairs.len(), 2);
        assert!(matches!(pairs[0].1, Cow::Borrowed("x")));
        assert_eq!(labels.get("b").as_deref(), Some("y"));
    }

    #[test]
    fn escapes_are_decoded_and_unknown_ones_kept_literally() {
        let labels = Labels::from_validated(r#"a="q\"b\\s\nn\z""#);
        assert_eq!(labels.get("a").as_deref(), Some("q\"b\\s\nn\\z"));
    }

    #[test]
    fn blanks_and_a_trailing_comma_between_labels_are_skipped() {
        let labels = Labels::from_validated(r#" a = "1" ,	b="2" , "#);
        let pairs: Vec<_> = labels.iter().map(|(n, v)| (n, v.into_owned())).collect();
        assert_eq!(pairs, vec![("a", "1".to_owned()), ("b", "2".to_owned())]);
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn a_closing_brace_or_hash_inside_a_value_is_part_of_the_value() {
        let labels = Labels::from_validated(r#"a="} x # y",b="\"""#);
        assert_eq!(labels.get("a").as_deref(), Some("} x # y"));
        assert_eq!(labels.get("b").as_deref(), Some("\""));
    }

    #[test]
    fn empty_label_text_has_no_labels() {
        assert!(Labels::from_validated("").is_empty());
        assert!(Labels::from_validated(" ").is_empty());
        assert_eq!(Labels::default().get("a"), None);
    }
}
