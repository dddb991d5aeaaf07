//! The simulated fleet: instances with their config, workload and model state, the scenarios
//! and faults tests inject, and the JSON views the admin API returns. Pure and synchronous: the
//! HTTP server and the tests drive it by calling `advance`.

use crate::config::{
    ConfigError, ConfigPatch, EngineConfig, EngineKind, Generation, Hardware, Workload,
};
use crate::model::{quality_risk, Derived, EngineCore, Obs, Pressure, Recent, Stats, STEP_SECONDS};
use crate::render::{self, RenderInput};
use crate::rng::{stable_hash, stream};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One instance as written in a fleet file or posted to `POST /admin/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    pub id: String,
    pub engine: EngineKind,
    /// Naming generation (`v1`, `0.10`, `v0` for vLLM; `v3` for TGI; `current`, `0.4` for
    /// SGLang). Defaults to the engine's current one.
    #[serde(default)]
    pub generation: Option<String>,
    pub model: String,
    pub group: String,
    #[serde(default)]
    pub hardware: Hardware,
    /// Overrides of the engine's default config.
    #[serde(default)]
    pub config: ConfigPatch,
    #[serde(default)]
    pub workload: Workload,
}

/// A fleet file: `{"seed": 42, "instances": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    #[serde(default)]
    pub seed: Option<u64>,
    pub instances: Vec<InstanceSpec>,
}

impl FleetSpec {
    pub fn from_json(bytes: &[u8]) -> Result<FleetSpec, ConfigError> {
        serde_json::from_slice(bytes).map_err(|e| ConfigError::Invalid(format!("fleet file: {e}")))
    }
}

/// A failure mode the metrics endpoint of one instance shows, for collector tests.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// 503 with `Connection: close`.
    Down,
    /// Answers after `slow_seconds`.
    Slow,
    /// Random bytes with a 200.
    Garbage,
    /// A `huge_mb` body, streamed.
    Huge,
    /// Alternates good and down every `flap_every` scrapes.
    Flap,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub fault: Option<FaultKind>,
    #[serde(default = "default_slow_seconds")]
    pub slow_seconds: f64,
    #[serde(default = "default_huge_mb")]
    pub huge_mb: u32,
    #[serde(default = "default_flap_every")]
    pub flap_every: u32,
}

fn default_slow_seconds() -> f64 {
    60.0
}
fn default_huge_mb() -> u32 {
    50
}
fn default_flap_every() -> u32 {
    3
}

impl Fault {
    pub fn from_json(body: &[u8]) -> Result<Fault, ConfigError> {
        let f: Fault = serde_json::from_slice(body)
            .map_err(|e| ConfigError::Invalid(format!("fault: {e}")))?;
        if !(f.slow_seconds >= 0.0 && f.slow_seconds <= 3600.0) {
            return Err(ConfigError::Invalid(
                "slow_seconds must be in [0, 3600]".into(),
            ));
        }
        if !(1..=2048).contains(&f.huge_mb) {
            return Err(ConfigError::Invalid("huge_mb must be 1..=2048".into()));
        }
        if f.flap_every == 0 {
            return Err(ConfigError::Invalid("flap_every must be at least 1".into()));
        }
        Ok(f)
    }
}

/// A copy of what rendering an instance needs, taken under the fleet lock so that the text
/// itself can be produced after the lock is released (scrapes then render on every core).
#[derive(Debug, Clone)]
pub struct Frozen {
    generation: Generation,
    model: String,
    cores: Vec<Stats>,
    config: EngineConfig,
    hardware: Hardware,
    derived: Derived,
    started_unix: f64,
    uptime_s: f64,
    pad_adapters: u32,
    pid: u32,
}

impl Frozen {
    pub fn render(&self) -> String {
        render::render(&RenderInput {
            generation: self.generation,
            model: &self.model,
            cores: self.cores.iter().collect(),
            config: &self.config,
            hardware: &self.hardware,
            derived: &self.derived,
            started_unix: self.started_unix,
            uptime_s: self.uptime_s,
            pad_adapters: self.pad_adapters,
            pid: self.pid,
        })
    }
}

