//! The line-by-line scanner behind [`super::parse`]: one pass over the bytes, borrowing every
//! name and label text from the input, with the rules of the chosen mode.

use super::labels::{unescape, Labels};
use super::number::{lenient_ms, parse_f64, parse_i64, seconds_to_ms};
use super::openmetrics::{self, Checker};
use super::scan::{
    common_prefix, find3, find_class, has_class, line_end, skip_class, CR, LABEL_REST, LABEL_START,
    NAME_REST, NAME_START, NEWLINE, SPACE, TAB,
};
use super::{Exposition, Family, Format, MetricType, Mode, ParseError, Sample};
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// The grammar in force: each mode's rules, flattened.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Lenient,
    Prometheus,
    OpenMetrics,
}

/// How a line ended.
enum Line {
    /// Go on with the next line; the value is the offset of the line's end (`\n` or input end).
    Next(usize),
    /// A `# EOF` line ending at this offset.
    Eof(usize),
}

/// What a sample line's tail (after the value) held.
struct Tail {
    timestamp_ms: Option<i64>,
    has_exemplar: bool,
    end: usize,
}

impl Tail {
    /// A sample line that ends at `end`, right after its value.
    fn at(end: usize) -> Tail {
        Tail {
            timestamp_ms: None,
            has_exemplar: false,
            end,
        }
    }
}

/// Per-family bookkeeping that the public [`Family`] does not carry.
#[derive(Default, Clone, Copy)]
struct FamilyState {
    typed: bool,
    help: bool,
    unit: bool,
}

pub(crate) fn parse(input: &[u8], mode: Mode) -> Result<Exposition<'_>, ParseError> {
    let dialect = match mode {
        Mode::Lenient => Dialect::Lenient,
        Mode::Strict(Format::Prometheus) => Dialect::Prometheus,
        Mode::Strict(Format::OpenMetrics) => Dialect::OpenMetrics,
    };
    let mut parser = Parser {
        input,
        // One validation of the whole input lets every later slice become a `&str` in O(1); an
        // input with invalid UTF-8 (legal in Prometheus comments) is validated slice by slice.
        // simdutf8 validates with SIMD where the CPU has it: the standard library's validation
        // was ~4% of a vLLM scrape's parse.
        text: simdutf8::basic::from_utf8(input).ok(),
        dialect,
        blank: match dialect {
            Dialect::OpenMetrics => SPACE,
            Dialect::Prometheus => SPACE | TAB,
            Dialect::Lenient => SPACE | TAB | CR,
        },
        timestamps_in_seconds: match dialect {
            Dialect::OpenMetrics => true,
            Dialect::Prometheus => false,
            Dialect::Lenient => ends_with_eof_line(input),
        },
        // Sized from the input so that growing them never copies or rehashes on real scrapes:
        // a family takes 700-860 bytes in the vLLM and SGLang captures, so one per 512 bytes
        // over-reserves a little (pages never touched cost nothing). At one per KB the vLLM
        // benchmark payload outgrew both: the copy and the rehash took a third of the page
        // faults of parsing it (perf, `page-faults` event).
        families: Vec::with_capacity(input.len() / 512),
        states: Vec::with_capacity(input.len() / 512),
        index: HashMap::with_capacity_and_hasher(input.len() / 512, FamilyHasher::default()),
        current: None,
        line: 1,
        line_start: 0,
        checker: (dialect == Dialect::OpenMetrics).then(Checker::default),
        staged: Vec::new(),
        staged_family: usize::MAX,
        memo: LabelMemo::default(),
    };
    parser.run()?;
    parser.flush_samples();
    Ok(Exposition {
        families: parser.families,
    })
}

/// Whether the input's last line is `# EOF`, i.e. it is OpenMetrics text.
fn ends_with_eof_line(input: &[u8]) -> bool {
    let trimmed = input
        .strip_suffix(b"\n")
        .map(|s| s.strip_suffix(b"\r").unwrap_or(s))
        .unwrap_or(input);
    trimmed == b"# EOF" || trimmed.ends_with(b"\n# EOF")
}

/// The hasher of the family index: foldhash, seeded per map, several times faster than the
/// standard SipHash on metric names (SipHash was ~15% of the parse time on a vLLM scrape) and still
/// randomized, so a server cannot make its family names collide on purpose.
type FamilyHasher = foldhash::fast::RandomState;

struct Parser<'a> {
    input: &'a [u8],
    text: Option<&'a str>,
    dialect: Dialect,
    /// The byte classes that separate tokens in this dialect.
    blank: u8,
    timestamps_in_seconds: bool,
    families: Vec<Family<'a>>,
    states: Vec<FamilyState>,
    /// Family name → index, to merge split families (not used in strict OpenMetrics, where a
    /// family never reopens).
    index: HashMap<&'a str, usize, FamilyHasher>,
    current: Option<usize>,
    line: usize,
    line_start: usize,
    checker: Option<Checker<'a>>,
    /// Samples of the family being read, moved into it in one exact allocation when another
    /// family starts (growing every family's vector sample by sample cost more than parsing).
    staged: Vec<Sample<'a>>,
    staged_family: usize,
    /// The last sample's label text (lenient mode), to skip what the next one repeats.
    memo: LabelMemo<'a>,
}

/// How many label starts a [`LabelMemo`] keeps.
const MEMO_LABELS: usize = 8;

