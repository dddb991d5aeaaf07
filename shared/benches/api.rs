//! A warm API request handled in-process against the in-memory store, next to the original
//! design's claim of 8–15 ms p50 per request (8 ms taken as the anchor).
//!
//! Run: `cargo bench -p perfagent --bench api`. Prints `RESULT api_p50_ms=…`, `RESULT api_p99_ms=…`
//! and `RESULT api_vs_seed=…` (how many times faster than 8 ms the p50 is).
//!
//! criterion runs the requests (`support::sampled`: warm-up, flat sampling, its own report of the
//! mean); every request of its samples is also timed on its own, for the percentiles.

mod support;

use bytes::Bytes;
use http::Method;
use perfagent::api::{handle, ApiContext, ApiRequest};
use perfagent::netguard::NetGuard;
use perfagent::scrape::{ScrapeConfig, Scraper};
use perfagent::store::memory::MemoryStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEED_P50_MS: f64 = 8.0;
const INSTANCES: usize = 200;
/// criterion samples (each thousands of requests: about 3 s in all).
const SAMPLES: usize = 30;

fn request(method: Method, path: String, body: String) -> ApiRequest {
    ApiRequest {
        method,
        path,
        query: Vec::new(),
        body: Bytes::from(body),
        principal: None,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let guard = NetGuard::from_list("10.0.0.0/8").expect("a network list");
    let ctx = ApiContext {
        store: Arc::new(MemoryStore::new()),
        guard: guard.clone(),
        scraper: Scraper::new(guard, ScrapeConfig::default()).expect("an HTTP client"),
        snapshot_ttl_hours: 48,
        service: "bench".into(),
        now_ms: perfagent::clock::now_ms,
        probe: Arc::new(perfagent::probe::NoDependencies),
        emit_emf: false,
        workflows: perfagent::api::WorkflowApi::in_memory(),
    };
    rt.block_on(async {
        for i in 0..INSTANCES {
            let body = format!(
                r#"{{"id":"vllm-{i}","engine":"vllm","group":"g{}","metrics_url":"http://10.0.{}.{}:8000/metrics","config":{{"max_num_seqs":256}}}}"#,
                i % 4,
                i / 250,
                i % 250
            );
            let resp = handle(&ctx, request(Method::POST, "/api/v1/instances".into(), body)).await;
            assert_eq!(resp.status(), 201, "{}", resp.body());
        }
    });
    // The orchestrator's most frequent call: a GET of one instance, each request timed on its own.
    let mut next = 0usize;
    let per_sample = support::sampled(
        "api",
        "get_instance_in_memory",
        SAMPLES,
        Duration::from_secs(3),
        |_| {},
        |iters| {
            let mut latencies = Vec::with_capacity(iters as usize);
            let mut total = Duration::ZERO;
            rt.block_on(async {
                for _ in 0..iters {
                    let req = request(
                        Method::GET,
                        format!("/api/v1/instances/vllm-{}", next % INSTANCES),
                        String::new(),
                    );
                    next += 1;
                    let t = Instant::now();
                    let resp = handle(&ctx, req).await;
                    let elapsed = t.elapsed();
                    total += elapsed;
                    latencies.push(elapsed.as_secs_f64() * 1000.0);
                    assert_eq!(resp.status(), 200);
                }
            });
            (total, latencies)
        },
    );
    let mut samples: Vec<f64> = per_sample.into_iter().flatten().collect();
    if samples.is_empty() {
        eprintln!("api bench: criterion took no samples (filtered out by an argument?)");
        std::process::exit(1);
    }
    println!(
        "api: {} requests timed in {SAMPLES} criterion samples",
        samples.len()
    );
    {
        samples.sort_by(f64::total_cmp);
        let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let (p50, p99) = (p(0.5), p(0.99));
        println!("RESULT api_p50_ms={p50:.4}");
        println!("RESULT api_p99_ms={p99:.4}");
        println!("RESULT api_vs_seed={:.1}", SEED_P50_MS / p50);
        println!(
            "goal: p50 <= 0.8 ms (1/10 of the seed's 8 ms): {}",
            if p50 <= 0.8 { "met" } else { "NOT met" }
        );
    }
}