/// What a scrape of one instance should produce, decided under the fleet lock.
#[derive(Debug, Clone)]
pub enum ScrapeOutcome {
    Metrics(Box<Frozen>),
    /// The server is not up (fault `down`, a flap's bad phase, or a config it cannot start with).
    Unavailable(String),
    Slow {
        seconds: f64,
        body: Box<Frozen>,
    },
    Garbage {
        seed: u64,
    },
    Huge {
        bytes: u64,
    },
}

/// A simulated server.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub generation: Generation,
    pub model: String,
    pub group: String,
    pub hardware: Hardware,
    pub workload: Workload,
    pub config: EngineConfig,
    /// The config the fleet started with (`reset` restores it).
    pub initial_config: EngineConfig,
    derived: Derived,
    cores: Vec<EngineCore>,
    pub pressure: Pressure,
    pub fault: Option<Fault>,
    pub scrapes: u64,
    /// Scrapes since the current fault was set (a flap's phase counts from there).
    fault_scrapes: u64,
    pub restarts: u32,
    /// Fleet time at which this server (re)started.
    started_at: f64,
    /// Padding series for `--payload-kb`.
    pad_adapters: u32,
    seed: u64,
}

impl Instance {
    pub fn from_spec(spec: &InstanceSpec, seed: u64, now: f64) -> Result<Instance, ConfigError> {
        if spec.id.is_empty()
            || spec.id.len() > 128
            || !spec
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid(format!(
                "instance id {:?} must be 1-128 characters of [A-Za-z0-9._-]",
                spec.id
            )));
        }
        let generation = match &spec.generation {
            Some(g) => Generation::parse(spec.engine, g)?,
            None => Generation::default_for(spec.engine),
        };
        spec.hardware.validate()?;
        spec.workload.validate()?;
        if spec.hardware.data_parallel_size > 1 && spec.engine != EngineKind::Vllm {
            return Err(ConfigError::Invalid(
                "hardware.data_parallel_size > 1 is only simulated for vLLM".into(),
            ));
        }
        if generation == Generation::VllmV0 && spec.hardware.data_parallel_size > 1 {
            return Err(ConfigError::Invalid(
                "vLLM V0 has no data-parallel engines".into(),
            ));
        }
        let config = spec
            .config
            .apply_to(&EngineConfig::default_for(spec.engine))?;
        let mut inst = Instance {
            id: spec.id.clone(),
            generation,
            model: spec.model.clone(),
            group: spec.group.clone(),
            hardware: spec.hardware.clone(),
            workload: spec.workload.clone(),
            initial_config: config.clone(),
            derived: Derived::new(&config, &spec.hardware, generation),
            config,
            cores: Vec::new(),
            pressure: Pressure::default(),
            fault: None,
            scrapes: 0,
            fault_scrapes: 0,
            restarts: 0,
            started_at: now,
            pad_adapters: 0,
            seed,
        };
        inst.cores = inst.fresh_cores();
        Ok(inst)
    }

    fn fresh_cores(&self) -> Vec<EngineCore> {
        let granularity = match self.generation.engine() {
            EngineKind::Vllm => self.config.block_size,
            EngineKind::Tgi | EngineKind::Sglang => 1,
        };
        (0..self.hardware.data_parallel_size.max(1))
            .map(|core| {
                let stats = Stats::new(|o| render::bounds(self.generation, o, &self.config));
                // Restarts get their own random stream, still fixed by the seed.
                let rng = stream(self.seed, &self.id, core + 1000 * self.restarts);
                EngineCore::new(stats, rng, granularity)
            })
            .collect()
    }

    pub fn engine(&self) -> EngineKind {
        self.generation.engine()
    }

    /// Whether the server is up (a config it cannot start with keeps it down).
    pub fn startup_error(&self) -> Option<&str> {
        self.derived.startup_error.as_deref()
    }

    /// Arrival rate right now, requests per second for the whole instance.
    pub fn effective_rate(&self, fleet_now: f64) -> f64 {
        let day = 86_400.0;
        let diurnal =
            1.0 + self.workload.diurnal_amplitude * (std::f64::consts::TAU * fleet_now / day).sin();
        self.workload.rate_rps * self.pressure.rate_factor * diurnal.max(0.0)
    }

    fn step(&mut self, fleet_now: f64, h: f64) {
        if self.derived.startup_error.is_some() {
            return;
        }
        let rate = self.effective_rate(fleet_now) / self.cores.len().max(1) as f64;
        for core in &mut self.cores {
            core.step(
                h,
                rate,
                &self.workload,
                self.pressure,
                &self.config,
                &self.derived,
            );
        }
    }

    /// Applies a config. With `restart`, the server restarts as a real rollout would: queues
    /// are dropped, counters start from zero and the process start time moves. Returns the
    /// previous config.
    pub fn apply_config(
        &mut self,
        patch: &ConfigPatch,
        restart: bool,
        fleet_now: f64,
    ) -> Result<EngineConfig, ConfigError> {
        let next = patch.apply_to(&self.config)?;
        let previous = std::mem::replace(&mut self.config, next);
        self.derived = Derived::new(&self.config, &self.hardware, self.generation);
        let buckets_changed = previous.max_model_len != self.config.max_model_len;
        if restart || buckets_changed {
            self.restarts += 1;
            self.started_at = fleet_now;
            self.cores = self.fresh_cores();
        }
        Ok(previous)
    }

    pub fn uptime(&self, fleet_now: f64) -> f64 {
        (fleet_now - self.started_at).max(0.0)
    }

    /// The `/metrics` body as the real server would send it now.
    pub fn render(&self, epoch_unix: f64, fleet_now: f64) -> String {
        self.render_with_padding(epoch_unix, fleet_now, self.pad_adapters)
    }

    fn render_with_padding(&self, epoch_unix: f64, fleet_now: f64, pad: u32) -> String {
        let input = RenderInput {
            generation: self.generation,
            model: &self.model,
            cores: self.cores.iter().map(|c| &c.stats).collect(),
            config: &self.config,
            hardware: &self.hardware,
            derived: &self.derived,
            started_unix: epoch_unix + self.started_at,
            uptime_s: self.uptime(fleet_now),
            pad_adapters: pad,
            pid: self.pid(),
        };
        render::render(&input)
    }

    fn pid(&self) -> u32 {
        1000 + (stable_hash(&self.id) % 60_000) as u32
    }

    /// Everything needed to render this instance later, without the fleet lock.
    pub fn freeze(&self, epoch_unix: f64, fleet_now: f64) -> Frozen {
        Frozen {
            generation: self.generation,
            model: self.model.clone(),
            cores: self.cores.iter().map(|c| c.stats.clone()).collect(),
            config: self.config.clone(),
            hardware: self.hardware.clone(),
            derived: self.derived.clone(),
            started_unix: epoch_unix + self.started_at,
            uptime_s: self.uptime(fleet_now),
            pad_adapters: self.pad_adapters,
            pid: self.pid(),
        }
    }

    /// Sizes the `--payload-kb` padding so the body is about `target_kb` (vLLM V1 and 0.10
    /// only; other engines keep their natural size).
    pub fn set_payload_target(&mut self, target_kb: u32, epoch_unix: f64, fleet_now: f64) {
        if !matches!(self.generation, Generation::VllmV1 | Generation::Vllm010) {
            return;
        }
        // The first adapter also brings the padding families' headers; the second shows what
        // one more adapter costs.
        let one = self.render_with_padding(epoch_unix, fleet_now, 1).len();
        let two = self.render_with_padding(epoch_unix, fleet_now, 2).len();
        let per_adapter = two.saturating_sub(one).max(1);
        let target = target_kb as usize * 1024;
        let needed = 1 + target.saturating_sub(one).div_ceil(per_adapter);
        self.pad_adapters = u32::try_from(needed).unwrap_or(u32::MAX).min(10_000);
    }

    /// What a scrape returns; counts the scrape.
    pub fn scrape(&mut self, epoch_unix: f64, fleet_now: f64) -> ScrapeOutcome {
        self.scrapes += 1;
        self.fault_scrapes += 1;
        if let Some(err) = self.startup_error() {
            return ScrapeOutcome::Unavailable(format!("server is not running: {err}"));
        }
        let fault = self.fault.and_then(|f| f.fault.map(|k| (k, f)));
        match fault {
            None => ScrapeOutcome::Metrics(Box::new(self.freeze(epoch_unix, fleet_now))),
            Some((FaultKind::Down, _)) => ScrapeOutcome::Unavailable("fault: down".into()),
            Some((FaultKind::Slow, f)) => ScrapeOutcome::Slow {
                seconds: f.slow_seconds,
                body: Box::new(self.freeze(epoch_unix, fleet_now)),
            },
            Some((FaultKind::Garbage, _)) => ScrapeOutcome::Garbage {
                seed: stable_hash(&self.id) ^ self.scrapes,
            },
            Some((FaultKind::Huge, f)) => ScrapeOutcome::Huge {
                bytes: u64::from(f.huge_mb) * 1024 * 1024,
            },
            Some((FaultKind::Flap, f)) => {
                // Scrapes 1..=N good, N+1..=2N bad, and so on.
                let phase = (self.fault_scrapes - 1) / u64::from(f.flap_every);
                if phase % 2 == 0 {
                    ScrapeOutcome::Metrics(Box::new(self.freeze(epoch_unix, fleet_now)))
                } else {
                    ScrapeOutcome::Unavailable("fault: flap (bad phase)".into())
                }
            }
        }
    }

    pub fn view(&self, fleet_now: f64) -> InstanceView {
        let mut live = LiveState::default();
        let mut recent = Recent::default();
        for core in &self.cores {
            let s = &core.stats;
            live.running += s.gauges.running;
            live.waiting += s.gauges.waiting;
            live.kv_cache_usage += s.gauges.kv_usage / self.cores.len() as f64;
            live.generation_tokens_per_s += s.gauges.gen_throughput;
            let c = &s.counters;
            live.requests_received_total += c.requests_received;
            live.requests_finished_total += c.finished_stop + c.finished_length;
            live.requests_aborted_total += c.finished_abort;
            live.requests_rejected_total += c.failed_overloaded + c.failed_validation;
            live.preemptions_total += c.preemptions;
            live.prompt_tokens_total += c.prompt_tokens;
            live.generation_tokens_total += c.generation_tokens;
            live.prefix_cache_queries_total += c.prefix_queries;
            live.prefix_cache_hits_total += c.prefix_hits;
            for (acc, part) in [
                (&mut recent.ttft, core.recent.ttft),
                (&mut recent.itl, core.recent.itl),
                (&mut recent.e2e, core.recent.e2e),
                (&mut recent.queue, core.recent.queue),
            ] {
                acc.0 += part.0;
                acc.1 += part.1;
            }
            live.ttft_mean_s = mean_of(&self.cores, Obs::Ttft);
            live.e2e_mean_s = mean_of(&self.cores, Obs::E2e);
        }
        live.recent_ttft_mean_s = Recent::mean(recent.ttft);
        live.recent_itl_mean_s = Recent::mean(recent.itl);
        live.recent_e2e_mean_s = Recent::mean(recent.e2e);
        live.recent_queue_time_mean_s = Recent::mean(recent.queue);
        live.arrival_rate_rps = self.effective_rate(fleet_now);
        live.up = self.startup_error().is_none();
        live.startup_error = self.startup_error().map(str::to_string);
        InstanceView {
            metrics_path: format!("/instances/{}/metrics", self.id),
            id: self.id.clone(),
            engine: self.engine(),
            generation: self.generation.as_str().to_string(),
            model: self.model.clone(),
            group: self.group.clone(),
            config: self.config.clone(),
            hardware: self.hardware.clone(),
            workload: self.workload.clone(),
            capacity: Capacity {
                num_gpu_blocks: self.derived.num_gpu_blocks,
                kv_capacity_tokens: self.derived.kv_capacity_tokens(),
                decode_iteration_ms_idle: self.derived.iteration_s(1.0, 1000.0, 0.0) * 1000.0,
                quality_risk: quality_risk(self.config.quantization, self.config.kv_cache_dtype),
            },
            rate_factor: self.pressure.rate_factor,
            prompt_factor: self.pressure.prompt_factor,
            fault: self.fault.and_then(|f| f.fault),
            scrapes: self.scrapes,
            restarts: self.restarts,
            uptime_s: self.uptime(fleet_now),
            state: live,
        }
    }
}

