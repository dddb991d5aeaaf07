//! The collector's entry for a scraped body (`collect::normalize_body`: lenient parse, engine
//! adapter, and salvage of the lines before a parse error) with an engine hint: it never panics,
//! the snapshot is of the hinted engine and well formed, and a salvaged (partial) snapshot has at
//! least one model. The hint is picked by the input's length, so that every hint is tried at a
//! third of the cost of trying all three on each input (`engine_normalize` does that).
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfagent::collect::normalize_body;
use perfagent::snapshot::Engine;
use perfagent_fuzz::check_snapshot;

fuzz_target!(|data: &[u8]| {
    let hint = Engine::ALL[data.len() % Engine::ALL.len()];
    if let Ok((s, partial)) = normalize_body(data, hint) {
        assert_eq!(s.engine, hint, "hint {hint} not honored");
        assert!(
            partial.is_none() || !s.models.is_empty(),
            "a partial snapshot without models: {partial:?}"
        );
        check_snapshot(&s);
    }
});
