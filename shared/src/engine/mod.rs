//! Engine adapters: recognize which inference engine (vLLM, TGI, SGLang) and which naming
//! generation produced a parsed `/metrics` exposition, and map it to the canonical, engine-neutral
//! [`Snapshot`].
//!
//! The rules (which name feeds which canonical quantity, how series are aggregated, what is
//! derived) are documented per engine in `docs/engines.md`. In short:
//!
//! * Each recognized metric is a *source* with a priority: the current name wins over a deprecated
//!   one when both are exported side by side (vLLM 0.10 exports `kv_cache_usage_perc` next to
//!   `gpu_cache_usage_perc`), per model, whatever the order of the lines.
//! * Series are grouped by model (`model_name`; SGLang 0.3.x `name`; TGI has no model label and
//!   gets the empty model name). Within a model, counters and histograms are summed over every
//!   other label (engines, Ray replicas, DP ranks, finish reasons); `requests_running`/`waiting`
//!   are summed and `kv_cache_usage_ratio` is averaged over engines. SGLang's TP/PP ranks of one
//!   DP rank repeat the same values: only the lowest rank of each DP rank counts.
//! * A quantity the engine does not export is absent, never zero. Metrics no rule knows are
//!   counted in [`Snapshot::unknown_families`] and otherwise ignored.
//!
//! The work is one pass over the samples with no allocation per sample: labels are read in
//! place, and a sample name is resolved once per run of equal names (a histogram's buckets).

mod accumulate;
mod sglang;
mod tgi;
mod vllm;

use crate::promtext::{Exposition, Labels, MetricType, Sample};
use crate::snapshot::{Canonical, Engine, Snapshot};
use accumulate::{AuxKind, ModelAcc, Models, RankOrder, Source, Target};
use std::borrow::Cow;

/// Why an exposition could not be normalized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdaptError {
    #[error(
        "no vLLM, TGI or SGLang metrics found among {families} metric families \
         (expected names starting with vllm:, ray_vllm:, tgi_, sglang: or sglang_)"
    )]
    NotRecognized { families: usize },
    #[error(
        "the metrics were said to come from {hint}, but they have no {hint} metric and \
         {found_families} {found} metric families"
    )]
    HintContradicts {
        hint: Engine,
        found: Engine,
        found_families: usize,
    },
}

/// Normalizes one exposition. `hint` names the engine when the caller knows it (the instance's
/// registration); it must agree with the names present.
pub fn normalize(exp: &Exposition<'_>, hint: Option<Engine>) -> Result<Snapshot, AdaptError> {
    let counts = families_per_engine(exp);
    let engine = choose_engine(&counts, exp.families.len(), hint)?;
    let rules = Rules::of(engine);

    let mut seen = Seen::default();
    let mut models = Models::default();
    let mut unknown_families = 0;
    for family in &exp.families {
        if let Some((stem, ray)) = rules.stem(family.name) {
            seen.ray |= ray;
            (rules.observe)(strip_total(stem), &mut seen);
        }
        let mut recognized = false;
        // Consecutive samples mostly share a name (a histogram's buckets): resolve it once.
        let mut last: Option<(&str, Option<(Source, Part)>)> = None;
        for sample in &family.samples {
            let resolved = match last {
                Some((name, resolved)) if name == sample.name => resolved,
                _ => {
                    let resolved = rules.resolve(sample.name);
                    last = Some((sample.name, resolved));
                    resolved
                }
            };
            let Some((source, part)) = resolved else {
                continue;
            };
            recognized = true;
            if family.kind == MetricType::Summary {
                seen.summaries = true;
            }
            add(engine, &mut models, &mut seen, source, part, sample);
        }
        let declared_only = family.samples.is_empty() && rules.resolve(family.name).is_some();
        if !recognized && !declared_only {
            unknown_families += 1;
        }
    }

    let mut notes = Notes::default();
    for model in models.iter_mut() {
        match engine {
            Engine::Vllm => vllm::finish(model, &mut notes),
            Engine::Tgi => tgi::finish(model, &mut notes),
            Engine::Sglang => sglang::finish(model, &mut notes),
        }
    }
    let generation = match engine {
        Engine::Vllm => vllm::generation(&seen),
        Engine::Tgi => tgi::generation(&seen),
        Engine::Sglang => sglang::generation(&seen),
    };
    match engine {
        Engine::Vllm => vllm::notes(&seen, &models, &mut notes),
        Engine::Tgi => tgi::notes(&seen, &mut notes),
        Engine::Sglang => sglang::notes(&seen, &mut notes),
    }
    for other in Engine::ALL {
        if other != engine && counts.get(other) > 0 {
            notes.push(format!(
                "{} {other} metric families were ignored (counted as unknown): \
                 the exposition was read as {engine}",
                counts.get(other)
            ));
        }
    }

    let mut models: Vec<_> = models
        .into_vec()
        .into_iter()
        .map(ModelAcc::finish)
        .collect();
    models.sort_by(|a, b| a.model.cmp(&b.model));
    Ok(Snapshot {
        engine,
        generation: generation.to_string(),
        models,
        unknown_families,
        notes: notes.0,
    })
}

