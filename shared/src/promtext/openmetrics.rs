//! The semantic rules of strict OpenMetrics 1.0 that go beyond one line: which sample names a
//! type allows, name clashes between families, sample grouping and timestamp order, the value
//! rules of counters, buckets, quantiles, info and stateset, and histogram consistency. These
//! follow the OpenMetrics project's reference test suite.

use super::number::parse_f64;
use super::{Family, MetricType, Sample};
use std::borrow::Cow;
use std::collections::HashSet;

/// A label set reduced to what identifies a sample's group (its "metric" in OpenMetrics terms),
/// sorted so that label order does not matter.
type GroupKey<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// The sample-name suffixes each type allows in OpenMetrics (`""` is the bare family name).
pub(crate) fn suffixes(kind: MetricType) -> &'static [&'static str] {
    match kind {
        MetricType::Counter => &["_total", "_created"],
        MetricType::Summary => &["", "_count", "_sum", "_created"],
        MetricType::Histogram => &["_count", "_sum", "_bucket", "_created"],
        MetricType::GaugeHistogram => &["_gcount", "_gsum", "_bucket"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    }
}

/// The OpenMetrics spelling of a TYPE value (`untyped` is not one).
pub(crate) fn parse_type(tok: &[u8]) -> Option<MetricType> {
    Some(match tok {
        b"counter" => MetricType::Counter,
        b"gauge" => MetricType::Gauge,
        b"histogram" => MetricType::Histogram,
        b"gaugehistogram" => MetricType::GaugeHistogram,
        b"summary" => MetricType::Summary,
        b"info" => MetricType::Info,
        b"stateset" => MetricType::StateSet,
        b"unknown" => MetricType::Unknown,
        _ => return None,
    })
}

/// Suffixes whose values count something and so cannot be NaN.
const COUNTER_LIKE: [&str; 6] = ["_total", "_sum", "_count", "_bucket", "_gcount", "_gsum"];

/// Counter-like suffixes that cannot be negative either (a gauge histogram's `_gsum` can, when
/// it has negative buckets; `check_histogram` checks that).
const NON_NEGATIVE: [&str; 5] = ["_total", "_sum", "_count", "_bucket", "_gcount"];

/// State kept across the lines of one strict OpenMetrics parse.
#[derive(Default)]
pub(crate) struct Checker<'a> {
    /// Every sample name some closed family could produce: a later family must not reuse one.
    seen_names: HashSet<String>,
    group: Option<GroupKey<'a>>,
    group_timestamp: Option<i64>,
    seen_groups: HashSet<GroupKey<'a>>,
}

impl<'a> Checker<'a> {
    /// Checks one sample that has just joined `family` (whose earlier samples it follows).
    pub(crate) fn check_sample(
        &mut self,
        family: &Family<'a>,
        sample: &Sample<'a>,
        has_exemplar: bool,
    ) -> Result<(), String> {
        let kind = family.kind;
        let suffix = sample.name.get(family.name.len()..).unwrap_or("");
        let value = sample.value;
        if kind == MetricType::StateSet && sample.labels.get_raw(family.name).is_none() {
            return Err(format!(
                "stateset sample lacks the label `{}` naming its state",
                family.name
            ));
        }
        if suffix == "_bucket" {
            check_le(sample)?;
            if !is_integer(value) {
                return Err("bucket value must be an integer".into());
            }
        }
        if matches!(suffix, "_count" | "_gcount") && !is_integer(value) {
            return Err("count value must be an integer".into());
        }
        if kind == MetricType::Summary && suffix.is_empty() {
            let quantile = sample
                .labels
                .get_raw("quantile")
                .and_then(|q| parse_f64(q.as_bytes()));
            if !quantile.is_some_and(|q| (0.0..=1.0).contains(&q)) {
                return Err("summary quantile needs a `quantile` label between 0 and 1".into());
            }
            if value < 0.0 {
                return Err("quantile values cannot be negative".into());
            }
        }
        self.check_group(family, sample)?;
        if kind == MetricType::StateSet && value != 0.0 && value != 1.0 {
            return Err("stateset values must be 0 or 1".into());
        }
        if kind == MetricType::Info && value != 1.0 {
            return Err("info values must be 1".into());
        }
        if COUNTER_LIKE.contains(&suffix) && value.is_nan() {
            return Err(format!("`{suffix}` values cannot be NaN"));
        }
        if NON_NEGATIVE.contains(&suffix) && value < 0.0 {
            return Err(format!("`{suffix}` values cannot be negative"));
        }
        let exemplar_allowed = match kind {
            MetricType::Histogram | MetricType::GaugeHistogram => suffix == "_bucket",
            MetricType::Counter => suffix == "_total",
            _ => false,
        };
        if has_exemplar && !exemplar_allowed {
            return Err("only histogram buckets and counter totals can have exemplars".into());
        }
        Ok(())
    }

