//! The workflow store on the agent's one DynamoDB table: workflow records with their audit trail,
//! the group locks that keep one active workflow per deployment group, and bake samples. Items and
//! access patterns are in `docs/data-model.md` (workflow rows).
//!
//! How the [`WorkflowStore`] contract is kept:
//! - `create` is one `TransactWriteItems`: the record and the group's lock item, each
//!   `attribute_not_exists`, so both are written or neither.
//! - The audit trail lives inside the record, in its own list attribute that writes only ever
//!   append to (`list_append`): an `update` stores the record, bumps the version and appends its
//!   entries in one conditional `UpdateItem` (`version = :read`), with no transaction. A trail
//!   is a few dozen entries of a few hundred bytes, small next to the record's own plan and
//!   previous configs; bake samples, the bulky part, are separate items.
//! - The record's index partition says whether it has ended (`WORKFLOWS#ACTIVE` /
//!   `WORKFLOWS#ENDED`), so the pending approvals and the active-workflow gauge read only the few
//!   live workflows, never the whole history.

use super::{
    b, group_pk, is_conditional_failure, key, n, put, s, unavailable, DynamoStore, Item,
    SLOT_MAX_MS,
};
use crate::instance::Id;
use crate::store::{codec, StoreError};
use crate::workflow::ports::{SampleStore, WorkflowFilter, WorkflowStore, WorkflowStoreError};
use crate::workflow::{AuditEntry, Role, Sample, State, Workflow};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

const ACTIVE_PARTITION: &str = "WORKFLOWS#ACTIVE";
const ENDED_PARTITION: &str = "WORKFLOWS#ENDED";
const RECORD_SK: &str = "META";
const LOCK_SK: &str = "ACTIVE_WORKFLOW";
/// How many workflows a listing returns when the filter sets no limit.
pub const WORKFLOW_LIST_LIMIT: usize = 100;
/// How long bake samples are kept: the judge reads them minutes after they are taken, and the
/// verdict keeps its evidence in the record, so a week is only for looking into a judgement.
pub const SAMPLE_TTL_HOURS: i64 = 7 * 24;
/// Rounds of `create` when the lock was freed between the failed transaction and the re-read.
const CREATE_ATTEMPTS: usize = 3;

fn workflow_pk(id: &Id) -> String {
    format!("WF#{id}")
}

fn sample_pk(workflow: &Id, step: u32) -> String {
    format!("WFSAMPLE#{workflow}#{step:010}")
}

/// Round first, zero-padded, so one step's samples read back in round order.
fn sample_sk(round: u32, instance: &Id) -> String {
    format!("{round:010}#{instance}")
}

/// Within a group, oldest to newest; a query reads it backwards for newest first.
fn index_sk(wf: &Workflow) -> String {
    format!(
        "{}#{:015}#{}",
        wf.group,
        wf.created_at_ms.clamp(0, SLOT_MAX_MS),
        wf.id
    )
}

fn partition(state: State) -> &'static str {
    if state.is_terminal() {
        ENDED_PARTITION
    } else {
        ACTIVE_PARTITION
    }
}

