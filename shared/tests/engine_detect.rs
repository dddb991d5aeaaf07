//! Engine detection and the engine hint: what is recognized, and the errors when nothing is or the
//! hint disagrees with the names present.

use perfagent::engine::{detect, normalize, AdaptError};
use perfagent::promtext::{parse, Mode};
use perfagent::snapshot::Engine;

const NODE_EXPORTER: &str = "# TYPE node_load1 gauge\nnode_load1 0.5\n\
                             # TYPE process_open_fds gauge\nprocess_open_fds 12\n";

#[test]
fn metrics_of_no_known_engine_are_refused_with_the_family_count() {
    let exp = parse(NODE_EXPORTER.as_bytes(), Mode::Lenient).expect("parses");
    assert_eq!(detect(&exp), None);
    let err = normalize(&exp, None).expect_err("not an engine");
    assert_eq!(err, AdaptError::NotRecognized { families: 2 });
    assert!(err.to_string().contains("no vLLM, TGI or SGLang metrics"));
}

#[test]
fn an_empty_exposition_is_not_an_engine_even_with_a_hint() {
    let exp = parse(b"", Mode::Lenient).expect("parses");
    let err = normalize(&exp, Some(Engine::Vllm)).expect_err("nothing there");
    assert_eq!(err, AdaptError::NotRecognized { families: 0 });
}

#[test]
fn a_hint_that_contradicts_the_names_is_an_error_naming_both() {
    let text = "# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n";
    let exp = parse(text.as_bytes(), Mode::Lenient).expect("parses");
    let err = normalize(&exp, Some(Engine::Sglang)).expect_err("hint contradicts");
    assert_eq!(
        err,
        AdaptError::HintContradicts {
            hint: Engine::Sglang,
            found: Engine::Tgi,
            found_families: 1
        }
    );
}

#[test]
fn a_hint_that_agrees_is_used_and_other_engines_families_are_noted_as_unknown() {
    let text = "# TYPE tgi_queue_size gauge\ntgi_queue_size 3\n\
                # TYPE vllm:num_requests_waiting gauge\n\
                vllm:num_requests_waiting{model_name=\"m\"} 1\n\
                # TYPE vllm:num_requests_running gauge\n\
                vllm:num_requests_running{model_name=\"m\"} 1\n";
    let exp = parse(text.as_bytes(), Mode::Lenient).expect("parses");
    assert_eq!(detect(&exp), Some(Engine::Vllm), "most families win");
    let snap = normalize(&exp, Some(Engine::Tgi)).expect("hint present in the names");
    assert_eq!(snap.engine, Engine::Tgi);
    assert_eq!(snap.unknown_families, 2);
    assert!(snap
        .notes
        .iter()
        .any(|n| n.contains("2 vllm metric families were ignored")));
}