    /// A group's samples must be contiguous, all with or all without timestamps, and (except
    /// for info) with timestamps that never go backwards.
    fn check_group(&mut self, family: &Family<'a>, sample: &Sample<'a>) -> Result<(), String> {
        let key = group_key(family, sample, family.kind);
        let timestamp = sample.timestamp_ms;
        let same_group = self.group.as_ref() == Some(&key);
        if same_group {
            if timestamp.is_none() != self.group_timestamp.is_none() {
                return Err("samples of one group mix present and absent timestamps".into());
            }
            if let (Some(previous), Some(now)) = (self.group_timestamp, timestamp) {
                if previous > now && family.kind != MetricType::Info {
                    return Err("timestamps went backwards within a group".into());
                }
            }
        } else if self.group.is_some() && self.seen_groups.contains(&key) {
            return Err("samples of one label set must be contiguous".into());
        }
        self.group_timestamp = timestamp;
        if !same_group {
            self.seen_groups.insert(key.clone());
            self.group = Some(key);
        }
        Ok(())
    }

    /// Runs the checks that need a whole family, then forgets its grouping state.
    pub(crate) fn close_family(&mut self, family: &Family<'a>) -> Result<(), String> {
        self.group = None;
        self.group_timestamp = None;
        self.seen_groups.clear();
        let own = suffixes(family.kind);
        let bare = (!own.contains(&"")).then_some(&"");
        for suffix in own.iter().chain(bare) {
            let full = format!("{}{suffix}", family.name);
            if !self.seen_names.insert(full) {
                return Err(format!(
                    "`{}{suffix}` clashes with an earlier family (a family must not be split or repeated)",
                    family.name
                ));
            }
        }
        if let Some(unit) = family.unit.filter(|u| !u.is_empty()) {
            let suffix_ok = family
                .name
                .strip_suffix(unit)
                .is_some_and(|stem| stem.ends_with('_'));
            if !suffix_ok {
                return Err(format!(
                    "unit `{unit}` is not a suffix of the family name `{}`",
                    family.name
                ));
            }
            if matches!(family.kind, MetricType::Info | MetricType::StateSet) {
                return Err(format!(
                    "{} families cannot have a unit",
                    family.kind.as_str()
                ));
            }
        }
        if matches!(
            family.kind,
            MetricType::Histogram | MetricType::GaugeHistogram
        ) {
            check_histogram(family)?;
        }
        Ok(())
    }
}

/// The `le` of a bucket: present, a number, not NaN, infinity spelled `+Inf`/`-Inf`.
fn check_le(sample: &Sample<'_>) -> Result<(), String> {
    let raw = sample
        .labels
        .get_raw("le")
        .ok_or("bucket lacks an `le` label")?;
    let bound =
        parse_f64(raw.as_bytes()).ok_or_else(|| format!("`le` is not a number: {raw:?}"))?;
    if bound.is_nan() || (bound.is_infinite() && raw != "+Inf" && raw != "-Inf") {
        return Err(format!("`le` must be a number or +Inf, got {raw:?}"));
    }
    Ok(())
}

fn is_integer(value: f64) -> bool {
    value.is_finite() && value.fract() == 0.0
}