fn store_error(e: StoreError) -> WorkflowStoreError {
    match e {
        StoreError::Corrupt(m) => WorkflowStoreError::Corrupt(m),
        other => WorkflowStoreError::Unavailable(other.to_string()),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> WorkflowStoreError {
    WorkflowStoreError::Corrupt(format!("{what}: {e}"))
}

/// The record without its trail, as the `doc` attribute (the trail is its own attribute).
fn record_doc(wf: &Workflow) -> Result<AttributeValue, WorkflowStoreError> {
    let mut v = serde_json::to_value(wf).map_err(|e| corrupt("workflow", e))?;
    if let Some(map) = v.as_object_mut() {
        map.remove("audit");
    }
    Ok(AttributeValue::S(v.to_string()))
}

fn audit_list(entries: &[AuditEntry]) -> Result<AttributeValue, WorkflowStoreError> {
    entries
        .iter()
        .map(|e| {
            serde_json::to_string(e)
                .map(AttributeValue::S)
                .map_err(|e| corrupt("audit entry", e))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(AttributeValue::L)
}

/// The whole item of a new record (version and trail included).
fn record_item(wf: &Workflow) -> Result<Item, WorkflowStoreError> {
    let mut item = key(&workflow_pk(&wf.id), RECORD_SK);
    item.insert(
        "gsi1pk".into(),
        AttributeValue::S(partition(wf.state).into()),
    );
    item.insert("gsi1sk".into(), AttributeValue::S(index_sk(wf)));
    item.insert("doc".into(), record_doc(wf)?);
    item.insert("audit".into(), audit_list(&wf.audit)?);
    item.insert("version".into(), AttributeValue::N(wf.version.to_string()));
    item.insert("state".into(), AttributeValue::S(wf.state.as_str().into()));
    item.insert("group".into(), AttributeValue::S(wf.group.to_string()));
    item.insert(
        "updated_at_ms".into(),
        AttributeValue::N(wf.updated_at_ms.to_string()),
    );
    Ok(item)
}

fn workflow_from(item: &Item) -> Result<Workflow, WorkflowStoreError> {
    let doc = s(item, "doc").map_err(store_error)?;
    let mut wf: Workflow = serde_json::from_str(doc).map_err(|e| corrupt("workflow", e))?;
    wf.version = n(item, "version")
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| WorkflowStoreError::Corrupt(format!("workflow {}: version", wf.id)))?;
    wf.audit = match item.get("audit") {
        None => Vec::new(),
        Some(AttributeValue::L(entries)) => entries
            .iter()
            .map(|e| {
                let text = e
                    .as_s()
                    .map_err(|_| corrupt("audit entry", "not a string"))?;
                serde_json::from_str(text).map_err(|e| corrupt("audit entry", e))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(corrupt("audit", "not a list")),
    };
    Ok(wf)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Canary => "canary",
        Role::Baseline => "baseline",
    }
}

fn role_from(name: &str) -> Result<Role, WorkflowStoreError> {
    match name {
        "canary" => Ok(Role::Canary),
        "baseline" => Ok(Role::Baseline),
        other => Err(corrupt("sample role", other)),
    }
}

impl DynamoStore {
    async fn record_item(&self, id: &Id) -> Result<Option<Item>, WorkflowStoreError> {
        self.get_doc(&workflow_pk(id), RECORD_SK)
            .await
            .map_err(store_error)
    }

    /// One index partition's records, newest first within a group, filtered as asked.
    async fn list_partition(
        &self,
        partition: &str,
        filter: &WorkflowFilter,
        limit: usize,
    ) -> Result<Vec<Workflow>, WorkflowStoreError> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .scan_index_forward(false)
            .expression_attribute_values(":p", AttributeValue::S(partition.into()));
        q = match &filter.group {
            Some(g) => q
                .key_condition_expression("gsi1pk = :p AND begins_with(gsi1sk, :g)")
                .expression_attribute_values(":g", AttributeValue::S(format!("{g}#"))),
            None => q.key_condition_expression("gsi1pk = :p"),
        };
        if let Some(state) = filter.state {
            q = q
                .filter_expression("#state = :s")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":s", AttributeValue::S(state.as_str().into()));
        }
        let mut pages = q.into_paginator().items().send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| store_error(unavailable(e)))?;
            out.push(workflow_from(&item)?);
            // Within one group the index is already newest first; across groups it is ordered
            // by group, so everything is read and sorted by the caller.
            if filter.group.is_some() && out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn create(&self, workflow: &Workflow) -> Result<Workflow, WorkflowStoreError> {
        let mut stored = workflow.clone();
        stored.version = 1;
        let record = record_item(&stored)?;
        let mut lock = key(&group_pk(&stored.group), LOCK_SK);
        lock.insert(
            "workflow_id".into(),
            AttributeValue::S(stored.id.to_string()),
        );
        lock.insert(
            "since_ms".into(),
            AttributeValue::N(stored.created_at_ms.to_string()),
        );
        let build = |item: &Item| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(|e| WorkflowStoreError::Unavailable(e.to_string()))
        };
        for attempt in 0..CREATE_ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .transact_items(build(&record)?)
                .transact_items(build(&lock)?)
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(stored),
                Err(e) => e,
            };
            let reasons: Option<Vec<Option<String>>> = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
                    c.cancellation_reasons()
                        .iter()
                        .map(|r| r.code().map(String::from))
                        .collect(),
                ),
                _ => None,
            };
            let Some(reasons) = reasons else {
                return Err(store_error(unavailable(err)));
            };
            // The reasons say which condition failed; an emulator may not give them, so the
            // items themselves are the fallback.
            let record_taken = match reasons.first() {
                Some(Some(code)) => code == "ConditionalCheckFailed",
                _ => self.record_item(&stored.id).await?.is_some(),
            };
            if record_taken {
                return Err(WorkflowStoreError::AlreadyExists(stored.id.clone()));
            }
            if let Some(active) = self.active(&stored.group).await? {
                return Err(WorkflowStoreError::GroupBusy {
                    group: stored.group.clone(),
                    active,
                });
            }
            // Neither is taken now: the lock was freed since, or a concurrent transaction on
            // the same items won. Both pass.
            tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
        }
        Err(WorkflowStoreError::Unavailable(format!(
            "could not take deployment group {}'s lock in {CREATE_ATTEMPTS} attempts",
            stored.group
        )))
    }

    async fn get(&self, id: &Id) -> Result<Option<Workflow>, WorkflowStoreError> {
        self.record_item(id)
            .await?
            .as_ref()
            .map(workflow_from)
            .transpose()
    }

    async fn list(&self, filter: &WorkflowFilter) -> Result<Vec<Workflow>, WorkflowStoreError> {
        let limit = filter.limit.unwrap_or(WORKFLOW_LIST_LIMIT);
        let partitions: &[&str] = match filter.state {
            Some(s) => &[partition(s)],
            None => &[ACTIVE_PARTITION, ENDED_PARTITION],
        };
        let mut out = Vec::new();
        for p in partitions {
            out.extend(self.list_partition(p, filter, limit).await?);
        }
        out.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn update(
        &self,
        workflow: &Workflow,
        audit: &[AuditEntry],
    ) -> Result<Workflow, WorkflowStoreError> {
        let next = workflow.version + 1;
        let mut expression = String::from(
            "SET doc = :doc, version = :next, #state = :state, gsi1pk = :p, \
             updated_at_ms = :updated",
        );
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&workflow_pk(&workflow.id), RECORD_SK)))
            .condition_expression("version = :read")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":doc", record_doc(workflow)?)
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":read", AttributeValue::N(workflow.version.to_string()))
            .expression_attribute_values(
                ":state",
                AttributeValue::S(workflow.state.as_str().into()),
            )
            .expression_attribute_values(":p", AttributeValue::S(partition(workflow.state).into()))
            .expression_attribute_values(
                ":updated",
                AttributeValue::N(workflow.updated_at_ms.to_string()),
            )
            .return_values(ReturnValue::AllNew);
        if !audit.is_empty() {
            expression.push_str(", audit = list_append(if_not_exists(audit, :none), :entries)");
            request = request
                .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
                .expression_attribute_values(":entries", audit_list(audit)?);
        }
        match request.update_expression(expression).send().await {
            Ok(out) => match out.attributes {
                Some(item) if !item.is_empty() => workflow_from(&item),
                // Without the new image (an emulator may omit it) the record is read back.
                _ => self
                    .get(&workflow.id)
                    .await?
                    .ok_or_else(|| WorkflowStoreError::NotFound(workflow.id.clone())),
            },
            Err(e) if is_conditional_failure(&e) => {
                if self.record_item(&workflow.id).await?.is_some() {
                    Err(WorkflowStoreError::Conflict {
                        id: workflow.id.clone(),
                        expected: workflow.version,
                    })
                } else {
                    Err(WorkflowStoreError::NotFound(workflow.id.clone()))
                }
            }
            Err(e) => Err(store_error(unavailable(e))),
        }
    }

    async fn append_audit(&self, id: &Id, entry: &AuditEntry) -> Result<(), WorkflowStoreError> {
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&workflow_pk(id), RECORD_SK)))
            .update_expression("SET audit = list_append(if_not_exists(audit, :none), :entries)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":entries", audit_list(std::slice::from_ref(entry))?)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(WorkflowStoreError::NotFound(id.clone())),
            Err(e) => Err(store_error(unavailable(e))),
        }
    }

    async fn release_group(&self, group: &Id, workflow: &Id) -> Result<(), WorkflowStoreError> {
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(&group_pk(group), LOCK_SK)))
            .condition_expression("workflow_id = :w")
            .expression_attribute_values(":w", AttributeValue::S(workflow.to_string()))
            .send()
            .await
        {
            // Free already, or held by another workflow: nothing of ours to release.
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(store_error(unavailable(e))),
            Ok(_) => Ok(()),
        }
    }

    async fn active(&self, group: &Id) -> Result<Option<Id>, WorkflowStoreError> {
        let Some(item) = self
            .get_doc(&group_pk(group), LOCK_SK)
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let holder = s(&item, "workflow_id").map_err(store_error)?;
        Id::parse("workflow id", holder)
            .map(Some)
            .map_err(|e| corrupt("group lock", e))
    }
}

