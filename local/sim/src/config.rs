//! What an operator can set on a simulated server (the engine config the agent tunes) and what is
//! fixed about it (engine, naming generation, hardware, workload), with validation at the edge so
//! an invalid config never reaches the model.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The three engine families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Vllm,
    Tgi,
    Sglang,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Vllm => "vllm",
            EngineKind::Tgi => "tgi",
            EngineKind::Sglang => "sglang",
        })
    }
}

/// The metric-naming generation an instance speaks: the exposition differs between releases of
/// the same engine, and the agent must read all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// vLLM V1 engine, 0.12+: `kv_cache_usage_perc`, `inter_token_latency_seconds`, no `gpu_*`.
    VllmV1,
    /// vLLM 0.10.x: deprecated `gpu_*` names next to the new ones, `time_per_output_token_seconds`.
    Vllm010,
    /// vLLM V0 engine (≈0.6): `gpu_cache_usage_perc`, `gpu_prefix_cache_hit_rate`, no `engine` label.
    VllmV0,
    /// TGI v3 (Rust `metrics-exporter-prometheus`).
    TgiV3,
    /// SGLang 0.5+: `engine_type`/`tp_rank`/`pp_rank` labels, `inter_token_latency_seconds`.
    SglangCurrent,
    /// SGLang 0.4.x: `model_name` only, `time_per_output_token_seconds`.
    Sglang04,
}

impl Generation {
    pub const ALL: [Generation; 6] = [
        Generation::VllmV1,
        Generation::Vllm010,
        Generation::VllmV0,
        Generation::TgiV3,
        Generation::SglangCurrent,
        Generation::Sglang04,
    ];

    pub fn engine(self) -> EngineKind {
        match self {
            Generation::VllmV1 | Generation::Vllm010 | Generation::VllmV0 => EngineKind::Vllm,
            Generation::TgiV3 => EngineKind::Tgi,
            Generation::SglangCurrent | Generation::Sglang04 => EngineKind::Sglang,
        }
    }

    /// The name used in fleet files and the admin API (together with the engine).
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::VllmV1 => "v1",
            Generation::Vllm010 => "0.10",
            Generation::VllmV0 => "v0",
            Generation::TgiV3 => "v3",
            Generation::SglangCurrent => "current",
            Generation::Sglang04 => "0.4",
        }
    }

    /// The generation a fleet file gets when it names only the engine.
    pub fn default_for(engine: EngineKind) -> Generation {
        match engine {
            EngineKind::Vllm => Generation::VllmV1,
            EngineKind::Tgi => Generation::TgiV3,
            EngineKind::Sglang => Generation::SglangCurrent,
        }
    }

    pub fn parse(engine: EngineKind, name: &str) -> Result<Generation, ConfigError> {
        Generation::ALL
            .into_iter()
            .find(|g| g.engine() == engine && g.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Generation::ALL
                    .iter()
                    .filter(|g| g.engine() == engine)
                    .map(|g| g.as_str())
                    .collect();
                ConfigError::Invalid(format!(
                    "unknown generation {name:?} for engine {engine}: expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// Errors from reading a fleet file or an admin request body. The message is meant for the
/// caller as is (the admin API returns it with a 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    None,
    Fp8,
    Awq,
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheDtype {
    Auto,
    Fp8,
    Fp8E4m3,
    Fp8E5m2,
}

impl KvCacheDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheDtype::Auto => "auto",
            KvCacheDtype::Fp8 => "fp8",
            KvCacheDtype::Fp8E4m3 => "fp8_e4m3",
            KvCacheDtype::Fp8E5m2 => "fp8_e5m2",
        }
    }

    pub fn is_fp8(self) -> bool {
        !matches!(self, KvCacheDtype::Auto)
    }
}

/// The engine settings the agent tunes. Names follow vLLM's flags; the same knobs exist on the
/// other engines under other names (see docs/simulator.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    pub max_num_seqs: u32,
    pub max_num_batched_tokens: u32,
    pub max_model_len: u32,
    pub gpu_memory_utilization: f64,
    pub block_size: u32,
    pub quantization: Quantization,
    pub kv_cache_dtype: KvCacheDtype,
    pub enable_prefix_caching: bool,
    pub enable_chunked_prefill: bool,
    /// Admission limit on running + waiting requests; beyond it requests are refused (TGI's
    /// `--max-concurrent-requests`). `None`: unbounded, as vLLM and SGLang.
    pub max_concurrent_requests: Option<u32>,
    /// A switch for scenarios: the model runs every step slower, as a bad kernel or a wrong
    /// attention backend would.
    pub harmful: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            max_model_len: 8192,
            gpu_memory_utilization: 0.9,
            block_size: 16,
            quantization: Quantization::None,
            kv_cache_dtype: KvCacheDtype::Auto,
            enable_prefix_caching: true,
            enable_chunked_prefill: true,
            max_concurrent_requests: None,
            harmful: false,
        }
    }
}

