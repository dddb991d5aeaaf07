//! `orchestrator-sim`: the simulated deployment orchestrator (docs/orchestrator-contract.yaml)
//! in front of a running fleet simulator.

use anyhow::{bail, Context};
use clap::Parser;
use perfagent_sim::orchestrator::approver::{ApprovalMode, ModeSettings};
use perfagent_sim::orchestrator::fleet_admin::HttpFleet;
use perfagent_sim::orchestrator::{serve, OrchestratorState, Settings};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the shared secret comes from when `--secret` is not given.
const SECRET_ENV: &str = "PERFAGENT_ORCHESTRATOR_SECRET";

#[derive(Debug, Parser)]
#[command(
    name = "orchestrator-sim",
    about = "Simulated deployment orchestrator in front of fleetsim"
)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port, printed in the READY line).
    #[arg(long, default_value_t = 9200)]
    port: u16,
    /// The fleet simulator's base URL (its admin API applies the configs).
    #[arg(long, default_value = "http://127.0.0.1:9100")]
    fleet_url: String,
    /// The HMAC secret shared with the agent (default: $PERFAGENT_ORCHESTRATOR_SECRET; prefer
    /// the variable, a flag shows in the process list).
    #[arg(long)]
    secret: Option<String>,
    /// What to do with approval notifications: manual, auto_approve or auto_reject.
    #[arg(long, default_value = "manual")]
    mode: ApprovalMode,
    /// With auto_approve/auto_reject: wait this long before deciding.
    #[arg(long, default_value_t = 0)]
    decision_delay_ms: u64,
    /// Whose credentials sign decisions ("env": AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY).
    #[arg(long, default_value = "env")]
    principal: String,
    /// Start with harm on: every apply also turns the simulator's `harmful` switch on for the
    /// instances it changes (the change makes them slower); PUT /admin/harm switches it.
    #[arg(long)]
    harm: bool,
    /// Write "READY port=<port>" to this file once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
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
    let secret = match args.secret {
        Some(s) => s,
        None => std::env::var(SECRET_ENV).unwrap_or_default(),
    };
    if secret.is_empty() {
        bail!("no shared secret: set {SECRET_ENV} or give --secret");
    }
    let fleet = HttpFleet::new(&args.fleet_url).context("--fleet-url")?;
    let mut settings = Settings::new(secret.into_bytes());
    settings.harm = args.harm;
    settings.mode = ModeSettings {
        delay_ms: args.decision_delay_ms,
        principal: args.principal,
        ..ModeSettings::new(args.mode)
    };
    if args.mode != ApprovalMode::Manual
        && !settings.principals.contains_key(&settings.mode.principal)
    {
        tracing::warn!(
            principal = %settings.mode.principal,
            "no credentials for the deciding principal yet: decisions fail until PUT /admin/principals/{{name}}"
        );
    }
    let state = OrchestratorState::new(settings, Arc::new(fleet))?;

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    let ready = format!("READY port={port}");
    if let Some(path) = &args.ready_file {
        std::fs::write(path, format!("{ready}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{ready}");
    tracing::info!(port, fleet = %args.fleet_url, mode = %args.mode, harm = args.harm, "orchestrator-sim listening");
    serve(listener, state, shutdown()).await?;
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
