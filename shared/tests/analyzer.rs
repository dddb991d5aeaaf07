//! The analyzer run over the in-memory store: snapshots in, stored analyses, group SLO state and
//! group recommendations out; a second run keeps a recommendation's workflow status.

use perfagent::analysis::BottleneckType;
use perfagent::analyzer::{self, AnalysisStore, RecommendationStatus};
use perfagent::instance::{Id, Instance};
use perfagent::snapshot::{Canonical, Engine, Histogram, MetricValue, ModelMetrics};
use perfagent::store::memory::MemoryStore;
use perfagent::store::{InstanceStore, SnapshotStore, StoredSnapshot};

const NOW: i64 = 1_800_000_000_000;
const INF: f64 = f64::INFINITY;

fn id(s: &str) -> Id {
    Id::parse("id", s).unwrap()
}

fn vllm(name: &str, group: &str) -> Instance {
    Instance {
        id: id(name),
        engine: Engine::Vllm,
        metrics_url: "http://10.0.0.1/metrics".into(),
        model: None,
        group: id(group),
        labels: Default::default(),
        config: [("max_num_seqs".to_string(), serde_json::json!(128))]
            .into_iter()
            .collect(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

/// A server under pressure at step `k` of 30 s steps: KV nearly full, a long queue, slow first tokens.
fn pressured(k: f64) -> ModelMetrics {
    let n = |v: f64| MetricValue::Number(v);
    let hist = |count: f64, fast: f64| {
        MetricValue::Histogram(Histogram {
            count,
            sum: count * 0.8,
            buckets: vec![
                (0.1, fast),
                (0.5, fast + (count - fast) * 0.5),
                (1.0, count),
                (INF, count),
            ],
        })
    };
    ModelMetrics {
        model: "llama".into(),
        metrics: [
            (Canonical::KvCacheUsageRatio, n(0.96)),
            (Canonical::RequestsWaiting, n(40.0)),
            (Canonical::RequestsRunning, n(128.0)),
            (Canonical::RequestSuccessTotal, n(1000.0 + 150.0 * k)),
            (Canonical::RequestFailureTotal, n(0.0)),
            (Canonical::GenerationTokensTotal, n(1e6 + 30_000.0 * k)),
            (Canonical::PromptTokensTotal, n(2e6 + 60_000.0 * k)),
            (Canonical::PreemptionsTotal, n(10.0 + 5.0 * k)),
            (Canonical::TtftSeconds, hist(1000.0 + 150.0 * k, 100.0)),
            (
                Canonical::E2eLatencySeconds,
                hist(1000.0 + 150.0 * k, 500.0),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

async fn seed(store: &MemoryStore) {
    for name in ["a", "b", "c"] {
        store.create_instance(&vllm(name, "chat")).await.unwrap();
        for k in 0..10 {
            let slot = NOW - 300_000 + k * 30_000;
            store
                .put_snapshots(&[StoredSnapshot {
                    instance_id: id(name),
                    slot_ms: slot,
                    scraped_at_ms: slot,
                    engine: Engine::Vllm,
                    generation: "vllm-v1".into(),
                    models: vec![pressured(k as f64)],
                    partial: None,
                    expires_at: NOW / 1000 + 3600,
                }])
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_pressured_group_gets_bottlenecks_slo_state_and_a_group_recommendation() {
    let store = MemoryStore::new();
    seed(&store).await;
    let report = analyzer::run(&store, NOW, 600_000).await.unwrap();
    assert_eq!(report.instances, 3);
    assert_eq!(report.groups, 1);
    assert!(report.bottlenecks >= 6, "{report:?}");
    assert!(report.recommendations >= 1, "{report:?}");

    let a = store.instance_analysis(&id("a")).await.unwrap().unwrap();
    assert_eq!(a.snapshots, 10);
    let analysis = &a.models[0].analysis;
    assert!(analysis
        .bottleneck(BottleneckType::MemoryPressure)
        .is_some());
    assert!(analysis.bottleneck(BottleneckType::QueueBuildup).is_some());

    let g = store.group_analysis(&id("chat")).await.unwrap().unwrap();
    assert!(g
        .analysis
        .bottlenecks
        .iter()
        .any(|b| b.kind == BottleneckType::MemoryPressure && b.affected_instances.len() == 3));
    let ttft = g.slo.iter().find(|r| r.objective == "ttft-500ms").unwrap();
    // Half of each step's new requests are slower than 0.5 s: far below a 99% target.
    assert_eq!(ttft.met, Some(false), "{ttft:?}");
    assert!(ttft.total > 0.0);

    let recs = store.recommendations(Some(&id("chat"))).await.unwrap();
    assert!(!recs.is_empty());
    for r in &recs {
        assert_eq!(r.engine, Engine::Vllm);
        assert_eq!(r.eligible_instances, 3);
        assert!(r.proposed_for.len() >= 2);
        assert!(r.id.starts_with("chat."));
    }
}

#[tokio::test]
async fn rerunning_the_analysis_keeps_a_recommendation_taken_by_a_workflow() {
    let store = MemoryStore::new();
    seed(&store).await;
    analyzer::run(&store, NOW, 600_000).await.unwrap();
    let recs = store.recommendations(None).await.unwrap();
    let first = &recs[0];
    assert!(store.mark_recommendation(&first.id, "wf-1").await.unwrap());
    analyzer::run(&store, NOW + 60_000, 600_000).await.unwrap();
    let again = store.recommendation(&first.id).await.unwrap().unwrap();
    assert_eq!(again.status, RecommendationStatus::InWorkflow);
    assert_eq!(again.workflow_id.as_deref(), Some("wf-1"));
    assert_eq!(again.first_seen_ms, NOW);
    assert_eq!(again.last_seen_ms, NOW + 60_000);
    assert_eq!(store.recommendations(None).await.unwrap().len(), recs.len());
}

#[tokio::test]
async fn an_instance_without_snapshots_is_analyzed_as_such_not_guessed() {
    let store = MemoryStore::new();
    store.create_instance(&vllm("lonely", "g")).await.unwrap();
    analyzer::run(&store, NOW, 600_000).await.unwrap();
    let a = store
        .instance_analysis(&id("lonely"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.snapshots, 0);
    assert!(a.models.is_empty());
    assert!(store.recommendations(None).await.unwrap().is_empty());
}
