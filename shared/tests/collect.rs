//! The collection pass against real HTTP servers on loopback (healthy, dead, slow, garbage, huge)
//! and the in-memory store: the rest are collected, the bad ones are marked, nothing panics.

use perfagent::breaker::BreakerState;
use perfagent::collect::{collect_pass, CollectorConfig, Outcome, PassReport};
use perfagent::instance::{Id, Instance};
use perfagent::netguard::NetGuard;
use perfagent::scrape::{ScrapeConfig, Scraper};
use perfagent::snapshot::{Canonical, Engine};
use perfagent::store::memory::MemoryStore;
use perfagent::store::{InstanceStore, SnapshotStore};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn capture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../shared/fixtures/metrics/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const VLLM: &str = "vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom";
const SGLANG: &str = "sglang-0.4.x-docs-production_metrics-llama3.1-8b.prom";

/// A loopback server whose paths behave as the fault they are named after.
async fn serve() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match sock.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body: Vec<u8> = match path.as_str() {
                    "/vllm" => capture(VLLM),
                    "/sglang" => capture(SGLANG),
                    "/partial" => {
                        let mut b = capture(SGLANG);
                        b.extend_from_slice(b"\nthis is { not metrics\nsglang:x 1\n");
                        b
                    }
                    "/garbage" => (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect(),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        capture(VLLM)
                    }
                    "/huge" => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 52428800\r\nconnection: close\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b'#'; 64 * 1024];
                        for _ in 0..800 {
                            if sock.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    "/huge-chunked" => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b'#'; 64 * 1024];
                        for _ in 0..800 {
                            let frame = format!("{:x}\r\n", chunk.len());
                            if sock.write_all(frame.as_bytes()).await.is_err()
                                || sock.write_all(&chunk).await.is_err()
                                || sock.write_all(b"\r\n").await.is_err()
                            {
                                return;
                            }
                        }
                        return;
                    }
                    _ => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A port nothing listens on.
async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/metrics")
}

fn instance(id: &str, engine: Engine, url: String) -> Instance {
    Instance {
        id: Id::parse("id", id).unwrap(),
        engine,
        metrics_url: url,
        model: None,
        group: Id::parse("group", "g1").unwrap(),
        labels: Default::default(),
        config: Default::default(),
        created_at_ms: 0,
        updated_at_ms: 0,
    }
}

fn scraper() -> Scraper {
    Scraper::new(
        NetGuard::from_list("127.0.0.0/8").unwrap(),
        ScrapeConfig {
            timeout: Duration::from_millis(800),
            max_bytes: 4 * 1024 * 1024,
            retries: 1,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
        },
    )
    .unwrap()
}

fn now() -> i64 {
    1_800_000_000_000
}

/// Runs a pass for slot number `slot` (30 s slots ending at `now()`).
async fn pass(store: &MemoryStore, slot: i64) -> PassReport {
    let slot_ms = now() - 3_600_000 + slot * 30_000;
    let instances = store.list_instances(None).await.unwrap();
    collect_pass(
        instances,
        slot_ms,
        &scraper(),
        store,
        &now,
        &CollectorConfig::default(),
    )
    .await
    .unwrap()
}

fn outcome<'a>(r: &'a PassReport, id: &str) -> &'a Outcome {
    &r.details
        .iter()
        .find(|d| d.id.as_str() == id)
        .unwrap_or_else(|| panic!("{id} missing from the report"))
        .outcome
}

