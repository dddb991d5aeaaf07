//! The DynamoDB adapter: one table, keys and items as `docs/data-model.md` describes.
//!
//! Snapshots are written with `BatchWriteItem` (25 at a time, unprocessed items retried with
//! backoff); their keys are (instance, slot) so a retried collection overwrites instead of
//! duplicating. Reads filter out expired items, because DynamoDB's TTL deletes them up to days late.

use super::codec::{self, Layout};
use super::{Health, InstanceStore, Registered, SnapshotStore, StoreError, StoredSnapshot};
use crate::analyzer::{
    AnalysisStore, GroupAnalysisRecord, GroupConfig, GroupRecommendation, InstanceAnalysisRecord,
    RecommendationStatus,
};
use crate::instance::{EngineConfig, Id, Instance};
use crate::snapshot::Engine;
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use futures::{StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

const INSTANCES_PARTITION: &str = "INSTANCES";
/// The largest slot the 15-digit sort key can order (year 33658).
const SLOT_MAX_MS: i64 = 999_999_999_999_999;
const BATCH_WRITE_MAX: usize = 25;
/// `BatchWriteItem` calls in flight at once: a pass's 1,000 snapshots are 40 calls, which one after
/// the other cost 40 round trips (`docs/performance.md`).
const BATCH_WRITE_CONCURRENCY: usize = 8;
const BATCH_GET_MAX: usize = 100;
const UNPROCESSED_RETRIES: u32 = 8;
/// Read-modify-write rounds of an instance's config before giving up on a registry that keeps
/// changing under it.
const CONFIG_UPDATE_ATTEMPTS: usize = 4;

// The workflow store (workflow records, group locks, bake samples) on the same table; a child
// module so it shares this adapter's helpers and its layout cache.
#[path = "workflow_dynamo.rs"]
mod workflow_dynamo;
pub use workflow_dynamo::{SAMPLE_TTL_HOURS, WORKFLOW_LIST_LIMIT};

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Bucket layouts are immutable, so once written or read they are cached for the process's life.
    layouts: Arc<Mutex<HashMap<u64, Vec<f64>>>>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            layouts: Arc::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A cheap call that proves the table is reachable (for `health/detailed`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn cached_layout(&self, hash: u64) -> Option<Vec<f64>> {
        self.layouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
    }

    fn cache_layout(&self, hash: u64, bounds: Vec<f64>) {
        self.layouts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, bounds);
    }

    /// Writes in chunks of 25 (the `BatchWriteItem` limit), `BATCH_WRITE_CONCURRENCY` of them in
    /// flight at once.
    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut chunks = Vec::with_capacity(requests.len().div_ceil(BATCH_WRITE_MAX));
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(BATCH_WRITE_MAX));
            chunks.push(std::mem::replace(&mut requests, rest));
        }
        futures::stream::iter(chunks.into_iter().map(|chunk| self.write_chunk(chunk)))
            .buffer_unordered(BATCH_WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// One `BatchWriteItem`, its unprocessed items retried with backoff.
    async fn write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut attempt = 0;
        while !pending.is_empty() {
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(unavailable)?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if !pending.is_empty() {
                attempt += 1;
                if attempt > UNPROCESSED_RETRIES {
                    return Err(StoreError::Unavailable(format!(
                        "{} writes still unprocessed after {UNPROCESSED_RETRIES} retries",
                        pending.len()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(25u64 << attempt.min(6))).await;
            }
        }
        Ok(())
    }

    /// Unexpired snapshots of `id` with `from_ms <= slot_ms <= to_ms`, in slot order (`forward`) or
    /// reverse, at most `want` of them. Expiry is checked here rather than in a filter expression,
    /// because DynamoDB applies `Limit` before filters.
    async fn query_snapshots(
        &self,
        id: &Id,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
        forward: bool,
        want: Option<usize>,
    ) -> Result<Vec<StoredSnapshot>, StoreError> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :a AND :b")
            .expression_attribute_values(":pk", AttributeValue::S(instance_pk(id)))
            .expression_attribute_values(":a", AttributeValue::S(snapshot_sk(from_ms)))
            .expression_attribute_values(":b", AttributeValue::S(snapshot_sk(to_ms)))
            .scan_index_forward(forward);
        if let Some(n) = want {
            // A few extra, in case the first ones have expired but not yet been deleted.
            query = query.limit((n + 4) as i32);
        }
        let mut pages = query.into_paginator().items().send();
        let now_s = now_ms / 1000;
        let mut items = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            if n(&item, "expires_at")? <= now_s {
                continue;
            }
            items.push(item);
            if want.is_some_and(|w| items.len() >= w) {
                break;
            }
        }
        let mut hashes = HashSet::new();
        for item in &items {
            let refs = codec::referenced_layouts(b(item, "d")?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            hashes.extend(refs);
        }
        self.load_layouts(hashes).await?;
        items
            .iter()
            .map(|item| self.decode_snapshot(id, item))
            .collect()
    }

    fn decode_snapshot(&self, id: &Id, item: &Item) -> Result<StoredSnapshot, StoreError> {
        let slot_ms = s(item, "sk")?
            .strip_prefix("SNAP#")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("snapshot key".into()))?;
        let engine: Engine = s(item, "e")?
            .parse()
            .map_err(|e: crate::snapshot::UnknownEngine| StoreError::Corrupt(e.to_string()))?;
        let models = codec::decode(b(item, "d")?, &|h| self.cached_layout(h))
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(StoredSnapshot {
            instance_id: id.clone(),
            slot_ms,
            scraped_at_ms: n(item, "t")?,
            engine,
            generation: s(item, "g")?.to_string(),
            models,
            partial: item.get("p").and_then(|v| v.as_s().ok()).cloned(),
            expires_at: n(item, "expires_at")?,
        })
    }

    async fn ensure_layouts(&self, layouts: Vec<Layout>) -> Result<(), StoreError> {
        // Many snapshots of a pass share layouts; a batch must not name one key twice.
        let mut seen = HashSet::new();
        let new: Vec<Layout> = layouts
            .into_iter()
            .filter(|l| seen.insert(l.hash) && self.cached_layout(l.hash).is_none())
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let requests = new
            .iter()
            .map(|l| {
                let mut item = key(&layout_pk(l.hash), "LAYOUT");
                let bytes: Vec<u8> = l.bounds.iter().flat_map(|b| b.to_le_bytes()).collect();
                item.insert("b".into(), AttributeValue::B(Blob::new(bytes)));
                put(item)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Layout items are immutable and named by their content's hash: an unconditional put that
        // races with another writer writes the same bytes.
        self.batch_write(requests).await?;
        for l in new {
            self.cache_layout(l.hash, l.bounds);
        }
        Ok(())
    }

    async fn load_layouts(&self, hashes: HashSet<u64>) -> Result<(), StoreError> {
        let missing: Vec<u64> = hashes
            .into_iter()
            .filter(|h| self.cached_layout(*h).is_none())
            .collect();
        for chunk in missing.chunks(BATCH_GET_MAX) {
            let mut keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder();
            for h in chunk {
                keys = keys.keys(key(&layout_pk(*h), "LAYOUT"));
            }
            let keys = keys
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let mut request: HashMap<String, aws_sdk_dynamodb::types::KeysAndAttributes> =
                HashMap::from([(self.table.clone(), keys)]);
            let mut attempt = 0;
            while !request.is_empty() {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request))
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let hash = s(&item, "pk")?
                        .strip_prefix("LAYOUT#")
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                        .ok_or_else(|| StoreError::Corrupt("layout key".into()))?;
                    let bytes = b(&item, "b")?;
                    let bounds = bytes
                        .chunks_exact(8)
                        .map(|c| {
                            let mut a = [0u8; 8];
                            a.copy_from_slice(c);
                            f64::from_le_bytes(a)
                        })
                        .collect();
                    self.cache_layout(hash, bounds);
                }
                request = out.unprocessed_keys.unwrap_or_default();
                if !request.is_empty() {
                    attempt += 1;
                    if attempt > UNPROCESSED_RETRIES {
                        return Err(StoreError::Unavailable("layout reads unprocessed".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(25u64 << attempt.min(6))).await;
                }
            }
        }
        Ok(())
    }
}

fn instance_pk(id: &Id) -> String {
    format!("INST#{id}")
}

fn layout_pk(hash: u64) -> String {
    format!("LAYOUT#{hash:016x}")
}

/// Zero-padded so that the sort key orders as the number does.
fn snapshot_sk(slot_ms: i64) -> String {
    format!("SNAP#{:015}", slot_ms.clamp(0, SLOT_MAX_MS))
}

/// The item a snapshot is stored as (`docs/data-model.md`), with the bucket layouts its blob
/// references (stored apart, once each).
pub fn snapshot_item(snap: &StoredSnapshot) -> (HashMap<String, AttributeValue>, Vec<Layout>) {
    let (blob, layouts) = codec::encode(&snap.models);
    let mut item = key(&instance_pk(&snap.instance_id), &snapshot_sk(snap.slot_ms));
    item.insert(
        "t".into(),
        AttributeValue::N(snap.scraped_at_ms.to_string()),
    );
    item.insert("e".into(), AttributeValue::S(snap.engine.as_str().into()));
    item.insert("g".into(), AttributeValue::S(snap.generation.clone()));
    item.insert("d".into(), AttributeValue::B(Blob::new(blob)));
    item.insert(
        "expires_at".into(),
        AttributeValue::N(snap.expires_at.to_string()),
    );
    if let Some(p) = &snap.partial {
        item.insert("p".into(), AttributeValue::S(p.clone()));
    }
    (item, layouts)
}

/// An item's size as DynamoDB bills it (write units are per started KB): the UTF-8 length of every
/// attribute name plus its value's size — strings by UTF-8 length, binaries by length, numbers
/// by one byte per two significant digits plus one, containers with their 3 bytes of overhead
/// and a byte per element. (AWS documents the rule; the number case is its approximation.)
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(name, v)| name.len() + value_size(v))
        .sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// Significant digits (leading and trailing zeros trimmed) / 2, rounded up, plus one.
