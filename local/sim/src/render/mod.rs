//! Turns an instance's counters into the `/metrics` text of its engine and generation, byte for
//! byte in the style of the real servers (see fixtures/metrics-catalog.md): which families exist,
//! their HELP text, label order, bucket bounds, number spelling and layout.

mod sglang;
mod tgi;
mod vllm;

use crate::config::{EngineConfig, Generation, Hardware};
use crate::hist::{geometric, one_two_five, Histogram};
use crate::model::{Derived, Obs, Stats};
use crate::numfmt::go_float;
use std::fmt::Write;

/// What a renderer needs to know about one instance at one instant.
pub struct RenderInput<'a> {
    pub generation: Generation,
    pub model: &'a str,
    /// One entry per engine core (vLLM data-parallel engines); one for the other engines.
    pub cores: Vec<&'a Stats>,
    pub config: &'a EngineConfig,
    pub hardware: &'a Hardware,
    pub derived: &'a Derived,
    /// Unix time the server process started (restarts move it).
    pub started_unix: f64,
    /// Seconds since start.
    pub uptime_s: f64,
    /// Extra per-LoRA padding series for `--payload-kb` (vLLM only).
    pub pad_adapters: u32,
    /// A process id for labels that carry one (stable per instance).
    pub pid: u32,
}

pub fn render(input: &RenderInput<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    match input.generation {
        Generation::VllmV1 | Generation::Vllm010 | Generation::VllmV0 => {
            vllm::render(input, &mut out)
        }
        Generation::TgiV3 => tgi::render(input, &mut out),
        Generation::SglangCurrent | Generation::Sglang04 => sglang::render(input, &mut out),
    }
    out
}

/// Bucket bounds of every histogram a generation exposes; `None` for what it does not record.
pub fn bounds(generation: Generation, obs: Obs, cfg: &EngineConfig) -> Option<Vec<f64>> {
    let max_len = f64::from(cfg.max_model_len);
    let v1_latency = || {
        vec![
            0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
        ]
    };
    let v1_tpot = || {
        vec![
            0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0,
        ]
    };
    match generation {
        Generation::VllmV1 | Generation::Vllm010 => match obs {
            Obs::Ttft => Some(vec![
                0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
            ]),
            Obs::Itl => Some(v1_tpot()),
            Obs::RequestTpot if generation == Generation::VllmV1 => Some(v1_tpot()),
            Obs::E2e | Obs::Queue | Obs::Inference | Obs::Prefill | Obs::Decode => {
                Some(v1_latency())
            }
            Obs::PromptTokens | Obs::GenerationTokens | Obs::MaxTokens => {
                Some(one_two_five(max_len))
            }
            Obs::ParamsN => Some(vec![1.0, 2.0, 5.0, 10.0, 20.0]),
            Obs::IterationTokens => Some(vec![
                1.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
                16384.0,
            ]),
            _ => None,
        },
        Generation::VllmV0 => match obs {
            Obs::Ttft => Some(vec![
                0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0,
            ]),
            Obs::Itl => Some(vec![
                0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
            ]),
            Obs::E2e | Obs::Queue | Obs::Inference | Obs::Prefill | Obs::Decode => Some(vec![
                0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            ]),
            Obs::PromptTokens | Obs::GenerationTokens | Obs::MaxTokens => {
                Some(one_two_five(max_len))
            }
            Obs::ParamsN => Some(vec![1.0, 2.0, 5.0, 10.0, 20.0]),
            _ => None,
        },
        Generation::TgiV3 => {
            // TGI: every name ending in "duration" gets 35 buckets 0.0001·1.5ⁿ (n = 1..35).
            let duration = || geometric(0.0001 * 1.5, 1.5, 35);
            let max_input = f64::from(cfg.max_model_len.saturating_sub(1));
            let linear = |max: f64| -> Vec<f64> {
                (0..100u32)
                    .map(|x| (max / 100.0) * f64::from(x + 1))
                    .collect()
            };
            match obs {
                Obs::E2e
                | Obs::Queue
                | Obs::Inference
                | Obs::Validation
                | Obs::MeanTimePerToken
                | Obs::BatchPrefill
                | Obs::BatchDecode => Some(duration()),
                Obs::PromptTokens => Some(linear(max_input)),
                Obs::GenerationTokens | Obs::MaxTokens => Some(linear(max_len)),
                Obs::BatchSize => Some((0..1024u32).map(|x| f64::from(x + 1)).collect()),
                _ => None,
            }
        }
        Generation::SglangCurrent => match obs {
            Obs::Ttft => Some(vec![
                0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0,
                100.0, 200.0, 400.0,
            ]),
            Obs::Itl => Some(vec![
                0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060,
                0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000,
            ]),
            Obs::E2e => Some(vec![
                0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0,
                100.0, 200.0, 400.0, 600.0, 1200.0, 1800.0, 2400.0,
            ]),
            Obs::Queue => Some(vec![
                0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                60.0, 70.0, 80.0, 90.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 700.0, 800.0,
                900.0, 1000.0, 1200.0, 1400.0, 1600.0, 1800.0, 2000.0, 2500.0, 3000.0,
            ]),
            Obs::RequestPreemptions => Some(vec![
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0, 25.0, 30.0,
                40.0, 50.0, 100.0,
            ]),
            _ => None,
        },
        Generation::Sglang04 => match obs {
            Obs::Ttft => Some(vec![
                0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 15.0, 20.0, 25.0, 30.0,
            ]),
            Obs::E2e => Some(vec![
                0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
            ]),
            Obs::Itl => Some(vec![
                0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4,
                0.5, 0.75, 1.0, 2.5,
            ]),
            Obs::FuncLatency => Some(geometric(0.05, 1.5, 18)),
            _ => None,
        },
    }
}