/// Mean over all cores of a histogram, `None` before any observation.
fn mean_of(cores: &[EngineCore], obs: Obs) -> Option<f64> {
    let (sum, n) = cores
        .iter()
        .filter_map(|c| c.stats.hist(obs))
        .fold((0.0, 0u64), |(s, n), h| (s + h.sum(), n + h.count()));
    (n > 0).then(|| sum / n as f64)
}

/// Live state of an instance, for `GET /admin/instances/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    pub up: bool,
    pub startup_error: Option<String>,
    pub arrival_rate_rps: f64,
    pub running: u64,
    pub waiting: u64,
    pub kv_cache_usage: f64,
    pub generation_tokens_per_s: f64,
    pub requests_received_total: u64,
    pub requests_finished_total: u64,
    pub requests_aborted_total: u64,
    pub requests_rejected_total: u64,
    pub preemptions_total: u64,
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    pub prefix_cache_queries_total: u64,
    pub prefix_cache_hits_total: u64,
    /// Since the last (re)start.
    pub ttft_mean_s: Option<f64>,
    pub e2e_mean_s: Option<f64>,
    /// Exponentially weighted over the last ~30 simulated seconds.
    pub recent_ttft_mean_s: Option<f64>,
    pub recent_itl_mean_s: Option<f64>,
    pub recent_e2e_mean_s: Option<f64>,
    pub recent_queue_time_mean_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub num_gpu_blocks: u64,
    pub kv_capacity_tokens: u64,
    /// One decode iteration with one sequence of 1000 tokens, ms.
    pub decode_iteration_ms_idle: f64,
    /// Relative quality cost of the quantization choice (0: none).
    pub quality_risk: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub id: String,
    /// Where this instance's `/metrics` is served, relative to the simulator's base URL.
    pub metrics_path: String,
    pub engine: EngineKind,
    pub generation: String,
    pub model: String,
    pub group: String,
    pub config: EngineConfig,
    pub hardware: Hardware,
    pub workload: Workload,
    pub capacity: Capacity,
    pub rate_factor: f64,
    pub prompt_factor: f64,
    pub fault: Option<FaultKind>,
    pub scrapes: u64,
    pub restarts: u32,
    pub uptime_s: f64,
    pub state: LiveState,
}

