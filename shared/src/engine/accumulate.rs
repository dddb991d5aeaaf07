//! Per-model accumulators that fold the samples of many series (engines, ranks, replicas, label
//! variants) into one canonical value each, keeping only the best-ranked source of a quantity.

use crate::snapshot::{Canonical, Histogram, MetricValue, ModelMetrics};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Where a recognized sample goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Gauge(Canonical),
    Counter(Canonical),
    Histogram(Canonical),
    /// The `_sum` of a histogram or summary read as a counter (e.g. TGI's token totals).
    CounterFromSum(Canonical),
    /// vLLM `request_success_total{finished_reason}`: a failure when the reason is `abort`.
    VllmFinished,
    /// An input of a derivation, not a canonical quantity by itself.
    Aux(AuxKind),
}

/// Inputs of derivations done when a model is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuxKind {
    /// TGI `tgi_request_validation_duration` (count and sum), a term of the TTFT estimate.
    TgiValidation,
    /// TGI `tgi_batch_inference_duration{method="prefill"}` (count and sum), a term of the TTFT
    /// estimate.
    TgiPrefill,
    /// SGLang `num_requests_total`: every finished request, aborted ones included.
    SglangFinished,
}

impl AuxKind {
    const COUNT: usize = 3;

    fn index(self) -> usize {
        match self {
            AuxKind::TgiValidation => 0,
            AuxKind::TgiPrefill => 1,
            AuxKind::SglangFinished => 2,
        }
    }
}

/// A recognized metric: what it feeds and how good a source it is (0 = the current name; a higher
/// number is an older or derived name used only when no better one is present for the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Source {
    pub target: Target,
    pub prio: u8,
}

/// How SGLang's per-rank series are deduplicated: the ranks of one `group` (a DP rank) report the
/// same batch, so only the series of the group's lowest `rank` order (PP, TP, MoE-EP rank, pid)
/// count; groups add up.
pub(super) type RankOrder = [u64; 4];

/// The rank group of a sample: `None` when every series adds up (engines, replicas, label
/// variants), `Some((DP rank, rank order))` for SGLang.
pub(super) type RankGroup<'a> = Option<(Cow<'a, str>, RankOrder)>;

#[derive(Debug)]
struct RankedEntry<'a, T> {
    group: Option<Cow<'a, str>>,
    rank: RankOrder,
    acc: T,
}

/// A counter's or histogram's accumulator per rank group. Without groups there is one entry that
/// every series adds into.
#[derive(Debug)]
pub(super) struct Ranked<'a, T> {
    entries: Vec<RankedEntry<'a, T>>,
}

impl<'a, T: Default> Ranked<'a, T> {
    fn new() -> Self {
        Ranked {
            entries: Vec::new(),
        }
    }

    fn single(acc: T) -> Self {
        Ranked {
            entries: vec![RankedEntry {
                group: None,
                rank: [0; 4],
                acc,
            }],
        }
    }

    /// The accumulator a sample of `group` adds into, or `None` when a lower rank of its group is
    /// already counted. A lower rank arriving later restarts the group, so the result does not
    /// depend on the order of the lines.
    fn entry(&mut self, group: RankGroup<'a>) -> Option<&mut T> {
        let (key, rank) = match group {
            None => (None, [0; 4]),
            Some((key, rank)) => (Some(key), rank),
        };
        match self.entries.iter().position(|e| e.group == key) {
            Some(i) => {
                let e = self.entries.get_mut(i)?;
                if rank < e.rank {
                    e.rank = rank;
                    e.acc = T::default();
                } else if rank > e.rank {
                    return None;
                }
                Some(&mut e.acc)
            }
            None => {
                self.entries.push(RankedEntry {
                    group: key,
                    rank,
                    acc: T::default(),
                });
                self.entries.last_mut().map(|e| &mut e.acc)
            }
        }
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.acc)
    }
}

impl Ranked<'_, f64> {
    fn total(&self) -> f64 {
        self.values().sum()
    }
}

impl Ranked<'_, HistAcc> {
    fn merged(&self) -> HistAcc {
        let mut all = HistAcc::default();
        for h in self.values() {
            all.absorb(h);
        }
        all
    }

    /// The merge of every group, reusing the first group's buckets (usually the only group).
    fn into_merged(self) -> HistAcc {
        let mut groups = self.entries.into_iter().map(|e| e.acc);
        let mut all = groups.next().unwrap_or_default();
        for h in groups {
            all.absorb(&h);
        }
        all
    }
}

#[derive(Debug)]
struct GaugeEntry<'a> {
    group: Option<Cow<'a, str>>,
    rank: RankOrder,
    value: f64,
}

/// The series of one gauge: summed (requests) or averaged (ratios) when finished.
#[derive(Debug, Default)]
pub(super) struct GaugeAcc<'a> {
    entries: Vec<GaugeEntry<'a>>,
}

