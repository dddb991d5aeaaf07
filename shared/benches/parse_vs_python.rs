//! Throughput of `promtext::parse` (lenient mode) against Python's `prometheus_client` parser on
//! the very same ~3 MB payload built from the real vLLM capture.
//!
//! Run: `cargo bench -p perfagent --bench parse_vs_python` (needs `.venv`, from `bash local/venv.sh`).
//! Prints `RESULT parse_mb_per_s=…`, `RESULT python_mb_per_s=…`, `RESULT parse_vs_python=…`
//! (medians), the same three for the best run of each (`parse_best_mb_per_s`, ...: what the code
//! does when nothing else runs on the core) and `parse_samples_per_s`. Compare the ratios, not the
//! absolute figures: these machines are noisy.
//!
//! criterion runs the Rust side (`support::sampled`: warm-up, flat sampling, its own report); each
//! sample's time per parse is kept as well, so the median and best runs come from the very samples criterion took.
//! Each timed parse includes dropping its result, as the Python loop's timing includes freeing the
//! previous run's families when `families` is rebound.

mod support;

use criterion::Throughput;
use perfagent::promtext::{parse, Mode};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const TARGET_BYTES: usize = 3_000_000;
/// criterion samples of the Rust parser (each several parses: about 5 s in all).
const RUST_SAMPLES: usize = 60;
const PYTHON_RUNS: &str = "5";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copies of the capture, each with its metric names prefixed `c<copy>_` so every family is
/// distinct (valid for any parser, not only for ones that merge repeated families).
fn build_payload(capture: &str) -> String {
    let mut out = String::with_capacity(TARGET_BYTES + capture.len() * 2);
    let mut copy = 0;
    while out.len() < TARGET_BYTES {
        for line in capture.lines() {
            let prefix = format!("c{copy}_");
            let keyword = ["# HELP ", "# TYPE "]
                .into_iter()
                .find_map(|k| line.strip_prefix(k).map(|rest| (k, rest)));
            if let Some((keyword, rest)) = keyword {
                out.push_str(keyword);
                out.push_str(&prefix);
                out.push_str(rest);
            } else if line.is_empty() || line.starts_with('#') {
                out.push_str(line);
            } else {
                out.push_str(&prefix);
                out.push_str(line);
            }
            out.push('\n');
        }
        copy += 1;
    }
    out
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn main() -> ExitCode {
    let root = repo_root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        eprintln!(
            "parse_vs_python: {} is missing; create the venv with `bash local/venv.sh` first",
            python.display()
        );
        return ExitCode::FAILURE;
    }
    let capture_path =
        root.join("../shared/fixtures/metrics/vllm-0.10.x-ngc25.09-armandossrecife-qwen3-4b.prom");
    let capture = match std::fs::read_to_string(&capture_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "parse_vs_python: cannot read {}: {e}",
                capture_path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let payload = build_payload(&capture);
    let bytes = payload.as_bytes();
    let megabytes = bytes.len() as f64 / 1e6;

    let exposition = match parse(bytes, Mode::Lenient) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("parse_vs_python: the payload does not parse: {e}");
            return ExitCode::FAILURE;
        }
    };
    let samples = exposition.sample_count();
    println!(
        "payload: {} bytes, {} families, {samples} samples",
        bytes.len(),
        exposition.families.len(),
    );
    drop(exposition);

    // Time per parse in each of criterion's samples.
    let times = support::sampled(
        "promtext",
        "parse_lenient_vllm_3mb",
        RUST_SAMPLES,
        Duration::from_secs(5),
        |group| {
            group.throughput(Throughput::Bytes(bytes.len() as u64));
        },
        |iters| {
            let start = Instant::now();
            for _ in 0..iters {
                drop(std::hint::black_box(parse(
                    std::hint::black_box(bytes),
                    Mode::Lenient,
                )));
            }
            let elapsed = start.elapsed();
            (elapsed, elapsed.div_f64(iters.max(1) as f64))
        },
    );
    let Some(best) = times.iter().min().copied() else {
        eprintln!("parse_vs_python: criterion took no samples (filtered out by an argument?)");
        return ExitCode::FAILURE;
    };
    let samples_taken = times.len();
    let median_time = median(times);
    let parse_mb_per_s = megabytes / median_time.as_secs_f64();
    println!(
        "rust: {samples_taken} criterion samples, best {:.3} ms ({:.0} MB/s), median {:.3} ms",
        best.as_secs_f64() * 1e3,
        megabytes / best.as_secs_f64(),
        median_time.as_secs_f64() * 1e3
    );

    let file = std::env::temp_dir().join(format!("parse_vs_python_{}.prom", std::process::id()));
    if let Err(e) = std::fs::write(&file, bytes) {
        eprintln!("parse_vs_python: cannot write {}: {e}", file.display());
        return ExitCode::FAILURE;
    }
    let output = Command::new(&python)
        .arg(root.join("local/bench/prom_client_parse.py"))
        .arg(&file)
        .arg(PYTHON_RUNS)
        .output();
    let _ = std::fs::remove_file(&file);
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!(
                "parse_vs_python: the Python parser failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("parse_vs_python: cannot run {}: {e}", python.display());
            return ExitCode::FAILURE;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        println!("python: {line}");
    }
    let figure = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let (Some(python_mb_per_s), Some(python_best_mb_per_s)) =
        (figure("python_mb_per_s"), figure("python_best_mb_per_s"))
    else {
        eprintln!(
            "parse_vs_python: no python_mb_per_s / python_best_mb_per_s in the script's output"
        );
        return ExitCode::FAILURE;
    };
    let parse_best_mb_per_s = megabytes / best.as_secs_f64();

    println!("RESULT parse_mb_per_s={parse_mb_per_s:.1}");
    println!("RESULT parse_best_mb_per_s={parse_best_mb_per_s:.1}");
    println!(
        "RESULT parse_samples_per_s={:.0}",
        samples as f64 / median_time.as_secs_f64()
    );
    println!("RESULT python_mb_per_s={python_mb_per_s:.2}");
    println!("RESULT python_best_mb_per_s={python_best_mb_per_s:.2}");
    println!(
        "RESULT parse_vs_python={:.1}",
        parse_mb_per_s / python_mb_per_s
    );
    println!(
        "RESULT parse_vs_python_best={:.1}",
        parse_best_mb_per_s / python_best_mb_per_s
    );
    ExitCode::SUCCESS
}