/// A scenario request, `POST /admin/scenario`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// `load_spike`, `long_prompts`, `bad_config` or `reset`.
    pub name: String,
    /// Target instances by deployment group...
    #[serde(default)]
    pub group: Option<String>,
    /// ...or by id (neither: the whole fleet).
    #[serde(default)]
    pub instance: Option<String>,
    /// Multiplier for `load_spike` (arrival rate, default 4) and `long_prompts` (prompt length,
    /// default 4).
    #[serde(default)]
    pub factor: Option<f64>,
    /// For `bad_config`: the config to apply instead of the default harmful one.
    #[serde(default)]
    pub config: Option<ConfigPatch>,
    /// For `bad_config`: restart the servers (default true).
    #[serde(default)]
    pub restart: Option<bool>,
}

impl Scenario {
    pub fn from_json(body: &[u8]) -> Result<Scenario, ConfigError> {
        serde_json::from_slice(body).map_err(|e| ConfigError::Invalid(format!("scenario: {e}")))
    }
}

/// What a scenario changed, per instance: the previous config where one was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub name: String,
    pub affected: Vec<String>,
    pub previous_configs: BTreeMap<String, EngineConfig>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FleetError {
    #[error("no instance {0:?}")]
    NotFound(String),
    #[error("instance {0:?} already exists")]
    Exists(String),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// The default `bad_config`: a slow code path plus a token budget far too small for the prompts.
pub fn harmful_patch() -> ConfigPatch {
    ConfigPatch {
        harmful: Some(true),
        max_num_batched_tokens: Some(256),
        enable_chunked_prefill: Some(true),
        ..ConfigPatch::default()
    }
}

/// All instances, the simulated clock and the seed.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub seed: u64,
    /// Unix time corresponding to simulated time zero.
    pub epoch_unix: f64,
    /// Simulated seconds since start.
    now: f64,
    /// Model steps taken; `now` is derived from it so that time does not drift.
    steps: u64,
    instances: BTreeMap<String, Instance>,
    /// `--payload-kb` applied to every vLLM instance, including later additions.
    payload_kb: Option<u32>,
}

