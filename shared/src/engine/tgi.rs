//! Hugging Face TGI's names and how they map to the canonical vocabulary, including the TTFT
//! estimate TGI itself does not export.

use super::accumulate::{AuxKind, HistAcc, ModelAcc, Source, Target};
use super::{Notes, Seen};
use crate::snapshot::Canonical::{self, *};

pub(super) const PREFIXES: &[&str] = &["tgi_"];

const fn src(target: Target) -> Option<Source> {
    Some(Source { target, prio: 0 })
}

const fn histogram(name: Canonical) -> Option<Source> {
    src(Target::Histogram(name))
}

/// TGI's counters have no `_total`, durations are seconds without a unit suffix, and no name has
/// changed since v0.3.0, so every source has priority 0.
pub(super) fn lookup(base: &str) -> Option<Source> {
    match base {
        "batch_current_size" => src(Target::Gauge(RequestsRunning)),
        "queue_size" => src(Target::Gauge(RequestsWaiting)),
        "request_success" => src(Target::Counter(RequestSuccessTotal)),
        "request_failure" => src(Target::Counter(RequestFailureTotal)),
        "request_input_length" => src(Target::CounterFromSum(PromptTokensTotal)),
        "request_generated_tokens" => src(Target::CounterFromSum(GenerationTokensTotal)),
        "request_duration" => histogram(E2eLatencySeconds),
        "request_queue_duration" => histogram(QueueTimeSeconds),
        "request_mean_time_per_token_duration" => histogram(InterTokenLatencySeconds),
        "request_validation_duration" => src(Target::Aux(AuxKind::TgiValidation)),
        "batch_inference_duration" => src(Target::Aux(AuxKind::TgiPrefill)),
        _ => None,
    }
}

pub(super) fn observe(_base: &str, _seen: &mut Seen) {}

pub(super) fn generation(_seen: &Seen) -> &'static str {
    "tgi"
}

/// TTFT ≈ validation + queue + prefill. TGI records the three separately, and the prefill
/// duration per *batch*, not per request, so only the mean can be estimated (the distribution of
/// a sum is not the sum of distributions): count = requests that left the queue, sum = count ×
/// (mean validation + mean queue + mean prefill batch duration), no buckets.
fn estimate_ttft(validation: &HistAcc, queue: &HistAcc, prefill: &HistAcc) -> Option<HistAcc> {
    let mean = |h: &HistAcc| (h.count > 0.0).then(|| h.sum / h.count);
    let requests = queue.count;
    let sum = if requests > 0.0 {
        requests * (mean(validation)? + mean(queue)? + mean(prefill)?)
    } else {
        0.0
    };
    Some(HistAcc::count_sum(requests, sum))
}

pub(super) fn finish(model: &mut ModelAcc<'_>, notes: &mut Notes) {
    let estimate = match (
        model.aux_value(AuxKind::TgiValidation),
        model.histogram_value(QueueTimeSeconds),
        model.aux_value(AuxKind::TgiPrefill),
    ) {
        (Some(v), Some(q), Some(p)) => estimate_ttft(&v, &q, &p),
        _ => None,
    };
    match estimate {
        Some(ttft) => {
            model.set_histogram(TtftSeconds, ttft);
            notes.push(
                "ttft_seconds is estimated, count and sum only (no buckets): TGI does not export \
                 TTFT, so its mean is taken as mean tgi_request_validation_duration + mean \
                 tgi_request_queue_duration + mean tgi_batch_inference_duration{method=\"prefill\"} \
                 (a per-batch time), over the requests counted by tgi_request_queue_duration",
            );
        }
        None => notes.push(
            "ttft_seconds is absent: TGI does not export TTFT and the validation, queue and \
             prefill durations needed to estimate it are not all present",
        ),
    }
    if model.has(PromptTokensTotal) || model.has(GenerationTokensTotal) {
        notes.push(
            "prompt_tokens_total and generation_tokens_total are the _sum of TGI's \
             tgi_request_input_length and tgi_request_generated_tokens histograms",
        );
    }
    if model.has(InterTokenLatencySeconds) {
        notes.push(
            "inter_token_latency_seconds is tgi_request_mean_time_per_token_duration: each \
             request's inference time divided by its generated tokens, prefill included",
        );
    }
    if model.has(RequestFailureTotal) {
        notes.push("request_failure_total sums tgi_request_failure over every err label");
    }
}

pub(super) fn notes(seen: &Seen, notes: &mut Notes) {
    notes.push(
        "TGI exports no KV-cache usage, preemption or prefix-cache metric: \
         kv_cache_usage_ratio, preemptions_total and prefix_cache_* are absent",
    );
    if seen.summaries {
        notes.push(
            "this TGI exports summaries instead of histograms (releases before 0.5): \
             its latency histograms carry count and sum only",
        );
    }
}
