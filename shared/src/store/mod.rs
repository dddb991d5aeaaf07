//! Storage ports: what the agent keeps (instances, their scrape health, snapshots) as traits the
//! domain calls, with a DynamoDB adapter for the cloud and an in-memory one for unit tests.
//!
//! The table layout and every access pattern are in `docs/data-model.md`.

pub mod codec;
pub mod dynamo;
pub mod memory;

use crate::breaker::Breaker;
use crate::instance::{EngineConfig, Id, Instance};
use crate::snapshot::{Engine, ModelMetrics};
use crate::window::Point;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} was not found")]
    NotFound(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("a stored item is corrupt: {0}")]
    Corrupt(String),
}

/// The scrape health of an instance between invocations: its breaker and its last failure.
/// Written only when it changes, so a healthy fleet costs no health writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    pub breaker: Breaker,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at_ms: Option<i64>,
}

/// A registered instance with its scrape health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registered {
    #[serde(flatten)]
    pub instance: Instance,
    #[serde(default)]
    pub health: Health,
}

/// One stored scrape of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredSnapshot {
    pub instance_id: Id,
    /// The collection slot this scrape belongs to (the schedule's time, not the wall clock), which
    /// is also its key: a retried invocation writes the same item again instead of a duplicate.
    pub slot_ms: i64,
    pub scraped_at_ms: i64,
    pub engine: Engine,
    pub generation: String,
    pub models: Vec<ModelMetrics>,
    /// Set when only part of the scrape could be used (e.g. a parse error half-way); says what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    /// Epoch seconds after which the snapshot is expired (DynamoDB TTL deletes it later).
    pub expires_at: i64,
}

/// Splits snapshots into one time series per model (models sorted by name), the input of windows
/// and analysis.
pub fn model_series(snapshots: &[StoredSnapshot]) -> Vec<(&str, Vec<Point<'_>>)> {
    let mut models: Vec<&str> = snapshots
        .iter()
        .flat_map(|s| s.models.iter().map(|m| m.model.as_str()))
        .collect();
    models.sort_unstable();
    models.dedup();
    models
        .into_iter()
        .map(|model| {
            let points = snapshots
                .iter()
                .filter_map(|s| {
                    s.models.iter().find(|m| m.model == model).map(|m| Point {
                        at_ms: s.slot_ms,
                        metrics: m,
                    })
                })
                .collect();
            (model, points)
        })
        .collect()
}

#[async_trait]
pub trait InstanceStore: Send + Sync {
    /// Creates an instance; `AlreadyExists` if the id is taken.
    async fn create_instance(&self, instance: &Instance) -> Result<(), StoreError>;
    async fn get_instance(&self, id: &Id) -> Result<Option<Registered>, StoreError>;
    /// All instances, or those of one deployment group, ordered by group then id.
    async fn list_instances(&self, group: Option<&Id>) -> Result<Vec<Registered>, StoreError>;
    /// Removes an instance and its health; `false` if it did not exist. Snapshots expire on their own.
    async fn delete_instance(&self, id: &Id) -> Result<bool, StoreError>;
    /// Records scrape health without touching the registry fields.
    async fn put_health(&self, id: &Id, health: &Health) -> Result<(), StoreError>;
    /// Replaces an instance's config (after a rollout changed or restored it), leaving its other
    /// fields and health as they are; `NotFound` if the instance is not registered.
    async fn update_config(
        &self,
        id: &Id,
        config: &EngineConfig,
        now_ms: i64,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Writes snapshots (batched); writing the same (instance, slot) twice leaves one item.
    async fn put_snapshots(&self, snapshots: &[StoredSnapshot]) -> Result<(), StoreError>;
    /// Snapshots of one instance with `from_ms <= slot_ms <= to_ms`, oldest first, expired ones
    /// excluded even if the table still holds them.
    async fn snapshots(
        &self,
        id: &Id,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<StoredSnapshot>, StoreError>;
    /// The oldest unexpired snapshot with `slot_ms >= from_ms` (a window's start).
    async fn first_snapshot_since(
        &self,
        id: &Id,
        from_ms: i64,
        now_ms: i64,
    ) -> Result<Option<StoredSnapshot>, StoreError>;
    /// The newest unexpired snapshot with `slot_ms <= to_ms` (a window's end).
    async fn last_snapshot_before(
        &self,
        id: &Id,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<Option<StoredSnapshot>, StoreError>;
}