fn number_size(n: &str) -> usize {
    let mantissa = n.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk.to_string())),
        ("sk".to_string(), AttributeValue::S(sk.to_string())),
    ])
}

fn put(item: Item) -> Result<WriteRequest, StoreError> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(WriteRequest::builder().put_request(put).build())
}

fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(&e).to_string())
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

fn s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing or not a string")))
}

fn n(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing or not a number")))
}

fn b<'a>(item: &'a Item, name: &str) -> Result<&'a [u8], StoreError> {
    item.get(name)
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref())
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} missing or not binary")))
}

fn registered_from(item: &Item) -> Result<Registered, StoreError> {
    let instance: Instance = serde_json::from_str(s(item, "instance")?)
        .map_err(|e| StoreError::Corrupt(format!("instance: {e}")))?;
    let health = match item.get("health").and_then(|v| v.as_s().ok()) {
        Some(h) => {
            serde_json::from_str(h).map_err(|e| StoreError::Corrupt(format!("health: {e}")))?
        }
        None => Health::default(),
    };
    Ok(Registered { instance, health })
}

#[async_trait]
impl InstanceStore for DynamoStore {
    async fn create_instance(&self, instance: &Instance) -> Result<(), StoreError> {
        let mut item = key(&instance_pk(&instance.id), "META");
        item.insert(
            "gsi1pk".into(),
            AttributeValue::S(INSTANCES_PARTITION.into()),
        );
        item.insert(
            "gsi1sk".into(),
            AttributeValue::S(format!("{}#{}", instance.group, instance.id)),
        );
        let doc =
            serde_json::to_string(instance).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        item.insert("instance".into(), AttributeValue::S(doc));
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::AlreadyExists(format!(
                "instance {}",
                instance.id
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get_instance(&self, id: &Id) -> Result<Option<Registered>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&instance_pk(id), "META")))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.as_ref().map(registered_from).transpose()
    }

    async fn list_instances(&self, group: Option<&Id>) -> Result<Vec<Registered>, StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .expression_attribute_values(":p", AttributeValue::S(INSTANCES_PARTITION.into()));
        q = match group {
            Some(g) => q
                .key_condition_expression("gsi1pk = :p AND begins_with(gsi1sk, :g)")
                .expression_attribute_values(":g", AttributeValue::S(format!("{g}#"))),
            None => q.key_condition_expression("gsi1pk = :p"),
        };
        let mut pages = q.into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(registered_from(&item.map_err(unavailable)?)?);
        }
        Ok(out)
    }

    async fn delete_instance(&self, id: &Id) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&instance_pk(id), "META")))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn put_health(&self, id: &Id, health: &Health) -> Result<(), StoreError> {
        let doc = serde_json::to_string(health).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&instance_pk(id), "META")))
            .update_expression("SET health = :h")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":h", AttributeValue::S(doc))
            .send()
            .await
        {
            // Deleted while being scraped: nothing to record.
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
            Ok(_) => Ok(()),
        }
    }

    async fn update_config(
        &self,
        id: &Id,
        config: &EngineConfig,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        // The config lives inside the `instance` document: a compare-and-set on the whole
        // document, so a concurrent re-registration or delete is never overwritten.
        for _ in 0..CONFIG_UPDATE_ATTEMPTS {
            let item = self
                .get_doc(&instance_pk(id), "META")
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
            let old = s(&item, "instance")?;
            let mut instance: Instance = serde_json::from_str(old)
                .map_err(|e| StoreError::Corrupt(format!("instance: {e}")))?;
            if &instance.config == config {
                return Ok(());
            }
            instance.config = config.clone();
            instance.updated_at_ms = now_ms;
            let new =
                serde_json::to_string(&instance).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            match self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(&instance_pk(id), "META")))
                .update_expression("SET instance = :new")
                .condition_expression("instance = :old")
                .expression_attribute_values(":new", AttributeValue::S(new))
                .expression_attribute_values(":old", AttributeValue::S(old.to_string()))
                .send()
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_conditional_failure(&e) => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "instance {id} kept changing while its config was being updated"
        )))
    }
}

