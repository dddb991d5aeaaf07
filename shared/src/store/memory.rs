//! An in-memory store for unit tests of the domain and for in-process benchmarks; never used in
//! place of DynamoDB on the deployed path.

use super::{Health, InstanceStore, Registered, SnapshotStore, StoreError, StoredSnapshot};
use crate::instance::{Id, Instance};
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
}