/// The last label set of a sample (lenient mode) and how far each of its labels starts from
/// its end. Consecutive samples mostly repeat their labels (a histogram's buckets differ only in
/// `le`), and the parse of the text from a label's start (after the `{` or a `,`) to the closing
/// `}` depends on nothing before it: where a set repeats the memo's from the same label on, it
/// needs no second look. Label sets were a third of the parse; see docs/performance.md.
#[derive(Default)]
struct LabelMemo<'a> {
    /// The text between the braces.
    raw: &'a [u8],
    /// For each label, the length of `raw` from its start to the end. While a set is parsed the
    /// slots of the labels passed hold their offsets in the new set instead (see
    /// [`Parser::repeat`]), turned into lengths when it ends.
    tails: [usize; MEMO_LABELS],
    /// How many of `tails` belong to `raw`.
    count: usize,
}

impl<'a> LabelMemo<'a> {
    /// Makes `raw` the memo: its first `offsets` slots hold offsets of its labels, the next
    /// ones up to `count` already their lengths to the end.
    fn remember(&mut self, raw: &'a str, offsets: usize) {
        for slot in self.tails.iter_mut().take(offsets) {
            *slot = raw.len() - *slot;
        }
        self.raw = raw.as_bytes();
    }
}

impl<'a> Parser<'a> {
    fn err(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: pos.saturating_sub(self.line_start) + 1,
            message: message.into(),
        }
    }

    fn byte(&self, pos: usize) -> Option<u8> {
        self.input.get(pos).copied()
    }

    fn bytes(&self, start: usize, end: usize) -> &'a [u8] {
        self.input.get(start..end).unwrap_or_default()
    }

    /// The input between two offsets as text, validating UTF-8 only if the whole input was not.
    #[inline(always)]
    fn str_at(&self, start: usize, end: usize) -> Result<&'a str, ParseError> {
        match self.text.and_then(|t| t.get(start..end)) {
            Some(s) => Ok(s),
            None => self.validate_str(start, end),
        }
    }

    /// [`Parser::str_at`] in an input that is not UTF-8 as a whole: out of line, as it is rare.
    #[cold]
    #[inline(never)]
    fn validate_str(&self, start: usize, end: usize) -> Result<&'a str, ParseError> {
        std::str::from_utf8(self.bytes(start, end))
            .map_err(|e| self.err(start + e.valid_up_to(), "invalid UTF-8"))
    }

    fn is_blank(&self, b: u8) -> bool {
        has_class(b, self.blank)
    }

    fn skip_blanks(&self, pos: usize) -> usize {
        // Most tokens are followed by no blank or exactly one: check a byte before scanning.
        match self.byte(pos) {
            Some(b) if self.is_blank(b) => skip_class(self.input, pos + 1, self.blank),
            _ => pos,
        }
    }

    fn at_line_end(&self, pos: usize) -> bool {
        matches!(self.byte(pos), None | Some(b'\n'))
    }

    fn line_end(&self, pos: usize) -> usize {
        line_end(self.input, pos)
    }

    /// The end of a token: the next blank or line end.
    fn token_end(&self, pos: usize) -> usize {
        find_class(self.input, pos, self.blank | NEWLINE)
    }

    fn run(&mut self) -> Result<(), ParseError> {
        let len = self.input.len();
        let mut pos = 0;
        while pos < len {
            self.line_start = pos;
            let (end, eof) = match self.line(pos)? {
                Line::Next(end) => (end, false),
                Line::Eof(end) => (end, true),
            };
            if eof {
                return self.after_eof(end);
            }
            if end >= len {
                if self.dialect == Dialect::Prometheus
                    && self
                        .bytes(pos, end)
                        .iter()
                        .any(|&b| b != b' ' && b != b'\t')
                {
                    return Err(self.err(end, "the last line does not end with a newline"));
                }
                break;
            }
            pos = end + 1;
            self.line += 1;
        }
        if self.dialect == Dialect::OpenMetrics {
            self.line_start = pos;
            return Err(self.err(pos, "missing `# EOF` at the end"));
        }
        Ok(())
    }

    /// After `# EOF`: OpenMetrics allows one final newline and nothing else; lenient mode
    /// ignores the rest.
    fn after_eof(&mut self, end: usize) -> Result<(), ParseError> {
        if self.dialect == Dialect::OpenMetrics {
            self.close_family()?;
            if end + 1 < self.input.len() {
                self.line += 1;
                self.line_start = end + 1;
                return Err(self.err(end + 1, "text after `# EOF`"));
            }
        }
        Ok(())
    }

    fn line(&mut self, pos: usize) -> Result<Line, ParseError> {
        if self.dialect == Dialect::OpenMetrics {
            return match self.byte(pos) {
                None | Some(b'\n') => Err(self.err(pos, "blank lines are not allowed")),
                Some(b'#') => self.om_comment(pos),
                Some(_) => self.sample(pos).map(Line::Next),
            };
        }
        let pos = self.skip_blanks(pos);
        match self.byte(pos) {
            None | Some(b'\n') => Ok(Line::Next(pos)),
            Some(b'#') => self.prom_comment(pos),
            Some(_) => self.sample(pos).map(Line::Next),
        }
    }

    // ---------------------------------------------------------------- samples

    fn sample(&mut self, start: usize) -> Result<usize, ParseError> {
        match self.byte(start) {
            Some(b) if has_class(b, NAME_START) => {}
            Some(b'{') => {
                return Err(self.err(
                    start,
                    "metric name missing (quoted names are not supported)",
                ))
            }
            _ => return Err(self.err(start, "expected a metric name")),
        }
        let (mut pos, known) = self.name_end(start);
        let name = self.str_at(start, pos)?;

        let mut labels = Labels::default();
        let mut after_brace = false;
        if self.byte(pos) == Some(b'{') {
            (labels, pos) = self.labels(pos, true)?;
            after_brace = true;
        } else if self.dialect != Dialect::OpenMetrics {
            let next = self.skip_blanks(pos);
            if self.byte(next) == Some(b'{') {
                (labels, pos) = self.labels(next, true)?;
                after_brace = true;
            }
        }

        // The separator before the value: exactly one space in OpenMetrics; blanks otherwise,
        // none needed after a closing brace (`name{a="b"}-Inf` is valid Prometheus text).
        if self.dialect == Dialect::OpenMetrics {
            if self.byte(pos) != Some(b' ') {
                let message = if self.at_line_end(pos) {
                    "expected a value after the metric name"
                } else if after_brace {
                    "expected one space before the value"
                } else {
                    "invalid character in metric name"
                };
                return Err(self.err(pos, message));
            }
            pos += 1;
        } else {
            let next = self.skip_blanks(pos);
            if next == pos && !after_brace {
                let message = if self.at_line_end(pos) {
                    "expected a value after the metric name"
                } else {
                    "invalid character in metric name"
                };
                return Err(self.err(pos, message));
            }
            pos = next;
        }

        let value_end = self.token_end(pos);
        if value_end == pos {
            return Err(self.err(pos, "expected a value"));
        }
        let value = parse_f64(self.bytes(pos, value_end))
            .ok_or_else(|| self.err(pos, "the value is not a number"))?;

        let tail = if self.dialect == Dialect::OpenMetrics {
            self.om_tail(value_end)?
        } else if self.at_line_end(value_end) {
            // Most samples end right after the value.
            Tail::at(value_end)
        } else {
            self.prom_tail(value_end)?
        };

        let sample = Sample {
            name,
            labels,
            value,
            timestamp_ms: tail.timestamp_ms,
        };
        // The current family when the name is its name plus a suffix its type allows.
        let continues = match (self.current, name.get(known..)) {
            (Some(cur), Some(suffix)) if known > 0 => self
                .families
                .get(cur)
                .filter(|f| lenient_suffix_allowed(f.kind, suffix))
                .map(|_| cur),
            _ => None,
        };
        match self.dialect {
            Dialect::Lenient => {
                let family = continues.unwrap_or_else(|| self.family_for_sample(name));
                self.push_sample(family, sample);
            }
            Dialect::Prometheus => {
                let family = continues.unwrap_or_else(|| self.family_for_sample(name));
                self.check_prometheus_sample(family, &sample, start)?;
                self.push_sample(family, sample);
            }
            Dialect::OpenMetrics => {
                let family = self.om_family_for_sample(name)?;
                let result = match (self.checker.as_mut(), self.families.get(family)) {
                    (Some(checker), Some(fam)) => {
                        checker.check_sample(fam, &sample, tail.has_exemplar)
                    }
                    _ => Ok(()),
                };
                result.map_err(|message| self.err(start, message))?;
                self.push_sample(family, sample);
            }
        }
        Ok(tail.end)
    }

    /// The end of the metric name that starts at `start` (whose first byte the caller checked),
    /// and how many of its bytes are the current family's name. A sample usually continues the
    /// current family, and a TYPE line names the family its HELP line opened: compare that
    /// validated name at once and scan only the rest.
    fn name_end(&self, start: usize) -> (usize, usize) {
        let known = self
            .current
            .and_then(|c| self.families.get(c))
            .map(|f| f.name.as_bytes())
            .filter(|known| {
                self.input
                    .get(start..)
                    .is_some_and(|rest| rest.starts_with(known))
            })
            .map_or(0, <[u8]>::len);
        (
            skip_class(self.input, start + known.max(1), NAME_REST),
            known,
        )
    }

    fn push_sample(&mut self, family: usize, sample: Sample<'a>) {
        if family != self.staged_family {
            self.flush_samples();
            self.staged_family = family;
        }
        self.staged.push(sample);
    }

    /// Moves the staged samples into their family: one exact allocation for a family's first
    /// run of samples, amortized growth when a split family gets more.
    fn flush_samples(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        match self.families.get_mut(self.staged_family) {
            Some(f) => {
                if f.samples.is_empty() {
                    f.samples = Vec::with_capacity(self.staged.len());
                }
                f.samples.append(&mut self.staged);
            }
            None => self.staged.clear(),
        }
    }

    /// What follows a value in Prometheus text (and lenient mode): an optional integer
    /// timestamp, and in lenient mode an optional exemplar.
    fn prom_tail(&mut self, pos: usize) -> Result<Tail, ParseError> {
        let lenient = self.dialect == Dialect::Lenient;
        let mut pos = self.skip_blanks(pos);
        let mut tail = Tail::at(pos);
        let exemplar_next = lenient && self.byte(pos) == Some(b'#');
        if !self.at_line_end(pos) && !exemplar_next {
            let end = self.token_end(pos);
            let tok = self.bytes(pos, end);
            let ms = if !lenient {
                parse_i64(tok)
            } else if self.timestamps_in_seconds {
                seconds_to_ms(tok)
            } else {
                lenient_ms(tok)
            };
            tail.timestamp_ms = Some(ms.ok_or_else(|| self.err(pos, "invalid timestamp"))?);
            pos = self.skip_blanks(end);
        }
        if lenient && self.byte(pos) == Some(b'#') {
            pos = self.lenient_exemplar(pos)?;
            tail.has_exemplar = true;
        }
        if !self.at_line_end(pos) {
            return Err(self.err(pos, "unexpected text after the sample"));
        }
        tail.end = pos;
        Ok(tail)
    }

    /// A lenient exemplar: `# {labels} value [timestamp]`, blanks flexible.
    fn lenient_exemplar(&mut self, pos: usize) -> Result<usize, ParseError> {
        let pos = self.skip_blanks(pos + 1);
        if self.byte(pos) != Some(b'{') {
            return Err(self.err(pos, "expected `{` to open the exemplar's labels"));
        }
        let (_, pos) = self.labels(pos, false)?;
        let pos = self.skip_blanks(pos);
        let end = self.token_end(pos);
        parse_f64(self.bytes(pos, end))
            .ok_or_else(|| self.err(pos, "the exemplar value is not a number"))?;
        let mut pos = self.skip_blanks(end);
        if !self.at_line_end(pos) {
            let end = self.token_end(pos);
            let tok = self.bytes(pos, end);
            let ok = if self.timestamps_in_seconds {
                seconds_to_ms(tok).is_some()
            } else {
                lenient_ms(tok).is_some()
            };
            if !ok {
                return Err(self.err(pos, "invalid exemplar timestamp"));
            }
            pos = self.skip_blanks(end);
        }
        Ok(pos)
    }

    /// What follows a value in OpenMetrics: ` timestamp`, ` # {labels} value [timestamp]`, or
    /// both, separated by single spaces.
    fn om_tail(&mut self, pos: usize) -> Result<Tail, ParseError> {
        let mut tail = Tail::at(pos);
        if self.at_line_end(pos) {
            return Ok(tail);
        }
        if self.byte(pos) != Some(b' ') {
            return Err(self.err(pos, "unexpected text after the value"));
        }
        let mut pos = pos + 1;
        if self.byte(pos) != Some(b'#') {
            let end = self.token_end(pos);
            if end == pos {
                return Err(self.err(pos, "expected a timestamp"));
            }
            let ms = seconds_to_ms(self.bytes(pos, end))
                .ok_or_else(|| self.err(pos, "invalid timestamp"))?;
            tail.timestamp_ms = Some(ms);
            pos = end;
            if self.at_line_end(pos) {
                tail.end = pos;
                return Ok(tail);
            }
            // token_end stops only at a space here.
            pos += 1;
            if self.byte(pos) != Some(b'#') {
                return Err(self.err(pos, "unexpected text after the timestamp"));
            }
        }
        tail.end = self.om_exemplar(pos)?;
        tail.has_exemplar = true;
        Ok(tail)
    }

    /// `# {labels} value [timestamp]` with single spaces; at most 128 characters of label names
    /// and values.
    fn om_exemplar(&mut self, pos: usize) -> Result<usize, ParseError> {
        if self.bytes(pos, pos + 3) != b"# {" {
            return Err(self.err(pos, "expected `# {` to start an exemplar"));
        }
        let (labels, mut pos) = self.labels(pos + 2, false)?;
        let length: usize = labels
            .iter()
            .map(|(n, v)| n.chars().count() + v.chars().count())
            .sum();
        if length > 128 {
            return Err(self.err(pos, "exemplar labels are longer than 128 characters"));
        }
        if self.byte(pos) != Some(b' ') {
            return Err(self.err(pos, "expected a space before the exemplar value"));
        }
        pos += 1;
        let end = self.token_end(pos);
        if end == pos || parse_f64(self.bytes(pos, end)).is_none() {
            return Err(self.err(pos, "the exemplar value is not a number"));
        }
        pos = end;
        if self.at_line_end(pos) {
            return Ok(pos);
        }
        pos += 1;
        let end = self.token_end(pos);
        if end == pos || seconds_to_ms(self.bytes(pos, end)).is_none() {
            return Err(self.err(pos, "invalid exemplar timestamp"));
        }
        if !self.at_line_end(end) {
            return Err(self.err(end, "unexpected text after the exemplar"));
        }
        Ok(end)
    }

    /// Scans `{...}` starting at the `{`; returns the validated labels and the offset after `}`.
    /// A sample's set in lenient mode (`sample`) skips what repeats the last one (see
    /// [`LabelMemo`]) and becomes the memo; strict modes check label names across the whole set.
    fn labels(&mut self, open: usize, sample: bool) -> Result<(Labels<'a>, usize), ParseError> {
        let om = self.dialect == Dialect::OpenMetrics;
        let strict_escapes = self.dialect == Dialect::Prometheus;
        let remember = sample && self.dialect == Dialect::Lenient;
        let start = open + 1;
        let mut pos = start;
        let mut after_comma = false;
        // Names for the duplicate check of strict modes; lenient mode never pushes, so never allocates.
        let mut names: Vec<&'a str> = Vec::new();
        let check_names = self.dialect != Dialect::Lenient;
        let mut index = 0;
        loop {
            if remember {
                if let Some(end) = self.repeat(start, &mut pos, &mut index) {
                    let raw = self.str_at(start, end)?;
                    self.memo.remember(raw, index);
                    return Ok((Labels::from_validated(raw), end + 1));
                }
            }
            if !om {
                pos = self.skip_blanks(pos);
            }
            match self.byte(pos) {
                Some(b'}') if om && after_comma => {
                    return Err(self.err(pos, "a comma must be followed by a label"))
                }
                Some(b'}') => break,
                Some(b) if has_class(b, LABEL_START) => {}
                Some(b'"') => return Err(self.err(pos, "quoted label names are not supported")),
                _ => return Err(self.err(pos, "expected a label name")),
            }
            let name_start = pos;
            pos = skip_class(self.input, pos + 1, LABEL_REST);
            if check_names {
                names.push(self.str_at(name_start, pos)?);
            }
            // `name="` with no blanks is the common case: one comparison instead of a blank
            // check and a byte check for each of the two separators.
            if self.bytes(pos, pos + 2) == b"=\"" {
                pos += 2;
            } else {
                if !om {
                    pos = self.skip_blanks(pos);
                }
                if self.byte(pos) != Some(b'=') {
                    return Err(self.err(pos, "expected `=` after the label name"));
                }
                pos += 1;
                if !om {
                    pos = self.skip_blanks(pos);
                }
                if self.byte(pos) != Some(b'"') {
                    return Err(self.err(pos, "expected `\"` to open the label value"));
                }
                pos += 1;
            }
            loop {
                pos = find3(self.input, pos, b'"', b'\\', b'\n');
                match self.byte(pos) {
                    None | Some(b'\n') => {
                        return Err(self.err(pos, "label value not closed before the line end"))
                    }
                    Some(b'"') => break,
                    Some(b'\\') => {
                        match self.byte(pos + 1) {
                            None | Some(b'\n') => {
                                return Err(
                                    self.err(pos, "label value not closed before the line end")
                                )
                            }
                            Some(b'\\' | b'"' | b'n') => {}
                            Some(_) if strict_escapes => {
                                return Err(self.err(pos, "invalid escape sequence"))
                            }
                            Some(_) => {}
                        }
                        pos += 2;
                    }
                    Some(_) => pos += 1,
                }
            }
            pos += 1;
            let mut next = self.byte(pos);
            // Blanks are rare here: look for them only when no `,` or `}` follows.
            if !om && !matches!(next, Some(b',' | b'}')) && next.is_some_and(|b| self.is_blank(b)) {
                pos = self.skip_blanks(pos);
                next = self.byte(pos);
            }
            match next {
                Some(b',') => {
                    pos += 1;
                    after_comma = true;
                    index += 1;
                }
                Some(b'}') => {
                    index += 1;
                    break;
                }
                _ => return Err(self.err(pos, "expected `,` or `}` after the label value")),
            }
        }
        let raw = self.str_at(start, pos)?;
        if check_names {
            self.check_label_names(&mut names, open)?;
        }
        if remember {
            self.memo.count = index.min(MEMO_LABELS);
            self.memo.remember(raw, self.memo.count);
        }
        Ok((Labels::from_validated(raw), pos + 1))
    }

    /// At the start of label `index` of a set (at `pos`), lenient mode: compares the input with
    /// the memo's set from its label `index` on. When the rest of the set is the same, returns
    /// the offset of this set's `}`; otherwise moves `pos` and `index` over the whole labels that
    /// are the same. Records in the memo's slots the offsets of this set's labels up to `index`.
    fn repeat(&mut self, start: usize, pos: &mut usize, index: &mut usize) -> Option<usize> {
        let memo = &mut self.memo;
        let offset = *pos - start;
        let known = *index < memo.count;
        let slot = memo.tails.get_mut(*index)?;
        if !known {
            *slot = offset;
            return None;
        }
        let tail = *slot;
        let rest = memo.raw.get(memo.raw.len() - tail..).unwrap_or_default();
        let input = self.input.get(*pos..).unwrap_or_default();
        // Most often the whole rest repeats: one `memcmp` says so faster than a search for
        // where it differs.
        if input.get(..tail) == Some(rest) && input.get(tail) == Some(&b'}') {
            // The labels from here on end as far from the `}` as the memo's: their slots stay.
            return Some(*pos + tail);
        }
        let same = common_prefix(rest, input);
        *slot = offset;
        // Skip the labels the input repeats whole, recording where they start.
        while let Some(&next) = memo.tails.get(*index + 1) {
            if *index + 1 >= memo.count || tail - next > same {
                break;
            }
            *index += 1;
            *pos = start + offset + (tail - next);
            if let Some(slot) = memo.tails.get_mut(*index) {
                *slot = *pos - start;
            }
        }
        None
    }

    fn check_label_names(&self, names: &mut [&'a str], open: usize) -> Result<(), ParseError> {
        if names.contains(&"__name__") {
            return Err(self.err(open, "the label name `__name__` is reserved"));
        }
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w.first() == w.get(1)) {
            let dup = w.first().copied().unwrap_or_default();
            return Err(self.err(open, format!("duplicate label name `{dup}`")));
        }
        Ok(())
    }

    // ---------------------------------------------------------------- families

    /// The family a sample joins (lenient and Prometheus): the current one when the name fits,
    /// else an earlier one (merging a split family), else a new untyped family.
    fn family_for_sample(&mut self, name: &'a str) -> usize {
        if let Some(cur) = self.current {
            if let Some(f) = self.families.get(cur) {
                if name == f.name
                    || name
                        .strip_prefix(f.name)
                        .is_some_and(|suffix| lenient_suffix_allowed(f.kind, suffix))
                {
                    return cur;
                }
            }
        }
        let index = self
            .lookup_family(name)
            .unwrap_or_else(|| self.new_family(name));
        self.current = Some(index);
        index
    }

    fn lookup_family(&self, name: &str) -> Option<usize> {
        if let Some(&i) = self.index.get(name) {
            return Some(i);
        }
        const SUFFIXES: [&str; 8] = [
            "_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info",
        ];
        SUFFIXES.iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            let &i = self.index.get(base)?;
            let kind = self.families.get(i)?.kind;
            lenient_suffix_allowed(kind, suffix).then_some(i)
        })
    }

    fn new_family(&mut self, name: &'a str) -> usize {
        let index = self.push_family(name);
        if self.dialect != Dialect::OpenMetrics {
            self.index.insert(name, index);
        }
        index
    }

    fn push_family(&mut self, name: &'a str) -> usize {
        let index = self.families.len();
        self.families.push(Family {
            name,
            kind: MetricType::Unknown,
            help: None,
            unit: None,
            samples: Vec::new(),
        });
        self.states.push(FamilyState::default());
        index
    }

    /// The family for a HELP/TYPE/UNIT line (lenient and Prometheus).
    fn family_for_metadata(&mut self, name: &'a str) -> usize {
        if let Some(cur) = self.current {
            if self.families.get(cur).is_some_and(|f| f.name == name) {
                return cur;
            }
        }
        let index = match self.index.entry(name) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let index = self.families.len();
                e.insert(index);
                self.push_family(name);
                index
            }
        };
        self.current = Some(index);
        index
    }

    /// Strict OpenMetrics: a sample continues the current family only if its name is one the
    /// family's type allows; otherwise it starts a new untyped family (and a repeated name
    /// is caught as a clash when that family closes).
    fn om_family_for_sample(&mut self, name: &'a str) -> Result<usize, ParseError> {
        if let Some(cur) = self.current {
            if let Some(f) = self.families.get(cur) {
                let fits = name
                    .strip_prefix(f.name)
                    .is_some_and(|suffix| openmetrics::suffixes(f.kind).contains(&suffix));
                if fits {
                    return Ok(cur);
                }
            }
        }
        self.close_family()?;
        let index = self.new_family(name);
        self.current = Some(index);
        Ok(index)
    }

    /// Strict OpenMetrics: runs the whole-family checks on the current family.
    fn close_family(&mut self) -> Result<(), ParseError> {
        self.flush_samples();
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let result = match (self.checker.as_mut(), self.families.get(cur)) {
            (Some(checker), Some(family)) => checker.close_family(family),
            _ => Ok(()),
        };
        // Reported on the line that ended the family (the next family's first line or `# EOF`).
        result.map_err(|message| ParseError {
            line: self.line,
            column: 1,
            message,
        })
    }

    fn check_prometheus_sample(
        &self,
        family: usize,
        sample: &Sample<'a>,
        start: usize,
    ) -> Result<(), ParseError> {
        let Some(f) = self.families.get(family) else {
            return Ok(());
        };
        let suffix = sample.name.get(f.name.len()..).unwrap_or("");
        match f.kind {
            MetricType::Histogram | MetricType::GaugeHistogram => {
                if suffix == "_bucket" {
                    let le = sample
                        .labels
                        .get_raw("le")
                        .ok_or_else(|| self.err(start, "histogram bucket without an `le` label"))?;
                    if parse_f64(le.as_bytes()).is_none() {
                        return Err(self.err(start, "expected a number as the `le` label"));
                    }
                    if sample.value < 0.0 {
                        return Err(self.err(start, "negative bucket count"));
                    }
                }
                if suffix == "_count" && sample.value < 0.0 {
                    return Err(self.err(start, "negative histogram count"));
                }
            }
            MetricType::Summary if suffix.is_empty() => {
                if let Some(q) = sample.labels.get_raw("quantile") {
                    if parse_f64(q.as_bytes()).is_none() {
                        return Err(self.err(start, "expected a number as the `quantile` label"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    // ---------------------------------------------------------------- comments

    /// A `#` line in Prometheus text or lenient mode: HELP, TYPE (and in lenient mode UNIT and
    /// EOF) are metadata, anything else is a comment.
    fn prom_comment(&mut self, hash: usize) -> Result<Line, ParseError> {
        let lenient = self.dialect == Dialect::Lenient;
        let mut pos = self.skip_blanks(hash + 1);
        let keyword_start = pos;
        pos = self.token_end(pos);
        let keyword = self.bytes(keyword_start, pos);
        if lenient && keyword == b"EOF" && self.at_line_end(self.skip_blanks(pos)) {
            return Ok(Line::Eof(self.line_end(pos)));
        }
        // A keyword is set off by spaces or tabs, as in both formats: to the reference parser,
        // where `\r` is no blank, `#\rTYPE ...` and `# TYPE\r...` are comments, so they are
        // comments in lenient mode too.
        let spaced = |b: &u8| matches!(b, b' ' | b'\t');
        let delimited = self.bytes(hash + 1, keyword_start).iter().all(spaced)
            && (self.byte(pos).as_ref().is_some_and(spaced) || self.at_line_end(pos));
        let is_meta =
            delimited && (matches!(keyword, b"HELP" | b"TYPE") || (lenient && keyword == b"UNIT"));
        if !is_meta {
            return Ok(Line::Next(self.line_end(pos)));
        }
        self.flush_samples();
        pos = self.skip_blanks(pos);
        let name_start = pos;
        if self.byte(pos).is_some_and(|b| has_class(b, NAME_START)) {
            pos = self.name_end(pos).0;
        }
        if self.at_line_end(pos) && pos == name_start {
            // `# HELP` alone: a comment, as the reference parser treats it.
            return Ok(Line::Next(pos));
        }
        if pos == name_start
            || !(self.at_line_end(pos) || self.byte(pos).is_some_and(|b| self.is_blank(b)))
        {
            if keyword == b"UNIT" {
                // Prometheus text has no UNIT: a malformed one is just a comment there.
                return Ok(Line::Next(self.line_end(pos)));
            }
            return Err(self.err(pos, "invalid metric name in comment"));
        }
        let name = self.str_at(name_start, pos)?;
        let family = self.family_for_metadata(name);
        pos = self.skip_blanks(pos);
        // One scan finds the line's end and whether HELP text has an escape to decode.
        let first = find3(self.input, pos, b'\n', b'\\', b'\n');
        let escaped = self.byte(first) == Some(b'\\');
        let end = if escaped { self.line_end(first) } else { first };
        if pos >= end {
            return Ok(Line::Next(end));
        }
        match keyword {
            b"HELP" => self.prom_help(family, pos, end, escaped)?,
            b"TYPE" => self.prom_type(family, pos)?,
            _ => self.prom_unit(family, pos),
        }
        Ok(Line::Next(end))
    }

    /// HELP text from `pos` to `end`; `escaped` when it holds a backslash.
    fn prom_help(
        &mut self,
        family: usize,
        pos: usize,
        end: usize,
        escaped: bool,
    ) -> Result<(), ParseError> {
        let mut text_end = end;
        if self.dialect == Dialect::Lenient && self.byte(end.wrapping_sub(1)) == Some(b'\r') {
            text_end -= 1;
        }
        let state = self.states.get(family).copied().unwrap_or_default();
        if state.help {
            if self.dialect == Dialect::Prometheus {
                return Err(self.err(pos, "second HELP line for this metric"));
            }
            return Ok(());
        }
        let raw = self.bytes(pos, text_end);
        let help = if self.dialect == Dialect::Prometheus {
            if let Some(i) = invalid_help_escape(raw) {
                return Err(self.err(pos + i, "invalid escape sequence in HELP"));
            }
            decode_help(self.str_at(pos, text_end)?, escaped)
        } else {
            match self.str_at(pos, text_end) {
                Ok(s) => decode_help(s, escaped),
                Err(_) => {
                    Cow::Owned(decode_help(&String::from_utf8_lossy(raw), escaped).into_owned())
                }
            }
        };
        if let Some(f) = self.families.get_mut(family) {
            f.help = Some(help);
        }
        if let Some(s) = self.states.get_mut(family) {
            s.help = true;
        }
        Ok(())
    }

    fn prom_type(&mut self, family: usize, pos: usize) -> Result<(), ParseError> {
        let end = self.token_end(pos);
        let tok = self.bytes(pos, end);
        let kind = if self.dialect == Dialect::Prometheus {
            if !self.at_line_end(self.skip_blanks(end)) {
                return Err(self.err(end, "unexpected text after the type"));
            }
            prometheus_type(tok)
        } else {
            lenient_type(tok)
        }
        .ok_or_else(|| self.err(pos, "unknown metric type"))?;
        let state = self.states.get(family).copied().unwrap_or_default();
        let Some(f) = self.families.get_mut(family) else {
            return Ok(());
        };
        if self.dialect == Dialect::Prometheus {
            if state.typed || !f.samples.is_empty() {
                let message = format!(
                    "second TYPE line for `{}`, or TYPE reported after its samples",
                    f.name
                );
                return Err(self.err(pos, message));
            }
        } else if state.typed && f.kind != kind {
            let message = format!(
                "conflicting TYPE for `{}`: {} then {}",
                f.name,
                f.kind.as_str(),
                kind.as_str()
            );
            return Err(self.err(pos, message));
        }
        f.kind = kind;
        if let Some(s) = self.states.get_mut(family) {
            s.typed = true;
        }
        Ok(())
    }

    /// A lenient-mode UNIT line (Prometheus text has none).
    fn prom_unit(&mut self, family: usize, pos: usize) {
        let end = self.token_end(pos);
        // A unit that is not text is a comment, like a malformed UNIT line: Prometheus text, where
        // comments may hold any bytes, reads both as comments.
        let Ok(unit) = self.str_at(pos, end) else {
            return;
        };
        let state = self.states.get(family).copied().unwrap_or_default();
        if !state.unit {
            if let Some(f) = self.families.get_mut(family) {
                f.unit = Some(unit);
            }
            if let Some(s) = self.states.get_mut(family) {
                s.unit = true;
            }
        }
    }

    /// A `#` line in strict OpenMetrics: exactly `# EOF`, or `# HELP|TYPE|UNIT name text` with
    /// single spaces, before the family's samples and at most once each.
    fn om_comment(&mut self, hash: usize) -> Result<Line, ParseError> {
        let end = self.line_end(hash);
        let line = self.bytes(hash, end);
        if line == b"# EOF" {
            return Ok(Line::Eof(end));
        }
        self.flush_samples();
        let Some(rest) = line.strip_prefix(b"# ") else {
            return Err(self.err(
                hash,
                "comments other than HELP, TYPE, UNIT and EOF are not allowed",
            ));
        };
        let mut parts = rest.splitn(3, |&b| b == b' ');
        let keyword = parts.next().unwrap_or_default();
        let name_bytes = parts.next();
        let text = parts.next();
        let (Some(name_bytes), Some(text)) = (name_bytes, text) else {
            return Err(self.err(hash, "metadata needs `# KEYWORD name text`"));
        };
        if !matches!(keyword, b"HELP" | b"TYPE" | b"UNIT") {
            return Err(self.err(
                hash + 2,
                "comments other than HELP, TYPE, UNIT and EOF are not allowed",
            ));
        }
        let name_start = hash + 2 + keyword.len() + 1;
        if !is_metric_name(name_bytes) {
            return Err(self.err(name_start, "invalid metric name"));
        }
        let name = self.str_at(name_start, name_start + name_bytes.len())?;
        let text_start = name_start + name_bytes.len() + 1;

        let same = self
            .current
            .and_then(|c| self.families.get(c).map(|f| (c, f)))
            .filter(|(_, f)| f.name == name);
        let family = match same {
            Some((c, f)) => {
                if !f.samples.is_empty() {
                    return Err(self.err(hash, "metadata after the family's samples"));
                }
                c
            }
            None => {
                self.close_family()?;
                let index = self.new_family(name);
                self.current = Some(index);
                index
            }
        };
        let state = self.states.get(family).copied().unwrap_or_default();
        match keyword {
            b"HELP" => {
                if state.help {
                    return Err(self.err(hash, "second HELP line for this family"));
                }
                let help = unescape(self.str_at(text_start, end)?);
                if let Some(f) = self.families.get_mut(family) {
                    f.help = Some(help);
                }
                if let Some(s) = self.states.get_mut(family) {
                    s.help = true;
                }
            }
            b"TYPE" => {
                if state.typed {
                    return Err(self.err(hash, "second TYPE line for this family"));
                }
                let kind = openmetrics::parse_type(text)
                    .ok_or_else(|| self.err(text_start, "invalid metric type"))?;
                if let Some(f) = self.families.get_mut(family) {
                    f.kind = kind;
                }
                if let Some(s) = self.states.get_mut(family) {
                    s.typed = true;
                }
            }
            _ => {
                if state.unit {
                    return Err(self.err(hash, "second UNIT line for this family"));
                }
                let unit = self.str_at(text_start, end)?;
                if let Some(f) = self.families.get_mut(family) {
                    f.unit = Some(unit);
                }
                if let Some(s) = self.states.get_mut(family) {
                    s.unit = true;
                }
            }
        }
        Ok(Line::Next(end))
    }
}

/// HELP text with its escapes decoded; `escaped` says whether it holds a backslash at all (the
/// line's scan found out), sparing `unescape` its own search.
fn decode_help(text: &str, escaped: bool) -> Cow<'_, str> {
    if escaped {
        unescape(text)
    } else {
        Cow::Borrowed(text)
    }
}

/// Offset of the first escape that Prometheus HELP text does not allow (`\\` and `\n` are
/// allowed, and `\"` which the reference parser accepts too).
fn invalid_help_escape(raw: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b == b'\\' {
            match raw.get(i + 1) {
                Some(b'\\' | b'n' | b'"') => i += 2,
                _ => return Some(i),
            }
        } else {
            i += 1;
        }
    }
    None
}

fn is_metric_name(bytes: &[u8]) -> bool {
    match bytes.split_first() {
        Some((&first, rest)) => {
            has_class(first, NAME_START) && rest.iter().all(|&b| has_class(b, NAME_REST))
        }
        None => false,
    }
}

/// Sample-name suffixes a family of this type takes outside strict OpenMetrics: the
/// OpenMetrics ones plus what Prometheus text uses (`_total` in the TYPE name itself, `_sum`
/// and `_count` of gauge histograms).
#[inline]
fn lenient_suffix_allowed(kind: MetricType, suffix: &str) -> bool {
    match kind {
        MetricType::Counter => matches!(suffix, "" | "_total" | "_created"),
        MetricType::Summary => matches!(suffix, "" | "_count" | "_sum" | "_created"),
        MetricType::Histogram => matches!(suffix, "" | "_bucket" | "_count" | "_sum" | "_created"),
        MetricType::GaugeHistogram => matches!(
            suffix,
            "" | "_bucket" | "_gcount" | "_gsum" | "_count" | "_sum" | "_created"
        ),
        MetricType::Info => matches!(suffix, "" | "_info"),
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => suffix.is_empty(),
    }
}

/// TYPE values of Prometheus text, any case, as the reference parser reads them.
fn prometheus_type(tok: &[u8]) -> Option<MetricType> {
    const NAMES: [(&[u8], MetricType); 7] = [
        (b"counter", MetricType::Counter),
        (b"gauge", MetricType::Gauge),
        (b"histogram", MetricType::Histogram),
        (b"summary", MetricType::Summary),
        (b"untyped", MetricType::Unknown),
        (b"gaugehistogram", MetricType::GaugeHistogram),
        (b"gauge_histogram", MetricType::GaugeHistogram),
    ];
    find_type(&NAMES, tok)
}

/// Any TYPE value of either format, any case.
fn lenient_type(tok: &[u8]) -> Option<MetricType> {
    const NAMES: [(&[u8], MetricType); 3] = [
        (b"unknown", MetricType::Unknown),
        (b"info", MetricType::Info),
        (b"stateset", MetricType::StateSet),
    ];
    prometheus_type(tok).or_else(|| find_type(&NAMES, tok))
}

fn find_type(names: &[(&[u8], MetricType)], tok: &[u8]) -> Option<MetricType> {
    // Servers write type names in lower case: exact comparisons first, then without case.
    names
        .iter()
        .find(|(name, _)| *name == tok)
        .or_else(|| {
            names
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(tok))
        })
        .map(|&(_, kind)| kind)
}
