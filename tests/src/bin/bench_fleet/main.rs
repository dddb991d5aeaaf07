//! `make bench`, the whole-process part (`local/bench.sh` runs it): the collector function at fleet
//! scale, every function binary's cold start, and the size of snapshot items. The function binaries
//! run as Lambda runs them — a process with Lambda's environment whose only way in is the Runtime
//! API ([`perfagent_e2e::runtime_api`]) — and are measured from outside: `/usr/bin/time -v` for memory and CPU, the
//! Runtime API for when the process was ready and how long each event took.
//!
//! ```text
//! bench_fleet --functions DIR --fleetsim PATH --endpoint URL --table NAME
//!             [--instances 1000] [--payload-kb 200] [--cold-runs 20] [--work DIR]
//!             [--glibc-tunables VALUE]
//! ```
//!
//! `VALUE` is the template's `GLIBC_TUNABLES` for the functions (`local/bench.sh` reads it there).
//!
//! `DIR` holds the release binaries of `perfagent-functions`; `URL` is a DynamoDB endpoint (an
//! emulator) where `NAME` was created with the template's key schema (`local/bench/create_table.py`).
//! Prints `RESULT name=value` lines; every ratio is between figures of the same run.
//!
//! In order:
//! 1. the collector: a fleet of `--instances` simulated vLLM servers (`fleetsim`, its own process,
//!    each `/metrics` padded to `--payload-kb`) is registered in the table; a fetch-only pass (the
//!    collector's own `Scraper` and concurrency, GET and read the body, nothing else) and a fetch +
//!    parse + normalize pass run in this process; then the `collector` binary gets two scheduled
//!    events (one pass each, shard size ≥ the fleet, so one invocation does everything: list the
//!    registry, scrape, parse, normalize, write the snapshots); then a second fetch-only pass. The
//!    snapshot items written for the first slot and the registry items are sized as DynamoDB bills;
//! 2. the `api` binary answering `GET /api/v1/instances/{id}` events, and one scheduled run of the
//!    `analyzer` over the table the collector filled;
//! 3. snapshot item sizes over the generated mix of engines (vLLM, TGI, SGLang), in this process;
//! 4. each binary's cold start (`--cold-runs` times) and size.

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use perfagent::collect::normalize_body;
use perfagent::config::Config;
use perfagent::instance::{Id, Instance};
use perfagent::scrape::Scraper;
use perfagent::snapshot::Engine;
use perfagent::store::dynamo::{item_size, snapshot_item, DynamoStore};
use perfagent::store::{InstanceStore, StoredSnapshot};
use perfagent_e2e::runtime_api::{Recorded, RuntimeApi, WhenSpent};
use perfagent_sim::config::EngineKind;
use perfagent_sim::fleet::{generated_specs, Fleet, FleetSpec, InstanceSpec};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The function binaries (`infra/template.yaml` `Metadata.BuildProperties.Binary`).
const FUNCTIONS: [&str; 4] = ["collector", "api", "analyzer", "workflow-stage"];
/// The template's `MemorySize` (Globals).
const MEMORY_MB: &str = "256";
const SEED: u64 = 42;

struct Args {
    functions: PathBuf,
    fleetsim: PathBuf,
    endpoint: String,
    table: String,
    instances: usize,
    payload_kb: u32,
    cold_runs: usize,
    work: PathBuf,
    glibc_tunables: Option<String>,
}