impl<'a> GaugeAcc<'a> {
    /// Adds one series. With a group, a series of a group already seen replaces the kept one only
    /// if its rank order is lower, so the result does not depend on the order of the lines.
    pub fn add(&mut self, group: RankGroup<'a>, value: f64) {
        match group {
            None => self.entries.push(GaugeEntry {
                group: None,
                rank: [0; 4],
                value,
            }),
            Some((key, rank)) => {
                let existing = self
                    .entries
                    .iter_mut()
                    .find(|e| e.group.as_deref() == Some(&*key));
                match existing {
                    Some(e) if rank < e.rank => {
                        e.rank = rank;
                        e.value = value;
                    }
                    Some(_) => {}
                    None => self.entries.push(GaugeEntry {
                        group: Some(key),
                        rank,
                        value,
                    }),
                }
            }
        }
    }

    /// How many series (engines, replicas, DP ranks) were kept.
    pub fn series(&self) -> usize {
        self.entries.len()
    }

    fn sum(&self) -> f64 {
        self.entries.iter().map(|e| e.value).sum()
    }

    fn mean(&self) -> Option<f64> {
        (!self.entries.is_empty()).then(|| self.sum() / self.entries.len() as f64)
    }
}

#[derive(Debug, Clone, Copy)]
struct BucketAcc {
    le: f64,
    cumulative: f64,
    /// How many series had this bound: only bounds every series has survive the merge.
    series: u32,
}

/// Bucket bounds printed by different code paths differ in the last digits
/// (`0.07500000000000001` vs `0.075`); closer than this relative distance they are one bound.
const BOUND_RELATIVE_TOLERANCE: f64 = 1e-9;

fn same_bound(a: f64, b: f64) -> bool {
    // `+Inf` is only ever itself (the relative distance to it is meaningless).
    a == b
        || (a.is_finite()
            && b.is_finite()
            && (a - b).abs() <= BOUND_RELATIVE_TOLERANCE * a.abs().max(b.abs()))
}

/// The merge of every series of one histogram: counts and sums added, buckets aligned on their
/// (approximately equal) upper bounds.
#[derive(Debug, Default, Clone)]
pub(super) struct HistAcc {
    pub count: f64,
    pub sum: f64,
    buckets: Vec<BucketAcc>,
    /// Where the previous bucket went: series list their bounds in the same order, so the next
    /// bound is almost always the next slot.
    cursor: usize,
}

impl HistAcc {
    /// A histogram known only by its count and sum (a summary, or an estimate).
    pub fn count_sum(count: f64, sum: f64) -> Self {
        HistAcc {
            count,
            sum,
            ..HistAcc::default()
        }
    }

    pub fn add_bucket(&mut self, le: f64, cumulative: f64) {
        self.add_buckets_of(le, cumulative, 1);
    }

    /// Adds the bucket `le` of `series` series whose counts add up to `cumulative`. Buckets stay
    /// sorted by bound.
    fn add_buckets_of(&mut self, le: f64, cumulative: f64, series: u32) {
        // Series repeat the same bounds in the same order: the bound is almost always at the
        // cursor or just after it.
        let near = [self.cursor, self.cursor + 1]
            .into_iter()
            .find(|&i| self.buckets.get(i).is_some_and(|b| same_bound(b.le, le)));
        let at = match near {
            Some(i) => i,
            None => {
                let i = self
                    .buckets
                    .partition_point(|b| b.le < le && !same_bound(b.le, le));
                if !self.buckets.get(i).is_some_and(|b| same_bound(b.le, le)) {
                    self.buckets.insert(
                        i,
                        BucketAcc {
                            le,
                            cumulative: 0.0,
                            series: 0,
                        },
                    );
                }
                i
            }
        };
        if let Some(b) = self.buckets.get_mut(at) {
            b.cumulative += cumulative;
            b.series += series;
        }
        self.cursor = at;
    }

    /// Adds another merge of series into this one.
    fn absorb(&mut self, other: &HistAcc) {
        self.count += other.count;
        self.sum += other.sum;
        for b in &other.buckets {
            self.add_buckets_of(b.le, b.cumulative, b.series);
        }
    }

    pub fn finish(mut self) -> Histogram {
        let full = self.buckets.iter().map(|b| b.series).max().unwrap_or(0);
        self.buckets.retain(|b| b.series == full);
        Histogram {
            count: self.count,
            sum: self.sum,
            buckets: self.buckets.iter().map(|b| (b.le, b.cumulative)).collect(),
        }
    }
}

