//! In-memory implementations of the workflow's ports, for tests and in-process demos: a workflow
//! and sample store that keeps the store contract (group lock, versions) and can be made to fail,
//! an orchestrator that keeps each instance's live config, honours idempotency keys and can be
//! down, fail N times or lose its answers, a directory, a hand-moved clock, and a simulated fleet
//! whose metrics follow each instance's live config.

use super::model::{AuditEntry, Sample, Workflow};
use super::ports::{
    ApplyConfig, ApprovalRequest, Clock, InstanceDirectory, Orchestrator, OrchestratorError,
    RollbackConfigs, SampleStore, Sampler, StatusReport, WorkflowFilter, WorkflowStore,
    WorkflowStoreError,
};
use crate::instance::{EngineConfig, Id, Instance};
use crate::snapshot::{Canonical, Histogram, MetricValue, ModelMetrics};
use crate::store::StoreError;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Locks a mutex; every operation here is a few inserts that a panic cannot leave half-done, so a
/// poisoned lock is still consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct StoreInner {
    workflows: BTreeMap<Id, Workflow>,
    /// group → the workflow holding it.
    groups: BTreeMap<Id, Id>,
    samples: BTreeMap<(Id, u32, u32, Id), Sample>,
    fail_next_updates: u32,
}

/// Workflows and samples in memory, keeping the [`WorkflowStore`] contract.
#[derive(Default)]
pub struct MemoryWorkflowStore {
    inner: Mutex<StoreInner>,
}