/// Writes `{k="v",...}` with the labels sorted by name, as `prometheus_client` does; `extra`
/// (e.g. `le`) is merged into its sorted place.
pub(crate) fn write_sorted_labels(
    out: &mut String,
    base: &[(&str, &str)],
    extra: Option<(&str, &str)>,
) {
    let mut all: Vec<(&str, &str)> = base.to_vec();
    if let Some(e) = extra {
        all.push(e);
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    write_labels_in_order(out, &all);
}

/// Writes labels in the given order (TGI keeps insertion order).
pub(crate) fn write_labels_in_order(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label_value(out, v);
        out.push('"');
    }
    out.push('}');
}

fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `prometheus_client`'s text exposition (format 0.0.4).
pub(crate) struct PyText<'o> {
    pub out: &'o mut String,
    /// vLLM V1 exposes a `<name>_created` gauge family after each counter and histogram.
    pub created: bool,
    /// The multiprocess collector (SGLang) writes `_sum` first, then buckets, then `_count`.
    pub multiprocess: bool,
    /// Base of the `_created` timestamps.
    pub created_base: f64,
    created_seq: u32,
}

/// One series: its labels and its value.
pub(crate) type Series<'a, T> = Vec<(Vec<(&'a str, &'a str)>, T)>;

impl<'o> PyText<'o> {
    pub fn new(out: &'o mut String, created: bool, multiprocess: bool, created_base: f64) -> Self {
        Self {
            out,
            created,
            multiprocess,
            created_base,
            created_seq: 0,
        }
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], extra: Option<(&str, &str)>, v: f64) {
        self.out.push_str(name);
        write_sorted_labels(self.out, labels, extra);
        self.out.push(' ');
        self.out.push_str(&go_float(v));
        self.out.push('\n');
    }

    /// Distinct, stable creation timestamps, as each series records its own.
    fn next_created(&mut self) -> f64 {
        self.created_seq += 1;
        self.created_base + f64::from(self.created_seq) * 0.000_031_7
    }

    fn created_family(&mut self, name: &str, help: &str, labels: &[Vec<(&str, &str)>]) {
        if !self.created {
            return;
        }
        let cname = format!("{name}_created");
        self.header(&cname, help, "gauge");
        for l in labels {
            let ts = self.next_created();
            self.sample(&cname, l, None, ts);
        }
    }

    pub fn gauge(&mut self, name: &str, help: &str, series: &Series<'_, f64>) {
        self.header(name, help, "gauge");
        for (l, v) in series {
            self.sample(name, l, None, *v);
        }
    }

    /// `name` without `_total`.
    pub fn counter(&mut self, name: &str, help: &str, series: &Series<'_, f64>) {
        let total = format!("{name}_total");
        self.header(&total, help, "counter");
        for (l, v) in series {
            self.sample(&total, l, None, *v);
        }
        let labels: Vec<Vec<(&str, &str)>> = series.iter().map(|(l, _)| l.clone()).collect();
        self.created_family(name, help, &labels);
    }

    pub fn histogram(&mut self, name: &str, help: &str, series: &Series<'_, &Histogram>) {
        self.header(name, help, "histogram");
        let bucket = format!("{name}_bucket");
        let count = format!("{name}_count");
        let sum = format!("{name}_sum");
        for (l, h) in series {
            if self.multiprocess {
                self.sample(&sum, l, None, h.sum());
            }
            let cum = h.cumulative();
            for (i, c) in cum.iter().enumerate() {
                let le = match h.bounds().get(i) {
                    Some(b) => go_float(*b),
                    None => "+Inf".to_string(),
                };
                self.sample(&bucket, l, Some(("le", &le)), *c as f64);
            }
            self.sample(&count, l, None, h.count() as f64);
            if !self.multiprocess {
                self.sample(&sum, l, None, h.sum());
            }
        }
        let labels: Vec<Vec<(&str, &str)>> = series.iter().map(|(l, _)| l.clone()).collect();
        self.created_family(name, help, &labels);
    }
}