#[tokio::test]
async fn bad_instances_are_marked_and_never_block_the_good_ones() {
    let base = serve().await;
    let store = MemoryStore::new();
    for i in [
        instance("vllm-ok", Engine::Vllm, format!("{base}/vllm")),
        instance("sglang-ok", Engine::Sglang, format!("{base}/sglang")),
        instance("dead", Engine::Vllm, dead_url().await),
        instance("slow", Engine::Vllm, format!("{base}/slow")),
        instance("garbage", Engine::Tgi, format!("{base}/garbage")),
        instance("huge", Engine::Vllm, format!("{base}/huge")),
        instance("huge-chunked", Engine::Vllm, format!("{base}/huge-chunked")),
        instance("missing", Engine::Vllm, format!("{base}/nope")),
        instance(
            "metadata",
            Engine::Vllm,
            "http://169.254.169.254/latest/meta-data".into(),
        ),
    ] {
        store.create_instance(&i).await.unwrap();
    }
    let r = pass(&store, 2).await;
    assert_eq!(r.instances, 9);
    assert_eq!(r.collected, 2, "{r:#?}");
    assert_eq!(r.failed, 7, "{r:#?}");
    let kind = |id: &str| match outcome(&r, id) {
        Outcome::Failed { kind, .. } => kind.clone(),
        other => panic!("{id}: {other:?}"),
    };
    assert_eq!(kind("dead"), "connect");
    assert_eq!(kind("slow"), "timeout");
    assert_eq!(kind("garbage"), "unparseable");
    assert_eq!(kind("huge"), "too_large");
    assert_eq!(kind("huge-chunked"), "too_large");
    assert_eq!(kind("missing"), "status");
    assert_eq!(kind("metadata"), "rejected");
    // A dead server is retried (connection errors are transient); a slow one is not.
    assert!(matches!(
        outcome(&r, "dead"),
        Outcome::Failed { attempts: 2, .. }
    ));
    assert!(matches!(
        outcome(&r, "slow"),
        Outcome::Failed { attempts: 1, .. }
    ));

    let id = Id::parse("id", "vllm-ok").unwrap();
    let snaps = store.snapshots(&id, 0, i64::MAX, now()).await.unwrap();
    assert_eq!(snaps.len(), 1);
    let m = &snaps[0].models[0];
    assert_eq!(m.model, "Qwen/Qwen3-4B-Instruct-2507-FP8");
    assert!(m.histogram(Canonical::TtftSeconds).is_some());

    let dead = store
        .get_instance(&Id::parse("id", "dead").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.health.last_error_kind.as_deref(), Some("connect"));
    assert_eq!(dead.health.breaker.consecutive_failures, 1);
}

#[tokio::test]
async fn a_retried_pass_for_the_same_slot_does_not_duplicate_snapshots() {
    let base = serve().await;
    let store = MemoryStore::new();
    store
        .create_instance(&instance("a", Engine::Vllm, format!("{base}/vllm")))
        .await
        .unwrap();
    pass(&store, 1).await;
    pass(&store, 1).await;
    assert_eq!(store.snapshot_count(), 1);
    pass(&store, 2).await;
    assert_eq!(store.snapshot_count(), 2);
}

#[tokio::test]
async fn a_dead_instance_trips_its_breaker_and_is_then_skipped() {
    let store = MemoryStore::new();
    store
        .create_instance(&instance("dead", Engine::Vllm, dead_url().await))
        .await
        .unwrap();
    for slot in 1..=3 {
        let r = pass(&store, slot).await;
        assert_eq!(r.failed, 1);
    }
    let reg = store
        .get_instance(&Id::parse("id", "dead").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reg.health.breaker.state, BreakerState::Open);
    let r = pass(&store, 4).await;
    assert_eq!(r.skipped, 1);
    assert!(matches!(outcome(&r, "dead"), Outcome::Skipped { .. }));
}

#[tokio::test]
async fn a_scrape_that_breaks_half_way_is_kept_up_to_the_break_and_marked_partial() {
    let base = serve().await;
    let store = MemoryStore::new();
    store
        .create_instance(&instance("p", Engine::Sglang, format!("{base}/partial")))
        .await
        .unwrap();
    let r = pass(&store, 1).await;
    assert_eq!(r.partial, 1, "{r:#?}");
    let snaps = store
        .snapshots(&Id::parse("id", "p").unwrap(), 0, i64::MAX, now())
        .await
        .unwrap();
    assert!(snaps[0]
        .partial
        .as_deref()
        .unwrap_or("")
        .contains("parse error"));
    assert!(snaps[0].models[0]
        .number(Canonical::RequestsRunning)
        .is_some());
}

#[tokio::test]
async fn expired_snapshots_are_never_returned() {
    let base = serve().await;
    let store = MemoryStore::new();
    store
        .create_instance(&instance("a", Engine::Vllm, format!("{base}/vllm")))
        .await
        .unwrap();
    pass(&store, 1).await;
    let id = Id::parse("id", "a").unwrap();
    assert_eq!(
        store
            .snapshots(&id, 0, i64::MAX, now())
            .await
            .unwrap()
            .len(),
        1
    );
    let later = now() + CollectorConfig::default().snapshot_ttl_hours * 3_600_000;
    assert!(store
        .snapshots(&id, 0, i64::MAX, later)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.snapshot_count(), 1);
}
