//! What each engine lets the analysis see: a canonical quantity an engine never exports makes the
//! bottlenecks that need it "not evaluated", with the engine's reason, instead of guessed.
//!
//! Source: `fixtures/metrics-catalog.md` (§1 cross-engine map) and the engine adapters' notes.

use crate::snapshot::{Canonical, Engine};
use serde::Serialize;

/// How an engine provides a canonical quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "support", content = "note", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Support {
    /// Exported under the engine's own name (possibly only by recent versions).
    Exported,
    /// Derived by the adapter; the note says what it loses.
    Estimated(&'static str),
    /// The engine has no such metric in any version.
    NotExported(&'static str),
}

/// Whether `engine` exports `metric` (see the module doc for the source).
pub fn support(engine: Engine, metric: Canonical) -> Support {
    use Canonical::*;
    match (engine, metric) {
        (Engine::Tgi, KvCacheUsageRatio) => Support::NotExported(
            "TGI exports no KV-cache usage metric (only its batch token budget, \
             tgi_batch_current_max_tokens)",
        ),
        (Engine::Tgi, PreemptionsTotal) => Support::NotExported(
            "TGI exports no preemption metric (it does not evict running requests to free KV blocks)",
        ),
        (Engine::Tgi, PrefixCacheQueriesTotal | PrefixCacheHitsTotal) => {
            Support::NotExported("TGI exports no prefix-cache metric")
        }
        (Engine::Tgi, TtftSeconds) => Support::Estimated(
            "TGI exports no TTFT: the adapter estimates its mean from validation + queue + \
             prefill durations, with no buckets, so no quantile can be computed",
        ),
        (Engine::Tgi, InterTokenLatencySeconds) => Support::Estimated(
            "tgi_request_mean_time_per_token_duration: each request's inference time divided by \
             its generated tokens, prefill included",
        ),
        (Engine::Sglang, PrefixCacheQueriesTotal | PrefixCacheHitsTotal) => Support::Estimated(
            "hits are SGLang's cached_tokens_total (from 0.4.2), queries its prompt_tokens_total",
        ),
        (Engine::Sglang, PreemptionsTotal) => Support::Estimated(
            "SGLang's retractions (num_retracted_requests_total, from 0.5) stand for preemptions",
        ),
        _ => Support::Exported,
    }
}