#[async_trait]
impl SampleStore for DynamoStore {
    async fn put_samples(
        &self,
        workflow: &Id,
        samples: &[Sample],
    ) -> Result<(), WorkflowStoreError> {
        // One write per key, the last one winning, as a re-collected round would: a batch must
        // not name a key twice.
        let by_key: BTreeMap<(u32, u32, &Id), &Sample> = samples
            .iter()
            .map(|s| ((s.step, s.round, &s.instance), s))
            .collect();
        let mut requests = Vec::with_capacity(by_key.len());
        let mut layouts = Vec::new();
        for sample in by_key.values() {
            let (blob, used) = codec::encode(&sample.models);
            layouts.extend(used);
            let mut item = key(
                &sample_pk(workflow, sample.step),
                &sample_sk(sample.round, &sample.instance),
            );
            item.insert("i".into(), AttributeValue::S(sample.instance.to_string()));
            item.insert("r".into(), AttributeValue::S(role_name(sample.role).into()));
            item.insert("t".into(), AttributeValue::N(sample.at_ms.to_string()));
            item.insert("d".into(), AttributeValue::B(Blob::new(blob)));
            if let Some(e) = &sample.error {
                item.insert("err".into(), AttributeValue::S(e.clone()));
            }
            item.insert(
                "expires_at".into(),
                AttributeValue::N((sample.at_ms / 1000 + SAMPLE_TTL_HOURS * 3600).to_string()),
            );
            requests.push(put(item).map_err(store_error)?);
        }
        // Layouts first: a reader that sees a sample must be able to decode it.
        self.ensure_layouts(layouts).await.map_err(store_error)?;
        self.batch_write(requests).await.map_err(store_error)
    }