impl Fleet {
    pub fn new(seed: u64, epoch_unix: f64) -> Fleet {
        Fleet {
            seed,
            epoch_unix,
            now: 0.0,
            steps: 0,
            instances: BTreeMap::new(),
            payload_kb: None,
        }
    }

    pub fn from_spec(spec: &FleetSpec, seed: u64, epoch_unix: f64) -> Result<Fleet, FleetError> {
        let mut fleet = Fleet::new(seed, epoch_unix);
        for s in &spec.instances {
            fleet.add(s)?;
        }
        Ok(fleet)
    }

    pub fn now(&self) -> f64 {
        self.now
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.instances.keys().map(String::as_str)
    }

    pub fn get(&self, id: &str) -> Result<&Instance, FleetError> {
        self.instances
            .get(id)
            .ok_or_else(|| FleetError::NotFound(id.to_string()))
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut Instance, FleetError> {
        self.instances
            .get_mut(id)
            .ok_or_else(|| FleetError::NotFound(id.to_string()))
    }

    pub fn add(&mut self, spec: &InstanceSpec) -> Result<InstanceView, FleetError> {
        if self.instances.contains_key(&spec.id) {
            return Err(FleetError::Exists(spec.id.clone()));
        }
        let mut inst = Instance::from_spec(spec, self.seed, self.now)?;
        if let Some(kb) = self.payload_kb {
            inst.set_payload_target(kb, self.epoch_unix, self.now);
        }
        let view = inst.view(self.now);
        self.instances.insert(spec.id.clone(), inst);
        Ok(view)
    }

    pub fn remove(&mut self, id: &str) -> Result<(), FleetError> {
        self.instances
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| FleetError::NotFound(id.to_string()))
    }