#[derive(Debug)]
enum Value<'a> {
    Counter(Ranked<'a, f64>),
    Gauge(GaugeAcc<'a>),
    Histogram(Ranked<'a, HistAcc>),
}

#[derive(Debug)]
struct Slot<'a> {
    prio: u8,
    value: Value<'a>,
}

/// Everything gathered for one model.
#[derive(Debug)]
pub(super) struct ModelAcc<'a> {
    pub model: Cow<'a, str>,
    slots: [Option<Slot<'a>>; Canonical::ALL.len()],
    aux: [Option<Ranked<'a, HistAcc>>; AuxKind::COUNT],
}

impl<'a> ModelAcc<'a> {
    fn new(model: Cow<'a, str>) -> Self {
        ModelAcc {
            model,
            slots: Default::default(),
            aux: Default::default(),
        }
    }

    /// The slot of `name` if a source of priority `prio` may write it: an empty slot or one held
    /// by a worse source is (re)started, one held by a better source refuses.
    fn claim(
        &mut self,
        name: Canonical,
        prio: u8,
        fresh: fn() -> Value<'a>,
    ) -> Option<&mut Value<'a>> {
        let slot = self.slots.get_mut(name as usize)?;
        match slot {
            Some(s) if s.prio < prio => return None,
            Some(s) if s.prio == prio => {}
            _ => {
                *slot = Some(Slot {
                    prio,
                    value: fresh(),
                })
            }
        }
        slot.as_mut().map(|s| &mut s.value)
    }

    pub fn counter(&mut self, name: Canonical, prio: u8, group: RankGroup<'a>) -> Option<&mut f64> {
        match self.claim(name, prio, || Value::Counter(Ranked::new()))? {
            Value::Counter(c) => c.entry(group),
            _ => None,
        }
    }

    pub fn gauge(&mut self, name: Canonical, prio: u8) -> Option<&mut GaugeAcc<'a>> {
        match self.claim(name, prio, || Value::Gauge(GaugeAcc::default()))? {
            Value::Gauge(g) => Some(g),
            _ => None,
        }
    }

    pub fn histogram(
        &mut self,
        name: Canonical,
        prio: u8,
        group: RankGroup<'a>,
    ) -> Option<&mut HistAcc> {
        match self.claim(name, prio, || Value::Histogram(Ranked::new()))? {
            Value::Histogram(h) => h.entry(group),
            _ => None,
        }
    }

    pub fn aux(&mut self, kind: AuxKind, group: RankGroup<'a>) -> Option<&mut HistAcc> {
        let slot = self.aux.get_mut(kind.index())?;
        slot.get_or_insert_with(Ranked::new).entry(group)
    }

    /// A derivation input, its series merged.
    pub fn aux_value(&self, kind: AuxKind) -> Option<HistAcc> {
        Some(self.aux.get(kind.index())?.as_ref()?.merged())
    }

    /// The priority of the source that holds `name`, if any.
    pub fn priority(&self, name: Canonical) -> Option<u8> {
        Some(self.slots.get(name as usize)?.as_ref()?.prio)
    }

    pub fn has(&self, name: Canonical) -> bool {
        self.slots.get(name as usize).is_some_and(Option::is_some)
    }

    /// The current value of a counter quantity, if present.
    pub fn counter_value(&self, name: Canonical) -> Option<f64> {
        match &self.slots.get(name as usize)?.as_ref()?.value {
            Value::Counter(c) => Some(c.total()),
            _ => None,
        }
    }

    /// The current value of a histogram quantity, its series merged.
    pub fn histogram_value(&self, name: Canonical) -> Option<HistAcc> {
        match &self.slots.get(name as usize)?.as_ref()?.value {
            Value::Histogram(h) => Some(h.merged()),
            _ => None,
        }
    }

    pub fn gauge_value(&self, name: Canonical) -> Option<&GaugeAcc<'a>> {
        match &self.slots.get(name as usize)?.as_ref()?.value {
            Value::Gauge(g) => Some(g),
            _ => None,
        }
    }

    /// Sets a derived quantity, replacing whatever was there.
    pub fn set_counter(&mut self, name: Canonical, value: f64) {
        if let Some(slot) = self.slots.get_mut(name as usize) {
            *slot = Some(Slot {
                prio: 0,
                value: Value::Counter(Ranked::single(value)),
            });
        }
    }

    pub fn set_histogram(&mut self, name: Canonical, value: HistAcc) {
        if let Some(slot) = self.slots.get_mut(name as usize) {
            *slot = Some(Slot {
                prio: 0,
                value: Value::Histogram(Ranked::single(value)),
            });
        }
    }

    /// The canonical metrics: ratios averaged over series, other gauges summed.
    pub fn finish(self) -> ModelMetrics {
        let mut metrics = BTreeMap::new();
        for (name, slot) in Canonical::ALL.into_iter().zip(self.slots) {
            let Some(slot) = slot else { continue };
            let value = match slot.value {
                Value::Counter(c) => MetricValue::Number(c.total()),
                Value::Gauge(g) if name == Canonical::KvCacheUsageRatio => match g.mean() {
                    Some(v) => MetricValue::Number(v),
                    None => continue,
                },
                Value::Gauge(g) => MetricValue::Number(g.sum()),
                Value::Histogram(h) => MetricValue::Histogram(h.into_merged().finish()),
            };
            metrics.insert(name, value);
        }
        ModelMetrics {
            model: self.model.into_owned(),
            metrics,
        }
    }
}