fn args() -> Result<Args> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            bail!("unexpected argument {k:?} (see the usage at the top of bench_fleet/main.rs)");
        };
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        map.insert(name.to_string(), v);
    }
    let need = |k: &str| {
        map.get(k)
            .cloned()
            .with_context(|| format!("--{k} is required"))
    };
    let num = |k: &str, default: usize| -> Result<usize> {
        map.get(k)
            .map_or(Ok(default), |v| v.parse().context(format!("--{k}")))
    };
    let instances = num("instances", 1000)?;
    Ok(Args {
        functions: need("functions")?.into(),
        fleetsim: need("fleetsim")?.into(),
        endpoint: need("endpoint")?,
        table: need("table")?,
        instances,
        payload_kb: u32::try_from(num("payload-kb", 200)?)?,
        cold_runs: num("cold-runs", 20)?.max(1),
        work: map
            .get("work")
            .map_or_else(std::env::temp_dir, PathBuf::from),
        glibc_tunables: map.get("glibc-tunables").cloned(),
    })
}

fn result(name: &str, value: impl std::fmt::Display) {
    println!("RESULT {name}={value}");
}

/// The value at quantile `q` of sorted values (nearest rank).
fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let i = ((sorted.len().max(1) - 1) as f64 * q).round() as usize;
    sorted.get(i).copied()
}

// ---------------------------------------------------------------- processes