#[async_trait]
impl SnapshotStore for DynamoStore {
    async fn put_snapshots(&self, snapshots: &[StoredSnapshot]) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(snapshots.len());
        let mut layouts = Vec::new();
        for snap in snapshots {
            let (item, used) = snapshot_item(snap);
            layouts.extend(used);
            requests.push(put(item)?);
        }
        // Layouts first: a reader that sees a snapshot must be able to decode it.
        self.ensure_layouts(layouts).await?;
        self.batch_write(requests).await
    }

    async fn snapshots(
        &self,
        id: &Id,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<StoredSnapshot>, StoreError> {
        self.query_snapshots(id, from_ms, to_ms, now_ms, true, None)
            .await
    }

    async fn first_snapshot_since(
        &self,
        id: &Id,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self
            .query_snapshots(id, from_ms, SLOT_MAX_MS, now_ms, true, Some(1))
            .await?
            .pop())
    }

    async fn last_snapshot_before(
        &self,
        id: &Id,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self
            .query_snapshots(id, 0, to_ms, now_ms, false, Some(1))
            .await?
            .pop())
    }
}

const ANALYSES_PARTITION: &str = "ANALYSES";
const RECOMMENDATIONS_PARTITION: &str = "RECS";

fn group_pk(group: &Id) -> String {
    format!("GROUP#{group}")
}

