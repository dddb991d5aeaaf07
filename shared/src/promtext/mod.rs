//! Prometheus text 0.0.4 and OpenMetrics 1.0 exposition parser: turns a `/metrics` body into
//! families of samples without copying names or label text, leniently for scraping or strictly
//! for validation.
//!
//! # Why hand-written and not a crate
//!
//! No published crate is both correct on real inference-server output and fast. The most
//! downloaded one (`prometheus-parse`) silently drops every metric whose name contains a `:` —
//! that is every `vllm:` and `sglang:` metric — and the best of the others run at 24–190 MB/s and
//! each rejects or loses some real engine output. A straightforward zero-copy parser runs at
//! about 1 GB/s (see `shared/notes/performance.md` in the project kit), 120–150× Python's
//! `prometheus_client`, so we write the ~1,500 lines ourselves and prove them against the
//! upstream conformance cases (`docs/parser-conformance.md`). This one parses the ~3 MB vLLM
//! benchmark payload at ~1.1 GB/s, 170–200× faster than `prometheus_client` on the same bytes
//! (`cargo bench -p perfagent --bench parse_vs_python`; `docs/performance.md`).
//!
//! # Modes
//!
//! * [`Mode::Lenient`] (the default) accepts what a scraper meets on real servers (vLLM, TGI,
//!   SGLang): blank lines, leading whitespace, space or tab runs between tokens, `\r\n` line ends,
//!   a missing final newline, counters without `_total`, `_sum` before `_bucket`, families with
//!   HELP/TYPE and no samples, a family split or repeated (merged into its first [`Family`] entry,
//!   samples kept in input order), OpenMetrics exemplars (checked and skipped), `# UNIT` (a
//!   malformed one, or one whose unit is not UTF-8, is a comment), any Prometheus or OpenMetrics
//!   type name in any case, unknown escapes kept literally, invalid UTF-8 in HELP replaced by
//!   U+FFFD. `# EOF` ends the exposition; anything after it is ignored.
//!   It does no semantic checks (bucket order, duplicate label names, negative counters), which
//!   keeps the hot path free of allocation. A second TYPE line naming a *different* type for the
//!   same family is still an error: the samples would be ambiguous.
//! * [`Mode::Strict`]`(`[`Format::Prometheus`]`)` follows the reference parser
//!   (prometheus/common `expfmt`): a sample line must end with `\n`; label values allow only the
//!   `\\`, `\"`, `\n` escapes; timestamps are integer milliseconds; duplicate label names,
//!   `__name__` as a label, a second HELP or TYPE line, a TYPE after the family's samples,
//!   non-numeric `le`/`quantile`, negative bucket counts are errors. Like `expfmt` it merges the
//!   samples of a family that are interleaved with other families (the 0.0.4 text says a family
//!   "must" be one group, but the reference parser accepts it, so servers rely on it).
//! * [`Mode::Strict`]`(`[`Format::OpenMetrics`]`)` follows OpenMetrics 1.0 and the checks of its
//!   reference test suite: single spaces, no blank lines, mandatory final `# EOF`, metadata only
//!   before a family's samples, a family never split or repeated (clashing names included),
//!   histogram bucket order and `+Inf` bucket, counter-like values neither negative nor NaN,
//!   sample grouping and timestamp order, exemplars only where allowed and ≤ 128 characters.
//!
//! Names follow the legacy rule (`[a-zA-Z_:][a-zA-Z0-9_:]*` for metrics, `[a-zA-Z_][a-zA-Z0-9_]*`
//! for labels); quoted UTF-8 names (`{"my.metric"}`) are rejected in every mode.
//!
//! # Families
//!
//! A sample joins the family named by a TYPE (or HELP/UNIT) line when its name is the family name
//! plus a suffix the type allows (`_bucket`/`_sum`/`_count`/`_created` for histograms, `_total`
//! for counters, ...); otherwise it starts a family of its own, named by the full sample name,
//! of kind [`MetricType::Unknown`]. [`Sample::name`] always keeps the full name.
//!
//! # Timestamps
//!
//! Prometheus text gives integer milliseconds, OpenMetrics float seconds; [`Sample::timestamp_ms`]
//! is always milliseconds. In lenient mode an input whose last line is `# EOF` is read as
//! OpenMetrics (seconds), anything else as Prometheus (milliseconds, a fractional value rounded).
//!
//! # Errors
//!
//! No input makes the parser panic. Every [`ParseError`] names a 1-based line and a 1-based
//! column counted in bytes.

mod labels;
mod number;
mod openmetrics;
mod parser;
mod scan;
mod writer;

use std::borrow::Cow;

pub use labels::Labels;
pub use writer::write_sample;

/// The text format an input claims to follow; chooses the rules of [`Mode::Strict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

/// How forgiving the parser is; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Accept what real servers emit (the mode for scraping).
    #[default]
    Lenient,
    /// Reject what the format's specification or reference parser rejects (for validation).
    Strict(Format),
}

/// A family's type as declared by its TYPE line (`untyped` is [`MetricType::Unknown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl MetricType {
    /// The OpenMetrics spelling of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// Why an input was rejected, and where (1-based line; 1-based column counted in bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One sample line; borrows the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The full sample name, suffix (`_bucket`, `_total`, ...) included.
    pub name: &'a str,
    pub labels: Labels<'a>,
    pub value: f64,
    /// Milliseconds since the Unix epoch, whatever unit the format used.
    pub timestamp_ms: Option<i64>,
}

/// The samples of one metric family with its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Family<'a> {
    /// The family name: the TYPE line's name, or the sample name for a family without one.
    pub name: &'a str,
    pub kind: MetricType,
    /// HELP text with escapes decoded (borrowed when there were none).
    pub help: Option<Cow<'a, str>>,
    pub unit: Option<&'a str>,
    pub samples: Vec<Sample<'a>>,
}

/// Every family of one exposition, in order of first appearance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition<'a> {
    pub families: Vec<Family<'a>>,
}

impl<'a> Exposition<'a> {
    /// The family with this name, if any.
    pub fn family(&self, name: &str) -> Option<&Family<'a>> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Every sample of every family, in family order.
    pub fn samples(&self) -> impl Iterator<Item = &Sample<'a>> + '_ {
        self.families.iter().flat_map(|f| f.samples.iter())
    }

    /// The number of samples over all families.
    pub fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

/// Parses one exposition. See the module documentation for what each [`Mode`] accepts.
pub fn parse(input: &[u8], mode: Mode) -> Result<Exposition<'_>, ParseError> {
    parser::parse(input, mode)
}