    pub fn set_payload_kb(&mut self, kb: u32) {
        self.payload_kb = Some(kb);
        let (epoch, now) = (self.epoch_unix, self.now);
        for inst in self.instances.values_mut() {
            inst.set_payload_target(kb, epoch, now);
        }
    }

    /// Advances every instance by `seconds` of simulated time, in model steps; a remainder
    /// shorter than a step is carried by rounding to the nearest whole step.
    pub fn advance(&mut self, seconds: f64) -> u64 {
        let steps = (seconds / STEP_SECONDS).round().max(0.0) as u64;
        for _ in 0..steps {
            let now = self.now;
            for inst in self.instances.values_mut() {
                inst.step(now, STEP_SECONDS);
            }
            self.steps += 1;
            self.now = self.steps as f64 * STEP_SECONDS;
        }
        steps
    }

    pub fn render(&self, id: &str) -> Result<String, FleetError> {
        Ok(self.get(id)?.render(self.epoch_unix, self.now))
    }

    pub fn scrape(&mut self, id: &str) -> Result<ScrapeOutcome, FleetError> {
        let (epoch, now) = (self.epoch_unix, self.now);
        Ok(self.get_mut(id)?.scrape(epoch, now))
    }

    pub fn view(&self, id: &str) -> Result<InstanceView, FleetError> {
        Ok(self.get(id)?.view(self.now))
    }

    pub fn views(&self) -> Vec<InstanceView> {
        self.instances.values().map(|i| i.view(self.now)).collect()
    }

    pub fn config(&self, id: &str) -> Result<EngineConfig, FleetError> {
        Ok(self.get(id)?.config.clone())
    }

    /// Applies a config patch; returns the previous config so the caller can roll back.
    pub fn put_config(
        &mut self,
        id: &str,
        patch: &ConfigPatch,
        restart: bool,
    ) -> Result<EngineConfig, FleetError> {
        let now = self.now;
        Ok(self.get_mut(id)?.apply_config(patch, restart, now)?)
    }

    pub fn set_fault(&mut self, id: &str, fault: Fault) -> Result<(), FleetError> {
        let inst = self.get_mut(id)?;
        inst.fault = fault.fault.map(|_| fault);
        inst.fault_scrapes = 0;
        Ok(())
    }

    fn targets(&self, s: &Scenario) -> Result<Vec<String>, FleetError> {
        if let Some(id) = &s.instance {
            self.get(id)?;
            return Ok(vec![id.clone()]);
        }
        Ok(self
            .instances
            .values()
            .filter(|i| s.group.as_ref().is_none_or(|g| &i.group == g))
            .map(|i| i.id.clone())
            .collect())
    }