/// The engine whose names an exposition carries, if any (the one with the most families).
pub fn detect(exp: &Exposition<'_>) -> Option<Engine> {
    choose_engine(&families_per_engine(exp), exp.families.len(), None).ok()
}

/// How many families carry each engine's prefixes.
#[derive(Debug, Default)]
struct EngineCounts([usize; 3]);

impl EngineCounts {
    fn slot(engine: Engine) -> usize {
        match engine {
            Engine::Vllm => 0,
            Engine::Tgi => 1,
            Engine::Sglang => 2,
        }
    }

    fn get(&self, engine: Engine) -> usize {
        self.0.get(Self::slot(engine)).copied().unwrap_or(0)
    }

    fn bump(&mut self, engine: Engine) {
        if let Some(n) = self.0.get_mut(Self::slot(engine)) {
            *n += 1;
        }
    }
}

fn families_per_engine(exp: &Exposition<'_>) -> EngineCounts {
    let mut counts = EngineCounts::default();
    for family in &exp.families {
        if let Some(engine) = Engine::ALL
            .into_iter()
            .find(|&e| Rules::of(e).stem(family.name).is_some())
        {
            counts.bump(engine);
        }
    }
    counts
}

fn choose_engine(
    counts: &EngineCounts,
    families: usize,
    hint: Option<Engine>,
) -> Result<Engine, AdaptError> {
    // Ties go to the first engine of `Engine::ALL`; a real server exports one engine's names.
    let best = Engine::ALL
        .into_iter()
        .fold(None::<Engine>, |best, e| match best {
            Some(b) if counts.get(b) >= counts.get(e) => Some(b),
            _ if counts.get(e) > 0 => Some(e),
            _ => best,
        });
    match (hint, best) {
        (Some(h), _) if counts.get(h) > 0 => Ok(h),
        (Some(h), Some(found)) => Err(AdaptError::HintContradicts {
            hint: h,
            found,
            found_families: counts.get(found),
        }),
        (_, Some(found)) => Ok(found),
        (_, None) => Err(AdaptError::NotRecognized { families }),
    }
}

/// Which part of a family a sample is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A plain value (gauge, counter with or without `_total`, summary quantile).
    Value,
    Bucket,
    Sum,
    Count,
    /// A `_created` timestamp: recognized, never used.
    Created,
}

/// Suffixes tried, in order, when a stem is not itself a known name. `_total` comes first so a
/// counter is looked up by its base name with or without it (TGI and Ray drop it).
const SUFFIXES: [(&str, Part); 5] = [
    ("_total", Part::Value),
    ("_bucket", Part::Bucket),
    ("_sum", Part::Sum),
    ("_count", Part::Count),
    ("_created", Part::Created),
];

fn strip_total(stem: &str) -> &str {
    stem.strip_suffix("_total").unwrap_or(stem)
}

/// One engine's name rules.
struct Rules {
    prefixes: &'static [&'static str],
    /// Prefixes that mean "behind Ray Serve" (a subset of `prefixes`).
    ray_prefixes: &'static [&'static str],
    /// Base name (prefix, `_total` and histogram suffixes removed) → source.
    lookup: fn(&str) -> Option<Source>,
    /// Notes generation markers from a family's base name.
    observe: fn(&str, &mut Seen),
}

impl Rules {
    fn of(engine: Engine) -> Rules {
        match engine {
            Engine::Vllm => Rules {
                prefixes: vllm::PREFIXES,
                ray_prefixes: vllm::RAY_PREFIXES,
                lookup: vllm::lookup,
                observe: vllm::observe,
            },
            Engine::Tgi => Rules {
                prefixes: tgi::PREFIXES,
                ray_prefixes: &[],
                lookup: tgi::lookup,
                observe: tgi::observe,
            },
            Engine::Sglang => Rules {
                prefixes: sglang::PREFIXES,
                ray_prefixes: &[],
                lookup: sglang::lookup,
                observe: sglang::observe,
            },
        }
    }