/// The labels that identify a sample's group: all but `le` of a bucket, `quantile` of a summary
/// quantile, the state label of a stateset; info samples all form one group.
fn group_key<'a>(family: &Family<'a>, sample: &Sample<'a>, kind: MetricType) -> GroupKey<'a> {
    let suffix = sample.name.get(family.name.len()..).unwrap_or("");
    let skip = match kind {
        MetricType::Info => return Vec::new(),
        MetricType::Summary if suffix.is_empty() => Some("quantile"),
        MetricType::StateSet => Some(family.name),
        MetricType::Histogram | MetricType::GaugeHistogram if suffix == "_bucket" => Some("le"),
        _ => None,
    };
    let mut key: GroupKey<'a> = sample
        .labels
        .iter()
        .filter(|(name, _)| Some(*name) != skip)
        .collect();
    key.sort_unstable();
    key
}

/// Per group: buckets in increasing `le` with non-decreasing counts ending at `+Inf`, `_count`
/// equal to the `+Inf` bucket, `_count` and `_sum` (or `_gcount` and `_gsum`) together, no
/// `_sum` with negative buckets, no negative `_gsum` without them.
fn check_histogram(family: &Family<'_>) -> Result<(), String> {
    #[derive(Default)]
    struct Group {
        bucket: Option<f64>,
        last_count: f64,
        count: Option<f64>,
        has_negative_bucket: bool,
        has_sum: bool,
        has_gsum: bool,
        has_negative_gsum: bool,
    }
    fn finish(g: &Group, name: &str) -> Result<(), String> {
        if g.bucket != Some(f64::INFINITY) {
            return Err(format!("histogram `{name}` lacks its +Inf bucket"));
        }
        if g.count.is_some_and(|c| c != g.last_count) {
            return Err(format!(
                "histogram `{name}`: count does not match the +Inf bucket"
            ));
        }
        if g.has_sum && g.count.is_none() {
            return Err(format!("histogram `{name}`: _sum without _count"));
        }
        if g.has_gsum && g.count.is_none() {
            return Err(format!("histogram `{name}`: _gsum without _gcount"));
        }
        if !(g.has_sum || g.has_gsum) && g.count.is_some() {
            return Err(format!("histogram `{name}`: count without sum"));
        }
        if g.has_negative_bucket && g.has_sum {
            return Err(format!(
                "histogram `{name}`: _sum is not allowed with negative buckets"
            ));
        }
        if !g.has_negative_bucket && g.has_negative_gsum {
            return Err(format!(
                "histogram `{name}`: negative _gsum without negative buckets"
            ));
        }
        Ok(())
    }

    let mut current: Option<(GroupKey<'_>, Option<i64>, Group)> = None;
    for sample in &family.samples {
        let suffix = sample.name.get(family.name.len()..).unwrap_or("");
        if suffix.is_empty() {
            continue;
        }
        let key = group_key(family, sample, MetricType::Histogram);
        let same = current
            .as_ref()
            .is_some_and(|(k, ts, _)| *k == key && *ts == sample.timestamp_ms);
        if !same {
            if let Some((_, _, g)) = &current {
                finish(g, family.name)?;
            }
            current = Some((key, sample.timestamp_ms, Group::default()));
        }
        let Some((_, _, g)) = current.as_mut() else {
            continue;
        };
        match suffix {
            "_bucket" => {
                let bound = sample
                    .labels
                    .get_raw("le")
                    .and_then(|raw| parse_f64(raw.as_bytes()))
                    .unwrap_or(f64::NAN);
                if bound < 0.0 {
                    g.has_negative_bucket = true;
                }
                if g.bucket.is_some_and(|previous| bound <= previous) {
                    return Err(format!("histogram `{}`: buckets out of order", family.name));
                }
                if sample.value < g.last_count {
                    return Err(format!(
                        "histogram `{}`: bucket counts must not decrease",
                        family.name
                    ));
                }
                g.bucket = Some(bound);
                g.last_count = sample.value;
            }
            "_count" | "_gcount" => g.count = Some(sample.value),
            "_sum" => g.has_sum = true,
            "_gsum" => {
                g.has_gsum = true;
                if sample.value < 0.0 {
                    g.has_negative_gsum = true;
                }
            }
            _ => {}
        }
    }
    if let Some((_, _, g)) = &current {
        finish(g, family.name)?;
    }
    Ok(())
}