    async fn samples(&self, workflow: &Id, step: u32) -> Result<Vec<Sample>, WorkflowStoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(sample_pk(workflow, step)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let now_s = crate::clock::now_ms() / 1000;
        let mut items = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| store_error(unavailable(e)))?;
            // TTL deletes late: an expired sample is gone as far as readers are concerned.
            if n(&item, "expires_at").map_err(store_error)? > now_s {
                items.push(item);
            }
        }
        let mut hashes = HashSet::new();
        for item in &items {
            let blob = b(item, "d").map_err(store_error)?;
            hashes.extend(codec::referenced_layouts(blob).map_err(|e| corrupt("sample", e))?);
        }
        self.load_layouts(hashes).await.map_err(store_error)?;
        items
            .iter()
            .map(|item| {
                let round = s(item, "sk")
                    .map_err(store_error)?
                    .split_once('#')
                    .and_then(|(r, _)| r.parse().ok())
                    .ok_or_else(|| corrupt("sample key", "no round"))?;
                let instance = Id::parse("instance id", s(item, "i").map_err(store_error)?)
                    .map_err(|e| corrupt("sample instance", e))?;
                let models = codec::decode(b(item, "d").map_err(store_error)?, &|h| {
                    self.cached_layout(h)
                })
                .map_err(|e| corrupt("sample", e))?;
                Ok(Sample {
                    step,
                    round,
                    instance,
                    role: role_from(s(item, "r").map_err(store_error)?)?,
                    at_ms: n(item, "t").map_err(store_error)?,
                    models,
                    error: item.get("err").and_then(|v| v.as_s().ok()).cloned(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimize::Recommendation;
    use crate::workflow::{Event, Params, Stage};

    fn id(s: &str) -> Id {
        Id::parse("id", s).unwrap()
    }

    fn recommendation() -> Recommendation {
        serde_json::from_value(serde_json::json!({
            "id": "r1", "engine": "vllm", "optimizer": "BATCHING", "bottleneck": "QUEUE_BUILDUP",
            "title": "t", "knob": "max_num_seqs", "flag": "--max-num-seqs",
            "current": {"value": 128, "assumed": false}, "proposed": 256,
            "changes": {"max_num_seqs": 256}, "rationale": "r", "expected_impact": [],
            "risk": {"level": "LOW", "description": "d"}, "priority": 1
        }))
        .unwrap()
    }

    fn workflow() -> Workflow {
        let mut wf = Workflow::new(
            id("wf-1"),
            id("chat"),
            recommendation(),
            false,
            Params::default(),
            1_700_000_000_000,
        );
        wf.version = 3;
        wf.task_token = Some("token".into());
        wf.audit.push(AuditEntry {
            at_ms: 1_700_000_000_000,
            actor: "arn:aws:iam::1:user/a".into(),
            event: Event::Create,
            from: State::PendingApproval,
            to: State::PendingApproval,
            stage: Stage::Approval,
            step: 0,
            reason: "created".into(),
        });
        wf
    }

    #[test]
    fn a_record_item_reads_back_as_the_same_workflow() {
        let wf = workflow();
        let item = record_item(&wf).unwrap();
        assert_eq!(workflow_from(&item).unwrap(), wf);
        assert!(
            !s(&item, "doc").unwrap().contains("\"audit\""),
            "the trail is kept out of the document"
        );
    }

    #[test]
    fn a_record_is_indexed_by_group_then_creation_time_in_its_liveness_partition() {
        let mut wf = workflow();
        let item = record_item(&wf).unwrap();
        assert_eq!(s(&item, "gsi1pk").unwrap(), ACTIVE_PARTITION);
        assert_eq!(s(&item, "gsi1sk").unwrap(), "chat#001700000000000#wf-1");
        wf.state = State::Rejected;
        assert_eq!(
            s(&record_item(&wf).unwrap(), "gsi1pk").unwrap(),
            ENDED_PARTITION
        );
    }

    #[test]
    fn sample_keys_order_rounds_numerically() {
        assert!(sample_sk(9, &id("b")) < sample_sk(10, &id("a")));
        assert_eq!(sample_pk(&id("wf-1"), 2), "WFSAMPLE#wf-1#0000000002");
    }

    #[test]
    fn a_corrupt_trail_is_reported_not_dropped() {
        let mut item = record_item(&workflow()).unwrap();
        item.insert(
            "audit".into(),
            AttributeValue::L(vec![AttributeValue::S("{".into())]),
        );
        assert!(matches!(
            workflow_from(&item),
            Err(WorkflowStoreError::Corrupt(_))
        ));
    }
}