/// Hardware-independent process figures that Python servers expose, moving plausibly with time.
pub(crate) fn python_process_families(py: &mut PyText<'_>, input: &RenderInput<'_>) {
    let up = input.uptime_s.max(0.0);
    let busy: f64 = input.cores.iter().map(|s| s.counters.busy_seconds).sum();
    let gens = [
        ("0", 58027.0 + up * 3.1),
        ("1", 6138.0 + up * 0.3),
        ("2", 2429.0 + up * 0.01),
    ];
    let collected: Series<'_, f64> = gens
        .iter()
        .map(|(g, v)| (vec![("generation", *g)], v.floor()))
        .collect();
    // These come from custom collectors without `_created`.
    let created = py.created;
    py.created = false;
    py.counter(
        "python_gc_objects_collected",
        "Objects collected during gc",
        &collected,
    );
    let zero: Series<'_, f64> = ["0", "1", "2"]
        .iter()
        .map(|g| (vec![("generation", *g)], 0.0))
        .collect();
    py.counter(
        "python_gc_objects_uncollectable",
        "Uncollectable objects found during GC",
        &zero,
    );
    let colls: Series<'_, f64> = [
        ("0", 1974.0 + up * 0.2),
        ("1", 178.0 + up * 0.02),
        ("2", 11.0),
    ]
    .iter()
    .map(|(g, v)| (vec![("generation", *g)], v.floor()))
    .collect();
    py.counter(
        "python_gc_collections",
        "Number of times this generation was collected",
        &colls,
    );
    py.gauge(
        "python_info",
        "Python platform information",
        &vec![(
            vec![
                ("implementation", "CPython"),
                ("major", "3"),
                ("minor", "12"),
                ("patchlevel", "3"),
                ("version", "3.12.3"),
            ],
            1.0,
        )],
    );
    let weights_gb = input.hardware.params_b * 2.0;
    py.gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        &vec![(vec![], (1.372014592e10 + weights_gb * 1e8).floor())],
    );
    py.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &vec![(vec![], (1.109622784e9 + up.min(3600.0) * 4096.0).floor())],
    );
    py.gauge(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &vec![(vec![], (input.started_unix * 100.0).round() / 100.0)],
    );
    py.counter(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        &vec![(vec![], 14.04 + up * 0.05 + busy * 0.9)],
    );
    py.gauge(
        "process_open_fds",
        "Number of open file descriptors.",
        &vec![(vec![], 44.0)],
    );
    py.gauge(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        &vec![(vec![], 65535.0)],
    );
    py.created = created;
}

/// Python's `str()` of a bool.
pub(crate) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The histograms a renderer reads; an instance built for a generation always has them.
pub(crate) fn hists<'a>(cores: &[&'a Stats], obs: Obs) -> Vec<&'a Histogram> {
    cores.iter().filter_map(|s| s.hist(obs)).collect()
}
