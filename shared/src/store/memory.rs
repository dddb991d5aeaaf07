//! An in-memory store for unit tests of the domain and for in-process benchmarks; never used in
//! place of DynamoDB on the deployed path.

use super::{Health, InstanceStore, Registered, SnapshotStore, StoreError, StoredSnapshot};
use crate::analyzer::{
    AnalysisStore, GroupAnalysisRecord, GroupConfig, GroupRecommendation, InstanceAnalysisRecord,
    RecommendationStatus,
};
use crate::instance::{EngineConfig, Id, Instance};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    instances: BTreeMap<Id, Registered>,
    snapshots: BTreeMap<(Id, i64), StoredSnapshot>,
    group_configs: BTreeMap<Id, GroupConfig>,
    instance_analyses: BTreeMap<Id, InstanceAnalysisRecord>,
    group_analyses: BTreeMap<Id, GroupAnalysisRecord>,
    recommendations: BTreeMap<String, GroupRecommendation>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated (each operation is a
        // single insert or remove), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored snapshot, expired or not (for tests that check idempotency).
    pub fn snapshot_count(&self) -> usize {
        self.lock().snapshots.len()
    }
}

#[async_trait]
impl InstanceStore for MemoryStore {
    async fn create_instance(&self, instance: &Instance) -> Result<(), StoreError> {
        let mut g = self.lock();
        if g.instances.contains_key(&instance.id) {
            return Err(StoreError::AlreadyExists(format!(
                "instance {}",
                instance.id
            )));
        }
        g.instances.insert(
            instance.id.clone(),
            Registered {
                instance: instance.clone(),
                health: Health::default(),
            },
        );
        Ok(())
    }

    async fn get_instance(&self, id: &Id) -> Result<Option<Registered>, StoreError> {
        Ok(self.lock().instances.get(id).cloned())
    }

    async fn list_instances(&self, group: Option<&Id>) -> Result<Vec<Registered>, StoreError> {
        let mut v: Vec<Registered> = self
            .lock()
            .instances
            .values()
            .filter(|r| group.is_none_or(|g| &r.instance.group == g))
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            (&a.instance.group, &a.instance.id).cmp(&(&b.instance.group, &b.instance.id))
        });
        Ok(v)
    }

    async fn delete_instance(&self, id: &Id) -> Result<bool, StoreError> {
        Ok(self.lock().instances.remove(id).is_some())
    }

    async fn put_health(&self, id: &Id, health: &Health) -> Result<(), StoreError> {
        match self.lock().instances.get_mut(id) {
            Some(r) => {
                r.health = health.clone();
                Ok(())
            }
            // The instance was deleted while being scraped: nothing to record.
            None => Ok(()),
        }
    }

    async fn update_config(
        &self,
        id: &Id,
        config: &EngineConfig,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut g = self.lock();
        let r = g
            .instances
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
        if &r.instance.config != config {
            r.instance.config = config.clone();
            r.instance.updated_at_ms = now_ms;
        }
        Ok(())
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn put_snapshots(&self, snapshots: &[StoredSnapshot]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for s in snapshots {
            g.snapshots
                .insert((s.instance_id.clone(), s.slot_ms), s.clone());
        }
        Ok(())
    }

    async fn snapshots(
        &self,
        id: &Id,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<StoredSnapshot>, StoreError> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .snapshots
            .range((id.clone(), from_ms)..=(id.clone(), to_ms))
            .map(|(_, s)| s)
            .filter(|s| s.expires_at * 1000 > now_ms)
            .cloned()
            .collect())
    }

    async fn first_snapshot_since(
        &self,
        id: &Id,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self
            .lock()
            .snapshots
            .range((id.clone(), from_ms)..=(id.clone(), i64::MAX))
            .map(|(_, s)| s)
            .find(|s| s.expires_at * 1000 > now_ms)
            .cloned())
    }

    async fn last_snapshot_before(
        &self,
        id: &Id,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self
            .lock()
            .snapshots
            .range((id.clone(), i64::MIN)..=(id.clone(), to_ms))
            .map(|(_, s)| s)
            .rev()
            .find(|s| s.expires_at * 1000 > now_ms)
            .cloned())
    }
}

#[async_trait]
impl AnalysisStore for MemoryStore {
    async fn group_config(&self, group: &Id) -> Result<Option<GroupConfig>, StoreError> {
        Ok(self.lock().group_configs.get(group).cloned())
    }

    async fn put_group_config(&self, group: &Id, config: &GroupConfig) -> Result<(), StoreError> {
        self.lock()
            .group_configs
            .insert(group.clone(), config.clone());
        Ok(())
    }

    async fn put_instance_analysis(&self, a: &InstanceAnalysisRecord) -> Result<(), StoreError> {
        self.lock()
            .instance_analyses
            .insert(a.instance_id.clone(), a.clone());
        Ok(())
    }

    async fn instance_analysis(
        &self,
        id: &Id,
    ) -> Result<Option<InstanceAnalysisRecord>, StoreError> {
        Ok(self.lock().instance_analyses.get(id).cloned())
    }

    async fn list_instance_analyses(
        &self,
        group: Option<&Id>,
    ) -> Result<Vec<InstanceAnalysisRecord>, StoreError> {
        let mut v: Vec<_> = self
            .lock()
            .instance_analyses
            .values()
            .filter(|a| group.is_none_or(|g| &a.group == g))
            .cloned()
            .collect();
        v.sort_by(|a, b| (&a.group, &a.instance_id).cmp(&(&b.group, &b.instance_id)));
        Ok(v)
    }

    async fn put_group_analysis(&self, a: &GroupAnalysisRecord) -> Result<(), StoreError> {
        self.lock()
            .group_analyses
            .insert(a.group.clone(), a.clone());
        Ok(())
    }

    async fn group_analysis(&self, group: &Id) -> Result<Option<GroupAnalysisRecord>, StoreError> {
        Ok(self.lock().group_analyses.get(group).cloned())
    }

    async fn upsert_recommendations(&self, recs: &[GroupRecommendation]) -> Result<(), StoreError> {
        let mut g = self.lock();
        for r in recs {
            let mut new = r.clone();
            if let Some(old) = g.recommendations.get(&r.id) {
                new.status = old.status;
                new.workflow_id = old.workflow_id.clone();
                new.first_seen_ms = old.first_seen_ms;
            }
            g.recommendations.insert(r.id.clone(), new);
        }
        Ok(())
    }

    async fn recommendations(
        &self,
        group: Option<&Id>,
    ) -> Result<Vec<GroupRecommendation>, StoreError> {
        Ok(self
            .lock()
            .recommendations
            .values()
            .filter(|r| group.is_none_or(|g| &r.group == g))
            .cloned()
            .collect())
    }

    async fn recommendation(&self, id: &str) -> Result<Option<GroupRecommendation>, StoreError> {
        Ok(self.lock().recommendations.get(id).cloned())
    }

    async fn mark_recommendation(&self, id: &str, workflow_id: &str) -> Result<bool, StoreError> {
        match self.lock().recommendations.get_mut(id) {
            Some(r) => {
                r.status = RecommendationStatus::InWorkflow;
                r.workflow_id = Some(workflow_id.to_string());
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