/// The models of one exposition, in order of first appearance (a server has one or a few).
#[derive(Debug, Default)]
pub(super) struct Models<'a> {
    list: Vec<ModelAcc<'a>>,
}

impl<'a> Models<'a> {
    pub fn get(&mut self, model: Cow<'a, str>) -> &mut ModelAcc<'a> {
        let index = match self.list.iter().position(|m| m.model == model) {
            Some(i) => i,
            None => {
                self.list.push(ModelAcc::new(model));
                self.list.len() - 1
            }
        };
        // `index` is in bounds: found above or just pushed.
        &mut self.list[index]
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ModelAcc<'a>> {
        self.list.iter_mut()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ModelAcc<'a>> {
        self.list.iter()
    }

    pub fn into_vec(self) -> Vec<ModelAcc<'a>> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_with_float_noise_bounds_merge_into_one() {
        let mut h = HistAcc::default();
        for (le, c) in [(0.05, 1.0), (0.075, 2.0), (f64::INFINITY, 3.0)] {
            h.add_bucket(le, c);
        }
        for (le, c) in [
            (0.05, 1.0),
            (0.07500000000000001, 4.0),
            (f64::INFINITY, 5.0),
        ] {
            h.add_bucket(le, c);
        }
        let h = h.finish();
        assert_eq!(
            h.buckets,
            vec![(0.05, 2.0), (0.075, 6.0), (f64::INFINITY, 8.0)]
        );
    }

    #[test]
    fn a_bound_missing_from_one_series_is_dropped_so_counts_stay_cumulative() {
        let mut h = HistAcc::default();
        for (le, c) in [(1.0, 1.0), (2.0, 2.0), (f64::INFINITY, 3.0)] {
            h.add_bucket(le, c);
        }
        for (le, c) in [(1.0, 1.0), (3.0, 2.0), (f64::INFINITY, 2.0)] {
            h.add_bucket(le, c);
        }
        assert_eq!(h.finish().buckets, vec![(1.0, 2.0), (f64::INFINITY, 5.0)]);
    }

    #[test]
    fn buckets_listed_out_of_order_come_out_sorted() {
        let mut h = HistAcc::default();
        for (le, c) in [(f64::INFINITY, 3.0), (0.5, 1.0), (0.1, 0.0), (0.25, 1.0)] {
            h.add_bucket(le, c);
        }
        assert_eq!(
            h.finish().buckets,
            vec![(0.1, 0.0), (0.25, 1.0), (0.5, 1.0), (f64::INFINITY, 3.0)]
        );
    }

    #[test]
    fn a_better_source_replaces_a_worse_one_whatever_the_order() {
        let mut m = ModelAcc::new(Cow::Borrowed("m"));
        *m.counter(Canonical::PrefixCacheHitsTotal, 1, None).unwrap() += 5.0;
        *m.counter(Canonical::PrefixCacheHitsTotal, 0, None).unwrap() += 7.0;
        assert!(m
            .counter(Canonical::PrefixCacheHitsTotal, 1, None)
            .is_none());
        assert_eq!(m.counter_value(Canonical::PrefixCacheHitsTotal), Some(7.0));
    }

    #[test]
    fn a_grouped_counter_counts_the_lowest_rank_of_each_group_whatever_the_order() {
        let mut c: Ranked<'_, f64> = Ranked::new();
        let group = |dp: &'static str, tp: u64| Some((Cow::Borrowed(dp), [0, tp, 0, 0]));
        *c.entry(group("0", 1)).unwrap() += 10.0;
        *c.entry(group("0", 0)).unwrap() += 10.0;
        assert!(c.entry(group("0", 1)).is_none());
        *c.entry(group("1", 2)).unwrap() += 4.0;
        *c.entry(group("1", 2)).unwrap() += 1.0;
        assert_eq!(c.total(), 15.0);
    }

    #[test]
    fn a_grouped_gauge_keeps_the_lowest_rank_of_each_group() {
        let mut g = GaugeAcc::default();
        g.add(Some((Cow::Borrowed("0"), [0, 1, 0, 0])), 10.0);
        g.add(Some((Cow::Borrowed("0"), [0, 0, 0, 0])), 11.0);
        g.add(Some((Cow::Borrowed("1"), [0, 2, 0, 0])), 5.0);
        assert_eq!(g.series(), 2);
        assert_eq!(g.sum(), 16.0);
    }
}
