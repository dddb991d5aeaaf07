//! One collection pass: scrape a set of instances concurrently (bounded), normalize what they
//! export, store the snapshots in batches, and keep each instance's breaker and last error.
//!
//! A failing instance never blocks the others: each scrape has its own timeout, size cap and
//! retries, and a dead instance is skipped by its circuit breaker until its cool-down ends. A
//! scrape whose text breaks half-way is kept up to the break and marked partial.

use crate::breaker::BreakerPolicy;
use crate::engine;
use crate::instance::Id;
use crate::promtext::{self, Mode};
use crate::scrape::Scraper;
use crate::snapshot::Snapshot;
use crate::store::{Health, InstanceStore, Registered, SnapshotStore, StoreError, StoredSnapshot};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How long snapshots are kept unless configured: 31 days, so that SLO compliance over the 30-day
/// budget period is counted from the snapshots at its two ends (the cost is storage only:
/// see `docs/performance.md`).
pub const DEFAULT_SNAPSHOT_TTL_HOURS: i64 = 31 * 24;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CollectorConfig {
    pub concurrency: usize,
    pub breaker: BreakerPolicy,
    pub snapshot_ttl_hours: i64,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            concurrency: 64,
            breaker: BreakerPolicy::default(),
            snapshot_ttl_hours: DEFAULT_SNAPSHOT_TTL_HOURS,
        }
    }
}

/// What happened to one instance in a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Collected {
        models: usize,
    },
    Partial {
        models: usize,
        reason: String,
    },
    Failed {
        kind: String,
        error: String,
        attempts: u32,
    },
    Skipped {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    pub id: Id,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The summary a pass returns (and the collector function logs and returns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassReport {
    pub slot_ms: i64,
    pub instances: usize,
    pub collected: usize,
    pub partial: usize,
    pub failed: usize,
    pub skipped: usize,
    pub duration_ms: u64,
    pub details: Vec<InstanceReport>,
}

/// Normalizes a scrape body; when the text breaks half-way, keeps what came before the broken line.
pub fn normalize_body(
    body: &[u8],
    engine_hint: crate::snapshot::Engine,
) -> Result<(Snapshot, Option<String>), String> {
    match promtext::parse(body, Mode::Lenient) {
        Ok(exp) => engine::normalize(&exp, Some(engine_hint))
            .map(|s| (s, None))
            .map_err(|e| e.to_string()),
        Err(err) => {
            let cut = line_start_offset(body, err.line);
            let salvaged = promtext::parse(&body[..cut], Mode::Lenient)
                .ok()
                .and_then(|exp| engine::normalize(&exp, Some(engine_hint)).ok())
                .filter(|s| !s.models.is_empty());
            match salvaged {
                Some(s) => Ok((
                    s,
                    Some(format!(
                        "parse error at {err}; kept the {cut} bytes before it of {}",
                        body.len()
                    )),
                )),
                None => Err(format!("parse error at {err}")),
            }
        }
    }
}

/// Names the models an engine exported without a model label (TGI serves one model and says not
/// which) after the model the instance was registered with, when it was.
pub fn name_unnamed_models(snapshot: &mut Snapshot, registered: Option<&str>) {
    if let Some(name) = registered {
        for m in snapshot.models.iter_mut().filter(|m| m.model.is_empty()) {
            m.model = name.to_string();
        }
    }
}

/// Byte offset where 1-based `line` starts (the whole input if the line is past the end).
fn line_start_offset(body: &[u8], line: usize) -> usize {
    if line <= 1 {
        return 0;
    }
    body.iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .nth(line - 2)
        .map_or(body.len(), |(i, _)| i + 1)
}

enum Attempt {
    Stored(StoredSnapshot),
    Skipped,
    Failed {
        kind: &'static str,
        error: String,
        attempts: u32,
    },
}

async fn scrape_one(
    reg: &Registered,
    slot_ms: i64,
    scraper: &Scraper,
    now_ms: &(dyn Fn() -> i64 + Sync),
    config: &CollectorConfig,
) -> Attempt {
    let (body, attempts) = scraper.fetch(&reg.instance.metrics_url).await;
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return Attempt::Failed {
                kind: e.kind(),
                error: e.to_string(),
                attempts,
            }
        }
    };
    match normalize_body(&body, reg.instance.engine) {
        Ok((mut snap, partial)) => {
            name_unnamed_models(&mut snap, reg.instance.model.as_deref());
            Attempt::Stored(StoredSnapshot {
                instance_id: reg.instance.id.clone(),
                slot_ms,
                scraped_at_ms: now_ms(),
                engine: snap.engine,
                generation: snap.generation,
                models: snap.models,
                partial,
                expires_at: slot_ms / 1000 + config.snapshot_ttl_hours * 3600,
            })
        }
        Err(error) => Attempt::Failed {
            kind: "unparseable",
            error,
            attempts,
        },
    }
}

/// Runs one pass over `instances` for collection slot `slot_ms`.
pub async fn collect_pass<S>(
    instances: Vec<Registered>,
    slot_ms: i64,
    scraper: &Scraper,
    store: &S,
    now_ms: &(dyn Fn() -> i64 + Sync),
    config: &CollectorConfig,
) -> Result<PassReport, StoreError>
where
    S: InstanceStore + SnapshotStore,
{
    let started = Instant::now();
    let total = instances.len();
    let results: Vec<(Registered, Attempt)> =
        futures::stream::iter(instances.into_iter().map(|mut reg| async move {
            if !reg.health.breaker.admit(now_ms()) {
                return (reg, Attempt::Skipped);
            }
            let attempt = scrape_one(&reg, slot_ms, scraper, now_ms, config).await;
            (reg, attempt)
        }))
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;

    let mut report = PassReport {
        slot_ms,
        instances: total,
        collected: 0,
        partial: 0,
        failed: 0,
        skipped: 0,
        duration_ms: 0,
        details: Vec::with_capacity(total),
    };
    let mut snapshots = Vec::new();
    for (mut reg, attempt) in results {
        let id = reg.instance.id.clone();
        let before = reg.health.clone();
        let outcome = match attempt {
            Attempt::Stored(snap) => {
                reg.health = Health::default();
                let models = snap.models.len();
                let partial = snap.partial.clone();
                snapshots.push(snap);
                match partial {
                    Some(reason) => {
                        report.partial += 1;
                        Outcome::Partial { models, reason }
                    }
                    None => {
                        report.collected += 1;
                        Outcome::Collected { models }
                    }
                }
            }
            Attempt::Skipped => {
                report.skipped += 1;
                Outcome::Skipped {
                    reason: format!(
                        "circuit breaker open until {} after {} consecutive failures",
                        reg.health.breaker.open_until_ms, reg.health.breaker.consecutive_failures
                    ),
                }
            }
            Attempt::Failed {
                kind,
                error,
                attempts,
            } => {
                report.failed += 1;
                let now = now_ms();
                reg.health.breaker.on_failure(now, &config.breaker);
                reg.health.last_error = Some(error.clone());
                reg.health.last_error_kind = Some(kind.to_string());
                reg.health.last_error_at_ms = Some(now);
                Outcome::Failed {
                    kind: kind.to_string(),
                    error,
                    attempts,
                }
            }
        };
        if reg.health != before {
            store.put_health(&id, &reg.health).await?;
        }
        report.details.push(InstanceReport { id, outcome });
    }
    store.put_snapshots(&snapshots).await?;
    report.details.sort_by(|a, b| a.id.cmp(&b.id));
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}