    /// The name without the engine prefix, and whether the prefix was a Ray one.
    fn stem<'n>(&self, name: &'n str) -> Option<(&'n str, bool)> {
        self.prefixes.iter().find_map(|p| {
            name.strip_prefix(p)
                .map(|stem| (stem, self.ray_prefixes.contains(p)))
        })
    }

    fn resolve(&self, name: &str) -> Option<(Source, Part)> {
        let (stem, _) = self.stem(name)?;
        if let Some(source) = (self.lookup)(stem) {
            return Some((source, Part::Value));
        }
        SUFFIXES.iter().find_map(|&(suffix, part)| {
            let base = stem.strip_suffix(suffix)?;
            (self.lookup)(base).map(|source| (source, part))
        })
    }
}

/// What the pass noticed, for the generation and the notes.
#[derive(Debug, Default)]
struct Seen {
    /// vLLM names under a `ray_vllm` prefix.
    ray: bool,
    vllm_v0: bool,
    vllm_v1: bool,
    /// vLLM V0's `gpu_prefix_cache_hit_rate` gauge (not mapped: it is not a counter).
    vllm_hit_rate_gauge: bool,
    /// SGLang 0.3.x names.
    sglang_03: bool,
    /// SGLang ≥ 0.5 names.
    sglang_05: bool,
    /// SGLang model read from the 0.3.x `name` label.
    sglang_name_label: bool,
    /// SGLang `tp_rank`/`dp_rank`/`pp_rank`/... labels.
    sglang_ranks: bool,
    /// SGLang 0.3.x percent `cache_hit_rate` (not mapped).
    sglang_hit_rate_gauge: bool,
    /// A mapped family came as a summary (TGI before 0.5).
    summaries: bool,
}

/// Notes for the snapshot, each once, in order of first mention.
#[derive(Debug, Default)]
struct Notes(Vec<String>);

impl Notes {
    fn push(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.0.contains(&note) {
            self.0.push(note);
        }
    }
}

/// What the adapters read from a sample's labels, gathered in one pass over them (a histogram
/// bucket needs its model, its `le` and, for SGLang, its ranks).
#[derive(Debug, Default)]
struct LabelFacts<'a> {
    model_name: Option<Cow<'a, str>>,
    /// SGLang 0.3.x's model label (and 0.4's function-timer name, which is never mapped).
    name: Option<Cow<'a, str>>,
    le: Option<Cow<'a, str>>,
    /// vLLM's finish reason (`abort` is a failure).
    finished_reason: Option<Cow<'a, str>>,
    /// TGI's batch method (`prefill`/`decode`).
    method: Option<Cow<'a, str>>,
    /// SGLang's DP rank, the group of its rank deduplication.
    dp_rank: Option<Cow<'a, str>>,
    /// SGLang's (PP, TP, MoE-EP rank, pid), 0 when absent.
    ranks: RankOrder,
    has_ranks: bool,
}

impl<'a> LabelFacts<'a> {
    fn read(labels: &Labels<'a>) -> Self {
        let mut facts = LabelFacts::default();
        for (name, value) in labels.iter() {
            let rank_slot = match name {
                "model_name" => {
                    facts.model_name = Some(value);
                    continue;
                }
                "le" => {
                    facts.le = Some(value);
                    continue;
                }
                "name" => {
                    facts.name = Some(value);
                    continue;
                }
                "finished_reason" => {
                    facts.finished_reason = Some(value);
                    continue;
                }
                "method" => {
                    facts.method = Some(value);
                    continue;
                }
                "dp_rank" => {
                    facts.has_ranks = true;
                    facts.dp_rank = Some(value);
                    continue;
                }
                "pp_rank" => 0,
                "tp_rank" => 1,
                "moe_ep_rank" => 2,
                // A pid orders duplicates but is not a rank label by itself.
                "pid" => 3,
                _ => continue,
            };
            facts.has_ranks |= rank_slot != 3;
            if let Some(slot) = facts.ranks.get_mut(rank_slot) {
                *slot = value.trim().parse::<u64>().unwrap_or(u64::MAX);
            }
        }
        facts
    }

