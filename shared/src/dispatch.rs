//! The scheduled collector's top level: turning a schedule tick into collection slots, and a fleet
//! larger than one invocation can scrape into shards fanned out by asynchronous invokes.
//!
//! EventBridge fires at most once a minute, so a 30 s interval runs two passes per invocation, the
//! second waiting for its slot. Each pass lists the registry; up to `shard_size` instances are
//! collected in this invocation, beyond that every shard (the instances themselves, so a shard needs
//! no registry read) is sent to another invocation of the same function. The slot comes from the
//! schedule's time, so a retried invocation writes the same snapshot keys again.

use crate::collect::{collect_pass, CollectorConfig, PassReport};
use crate::scrape::Scraper;
use crate::store::{InstanceStore, Registered, SnapshotStore, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// An asynchronous invoke of a shard's payload is limited to 256 KB; stay well under it.
pub const MAX_SHARD_PAYLOAD_BYTES: usize = 200 * 1024;

/// The collector's event: an EventBridge scheduled event (only `time` is read), a shard sent by a
/// dispatcher, or a manual invoke that may override the pass count and shard size.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CollectorEvent {
    /// EventBridge's scheduled time (RFC 3339).
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub shard: Option<Shard>,
    #[serde(default)]
    pub passes: Option<u32>,
    #[serde(default)]
    pub shard_size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Shard {
    pub slot_ms: i64,
    pub index: usize,
    pub count: usize,
    pub instances: Vec<Registered>,
}

/// Fans a shard out to another invocation.
#[async_trait]
pub trait ShardInvoker: Send + Sync {
    async fn invoke_async(&self, payload: Vec<u8>) -> Result<(), String>;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum PassSummary {
    /// Collected in this invocation.
    Inline(PassReport),
    /// Sent to other invocations.
    Dispatched {
        slot_ms: i64,
        instances: usize,
        shards: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("fanning out shard {index} of {count} failed: {message}")]
    Invoke {
        index: usize,
        count: usize,
        message: String,
    },
    #[error("the event is invalid: {0}")]
    BadEvent(String),
}

/// Parses RFC 3339 UTC times as EventBridge writes them (`2026-11-27T23:40:00Z`) into epoch ms.
pub fn parse_event_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if !s.ends_with('Z') {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000)
}

/// Splits instances into shards of at most `shard_size`, and smaller when a shard's payload would
/// exceed the asynchronous invoke limit.
pub fn plan_shards(
    instances: Vec<Registered>,
    shard_size: usize,
    slot_ms: i64,
) -> Result<Vec<Shard>, DispatchError> {
    let mut groups: Vec<Vec<Registered>> = Vec::new();
    let mut current: Vec<Registered> = Vec::new();
    let mut bytes = 0usize;
    for r in instances {
        let size = serde_json::to_vec(&r)
            .map_err(|e| DispatchError::BadEvent(e.to_string()))?
            .len()
            + 1;
        if !current.is_empty()
            && (current.len() >= shard_size.max(1) || bytes + size > MAX_SHARD_PAYLOAD_BYTES)
        {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(r);
    }
    if !current.is_empty() {
        groups.push(current);
    }
    let count = groups.len();
    Ok(groups
        .into_iter()
        .enumerate()
        .map(|(index, instances)| Shard {
            slot_ms,
            index,
            count,
            instances,
        })
        .collect())
}

/// Everything one invocation needs.
pub struct Collector<'a, S> {
    pub store: &'a S,
    pub scraper: &'a Scraper,
    pub invoker: &'a dyn ShardInvoker,
    pub config: &'a CollectorConfig,
    pub interval_ms: i64,
    pub shard_size: usize,
    pub now_ms: &'a (dyn Fn() -> i64 + Sync),
}

impl<S: InstanceStore + SnapshotStore> Collector<'_, S> {
    /// Handles one event: a shard is collected; anything else is a schedule tick.
    pub async fn run(&self, event: CollectorEvent) -> Result<Vec<PassSummary>, DispatchError> {
        if let Some(shard) = event.shard {
            let report = collect_pass(
                shard.instances,
                shard.slot_ms,
                self.scraper,
                self.store,
                self.now_ms,
                self.config,
            )
            .await?;
            return Ok(vec![PassSummary::Inline(report)]);
        }
        let tick_ms = match &event.time {
            Some(t) => parse_event_time(t).ok_or_else(|| {
                DispatchError::BadEvent(format!("time {t:?} is not RFC 3339 UTC"))
            })?,
            None => (self.now_ms)(),
        };
        let interval = self.interval_ms.max(1);
        let passes = event
            .passes
            .unwrap_or_else(|| (60_000 / interval).max(1) as u32)
            .clamp(1, 6);
        let shard_size = event.shard_size.unwrap_or(self.shard_size).max(1);
        let first_slot = tick_ms.div_euclid(interval) * interval;
        let mut out = Vec::with_capacity(passes as usize);
        for pass in 0..passes as i64 {
            let slot_ms = first_slot + pass * interval;
            let wait = slot_ms - (self.now_ms)();
            if pass > 0 && wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            out.push(self.one_pass(slot_ms, shard_size).await?);
        }
        Ok(out)
    }

    async fn one_pass(
        &self,
        slot_ms: i64,
        shard_size: usize,
    ) -> Result<PassSummary, DispatchError> {
        let instances = self.store.list_instances(None).await?;
        if instances.len() <= shard_size {
            let report = collect_pass(
                instances,
                slot_ms,
                self.scraper,
                self.store,
                self.now_ms,
                self.config,
            )
            .await?;
            return Ok(PassSummary::Inline(report));
        }
        let total = instances.len();
        let shards = plan_shards(instances, shard_size, slot_ms)?;
        let count = shards.len();
        for shard in shards {
            let index = shard.index;
            let payload = serde_json::to_vec(&CollectorEvent {
                shard: Some(shard),
                ..CollectorEvent::default()
            })
            .map_err(|e| DispatchError::BadEvent(e.to_string()))?;
            self.invoker
                .invoke_async(payload)
                .await
                .map_err(|message| DispatchError::Invoke {
                    index,
                    count,
                    message,
                })?;
        }
        Ok(PassSummary::Dispatched {
            slot_ms,
            instances: total,
            shards: count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{Id, Instance};
    use crate::snapshot::Engine;
    use crate::store::Health;

    fn reg(i: usize) -> Registered {
        Registered {
            instance: Instance {
                id: Id::parse("id", &format!("i-{i}")).unwrap(),
                engine: Engine::Vllm,
                metrics_url: format!("http://10.0.0.{}/metrics", i % 250),
                model: None,
                group: Id::parse("group", "g").unwrap(),
                labels: Default::default(),
                config: Default::default(),
                created_at_ms: 0,
                updated_at_ms: 0,
            },
            health: Health::default(),
        }
    }

    #[test]
    fn eventbridge_times_become_epoch_milliseconds() {
        assert_eq!(parse_event_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_event_time("2026-11-27T23:40:30Z"),
            Some(1_795_822_830_000)
        );
        assert_eq!(
            parse_event_time("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(parse_event_time("yesterday"), None);
        assert_eq!(parse_event_time("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_event_time("2026-11-27T23:40:30+01:00"), None);
    }

    #[test]
    fn shards_respect_the_size_and_cover_every_instance_once() {
        let shards = plan_shards((0..1001).map(reg).collect(), 250, 7).unwrap();
        assert_eq!(shards.len(), 5);
        assert!(shards
            .iter()
            .all(|s| s.instances.len() <= 250 && s.count == 5 && s.slot_ms == 7));
        let mut ids: Vec<_> = shards
            .iter()
            .flat_map(|s| s.instances.iter().map(|r| r.instance.id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1001);
    }

    #[test]
    fn shards_split_further_when_the_payload_would_exceed_the_invoke_limit() {
        let shards = plan_shards((0..5000).map(reg).collect(), 5000, 0).unwrap();
        assert!(shards.len() > 1);
        for s in &shards {
            let bytes = serde_json::to_vec(s).unwrap().len();
            assert!(bytes <= MAX_SHARD_PAYLOAD_BYTES + 1024, "{bytes}");
        }
    }
}