fn rec_pk(id: &str) -> String {
    format!("REC#{id}")
}

/// The largest document a packed `doc` may inflate to: far above any analysis (a few KB), low
/// enough that a corrupt item cannot exhaust a function's memory.
const PACKED_DOC_MAX: u64 = 4 << 20;

/// A JSON document: a string (`S`), or a packed one (`B`, raw deflate of the JSON).
fn doc_of<T: serde::de::DeserializeOwned>(item: &Item, name: &str) -> Result<T, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("{name}: {e}"));
    match item.get(name) {
        Some(AttributeValue::B(packed)) => {
            let mut json = Vec::new();
            flate2::read::DeflateDecoder::new(packed.as_ref())
                .take(PACKED_DOC_MAX + 1)
                .read_to_end(&mut json)
                .map_err(|e| corrupt(&e))?;
            if json.len() as u64 > PACKED_DOC_MAX {
                return Err(corrupt(&"inflates beyond 4 MB"));
            }
            serde_json::from_slice(&json).map_err(|e| corrupt(&e))
        }
        _ => serde_json::from_str(s(item, name)?).map_err(|e| corrupt(&e)),
    }
}

/// A document packed for items written every analysis run: the JSON of an instance's analysis is
/// 3–5 KB, 3–5 write units (twice that with its index projection); deflated it is a third to a
/// fifth of that (`docs/performance.md`).
fn to_packed_doc<T: serde::Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    let json = serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut encoder = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(json.len() / 3),
        flate2::Compression::default(),
    );
    encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .map(|packed| AttributeValue::B(Blob::new(packed)))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(v)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl DynamoStore {
    async fn put_doc(&self, mut item: Item, doc: AttributeValue) -> Result<(), StoreError> {
        item.insert("doc".into(), doc);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_doc(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item)
    }

    async fn query_gsi(
        &self,
        partition: &str,
        prefix: Option<String>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .expression_attribute_values(":p", AttributeValue::S(partition.into()));
        q = match prefix {
            Some(p) => q
                .key_condition_expression("gsi1pk = :p AND begins_with(gsi1sk, :g)")
                .expression_attribute_values(":g", AttributeValue::S(p)),
            None => q.key_condition_expression("gsi1pk = :p"),
        };
        let mut pages = q.into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            out.push(item.map_err(unavailable)?);
        }
        Ok(out)
    }

    fn recommendation_from(item: &Item) -> Result<GroupRecommendation, StoreError> {
        let mut rec: GroupRecommendation = doc_of(item, "doc")?;
        rec.status = match item
            .get("status")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
        {
            Some("IN_WORKFLOW") => RecommendationStatus::InWorkflow,
            _ => RecommendationStatus::Open,
        };
        rec.workflow_id = item.get("workflow_id").and_then(|v| v.as_s().ok()).cloned();
        rec.first_seen_ms = n(item, "first_seen_ms")?;
        rec.last_seen_ms = n(item, "last_seen_ms")?;
        Ok(rec)
    }
}