/// The environment Lambda gives every function, plus the template's common variables.
fn lambda_env(api: &RuntimeApi, function: &str, args: &Args) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        (
            "AWS_LAMBDA_FUNCTION_NAME",
            &format!("perfagent-bench-{function}"),
        ),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_MB),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            &format!("/aws/lambda/perfagent-bench-{function}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "test"),
        ("AWS_ENDPOINT_URL", &args.endpoint),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("_HANDLER", "bootstrap"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("TABLE_NAME", &args.table),
        ("LOG_LEVEL", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain(
        args.glibc_tunables
            .iter()
            .map(|v| ("GLIBC_TUNABLES".to_string(), v.clone())),
    )
    .chain(
        function_env(function, args.instances)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    )
    .collect()
}

/// Each function's own variables as the template sets them with its defaults (an empty parameter
/// leaves a variable unset: the built-in default), the local network allowed.
fn function_env(function: &str, instances: usize) -> Vec<(&'static str, String)> {
    let shard = instances.max(1000).to_string();
    let vars: Vec<(&'static str, &str)> = match function {
        "collector" => vec![
            ("SERVICE_NAME", "perfagent-collector"),
            ("COLLECTION_INTERVAL_SECONDS", "30"),
            ("ALLOWED_NETWORKS", "127.0.0.0/8"),
            ("SHARD_SIZE", &shard),
            ("COLLECTOR_FUNCTION_NAME", "perfagent-bench-collector"),
        ],
        "api" => vec![
            ("SERVICE_NAME", "perfagent-api"),
            ("COLLECTOR_FUNCTION_NAME", "perfagent-bench-collector"),
            ("ALLOWED_NETWORKS", "127.0.0.0/8"),
            (
                "STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:perfagent-bench",
            ),
            ("ORCHESTRATOR_URL", "http://127.0.0.1:9"),
            ("ORCHESTRATOR_SECRET", "bench-secret"),
            ("API_BASE_URL", "http://127.0.0.1:9"),
            ("APPROVAL_TIMEOUT_SECONDS", "86400"),
        ],
        "analyzer" => vec![
            ("SERVICE_NAME", "perfagent-analyzer"),
            ("ANALYSIS_WINDOW_MINUTES", "10"),
        ],
        _ => vec![
            ("SERVICE_NAME", "perfagent-workflow-stage"),
            ("ORCHESTRATOR_URL", "http://127.0.0.1:9"),
            ("ORCHESTRATOR_SECRET", "bench-secret"),
            ("API_BASE_URL", "http://127.0.0.1:9"),
            ("ALLOWED_NETWORKS", "127.0.0.0/8"),
        ],
    };
    vars.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

/// Starts a function binary with the events queued; `timed` wraps it in `/usr/bin/time -v`.
/// Returns the instant just before the spawn and the child.
fn spawn_function(
    api: &RuntimeApi,
    function: &str,
    args: &Args,
    timed: Option<&Path>,
) -> Result<(Instant, std::process::Child)> {
    let bin = args.functions.join(function);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.work.join(format!("{function}.log")))?;
    let mut cmd = match timed {
        Some(out) => {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-v").arg("-o").arg(out).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.env_clear()
        .envs(lambda_env(api, function, args))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok((started, child))
}

/// Waits for a function process (it exits once its events are spent), at most `limit`.
async fn wait_exit(mut child: std::process::Child, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("a function process did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Cold start of each binary: process start to its first `GET .../invocation/next`.
async fn cold_starts(api: &RuntimeApi, args: &Args) -> Result<()> {
    for function in FUNCTIONS {
        let bin = args.functions.join(function);
        let size = std::fs::metadata(&bin)
            .with_context(|| format!("{}", bin.display()))?
            .len();
        result(
            &format!("binary_{}_bytes", function.replace('-', "_")),
            size,
        );
        let mut ms = Vec::with_capacity(args.cold_runs);
        for _ in 0..args.cold_runs {
            api.load(Vec::new());
            let (started, child) = spawn_function(api, function, args, None)?;
            wait_exit(child, Duration::from_secs(30)).await?;
            let rec = api.recorded();
            if let Some(e) = rec.init_error {
                bail!("{function} failed its init: {e} (see {function}.log)");
            }
            let ready = rec.first_next.with_context(|| {
                format!("{function} exited without asking for an event (see its log)")
            })?;
            ms.push(ready.duration_since(started).as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        let name = function.replace('-', "_");
        result(
            &format!("coldstart_{name}_p50_ms"),
            format!("{:.2}", quantile(&ms, 0.5).unwrap_or_default()),
        );
        result(
            &format!("coldstart_{name}_p90_ms"),
            format!("{:.2}", quantile(&ms, 0.9).unwrap_or_default()),
        );
        result(
            &format!("coldstart_{name}_min_ms"),
            format!("{:.2}", ms.first().copied().unwrap_or_default()),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- the simulated fleet

/// `n` vLLM servers (V1 and 0.10 naming, four models, ten groups), rates spread as `--generate` does.
fn vllm_fleet(n: usize) -> FleetSpec {
    let instances = generated_specs(n, SEED)
        .into_iter()
        .enumerate()
        .map(|(i, s)| InstanceSpec {
            id: format!("bench-vllm-{i:04}"),
            engine: EngineKind::Vllm,
            generation: Some(if i % 6 == 5 { "0.10" } else { "v1" }.to_string()),
            ..s
        })
        .collect();
    FleetSpec {
        seed: Some(SEED),
        instances,
    }
}

/// A `fleetsim` process serving the fleet, stopped (by its pid) when dropped.
struct SimProcess {
    child: std::process::Child,
    base_url: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_sim(args: &Args, spec: &FleetSpec) -> Result<SimProcess> {
    let fleet_file = args.work.join("bench-fleet.json");
    std::fs::write(&fleet_file, serde_json::to_vec(spec)?)?;
    let ready = args.work.join("fleetsim.ready");
    let _ = std::fs::remove_file(&ready);
    let log = std::fs::File::create(args.work.join("fleetsim.log"))?;
    let child = Command::new(&args.fleetsim)
        .arg("--fleet")
        .arg(&fleet_file)
        .arg("--payload-kb")
        .arg(args.payload_kb.to_string())
        .arg("--no-clock")
        .arg("--port")
        .arg("0")
        .arg("--ready-file")
        .arg(&ready)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", args.fleetsim.display()))?;
    let mut sim = SimProcess {
        child,
        base_url: String::new(),
    };
    for _ in 0..600 {
        if let Ok(text) = std::fs::read_to_string(&ready) {
            if let Some(port) = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("port="))
            {
                sim.base_url = format!("http://127.0.0.1:{port}");
                return Ok(sim);
            }
        }
        if sim.child.try_wait()?.is_some() {
            bail!("fleetsim exited at start (see fleetsim.log)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("fleetsim was not ready within 60 s")
}

fn engine_of(kind: EngineKind) -> Engine {
    match kind {
        EngineKind::Vllm => Engine::Vllm,
        EngineKind::Tgi => Engine::Tgi,
        EngineKind::Sglang => Engine::Sglang,
    }
}

async fn register(store: &DynamoStore, spec: &FleetSpec, base_url: &str) -> Result<Vec<String>> {
    let now = perfagent::clock::now_ms();
    let instances = spec
        .instances
        .iter()
        .map(|s| {
            Ok(Instance {
                id: Id::parse("id", &s.id)?,
                engine: engine_of(s.engine),
                metrics_url: format!("{base_url}/instances/{}/metrics", s.id),
                model: Some(s.model.clone()),
                group: Id::parse("group", &s.group)?,
                labels: Default::default(),
                config: Default::default(),
                created_at_ms: now,
                updated_at_ms: now,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let urls = instances.iter().map(|i| i.metrics_url.clone()).collect();
    let results: Vec<_> = futures::stream::iter(instances.iter())
        .map(|i| store.create_instance(i))
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r.context("registering the fleet")?;
    }
    Ok(urls)
}

/// One pass over `urls` with the collector's scraper and concurrency: GET and read each body, and
/// with `normalize` also parse and normalize it as the collector does. Returns (seconds, bytes, ok).
async fn fetch_pass(
    config: &Config,
    urls: &[String],
    normalize: bool,
) -> Result<(f64, u64, usize)> {
    let scraper = Scraper::new(config.guard.clone(), config.scrape)?;
    let started = Instant::now();
    let outcomes: Vec<Option<u64>> = futures::stream::iter(urls.iter())
        .map(|url| {
            let scraper = &scraper;
            async move {
                let body = scraper.fetch(url).await.0.ok()?;
                if normalize {
                    normalize_body(&body, Engine::Vllm).ok()?;
                }
                Some(body.len() as u64)
            }
        })
        .buffer_unordered(config.collector.concurrency.max(1))
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let ok = outcomes.iter().flatten().count();
    Ok((seconds, outcomes.iter().flatten().sum(), ok))
}

/// `/usr/bin/time -v` output: (max RSS in KB, user + system CPU seconds).
fn time_v(path: &Path) -> Result<(u64, f64)> {
    let text = std::fs::read_to_string(path)?;
    let field = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let rss = field("Maximum resident set size (kbytes):").context("no max RSS")? as u64;
    let cpu = field("User time (seconds):").unwrap_or(0.0)
        + field("System time (seconds):").unwrap_or(0.0);
    Ok((rss, cpu))
}

fn pass_of(response: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(response)?;
    Ok(v["passes"][0].clone())
}

async fn collector(api: &RuntimeApi, args: &Args, dynamo: &aws_sdk_dynamodb::Client) -> Result<()> {
    let spec = vllm_fleet(args.instances);
    let sim = start_sim(args, &spec).await?;
    // Some simulated traffic first, so that counters and histograms hold realistic numbers.
    let advanced = reqwest::Client::new()
        .post(format!("{}/admin/advance", sim.base_url))
        .body(r#"{"seconds": 60}"#)
        .send()
        .await?;
    if !advanced.status().is_success() {
        bail!("fleetsim /admin/advance: {}", advanced.status());
    }
    let store = DynamoStore::new(dynamo.clone(), &args.table);
    let t = Instant::now();
    let urls = register(&store, &spec, &sim.base_url).await?;
    println!(
        "registered {} instances in {:.1} s",
        urls.len(),
        t.elapsed().as_secs_f64()
    );
    let env: HashMap<String, String> = lambda_env(api, "collector", args).into_iter().collect();
    let config = Config::from_map(&env)?;
    println!(
        "collector settings: concurrency {}, shard size {}, scrape timeout {:?}",
        config.collector.concurrency, config.shard_size, config.scrape.timeout
    );

    let (fetch1_s, bytes, fetched) = fetch_pass(&config, &urls, false).await?;
    let (parse_s, _, normalized) = fetch_pass(&config, &urls, true).await?;

    let interval_ms = 30_000;
    let slot_a = (perfagent::clock::now_ms() / interval_ms - 2) * interval_ms;
    let slot_b = slot_a + interval_ms;
    let event = |slot: i64| {
        json!({
            "time": perfagent_e2e::rfc3339(slot),
            "passes": 1,
            "shard_size": args.instances.max(1000),
        })
    };
    api.load(vec![event(slot_a), event(slot_b)]);
    let time_file = args.work.join("collector.time");
    let (started, child) = spawn_function(api, "collector", args, Some(&time_file))?;
    wait_exit(child, Duration::from_secs(300)).await?;
    let rec: Recorded = api.recorded();
    let (fetch2_s, _, fetched2) = fetch_pass(&config, &urls, false).await?;

    let ready_ms = rec
        .first_next
        .map(|t| t.duration_since(started).as_secs_f64() * 1e3)
        .context("the collector never asked for an event (see collector.log)")?;
    let mut walls = Vec::new();
    for (i, inv) in rec.invocations.iter().enumerate() {
        let answered = inv
            .answered
            .with_context(|| format!("invocation {i} got no answer (see collector.log)"))?;
        if let Some(e) = &inv.error {
            bail!("invocation {i} failed: {e}");
        }
        let pass = pass_of(inv.response.as_deref().unwrap_or("{}"))?;
        let done = pass["collected"].as_u64().unwrap_or(0) + pass["partial"].as_u64().unwrap_or(0);
        if pass["mode"] != "inline" || done != urls.len() as u64 {
            bail!(
                "invocation {i} collected {done} of {} instances: {pass}",
                urls.len()
            );
        }
        walls.push((answered.duration_since(inv.delivered).as_secs_f64(), pass));
    }
    let [(cold_s, cold_pass), (warm_s, _)] = walls.as_slice() else {
        bail!("expected 2 invocations, got {}", walls.len());
    };
    let (rss_kb, cpu_s) = time_v(&time_file)?;
    let n = urls.len() as f64;
    let fetch_best_s = fetch1_s.min(fetch2_s);
    result("collector_instances", urls.len());
    result(
        "payload_kb_mean",
        format!("{:.0}", bytes as f64 / fetched.max(1) as f64 / 1024.0),
    );
    result("fetch_only_ok", fetched.min(fetched2));
    result("fetch_parse_ok", normalized);
    result(
        "fetch_only_scrapes_per_s",
        format!("{:.0}", n / fetch_best_s),
    );
    result(
        "fetch_only_mb_per_s",
        format!("{:.0}", bytes as f64 / 1e6 / fetch_best_s),
    );
    result("fetch_parse_scrapes_per_s", format!("{:.0}", n / parse_s));
    result("collector_ready_ms", format!("{ready_ms:.1}"));
    result("collector_pass_s", format!("{cold_s:.3}"));
    result(
        "collector_pass_reported_ms",
        cold_pass["duration_ms"].as_u64().unwrap_or(0),
    );
    result("collector_warm_pass_s", format!("{warm_s:.3}"));
    result("collector_scrapes_per_s", format!("{:.0}", n / cold_s));
    result("collector_warm_scrapes_per_s", format!("{:.0}", n / warm_s));
    result(
        "collector_vs_fetch_only",
        format!("{:.2}", fetch_best_s / cold_s),
    );
    result(
        "collector_peak_rss_mb",
        format!("{:.1}", rss_kb as f64 / 1024.0),
    );
    result("collector_cpu_s", format!("{cpu_s:.2}"));

    // The items the collector wrote for the first slot, sized as DynamoDB bills them.
    let sizes = scan_sizes(dynamo, &args.table, "sk", &format!("SNAP#{slot_a:015}")).await?;
    if sizes.len() != urls.len() {
        bail!(
            "{} snapshot items for slot {slot_a}, expected {}",
            sizes.len(),
            urls.len()
        );
    }
    size_results("snapshot_item_bytes", sizes);
    // The registry the collector lists every pass (a GSI query: eventually consistent reads,
    // half a read unit per 4 KB read).
    let registry = scan_sizes(dynamo, &args.table, "sk", "META").await?;
    let total: usize = registry.iter().sum();
    result(
        "registry_item_bytes_mean",
        format!("{:.0}", total as f64 / registry.len().max(1) as f64),
    );
    result(
        "registry_list_read_units",
        format!("{:.1}", total.div_ceil(4096) as f64 / 2.0),
    );
    Ok(())
}

/// The billed sizes of every item whose attribute `name` equals `value` (a paginated scan).
async fn scan_sizes(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
    name: &str,
    value: &str,
) -> Result<Vec<usize>> {
    let mut sizes = Vec::new();
    let mut start = None;
    loop {
        let page = dynamo
            .scan()
            .table_name(table)
            .filter_expression("#n = :v")
            .expression_attribute_names("#n", name)
            .expression_attribute_values(
                ":v",
                aws_sdk_dynamodb::types::AttributeValue::S(value.to_string()),
            )
            .set_exclusive_start_key(start)
            .send()
            .await?;
        sizes.extend(page.items().iter().map(item_size));
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(sizes);
        }
    }
}

/// The API function answering the orchestrator's most frequent call (GET one instance) as API
/// Gateway delivers it (payload 2.0, `local/events/api-list-instances-iam.json` with the path
/// changed), `API_INVOCATIONS` times in one process; and the analyzer's scheduled run over the
/// table the collector filled. Each from `next` handing out the event to the answer.
async fn invocations(
    api: &RuntimeApi,
    args: &Args,
    dynamo: &aws_sdk_dynamodb::Client,
) -> Result<()> {
    const API_INVOCATIONS: usize = 200;
    let fixture = perfagent_e2e::repo_root().join("local/events/api-list-instances-iam.json");
    let mut event: Value = serde_json::from_slice(&std::fs::read(&fixture)?)?;
    let path = "/api/v1/instances/bench-vllm-0001";
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["pathParameters"]["proxy"] = json!(path.trim_start_matches('/'));
    api.load(vec![event; API_INVOCATIONS]);
    let time_file = args.work.join("api.time");
    let (_, child) = spawn_function(api, "api", args, Some(&time_file))?;
    wait_exit(child, Duration::from_secs(120)).await?;
    let rec = api.recorded();
    let mut ms = Vec::new();
    for (i, inv) in rec.invocations.iter().enumerate() {
        let answered = inv
            .answered
            .with_context(|| format!("API invocation {i} unanswered"))?;
        let response: Value = serde_json::from_str(inv.response.as_deref().unwrap_or("{}"))?;
        if response["statusCode"] != 200 {
            bail!("API invocation {i}: {response}");
        }
        ms.push(answered.duration_since(inv.delivered).as_secs_f64() * 1e3);
    }
    if ms.len() != API_INVOCATIONS {
        bail!("{} of {API_INVOCATIONS} API invocations ran", ms.len());
    }
    let first = ms.remove(0);
    ms.sort_by(f64::total_cmp);
    result("api_invoke_first_ms", format!("{first:.2}"));
    result(
        "api_invoke_p50_ms",
        format!("{:.2}", quantile(&ms, 0.5).unwrap_or_default()),
    );
    result(
        "api_invoke_p99_ms",
        format!("{:.2}", quantile(&ms, 0.99).unwrap_or_default()),
    );
    let (rss_kb, _) = time_v(&time_file)?;
    result("api_peak_rss_mb", format!("{:.1}", rss_kb as f64 / 1024.0));

    api.load(vec![json!({})]);
    let time_file = args.work.join("analyzer.time");
    let (_, child) = spawn_function(api, "analyzer", args, Some(&time_file))?;
    wait_exit(child, Duration::from_secs(300)).await?;
    let rec = api.recorded();
    let inv = rec
        .invocations
        .first()
        .context("the analyzer never asked for its event")?;
    let answered = inv.answered.context("the analyzer never answered")?;
    if let Some(e) = &inv.error {
        bail!("the analyzer failed: {e}");
    }
    let report: Value = serde_json::from_str(inv.response.as_deref().unwrap_or("{}"))?;
    println!("analyzer: {report}");
    result(
        "analyzer_invoke_s",
        format!(
            "{:.3}",
            answered.duration_since(inv.delivered).as_secs_f64()
        ),
    );
    let (rss_kb, cpu_s) = time_v(&time_file)?;
    result(
        "analyzer_peak_rss_mb",
        format!("{:.1}", rss_kb as f64 / 1024.0),
    );
    result("analyzer_cpu_s", format!("{cpu_s:.2}"));
    // What each run writes per instance (its latest analysis, also projected into the index).
    let sizes = scan_sizes(dynamo, &args.table, "sk", "ANALYSIS").await?;
    size_results("analysis_item_bytes", sizes);
    Ok(())
}

fn size_results(prefix: &str, mut sizes: Vec<usize>) {
    sizes.sort_unstable();
    result(&format!("{prefix}_count"), sizes.len());
    for (name, q) in [("min", 0.0), ("p50", 0.5), ("p95", 0.95), ("max", 1.0)] {
        result(
            &format!("{prefix}_{name}"),
            quantile(&sizes, q).unwrap_or(0),
        );
    }
    let over = sizes.iter().filter(|&&s| s > 1024).count();
    result(&format!("{prefix}_over_1kb"), over);
}

/// Item sizes over the default generated mix (vLLM V1/0.10/V0, TGI, SGLang), rendered, parsed and
/// normalized in this process and built into items by the store's own code.
fn mixed_fleet_sizes(n: usize) -> Result<()> {
    let now_s = perfagent::clock::now_ms() as f64 / 1000.0;
    let mut fleet = Fleet::new(SEED, now_s);
    let specs = generated_specs(n, SEED);
    for s in &specs {
        fleet.add(s).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    fleet.advance(60.0);
    let mut sizes = Vec::with_capacity(n);
    for s in &specs {
        let text = fleet.render(&s.id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (snap, partial) = normalize_body(text.as_bytes(), engine_of(s.engine))
            .map_err(|e| anyhow::anyhow!("{}: {e}", s.id))?;
        let stored = StoredSnapshot {
            instance_id: Id::parse("id", &s.id)?,
            slot_ms: 1_795_822_830_000,
            scraped_at_ms: 1_795_822_830_417,
            engine: snap.engine,
            generation: snap.generation,
            models: snap.models,
            partial,
            expires_at: 1_795_822_830 + 31 * 24 * 3600,
        };
        sizes.push(item_size(&snapshot_item(&stored).0));
    }
    size_results("mixed_snapshot_item_bytes", sizes);
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    std::fs::create_dir_all(&args.work)?;
    let api = RuntimeApi::start(WhenSpent::EndProcess).await?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&args.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);

    println!("==> collector: {} simulated vLLM servers", args.instances);
    collector(&api, &args, &dynamo).await?;
    println!("==> the API and analyzer functions, invoked through the Runtime API");
    invocations(&api, &args, &dynamo).await?;
    println!("==> snapshot item sizes over the generated mix of engines");
    mixed_fleet_sizes(args.instances)?;
    println!("==> cold starts ({} runs per binary)", args.cold_runs);
    cold_starts(&api, &args).await?;
    Ok(())
}