/// A partial config, as sent to `PUT /admin/instances/{id}/config`: keys present are changed,
/// keys absent are kept. Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigPatch {
    pub max_num_seqs: Option<u32>,
    pub max_num_batched_tokens: Option<u32>,
    pub max_model_len: Option<u32>,
    pub gpu_memory_utilization: Option<f64>,
    pub block_size: Option<u32>,
    pub quantization: Option<Quantization>,
    pub kv_cache_dtype: Option<KvCacheDtype>,
    pub enable_prefix_caching: Option<bool>,
    pub enable_chunked_prefill: Option<bool>,
    /// `Some(None)` (JSON `null`) removes the limit.
    #[serde(default, with = "double_option")]
    pub max_concurrent_requests: Option<Option<u32>>,
    pub harmful: Option<bool>,
}

/// Distinguishes an absent key from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Option<u32>>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
        Option::<u32>::deserialize(d).map(Some)
    }
}

impl ConfigPatch {
    /// Parses a JSON body; the error names the offending key and lists the accepted ones.
    pub fn from_json(body: &[u8]) -> Result<ConfigPatch, ConfigError> {
        serde_json::from_slice(body).map_err(|e| ConfigError::Invalid(format!("config: {e}")))
    }

    pub fn apply_to(&self, base: &EngineConfig) -> Result<EngineConfig, ConfigError> {
        let mut c = base.clone();
        if let Some(v) = self.max_num_seqs {
            c.max_num_seqs = v;
        }
        if let Some(v) = self.max_num_batched_tokens {
            c.max_num_batched_tokens = v;
        }
        if let Some(v) = self.max_model_len {
            c.max_model_len = v;
        }
        if let Some(v) = self.gpu_memory_utilization {
            c.gpu_memory_utilization = v;
        }
        if let Some(v) = self.block_size {
            c.block_size = v;
        }
        if let Some(v) = self.quantization {
            c.quantization = v;
        }
        if let Some(v) = self.kv_cache_dtype {
            c.kv_cache_dtype = v;
        }
        if let Some(v) = self.enable_prefix_caching {
            c.enable_prefix_caching = v;
        }
        if let Some(v) = self.enable_chunked_prefill {
            c.enable_chunked_prefill = v;
        }
        if let Some(v) = self.max_concurrent_requests {
            c.max_concurrent_requests = v;
        }
        if let Some(v) = self.harmful {
            c.harmful = v;
        }
        c.validate()?;
        Ok(c)
    }
}

impl EngineConfig {
    /// Range checks that a real server would do at startup (it refuses to start).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(1..=4096).contains(&self.max_num_seqs) {
            problems.push(format!(
                "max_num_seqs must be 1..=4096, got {}",
                self.max_num_seqs
            ));
        }
        if !(16..=1_048_576).contains(&self.max_num_batched_tokens) {
            problems.push(format!(
                "max_num_batched_tokens must be 16..=1048576, got {}",
                self.max_num_batched_tokens
            ));
        }
        if !(256..=1_048_576).contains(&self.max_model_len) {
            problems.push(format!(
                "max_model_len must be 256..=1048576, got {}",
                self.max_model_len
            ));
        }
        if !(self.gpu_memory_utilization > 0.0 && self.gpu_memory_utilization <= 1.0) {
            problems.push(format!(
                "gpu_memory_utilization must be in (0, 1], got {}",
                self.gpu_memory_utilization
            ));
        }
        if ![1, 8, 16, 32, 64, 128].contains(&self.block_size) {
            problems.push(format!(
                "block_size must be one of 1, 8, 16, 32, 64, 128, got {}",
                self.block_size
            ));
        }
        if self.max_concurrent_requests == Some(0) {
            problems.push("max_concurrent_requests must be at least 1".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }

    /// The TGI default for `max_concurrent_requests` is 128; vLLM and SGLang have none.
    pub fn default_for(engine: EngineKind) -> EngineConfig {
        match engine {
            EngineKind::Tgi => EngineConfig {
                max_concurrent_requests: Some(128),
                max_num_batched_tokens: 4096,
                ..EngineConfig::default()
            },
            _ => EngineConfig::default(),
        }
    }
}

/// What does not change with the config: the GPUs and the model's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hardware {
    /// Memory of one GPU.
    pub gpu_memory_gb: f64,
    /// Tensor-parallel degree: weights and KV heads are split across this many GPUs.
    pub tensor_parallel_size: u32,
    /// vLLM data parallelism: this many independent engine cores (`engine="0"`, `"1"`, ...), each
    /// with its own queue and KV pool, requests spread round-robin.
    pub data_parallel_size: u32,
    /// Model size in billions of parameters.
    pub params_b: f64,
    /// KV-cache bytes per token for the whole model at 16-bit precision, in KiB
    /// (layers × KV heads × head dim × 2 × 2 bytes; 128 for Llama-3.1-8B).
    pub kv_kib_per_token: f64,
}