impl MemoryWorkflowStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` updates fail with `Unavailable` and write nothing (a crash before the write).
    pub fn fail_next_updates(&self, n: u32) {
        lock(&self.inner).fail_next_updates = n;
    }

    /// Samples stored for a workflow, all steps.
    pub fn sample_count(&self, workflow: &Id) -> usize {
        lock(&self.inner)
            .samples
            .keys()
            .filter(|k| &k.0 == workflow)
            .count()
    }
}

#[async_trait]
impl WorkflowStore for MemoryWorkflowStore {
    async fn create(&self, workflow: &Workflow) -> Result<Workflow, WorkflowStoreError> {
        let mut g = lock(&self.inner);
        if g.workflows.contains_key(&workflow.id) {
            return Err(WorkflowStoreError::AlreadyExists(workflow.id.clone()));
        }
        if let Some(active) = g.groups.get(&workflow.group) {
            return Err(WorkflowStoreError::GroupBusy {
                group: workflow.group.clone(),
                active: active.clone(),
            });
        }
        let mut stored = workflow.clone();
        stored.version = 1;
        g.groups.insert(workflow.group.clone(), workflow.id.clone());
        g.workflows.insert(workflow.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn get(&self, id: &Id) -> Result<Option<Workflow>, WorkflowStoreError> {
        Ok(lock(&self.inner).workflows.get(id).cloned())
    }

    async fn list(&self, filter: &WorkflowFilter) -> Result<Vec<Workflow>, WorkflowStoreError> {
        let mut v: Vec<Workflow> = lock(&self.inner)
            .workflows
            .values()
            .filter(|w| filter.group.as_ref().is_none_or(|g| &w.group == g))
            .filter(|w| filter.state.is_none_or(|s| w.state == s))
            .cloned()
            .collect();
        v.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        if let Some(n) = filter.limit {
            v.truncate(n);
        }
        Ok(v)
    }

    async fn update(
        &self,
        workflow: &Workflow,
        audit: &[AuditEntry],
    ) -> Result<Workflow, WorkflowStoreError> {
        let mut g = lock(&self.inner);
        if g.fail_next_updates > 0 {
            g.fail_next_updates -= 1;
            return Err(WorkflowStoreError::Unavailable(
                "injected failure: nothing written".into(),
            ));
        }
        let Some(stored) = g.workflows.get_mut(&workflow.id) else {
            return Err(WorkflowStoreError::NotFound(workflow.id.clone()));
        };
        if stored.version != workflow.version {
            return Err(WorkflowStoreError::Conflict {
                id: workflow.id.clone(),
                expected: workflow.version,
            });
        }
        let mut trail = std::mem::take(&mut stored.audit);
        trail.extend_from_slice(audit);
        *stored = workflow.clone();
        stored.audit = trail;
        stored.version = workflow.version + 1;
        Ok(stored.clone())
    }

    async fn append_audit(&self, id: &Id, entry: &AuditEntry) -> Result<(), WorkflowStoreError> {
        let mut g = lock(&self.inner);
        let stored = g
            .workflows
            .get_mut(id)
            .ok_or_else(|| WorkflowStoreError::NotFound(id.clone()))?;
        stored.audit.push(entry.clone());
        Ok(())
    }

    async fn release_group(&self, group: &Id, workflow: &Id) -> Result<(), WorkflowStoreError> {
        let mut g = lock(&self.inner);
        if g.groups.get(group) == Some(workflow) {
            g.groups.remove(group);
        }
        Ok(())
    }

    async fn active(&self, group: &Id) -> Result<Option<Id>, WorkflowStoreError> {
        Ok(lock(&self.inner).groups.get(group).cloned())
    }
}

#[async_trait]
impl SampleStore for MemoryWorkflowStore {
    async fn put_samples(
        &self,
        workflow: &Id,
        samples: &[Sample],
    ) -> Result<(), WorkflowStoreError> {
        let mut g = lock(&self.inner);
        for s in samples {
            g.samples.insert(
                (workflow.clone(), s.step, s.round, s.instance.clone()),
                s.clone(),
            );
        }
        Ok(())
    }

    async fn samples(&self, workflow: &Id, step: u32) -> Result<Vec<Sample>, WorkflowStoreError> {
        Ok(lock(&self.inner)
            .samples
            .iter()
            .filter(|(k, _)| &k.0 == workflow && k.1 == step)
            .map(|(_, s)| s.clone())
            .collect())
    }
}

/// What a repeated idempotency key gets back.
#[derive(Clone)]
struct Remembered {
    request: String,
    previous: BTreeMap<Id, EngineConfig>,
}

#[derive(Default)]
struct OrchestratorInner {
    configs: BTreeMap<Id, EngineConfig>,
    keys: BTreeMap<String, Remembered>,
    down: bool,
    fail_next: u32,
    lose_next: u32,
    failing: BTreeSet<Id>,
    applied: Vec<(String, Vec<Id>)>,
    restored: Vec<(String, Id)>,
    approvals: Vec<ApprovalRequest>,
    reports: Vec<StatusReport>,
}

/// An orchestrator in memory: instances' live configs, idempotency keys honoured (a repeated key
/// returns the first answer and changes nothing; a key reused for another request is refused with
/// 422), and failures on demand.
#[derive(Default)]
pub struct MemoryOrchestrator {
    inner: Mutex<OrchestratorInner>,
}

impl MemoryOrchestrator {
    pub fn new(configs: impl IntoIterator<Item = (Id, EngineConfig)>) -> Self {
        MemoryOrchestrator {
            inner: Mutex::new(OrchestratorInner {
                configs: configs.into_iter().collect(),
                ..OrchestratorInner::default()
            }),
        }
    }

    /// While down, every call fails with `Unavailable` and does nothing.
    pub fn set_down(&self, down: bool) {
        lock(&self.inner).down = down;
    }

    /// The next `n` calls fail with `Unavailable` and do nothing.
    pub fn fail_next(&self, n: u32) {
        lock(&self.inner).fail_next = n;
    }

    /// The next `n` calls do their work, then their answer is lost (the caller sees
    /// `Unavailable`): a crash between "apply" and "record" on the caller's side.
    pub fn lose_next_responses(&self, n: u32) {
        lock(&self.inner).lose_next = n;
    }

    /// Calls that touch this instance fail with `Unavailable` (e.g. its node is unreachable).
    pub fn set_instance_failing(&self, id: &Id, failing: bool) {
        let mut g = lock(&self.inner);
        if failing {
            g.failing.insert(id.clone());
        } else {
            g.failing.remove(id);
        }
    }

    /// What the instance runs now.
    pub fn config(&self, id: &Id) -> Option<EngineConfig> {
        lock(&self.inner).configs.get(id).cloned()
    }

    /// How many times a change was really applied to the instance (replays not counted).
    pub fn applications(&self, id: &Id) -> usize {
        lock(&self.inner)
            .applied
            .iter()
            .filter(|(_, ids)| ids.contains(id))
            .count()
    }

    /// Every apply really carried out: (idempotency key, instances).
    pub fn apply_log(&self) -> Vec<(String, Vec<Id>)> {
        lock(&self.inner).applied.clone()
    }

    /// Every restore really carried out: (idempotency key, instance).
    pub fn restore_log(&self) -> Vec<(String, Id)> {
        lock(&self.inner).restored.clone()
    }

    pub fn approvals(&self) -> Vec<ApprovalRequest> {
        lock(&self.inner).approvals.clone()
    }

    pub fn reports(&self) -> Vec<StatusReport> {
        lock(&self.inner).reports.clone()
    }

    /// The shared prologue of a call: availability, then the idempotency key. `Ok(Some)` is a
    /// replay's remembered answer.
    fn begin(
        g: &mut OrchestratorInner,
        key: &str,
        request: &str,
        instances: &[&Id],
    ) -> Result<Option<Remembered>, OrchestratorError> {
        if g.down {
            return Err(OrchestratorError::Unavailable("connection refused".into()));
        }
        if g.fail_next > 0 {
            g.fail_next -= 1;
            return Err(OrchestratorError::Unavailable(
                "503 Service Unavailable".into(),
            ));
        }
        if let Some(r) = g.keys.get(key) {
            if r.request != request {
                return Err(OrchestratorError::Rejected {
                    status: 422,
                    message: format!("idempotency key {key} was used for another request"),
                });
            }
            return Ok(Some(r.clone()));
        }
        if let Some(bad) = instances.iter().find(|i| g.failing.contains(**i)) {
            return Err(OrchestratorError::Unavailable(format!(
                "{bad} is unreachable"
            )));
        }
        if let Some(unknown) = instances.iter().find(|i| !g.configs.contains_key(**i)) {
            return Err(OrchestratorError::Rejected {
                status: 404,
                message: format!("unknown instance {unknown}"),
            });
        }
        Ok(None)
    }

    /// The shared epilogue: remember the answer, then maybe lose it.
    fn end(
        g: &mut OrchestratorInner,
        key: &str,
        request: String,
        previous: BTreeMap<Id, EngineConfig>,
    ) -> Result<BTreeMap<Id, EngineConfig>, OrchestratorError> {
        g.keys.insert(
            key.to_string(),
            Remembered {
                request,
                previous: previous.clone(),
            },
        );
        if g.lose_next > 0 {
            g.lose_next -= 1;
            return Err(OrchestratorError::Unavailable(
                "the answer was lost (timeout)".into(),
            ));
        }
        Ok(previous)
    }
}

fn fingerprint<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[async_trait]
impl Orchestrator for MemoryOrchestrator {
    async fn notify_approval(
        &self,
        request: &ApprovalRequest,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        let mut g = lock(&self.inner);
        let body = fingerprint(request);
        if Self::begin(&mut g, idempotency_key, &body, &[])?.is_some() {
            return Ok(());
        }
        g.approvals.push(request.clone());
        Self::end(&mut g, idempotency_key, body, BTreeMap::new()).map(|_| ())
    }

    async fn apply_config(
        &self,
        request: &ApplyConfig,
        idempotency_key: &str,
    ) -> Result<BTreeMap<Id, EngineConfig>, OrchestratorError> {
        let mut g = lock(&self.inner);
        let body = fingerprint(request);
        let ids: Vec<&Id> = request.instances.iter().collect();
        if let Some(r) = Self::begin(&mut g, idempotency_key, &body, &ids)? {
            return Ok(r.previous);
        }
        let mut previous = BTreeMap::new();
        for id in &request.instances {
            if let Some(cfg) = g.configs.get_mut(id) {
                previous.insert(id.clone(), cfg.clone());
                cfg.extend(request.changes.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        g.applied
            .push((idempotency_key.to_string(), request.instances.clone()));
        Self::end(&mut g, idempotency_key, body, previous)
    }

    async fn rollback(
        &self,
        request: &RollbackConfigs,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        let mut g = lock(&self.inner);
        let body = fingerprint(request);
        let ids: Vec<&Id> = request.configs.keys().collect();
        if Self::begin(&mut g, idempotency_key, &body, &ids)?.is_some() {
            return Ok(());
        }
        for (id, cfg) in &request.configs {
            g.configs.insert(id.clone(), cfg.clone());
            g.restored.push((idempotency_key.to_string(), id.clone()));
        }
        Self::end(&mut g, idempotency_key, body, BTreeMap::new()).map(|_| ())
    }

    async fn report_status(
        &self,
        report: &StatusReport,
        idempotency_key: &str,
    ) -> Result<(), OrchestratorError> {
        let mut g = lock(&self.inner);
        let body = fingerprint(report);
        if Self::begin(&mut g, idempotency_key, &body, &[])?.is_some() {
            return Ok(());
        }
        g.reports.push(report.clone());
        Self::end(&mut g, idempotency_key, body, BTreeMap::new()).map(|_| ())
    }
}

/// A registry of instances in memory.
#[derive(Default)]
pub struct MemoryDirectory {
    instances: Mutex<BTreeMap<Id, Instance>>,
}

impl MemoryDirectory {
    pub fn new(instances: impl IntoIterator<Item = Instance>) -> Self {
        MemoryDirectory {
            instances: Mutex::new(instances.into_iter().map(|i| (i.id.clone(), i)).collect()),
        }
    }

    pub fn config(&self, id: &Id) -> Option<EngineConfig> {
        lock(&self.instances).get(id).map(|i| i.config.clone())
    }
}

#[async_trait]
impl InstanceDirectory for MemoryDirectory {
    async fn group_instances(&self, group: &Id) -> Result<Vec<Instance>, StoreError> {
        Ok(lock(&self.instances)
            .values()
            .filter(|i| &i.group == group)
            .cloned()
            .collect())
    }

    async fn set_config(&self, id: &Id, config: &EngineConfig) -> Result<(), StoreError> {
        let mut g = lock(&self.instances);
        let inst = g
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
        inst.config = config.clone();
        Ok(())
    }
}

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock {
            now_ms: AtomicI64::new(now_ms),
        }
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// How a simulated instance serves: latencies in seconds, rates per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behaviour {
    pub ttft_s: f64,
    pub itl_s: f64,
    pub e2e_s: f64,
    pub requests_per_s: f64,
    pub error_ratio: f64,
    pub tokens_per_s: f64,
    pub preemptions_per_s: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            ttft_s: 0.2,
            itl_s: 0.03,
            e2e_s: 2.0,
            requests_per_s: 2.0,
            error_ratio: 0.0,
            tokens_per_s: 400.0,
            preemptions_per_s: 0.0,
        }
    }
}

/// Bucket bounds of the simulated latency histograms (seconds).
const BUCKETS: [f64; 19] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    f64::INFINITY,
];

/// Observations added per histogram per sample, at most (keeps a long bake cheap).
const MAX_OBSERVATIONS_PER_SAMPLE: usize = 400;

struct Counters {
    last_ms: Option<i64>,
    rng: u64,
    success: f64,
    failure: f64,
    tokens: f64,
    preemptions: f64,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
}

impl Counters {
    fn new(seed: u64) -> Self {
        let empty = || Histogram {
            count: 0.0,
            sum: 0.0,
            buckets: BUCKETS.iter().map(|&b| (b, 0.0)).collect(),
        };
        Counters {
            last_ms: None,
            rng: seed | 1,
            success: 0.0,
            failure: 0.0,
            tokens: 0.0,
            preemptions: 0.0,
            ttft: empty(),
            itl: empty(),
            e2e: empty(),
        }
    }

    /// Uniform in [−1, 1) from a 64-bit LCG: reproducible noise without a dependency.
    fn noise(&mut self) -> f64 {
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.rng >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

fn observe(h: &mut Histogram, v: f64) {
    h.count += 1.0;
    h.sum += v;
    for (le, c) in h.buckets.iter_mut() {
        if v <= *le {
            *c += 1.0;
        }
    }
}

type BehaviourFn = dyn Fn(&Id, &EngineConfig) -> Behaviour + Send + Sync;

/// A fleet whose metrics follow each instance's live config in a [`MemoryOrchestrator`]: between
/// two samples it serves `requests_per_s` requests with ±10% noise around the behaviour that
/// `behaviour(instance, config)` gives, and exposes cumulative counters and histograms as an
/// engine adapter would.
pub struct SimulatedFleet {
    orchestrator: Arc<MemoryOrchestrator>,
    clock: Arc<dyn Clock>,
    behaviour: Box<BehaviourFn>,
    counters: Mutex<BTreeMap<Id, Counters>>,
    unreachable: Mutex<BTreeSet<Id>>,
}

impl SimulatedFleet {
    pub fn new(
        orchestrator: Arc<MemoryOrchestrator>,
        clock: Arc<dyn Clock>,
        behaviour: impl Fn(&Id, &EngineConfig) -> Behaviour + Send + Sync + 'static,
    ) -> Self {
        SimulatedFleet {
            orchestrator,
            clock,
            behaviour: Box::new(behaviour),
            counters: Mutex::new(BTreeMap::new()),
            unreachable: Mutex::new(BTreeSet::new()),
        }
    }

    /// An unreachable instance's scrape fails.
    pub fn set_unreachable(&self, id: &Id, unreachable: bool) {
        let mut g = lock(&self.unreachable);
        if unreachable {
            g.insert(id.clone());
        } else {
            g.remove(id);
        }
    }

    fn scrape(&self, id: &Id, now_ms: i64) -> Vec<ModelMetrics> {
        let config = self.orchestrator.config(id).unwrap_or_default();
        let b = (self.behaviour)(id, &config);
        let mut all = lock(&self.counters);
        let seed = id.as_str().bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, x| {
            (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let c = all.entry(id.clone()).or_insert_with(|| Counters::new(seed));
        let secs = c
            .last_ms
            .map_or(0.0, |last| (now_ms - last).max(0) as f64 / 1000.0);
        c.last_ms = Some(now_ms);
        let requests = b.requests_per_s * secs;
        let n = (requests.round() as usize).min(MAX_OBSERVATIONS_PER_SAMPLE);
        for _ in 0..n {
            let (a, i, e) = (c.noise(), c.noise(), c.noise());
            observe(&mut c.ttft, b.ttft_s * (1.0 + 0.1 * a));
            observe(&mut c.itl, b.itl_s * (1.0 + 0.1 * i));
            observe(&mut c.e2e, b.e2e_s * (1.0 + 0.1 * e));
        }
        c.failure += requests * b.error_ratio;
        c.success += requests * (1.0 - b.error_ratio);
        let jitter = 1.0 + 0.02 * c.noise();
        c.tokens += b.tokens_per_s * secs * jitter;
        c.preemptions += b.preemptions_per_s * secs;
        let metrics = BTreeMap::from([
            (
                Canonical::RequestSuccessTotal,
                MetricValue::Number(c.success),
            ),
            (
                Canonical::RequestFailureTotal,
                MetricValue::Number(c.failure),
            ),
            (
                Canonical::GenerationTokensTotal,
                MetricValue::Number(c.tokens),
            ),
            (
                Canonical::PreemptionsTotal,
                MetricValue::Number(c.preemptions),
            ),
            (
                Canonical::TtftSeconds,
                MetricValue::Histogram(c.ttft.clone()),
            ),
            (
                Canonical::InterTokenLatencySeconds,
                MetricValue::Histogram(c.itl.clone()),
            ),
            (
                Canonical::E2eLatencySeconds,
                MetricValue::Histogram(c.e2e.clone()),
            ),
        ]);
        vec![ModelMetrics {
            model: "sim-model".into(),
            metrics,
        }]
    }
}

#[async_trait]
impl Sampler for SimulatedFleet {
    async fn sample(
        &self,
        instances: &[Instance],
    ) -> BTreeMap<Id, Result<Vec<ModelMetrics>, String>> {
        let now = self.clock.now_ms();
        let unreachable = lock(&self.unreachable).clone();
        instances
            .iter()
            .map(|i| {
                let r = if unreachable.contains(&i.id) {
                    Err("connection failed: connection refused".to_string())
                } else {
                    Ok(self.scrape(&i.id, now))
                };
                (i.id.clone(), r)
            })
            .collect()
    }
}