    pub fn scenario(&mut self, s: &Scenario) -> Result<ScenarioResult, FleetError> {
        let targets = self.targets(s)?;
        let now = self.now;
        let mut previous_configs = BTreeMap::new();
        let factor = s.factor.unwrap_or(4.0);
        if !(factor > 0.0 && factor <= 1000.0) {
            return Err(ConfigError::Invalid("factor must be in (0, 1000]".into()).into());
        }
        match s.name.as_str() {
            "load_spike" => {
                for id in &targets {
                    self.get_mut(id)?.pressure.rate_factor = factor;
                }
            }
            "long_prompts" => {
                for id in &targets {
                    self.get_mut(id)?.pressure.prompt_factor = factor;
                }
            }
            "bad_config" => {
                let patch = s.config.clone().unwrap_or_else(harmful_patch);
                // Validate against every target before changing any, so a bad patch is atomic.
                for id in &targets {
                    patch.apply_to(&self.get(id)?.config)?;
                }
                let restart = s.restart.unwrap_or(true);
                for id in &targets {
                    let prev = self.get_mut(id)?.apply_config(&patch, restart, now)?;
                    previous_configs.insert(id.clone(), prev);
                }
            }
            "reset" => {
                for id in &targets {
                    let inst = self.get_mut(id)?;
                    inst.pressure = Pressure::default();
                    inst.fault = None;
                    if inst.config != inst.initial_config {
                        let back = full_patch(&inst.initial_config);
                        let prev = inst.apply_config(&back, true, now)?;
                        previous_configs.insert(id.clone(), prev);
                    }
                }
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "unknown scenario {other:?}: expected load_spike, long_prompts, bad_config or reset"
                ))
                .into())
            }
        }
        Ok(ScenarioResult {
            name: s.name.clone(),
            affected: targets,
            previous_configs,
        })
    }
}

/// A patch that sets every key to `c`'s value.
pub fn full_patch(c: &EngineConfig) -> ConfigPatch {
    ConfigPatch {
        max_num_seqs: Some(c.max_num_seqs),
        max_num_batched_tokens: Some(c.max_num_batched_tokens),
        max_model_len: Some(c.max_model_len),
        gpu_memory_utilization: Some(c.gpu_memory_utilization),
        block_size: Some(c.block_size),
        quantization: Some(c.quantization),
        kv_cache_dtype: Some(c.kv_cache_dtype),
        enable_prefix_caching: Some(c.enable_prefix_caching),
        enable_chunked_prefill: Some(c.enable_chunked_prefill),
        max_concurrent_requests: Some(c.max_concurrent_requests),
        harmful: Some(c.harmful),
    }
}

/// `--generate N`: a deterministic mix of engines, generations, models and groups.
pub fn generated_specs(n: usize, seed: u64) -> Vec<InstanceSpec> {
    let models: [(&str, f64, f64); 4] = [
        ("meta-llama/Llama-3.1-8B-Instruct", 8.0, 128.0),
        ("Qwen/Qwen3-4B-Instruct-2507", 4.0, 144.0),
        ("mistralai/Mistral-7B-Instruct-v0.3", 7.0, 128.0),
        ("Qwen/Qwen2.5-14B-Instruct", 14.0, 192.0),
    ];
    // Out of 20: 10 vLLM V1, 2 vLLM 0.10, 1 vLLM V0, 3 TGI, 3 SGLang, 1 SGLang 0.4.
    let mix: [(EngineKind, &str); 20] = [
        (EngineKind::Vllm, "v1"),
        (EngineKind::Tgi, "v3"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Sglang, "current"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Vllm, "0.10"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Tgi, "v3"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Sglang, "current"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Vllm, "v0"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Tgi, "v3"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Sglang, "current"),
        (EngineKind::Vllm, "0.10"),
        (EngineKind::Vllm, "v1"),
        (EngineKind::Sglang, "0.4"),
        (EngineKind::Vllm, "v1"),
    ];
    (0..n)
        .map(|i| {
            let h = stable_hash(&format!("{seed}:{i}"));
            let (engine, generation) = mix[i % mix.len()];
            let (model, params_b, kv) = models[(h % models.len() as u64) as usize];
            let rate = 1.0 + (h >> 8) as f64 % 800.0 / 100.0;
            InstanceSpec {
                id: format!("gen-{engine}-{i:04}"),
                engine,
                generation: Some(generation.to_string()),
                model: model.to_string(),
                group: format!("gen-group-{}", i % 10),
                hardware: Hardware {
                    params_b,
                    kv_kib_per_token: kv,
                    ..Hardware::default()
                },
                config: ConfigPatch::default(),
                workload: Workload {
                    rate_rps: rate,
                    ..Workload::default()
                },
            }
        })
        .collect()
}
