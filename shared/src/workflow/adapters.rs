//! The deployed implementations of the workflow's sampler and instance directory: scraping a bake's
//! instances now with the agent's own `Scraper` (the same guard, timeouts, size cap and retries as
//! the collector) and reading and updating the group from the instance registry. Also the
//! orchestrator that stands in while none is configured.

use super::ports::{
    ApplyConfig, ApprovalRequest, Clock, InstanceDirectory, Orchestrator, OrchestratorError,
    RollbackConfigs, Sampler, StatusReport,
};
use crate::collect::normalize_body;
use crate::instance::{EngineConfig, Id, Instance};
use crate::scrape::Scraper;
use crate::snapshot::ModelMetrics;
use crate::store::{InstanceStore, StoreError};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Scrapes instances with the shared [`Scraper`], at most `concurrency` at a time, and normalizes
/// each body to canonical metrics.
#[derive(Clone)]
pub struct ScrapeSampler {
    scraper: Scraper,
    concurrency: usize,
}

impl ScrapeSampler {
    pub fn new(scraper: Scraper, concurrency: usize) -> Self {
        ScrapeSampler {
            scraper,
            concurrency: concurrency.max(1),
        }
    }
}

#[async_trait]
impl Sampler for ScrapeSampler {
    async fn sample(
        &self,
        instances: &[Instance],
    ) -> BTreeMap<Id, Result<Vec<ModelMetrics>, String>> {
        // Owned futures (a clone of the scraper is a handle to the same connection pool).
        futures::stream::iter(instances.iter().cloned().map(|inst| {
            let scraper = self.scraper.clone();
            async move {
                let (body, attempts) = scraper.fetch(&inst.metrics_url).await;
                let result = match body {
                    // A body broken half-way keeps the models before the break, as the collector
                    // does: the judge counts what it has.
                    Ok(bytes) => normalize_body(&bytes, inst.engine)
                        .map(|(snapshot, _partial)| snapshot.models)
                        .map_err(|e| format!("unparseable metrics: {e}")),
                    Err(e) => Err(format!("{} after {attempts} attempt(s): {e}", e.kind())),
                };
                if let Err(e) = &result {
                    tracing::warn!(instance = %inst.id, error = %e, "bake sample failed");
                }
                (inst.id, result)
            }
        }))
        .buffer_unordered(self.concurrency)
        .collect()
        .await
    }
}

/// A deployment group's instances, from the instance registry.
pub struct StoreDirectory<S> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
}

impl<S> StoreDirectory<S> {
    pub fn new(store: Arc<S>, clock: Arc<dyn Clock>) -> Self {
        StoreDirectory { store, clock }
    }
}

#[async_trait]
impl<S: InstanceStore + 'static> InstanceDirectory for StoreDirectory<S> {
    async fn group_instances(&self, group: &Id) -> Result<Vec<Instance>, StoreError> {
        let mut instances: Vec<Instance> = self
            .store
            .list_instances(Some(group))
            .await?
            .into_iter()
            .map(|r| r.instance)
            .collect();
        // The port promises id order whatever the store's own order is.
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(instances)
    }

    async fn set_config(&self, id: &Id, config: &EngineConfig) -> Result<(), StoreError> {
        self.store
            .update_config(id, config, self.clock.now_ms())
            .await
    }
}

/// The orchestrator while none is configured: every call is `Unavailable`, saying which setting
/// is missing. Lets the API serve everything else (and end workflows) before the orchestrator is
/// wired, instead of refusing to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnconfiguredOrchestrator;

impl UnconfiguredOrchestrator {
    fn refuse<T>(&self) -> Result<T, OrchestratorError> {
        Err(OrchestratorError::Unavailable(
            "no orchestrator is configured (ORCHESTRATOR_URL, ORCHESTRATOR_SECRET)".into(),
        ))
    }
}

#[async_trait]
impl Orchestrator for UnconfiguredOrchestrator {
    async fn notify_approval(
        &self,
        _request: &ApprovalRequest,
        _idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        self.refuse()
    }

    async fn apply_config(
        &self,
        _request: &ApplyConfig,
        _idempotency_key: &str,
    ) -> Result<BTreeMap<Id, EngineConfig>, OrchestratorError> {
        self.refuse()
    }

    async fn rollback(
        &self,
        _request: &RollbackConfigs,
        _idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        self.refuse()
    }

    async fn report_status(
        &self,
        _report: &StatusReport,
        _idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        self.refuse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netguard::NetGuard;
    use crate::scrape::ScrapeConfig;
    use crate::snapshot::Engine;
    use crate::store::memory::MemoryStore;
    use crate::workflow::memory::ManualClock;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    fn id(s: &str) -> Id {
        Id::parse("id", s).unwrap()
    }

    fn instance(name: &str, group: &str, url: &str) -> Instance {
        Instance {
            id: id(name),
            engine: Engine::Vllm,
            metrics_url: url.to_string(),
            model: None,
            group: id(group),
            labels: BTreeMap::new(),
            config: EngineConfig::from([("max_num_seqs".to_string(), serde_json::json!(128))]),
            created_at_ms: 1,
            updated_at_ms: 1,
        }
    }

    /// Answers every connection with `body` (a thread this test owns).
    fn serve(body: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let mut stream = &stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        format!("http://{addr}/metrics")
    }

    const VLLM: &str = "# TYPE vllm:num_requests_running gauge\n\
        vllm:num_requests_running{model_name=\"m\"} 3\n\
        # TYPE vllm:num_requests_waiting gauge\n\
        vllm:num_requests_waiting{model_name=\"m\"} 1\n";

    #[tokio::test]
    async fn every_instance_asked_for_gets_its_models_or_why_not() {
        let guard = NetGuard::from_list("127.0.0.0/8").unwrap();
        let config = ScrapeConfig {
            retries: 0,
            ..ScrapeConfig::default()
        };
        let sampler = ScrapeSampler::new(Scraper::new(guard, config).unwrap(), 2);
        let up = serve(VLLM);
        let instances = vec![
            instance("a", "g", &up),
            instance("b", "g", &up),
            // Outside the allowed networks: refused before any connection.
            instance("c", "g", "http://10.1.2.3:8000/metrics"),
        ];
        let results = sampler.sample(&instances).await;
        assert_eq!(results.len(), 3);
        for name in ["a", "b"] {
            let models = results[&id(name)].as_ref().unwrap();
            assert_eq!(models.len(), 1, "{name}");
            assert_eq!(models[0].model, "m");
        }
        let refused = results[&id("c")].as_ref().unwrap_err();
        assert!(refused.starts_with("rejected"), "{refused}");
    }

    #[tokio::test]
    async fn the_directory_lists_one_group_by_id_and_records_configs() {
        let store = Arc::new(MemoryStore::new());
        for (name, group) in [("b", "g"), ("a", "g"), ("c", "other")] {
            store
                .create_instance(&instance(name, group, "http://10.0.0.1/metrics"))
                .await
                .unwrap();
        }
        let dir = StoreDirectory::new(store.clone(), Arc::new(ManualClock::new(42)));
        let ids: Vec<Id> = dir
            .group_instances(&id("g"))
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, vec![id("a"), id("b")]);

        let new = EngineConfig::from([("max_num_seqs".to_string(), serde_json::json!(256))]);
        dir.set_config(&id("a"), &new).await.unwrap();
        let stored = store.get_instance(&id("a")).await.unwrap().unwrap();
        assert_eq!(stored.instance.config, new);
        assert_eq!(stored.instance.updated_at_ms, 42);
        assert!(matches!(
            dir.set_config(&id("zz"), &new).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