#[async_trait]
impl AnalysisStore for DynamoStore {
    async fn group_config(&self, group: &Id) -> Result<Option<GroupConfig>, StoreError> {
        self.get_doc(&group_pk(group), "CONFIG")
            .await?
            .map(|item| doc_of(&item, "doc"))
            .transpose()
    }

    async fn put_group_config(&self, group: &Id, config: &GroupConfig) -> Result<(), StoreError> {
        self.put_doc(key(&group_pk(group), "CONFIG"), to_doc(config)?)
            .await
    }

    async fn put_instance_analysis(&self, a: &InstanceAnalysisRecord) -> Result<(), StoreError> {
        let mut item = key(&instance_pk(&a.instance_id), "ANALYSIS");
        item.insert(
            "gsi1pk".into(),
            AttributeValue::S(ANALYSES_PARTITION.into()),
        );
        item.insert(
            "gsi1sk".into(),
            AttributeValue::S(format!("{}#{}", a.group, a.instance_id)),
        );
        self.put_doc(item, to_packed_doc(a)?).await
    }

    async fn instance_analysis(
        &self,
        id: &Id,
    ) -> Result<Option<InstanceAnalysisRecord>, StoreError> {
        self.get_doc(&instance_pk(id), "ANALYSIS")
            .await?
            .map(|item| doc_of(&item, "doc"))
            .transpose()
    }

    async fn list_instance_analyses(
        &self,
        group: Option<&Id>,
    ) -> Result<Vec<InstanceAnalysisRecord>, StoreError> {
        self.query_gsi(ANALYSES_PARTITION, group.map(|g| format!("{g}#")))
            .await?
            .iter()
            .map(|item| doc_of(item, "doc"))
            .collect()
    }

    async fn put_group_analysis(&self, a: &GroupAnalysisRecord) -> Result<(), StoreError> {
        self.put_doc(key(&group_pk(&a.group), "ANALYSIS"), to_packed_doc(a)?)
            .await
    }

    async fn group_analysis(&self, group: &Id) -> Result<Option<GroupAnalysisRecord>, StoreError> {
        self.get_doc(&group_pk(group), "ANALYSIS")
            .await?
            .map(|item| doc_of(&item, "doc"))
            .transpose()
    }

