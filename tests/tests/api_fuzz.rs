//! API fuzzing: schemathesis (pinned in `.venv`, `local/requirements.txt`) generates requests for
//! every operation of the OpenAPI document the deployed API serves (`GET /api/v1/openapi.json`),
//! valid and invalid, sends them SigV4-signed through the emulator's API Gateway
//! (`tests/schemathesis/hooks.py`), and checks every answer: no 5xx, a status the document lists
//! for the operation, the documented content type, a body valid against the documented schema.
//! A fixed seed and example count keep the run reproducible and under two minutes.
//! What it found and how to replay a failure: docs/reliability.md, "API fuzzing".

use anyhow::{bail, Context, Result};
use perfagent_e2e::{repo_root, Stack};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The checks the run applies to every response.
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// Test cases per operation and phase: enough to reach every documented status of every route.
const MAX_EXAMPLES: &str = "25";
const SEED: &str = "20261128";
/// A run takes under 2 min here; past this something hangs.
const DEADLINE: Duration = Duration::from_secs(600);

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() -> Result<()> {
    let stack = Stack::connect().await?;
    let root = repo_root();
    let schemathesis = root.join(".venv/bin/schemathesis");
    if !schemathesis.exists() {
        bail!(
            "{} is missing: run `bash local/venv.sh` (make test does)",
            schemathesis.display()
        );
    }
    // Its own working directory: schemathesis keeps the failures it saw in `.schemathesis/` there
    // and replays them first next time; each run here is the seed's alone.
    let work = std::env::temp_dir().join(format!("perfagent-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let created = work.join("created.ids");
    let api = stack.var("API_URL").to_string();
    let mut cmd = Command::new(&schemathesis);
    cmd.current_dir(&work)
        .arg("run")
        .arg(format!("{api}/api/v1/openapi.json"))
        .args([
            "--url",
            &api,
            "--checks",
            CHECKS,
            "--max-examples",
            MAX_EXAMPLES,
        ])
        // One worker: with two threads, hypothesis's `ast.parse` calls race into CPython 3.11's
        // "AST constructor recursion depth mismatch" SystemError (fixed in later CPythons), which
        // schemathesis reports as an error of whichever operation it hit.
        .args(["--seed", SEED, "--workers", "1", "--request-timeout", "35"])
        // No example database (.hypothesis/) either.
        .args(["--generation-database", "none", "--no-color"])
        .env(
            "SCHEMATHESIS_HOOKS",
            root.join("tests/schemathesis/hooks.py"),
        )
        .env("PERFAGENT_FUZZ_CREATED", &created)
        .env("AWS_ACCESS_KEY_ID", stack.var("AWS_ACCESS_KEY_ID"))
        .env("AWS_SECRET_ACCESS_KEY", stack.var("AWS_SECRET_ACCESS_KEY"))
        .env("AWS_REGION", stack.var("AWS_REGION"))
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    let log = work.join("schemathesis.log");
    let (status, output) = tokio::task::spawn_blocking(move || run(cmd, &log)).await??;

    // Whatever the outcome, unregister the instances the run registered (and only those).
    let ids = std::fs::read_to_string(&created).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&work);
    for id in ids.lines().filter(|l| !l.is_empty()) {
        stack
            .api
            .call(
                http::Method::DELETE,
                &format!("/api/v1/instances/{id}"),
                None,
            )
            .await?;
    }

    println!("{output}");
    assert!(
        status,
        "schemathesis found failures (replay: docs/reliability.md, \"API fuzzing\"):\n{output}"
    );
    // Every route of the router was exercised, not just loaded: all but the document itself,
    // which schemathesis loads and does not test.
    let operations = perfagent::api::ROUTES.len() - 1;
    assert!(
        output.contains(&format!("Tested: {operations}\n")),
        "expected {operations} operations tested:\n{output}"
    );
    assert!(
        output.contains(&format!("Seed: {SEED}")),
        "the run did not use the fixed seed:\n{output}"
    );
    Ok(())
}

/// Runs the command to completion (killed past `DEADLINE`): whether it exited 0, and its output.
fn run(mut cmd: Command, log: &Path) -> Result<(bool, String)> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = cmd
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .spawn()
        .context("starting schemathesis")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(log).unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), output)),
        None => bail!("schemathesis still running after {DEADLINE:?}; killed:\n{output}"),
    }
}