impl Default for Hardware {
    fn default() -> Self {
        Self {
            gpu_memory_gb: 80.0,
            tensor_parallel_size: 1,
            data_parallel_size: 1,
            params_b: 8.0,
            kv_kib_per_token: 128.0,
        }
    }
}

impl Hardware {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(self.gpu_memory_gb > 0.0 && self.gpu_memory_gb <= 1024.0) {
            problems.push("hardware.gpu_memory_gb must be in (0, 1024]".to_string());
        }
        if !(1..=16).contains(&self.tensor_parallel_size) {
            problems.push("hardware.tensor_parallel_size must be 1..=16".to_string());
        }
        if !(1..=16).contains(&self.data_parallel_size) {
            problems.push("hardware.data_parallel_size must be 1..=16".to_string());
        }
        if !(self.params_b > 0.0 && self.params_b <= 2000.0) {
            problems.push("hardware.params_b must be in (0, 2000]".to_string());
        }
        if !(self.kv_kib_per_token > 0.0 && self.kv_kib_per_token <= 10_000.0) {
            problems.push("hardware.kv_kib_per_token must be in (0, 10000]".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }
}

/// The traffic an instance receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Mean arrival rate λ, requests per second (Poisson arrivals).
    pub rate_rps: f64,
    /// Mean prompt length in tokens (log-normal).
    pub prompt_tokens_mean: f64,
    /// Mean output length in tokens (log-normal).
    pub output_tokens_mean: f64,
    /// Fraction of each prompt that is a prefix shared with other requests (system prompt,
    /// few-shot examples): what prefix caching can skip.
    pub prefix_share: f64,
    /// A waiting request older than this is abandoned by its client (counted as an abort).
    pub client_timeout_s: f64,
    /// Relative amplitude of a daily sine on the arrival rate (0: flat).
    pub diurnal_amplitude: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            rate_rps: 4.0,
            prompt_tokens_mean: 600.0,
            output_tokens_mean: 250.0,
            prefix_share: 0.3,
            client_timeout_s: 120.0,
            diurnal_amplitude: 0.0,
        }
    }
}

impl Workload {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(self.rate_rps >= 0.0 && self.rate_rps <= 100_000.0) {
            problems.push("workload.rate_rps must be in [0, 100000]".to_string());
        }
        if !(self.prompt_tokens_mean >= 1.0 && self.prompt_tokens_mean <= 1_000_000.0) {
            problems.push("workload.prompt_tokens_mean must be in [1, 1000000]".to_string());
        }
        if !(self.output_tokens_mean >= 1.0 && self.output_tokens_mean <= 1_000_000.0) {
            problems.push("workload.output_tokens_mean must be in [1, 1000000]".to_string());
        }
        if !(0.0..=1.0).contains(&self.prefix_share) {
            problems.push("workload.prefix_share must be in [0, 1]".to_string());
        }
        if self.client_timeout_s.is_nan() || self.client_timeout_s <= 0.0 {
            problems.push("workload.client_timeout_s must be positive".to_string());
        }
        if !(0.0..=1.0).contains(&self.diurnal_amplitude) {
            problems.push("workload.diurnal_amplitude must be in [0, 1]".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_config_key_is_named_in_the_error() {
        let err = ConfigPatch::from_json(br#"{"max_num_seqz": 3}"#).unwrap_err();
        assert!(err.to_string().contains("max_num_seqz"), "{err}");
    }

    #[test]
    fn a_patch_changes_only_the_keys_it_names() {
        let base = EngineConfig::default();
        let patch = ConfigPatch::from_json(br#"{"max_num_seqs": 64}"#).unwrap();
        let c = patch.apply_to(&base).unwrap();
        assert_eq!(c.max_num_seqs, 64);
        assert_eq!(c.max_num_batched_tokens, base.max_num_batched_tokens);
    }

    #[test]
    fn a_null_admission_limit_removes_it() {
        let base = EngineConfig::default_for(EngineKind::Tgi);
        let patch = ConfigPatch::from_json(br#"{"max_concurrent_requests": null}"#).unwrap();
        assert_eq!(patch.apply_to(&base).unwrap().max_concurrent_requests, None);
    }

    #[test]
    fn an_out_of_range_value_is_refused() {
        let patch = ConfigPatch::from_json(br#"{"gpu_memory_utilization": 1.5}"#).unwrap();
        assert!(patch.apply_to(&EngineConfig::default()).is_err());
    }
}