    async fn upsert_recommendations(&self, recs: &[GroupRecommendation]) -> Result<(), StoreError> {
        for r in recs {
            // The analysis owns the document and last-seen time; a workflow owns the status, so
            // a re-analysis never resets a recommendation that is being rolled out.
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(&rec_pk(&r.id), "META")))
                .update_expression(
                    "SET doc = :doc, last_seen_ms = :now, gsi1pk = :p, gsi1sk = :s, \
                     first_seen_ms = if_not_exists(first_seen_ms, :now), \
                     #status = if_not_exists(#status, :open)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":doc", to_doc(r)?)
                .expression_attribute_values(":now", AttributeValue::N(r.last_seen_ms.to_string()))
                .expression_attribute_values(
                    ":p",
                    AttributeValue::S(RECOMMENDATIONS_PARTITION.into()),
                )
                .expression_attribute_values(
                    ":s",
                    AttributeValue::S(format!("{}#{}", r.group, r.id)),
                )
                .expression_attribute_values(":open", AttributeValue::S("OPEN".into()))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn recommendations(
        &self,
        group: Option<&Id>,
    ) -> Result<Vec<GroupRecommendation>, StoreError> {
        self.query_gsi(RECOMMENDATIONS_PARTITION, group.map(|g| format!("{g}#")))
            .await?
            .iter()
            .map(Self::recommendation_from)
            .collect()
    }

    async fn recommendation(&self, id: &str) -> Result<Option<GroupRecommendation>, StoreError> {
        self.get_doc(&rec_pk(id), "META")
            .await?
            .as_ref()
            .map(Self::recommendation_from)
            .transpose()
    }

    async fn mark_recommendation(&self, id: &str, workflow_id: &str) -> Result<bool, StoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&rec_pk(id), "META")))
            .update_expression("SET #status = :s, workflow_id = :w")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":s", AttributeValue::S("IN_WORKFLOW".into()))
            .expression_attribute_values(":w", AttributeValue::S(workflow_id.into()))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodbs_rules() {
        assert_eq!(number_size("0"), 2);
        assert_eq!(number_size("1795822830"), 6);
        assert_eq!(number_size("1795822830000"), 6);
        assert_eq!(number_size("-12.50"), 3);
        let item = HashMap::from([
            ("pk".to_string(), AttributeValue::S("INST#a".into())),
            ("d".to_string(), AttributeValue::B(Blob::new(vec![0u8; 10]))),
            ("t".to_string(), AttributeValue::N("123".into())),
        ]);
        assert_eq!(item_size(&item), (2 + 6) + (1 + 10) + (1 + 3));
    }

    #[test]
    fn packed_docs_read_back_and_json_docs_still_read() {
        let doc = serde_json::json!({
            "bottlenecks": (0..40).map(|i| format!("KV cache usage 0.9{i} over 10 minutes")).collect::<Vec<_>>(),
        });
        let packed = to_packed_doc(&doc).unwrap();
        let AttributeValue::B(blob) = &packed else {
            panic!("a packed doc is binary: {packed:?}");
        };
        let json_len = serde_json::to_vec(&doc).unwrap().len();
        assert!(
            blob.as_ref().len() * 3 < json_len,
            "{} of {json_len}",
            blob.as_ref().len()
        );
        let item = HashMap::from([("doc".to_string(), packed)]);
        assert_eq!(doc_of::<serde_json::Value>(&item, "doc").unwrap(), doc);
        // Items written before documents were packed hold the JSON text.
        let item = HashMap::from([("doc".to_string(), to_doc(&doc).unwrap())]);
        assert_eq!(doc_of::<serde_json::Value>(&item, "doc").unwrap(), doc);
    }

    #[test]
    fn a_corrupt_or_oversized_packed_doc_is_an_error_not_a_panic() {
        let garbage = HashMap::from([(
            "doc".to_string(),
            AttributeValue::B(Blob::new(vec![0xff; 64])),
        )]);
        let err = doc_of::<serde_json::Value>(&garbage, "doc").unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
        // 5 MB of spaces deflates to a few KB: a bomb is refused at 4 MB.
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&vec![b' '; 5 << 20]).unwrap();
        let bomb = HashMap::from([(
            "doc".to_string(),
            AttributeValue::B(Blob::new(encoder.finish().unwrap())),
        )]);
        let err = doc_of::<serde_json::Value>(&bomb, "doc").unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("4 MB")),
            "{err:?}"
        );
    }
}
