//! `fleetsim`: serves simulated vLLM/TGI/SGLang `/metrics` for a whole fleet on one port.

use anyhow::{bail, Context};
use clap::Parser;
use perfagent_sim::fleet::{generated_specs, Fleet, FleetSpec};
use perfagent_sim::server::{router, run_clock, AppState};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Parser)]
#[command(name = "fleetsim", about = "Simulated fleet of LLM inference servers")]
struct Args {
    /// Fleet file (JSON: {"seed":..,"instances":[..]}).
    #[arg(long)]
    fleet: Option<PathBuf>,
    /// Add N generated instances (a mix of engines and generations).
    #[arg(long)]
    generate: Option<usize>,
    /// Port on 127.0.0.1 (0: any free port, printed in the READY line).
    #[arg(long, default_value_t = 9100)]
    port: u16,
    /// Seed of the model's randomness (default: the fleet file's, else 42).
    #[arg(long)]
    seed: Option<u64>,
    /// Pad every vLLM V1/0.10 instance's /metrics to about this many KiB.
    #[arg(long)]
    payload_kb: Option<u32>,
    /// Write "READY port=<port> instances=<n>" to this file once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Simulated seconds per wall second.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// How often the clock advances the model, in wall milliseconds.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Do not advance with wall time; only POST /admin/advance moves the clock.
    #[arg(long)]
    no_clock: bool,
    /// Unix time of simulated time zero (default: now), for reproducible timestamps.
    #[arg(long)]
    epoch_unix: Option<f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.fleet.is_none() && args.generate.is_none() {
        bail!("nothing to simulate: give --fleet FILE and/or --generate N");
    }
    if !(args.speed > 0.0 && args.speed <= 10_000.0) {
        bail!("--speed must be in (0, 10000]");
    }
    let spec = match &args.fleet {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            FleetSpec::from_json(&bytes)?
        }
        None => FleetSpec::default(),
    };
    let seed = args.seed.or(spec.seed).unwrap_or(42);
    let epoch = match args.epoch_unix {
        Some(e) => e,
        None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64(),
    };
    let mut fleet = Fleet::from_spec(&spec, seed, epoch)?;
    if let Some(n) = args.generate {
        for s in generated_specs(n, seed) {
            fleet.add(&s)?;
        }
    }
    if let Some(kb) = args.payload_kb {
        fleet.set_payload_kb(kb);
    }
    let instances = fleet.len();
    let state = AppState::new(fleet);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    if !args.no_clock {
        tokio::spawn(run_clock(
            state.clone(),
            Duration::from_millis(args.tick_ms.max(1)),
            args.speed,
        ));
    }
    let ready = format!("READY port={port} instances={instances}");
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{ready}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{ready}");
    tracing::info!(port, instances, seed, "fleetsim listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
