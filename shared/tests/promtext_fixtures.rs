//! The parser on the two real captures in the kit (`../shared/fixtures/metrics/`): the family and
//! sample counts Python's `prometheus_client` reports for the same files, and known values.

use perfagent::promtext::{parse, Format, MetricType, Mode};
use std::path::Path;

fn capture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/metrics")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const VLLM: &str = "vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom";
const SGLANG: &str = "sglang-0.4.x-docs-production_metrics-llama3.1-8b.prom";

#[test]
fn the_vllm_capture_has_67_families_and_360_samples_like_prometheus_client_sees() {
    let bytes = capture(VLLM);
    assert_ne!(
        bytes.last(),
        Some(&b'\n'),
        "the capture lacks a final newline"
    );
    let e = parse(&bytes, Mode::Lenient).expect("lenient parse");
    assert_eq!(e.families.len(), 67);
    assert_eq!(e.sample_count(), 360);
    let histograms = e
        .families
        .iter()
        .filter(|f| f.kind == MetricType::Histogram)
        .count();
    assert!(histograms >= 12, "{histograms} histograms");
}

#[test]
fn vllm_colon_names_labels_and_go_style_exponents_come_through() {
    let bytes = capture(VLLM);
    let e = parse(&bytes, Mode::Lenient).expect("lenient parse");

    let running = e.family("vllm:num_requests_running").expect("family");
    assert_eq!(running.kind, MetricType::Gauge);
    assert_eq!(
        running.help.as_deref(),
        Some("Number of requests in model execution batches.")
    );
    let s = &running.samples[0];
    assert_eq!(s.labels.get("engine").as_deref(), Some("0"));
    assert_eq!(
        s.labels.get("model_name").as_deref(),
        Some("Qwen/Qwen3-4B-Instruct-2507-FP8")
    );

    let prompt = e.family("vllm:prompt_tokens_total").expect("family");
    assert_eq!(prompt.kind, MetricType::Counter);
    assert_eq!(prompt.samples[0].value, 246.0);

    let vmem = e.family("process_virtual_memory_bytes").expect("family");
    assert_eq!(vmem.samples[0].value, 1.372014592e10);

    let e2e = e
        .family("vllm:e2e_request_latency_seconds")
        .expect("family");
    assert_eq!(e2e.kind, MetricType::Histogram);
    let count = e2e
        .samples
        .iter()
        .find(|s| s.name == "vllm:e2e_request_latency_seconds_count")
        .expect("_count sample");
    assert_eq!(count.value, 6.0);
    let inf = e2e
        .samples
        .iter()
        .find(|s| s.labels.get("le").as_deref() == Some("+Inf"))
        .expect("+Inf bucket");
    assert_eq!(inf.value, 6.0);

    // vLLM V1 exposes each counter's `_created` as a gauge family of its own.
    let created = e
        .family("vllm:prompt_tokens_created")
        .expect("_created family");
    assert_eq!(created.kind, MetricType::Gauge);

    let info = e.family("vllm:cache_config_info").expect("family");
    assert_eq!(
        info.samples[0].labels.get("block_size").as_deref(),
        Some("16")
    );
}

#[test]
fn the_vllm_capture_is_valid_strict_prometheus_text_once_it_ends_with_a_newline() {
    let mut bytes = capture(VLLM);
    parse(&bytes, Mode::Strict(Format::Prometheus)).expect_err("no final newline");
    bytes.push(b'\n');
    let e = parse(&bytes, Mode::Strict(Format::Prometheus)).expect("strict parse");
    assert_eq!(e.sample_count(), 360);
}

#[test]
fn the_sglang_capture_has_12_families_and_91_samples_with_sum_before_buckets() {
    let bytes = capture(SGLANG);
    let e = parse(&bytes, Mode::Lenient).expect("lenient parse");
    assert_eq!(e.families.len(), 12);
    assert_eq!(e.sample_count(), 91);

    let ttft = e
        .family("sglang:time_to_first_token_seconds")
        .expect("family");
    assert_eq!(ttft.kind, MetricType::Histogram);
    assert_eq!(
        ttft.samples[0].name, "sglang:time_to_first_token_seconds_sum",
        "SGLang prints _sum before the buckets"
    );
    assert_eq!(ttft.samples[0].value, 2.3518979474117756e6);

    let func = e.family("sglang:func_latency_seconds").expect("family");
    let noisy = func
        .samples
        .iter()
        .find(|s| s.labels.get("le").as_deref() == Some("0.07500000000000001"))
        .expect("float-noise bucket bound");
    assert_eq!(noisy.value, 14006.0);

    let queue = e.family("sglang:num_queue_reqs").expect("family");
    assert_eq!(queue.samples[0].value, 2826.0);
    assert_eq!(
        e.family("sglang:prompt_tokens_total")
            .map(|f| f.samples[0].value),
        Some(8.128902e6)
    );

    parse(&bytes, Mode::Strict(Format::Prometheus)).expect("valid Prometheus text");
}

#[test]
fn tgi_style_output_with_blank_lines_and_counters_without_total_parses() {
    // The shape of TGI's exporter (see the metrics catalog §0): a blank line after each family,
    // counters without `_total`, a family without HELP, integer values, float-noise buckets.
    let text = "# HELP tgi_request_count Total number of requests\n# TYPE tgi_request_count counter\ntgi_request_count 109\n\n# TYPE tgi_batch_max_total_tokens gauge\ntgi_batch_max_total_tokens 12000\n\n# TYPE tgi_request_duration histogram\ntgi_request_duration_bucket{le=\"0.00015000000000000001\"} 0\ntgi_request_duration_bucket{le=\"+Inf\"} 109\ntgi_request_duration_sum 312.5\ntgi_request_duration_count 109\n\n";
    for mode in [Mode::Lenient, Mode::Strict(Format::Prometheus)] {
        let e = parse(text.as_bytes(), mode).expect("TGI output parses");
        assert_eq!(e.families.len(), 3);
        let count = e.family("tgi_request_count").expect("family");
        assert_eq!(count.kind, MetricType::Counter);
        assert_eq!(count.samples[0].value, 109.0);
        assert_eq!(
            e.family("tgi_batch_max_total_tokens")
                .and_then(|f| f.help.as_deref()),
            None
        );
        assert_eq!(
            e.family("tgi_request_duration").map(|f| f.samples.len()),
            Some(4)
        );
    }
}