    fn model(&mut self, engine: Engine, seen: &mut Seen) -> Cow<'a, str> {
        let model = match engine {
            Engine::Vllm => self.model_name.take(),
            // TGI serves one model and labels none of its series with it.
            Engine::Tgi => None,
            Engine::Sglang => self.model_name.take().or_else(|| {
                seen.sglang_name_label |= self.name.is_some();
                self.name.take()
            }),
        };
        model.unwrap_or(Cow::Borrowed(""))
    }
}

fn add<'a>(
    engine: Engine,
    models: &mut Models<'a>,
    seen: &mut Seen,
    source: Source,
    part: Part,
    sample: &Sample<'a>,
) {
    use Part::*;
    let used = matches!(
        (source.target, part),
        (
            Target::Gauge(_) | Target::Counter(_) | Target::VllmFinished,
            Value
        ) | (Target::Histogram(_), Bucket | Sum | Count)
            | (Target::CounterFromSum(_), Sum)
            | (Target::Aux(AuxKind::SglangFinished), Value)
            | (
                Target::Aux(AuxKind::TgiValidation | AuxKind::TgiPrefill),
                Sum | Count
            )
    );
    // A NaN or infinite sample (a broken exporter) would poison every sum it joins.
    if !used || !sample.value.is_finite() {
        return;
    }
    let value = sample.value;
    let mut facts = LabelFacts::read(&sample.labels);
    let model = models.get(facts.model(engine, seen));
    let prio = source.prio;
    let group = match engine {
        Engine::Sglang => {
            seen.sglang_ranks |= facts.has_ranks;
            Some(sglang::rank_group(facts.dp_rank.take(), facts.ranks))
        }
        Engine::Vllm | Engine::Tgi => None,
    };
    match source.target {
        Target::Gauge(name) => {
            if let Some(g) = model.gauge(name, prio) {
                g.add(group, value);
            }
        }
        Target::Counter(name) | Target::CounterFromSum(name) => {
            if let Some(c) = model.counter(name, prio, group) {
                *c += value;
            }
        }
        Target::VllmFinished => {
            let abort = facts.finished_reason.as_deref() == Some("abort");
            // Both exist as soon as the family does: zero aborts is a real zero.
            let success = model.counter(Canonical::RequestSuccessTotal, prio, None);
            if let Some(c) = success {
                *c += if abort { 0.0 } else { value };
            }
            if let Some(c) = model.counter(Canonical::RequestFailureTotal, prio, None) {
                *c += if abort { value } else { 0.0 };
            }
        }
        Target::Histogram(name) => {
            if let Some(h) = model.histogram(name, prio, group) {
                match part {
                    Bucket => {
                        let le = facts.le.and_then(|le| le.trim().parse::<f64>().ok());
                        if let Some(le) = le.filter(|le| !le.is_nan()) {
                            h.add_bucket(le, value);
                        }
                    }
                    Sum => h.sum += value,
                    Count => h.count += value,
                    Value | Created => {}
                }
            }
        }
        Target::Aux(kind) => {
            if kind == AuxKind::TgiPrefill && facts.method.as_deref() != Some("prefill") {
                return;
            }
            if let Some(h) = model.aux(kind, group) {
                match part {
                    // A counter aux (SGLang finished requests) is a count of requests.
                    Value | Count => h.count += value,
                    Sum => h.sum += value,
                    Bucket | Created => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_is_found_with_or_without_total_and_its_created_companion_is_recognized() {
        let rules = Rules::of(Engine::Vllm);
        let with = rules.resolve("vllm:prompt_tokens_total");
        let without = rules.resolve("ray_vllm:prompt_tokens");
        let created = rules.resolve("vllm:prompt_tokens_created");
        assert_eq!(with.map(|r| r.1), Some(Part::Value));
        assert_eq!(with.map(|r| r.0), without.map(|r| r.0));
        assert_eq!(created.map(|r| r.1), Some(Part::Created));
    }

    #[test]
    fn a_tgi_counter_ending_in_count_is_not_read_as_a_histogram_count() {
        let rules = Rules::of(Engine::Tgi);
        assert_eq!(rules.resolve("tgi_request_count"), None);
        assert_eq!(
            rules.resolve("tgi_request_duration_count").map(|r| r.1),
            Some(Part::Count)
        );
    }

    #[test]
    fn a_histogram_named_total_is_not_taken_for_a_counter() {
        let rules = Rules::of(Engine::Vllm);
        assert_eq!(rules.resolve("vllm:iteration_tokens_total_bucket"), None);
        assert_eq!(rules.resolve("vllm:iteration_tokens_total_sum"), None);
    }
}
