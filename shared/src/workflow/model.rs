//! The workflow record and its parts: parameters (fixed at creation, so a running workflow is not
//! changed under its feet), the canary/rollout plan, bake progress, verdicts, samples and the
//! audit trail.

use super::judge::{JudgeParams, JudgeReport};
use super::state::{Event, Stage, State};
use crate::instance::{EngineConfig, Id};
use crate::optimize::Recommendation;
use crate::snapshot::ModelMetrics;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How many instances of the group the canary changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CanarySize {
    /// A fraction of the group, rounded up.
    Fraction(f64),
    Count(u32),
}

impl CanarySize {
    /// The canary's size in a group of `group` instances: at least 1, and at most half the group
    /// so that a baseline of the same size remains (a group of 2 gives 1 canary, 1 baseline).
    pub fn resolve(self, group: usize) -> usize {
        let wanted = match self {
            CanarySize::Fraction(f) if f.is_finite() && f > 0.0 => {
                (f * group as f64).ceil() as usize
            }
            CanarySize::Fraction(_) => 1,
            CanarySize::Count(n) => n as usize,
        };
        wanted.clamp(1, (group / 2).max(1))
    }
}

/// Everything a workflow's behaviour depends on. Copied into the workflow at creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Params {
    pub canary_size: CanarySize,
    /// Samples per bake (canary and every rollout step): n samples give n − 1 intervals per
    /// instance, each interval one observation per metric.
    pub bake_samples: u32,
    /// Samples added to the bake when the judge is INCONCLUSIVE.
    pub extension_samples: u32,
    /// How many times an INCONCLUSIVE verdict may extend one bake; after that it counts as FAIL.
    pub max_extensions: u32,
    /// Cumulative percentages of the rest of the group (the non-canary instances) changed after
    /// each rollout step; strictly increasing, the last one 100.
    pub rollout_percent: Vec<u32>,
    /// How long an approval may take; the state machine's `${ApprovalTimeoutSeconds}` must be
    /// the same number (approvals after it are refused even before the state machine expires).
    pub approval_timeout_s: u64,
    pub judge: JudgeParams,
}

/// Default seconds an approval may take: one day.
pub const DEFAULT_APPROVAL_TIMEOUT_S: u64 = 86_400;

impl Default for Params {
    fn default() -> Self {
        Params {
            canary_size: CanarySize::Fraction(0.1),
            bake_samples: 6,
            extension_samples: 3,
            max_extensions: 2,
            rollout_percent: vec![25, 50, 100],
            approval_timeout_s: DEFAULT_APPROVAL_TIMEOUT_S,
            judge: JudgeParams::default(),
        }
    }
}

impl Params {
    /// Every problem at once, so an operator fixes the configuration in one go.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        match self.canary_size {
            CanarySize::Fraction(f) if !(f.is_finite() && f > 0.0 && f <= 0.5) => {
                errs.push(format!("canary_size.fraction {f} must be in (0, 0.5]"))
            }
            CanarySize::Count(0) => errs.push("canary_size.count must be at least 1".into()),
            _ => {}
        }
        if self.bake_samples < 3 {
            errs.push(format!(
                "bake_samples {} must be at least 3 (2 intervals per instance)",
                self.bake_samples
            ));
        }
        if self.max_extensions > 0 && self.extension_samples == 0 {
            errs.push("extension_samples must be at least 1 when extensions are allowed".into());
        }
        if self.rollout_percent.is_empty()
            || self.rollout_percent.windows(2).any(|w| w[0] >= w[1])
            || self.rollout_percent.first().is_some_and(|&p| p == 0)
            || self.rollout_percent.last() != Some(&100)
        {
            errs.push(format!(
                "rollout_percent {:?} must be strictly increasing, above 0, and end at 100",
                self.rollout_percent
            ));
        }
        if self.approval_timeout_s == 0 {
            errs.push("approval_timeout_s must be at least 1".into());
        }
        errs.extend(self.judge.validate());
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

/// Which instances change when: decided once, at the start of the canary, from the group's
/// instances and the workflow id (so a retried stage computes the same plan).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub canary: Vec<Id>,
    /// Unchanged instances watched next to the canary: the same size, same time, same traffic.
    pub baseline: Vec<Id>,
    /// Rollout step k (1-based) changes `batches[k − 1]`; together they are every non-canary
    /// instance. Steps of the percentage list that would add nobody are dropped.
    pub batches: Vec<Vec<Id>>,
}

impl Plan {
    /// Every instance the plan changes, in the order it changes them.
    pub fn all_changed(&self) -> impl Iterator<Item = &Id> {
        self.canary.iter().chain(self.batches.iter().flatten())
    }

    /// Canary and baseline of rollout step `step` (1-based): the batch against as many unchanged
    /// instances; at the last step nobody is unchanged, so the batch is compared with instances
    /// already on the new config, which earlier steps judged no worse than the old one (same
    /// time, same traffic: the batch must behave like the validated new config).
    pub fn rollout_roles(&self, step: u32) -> Option<(Vec<Id>, Vec<Id>)> {
        let k = step.checked_sub(1)? as usize;
        let batch = self.batches.get(k)?.clone();
        let unchanged: Vec<Id> = self.batches.iter().skip(k + 1).flatten().cloned().collect();
        let reference: Vec<Id> = if unchanged.is_empty() {
            self.canary
                .iter()
                .chain(self.batches.iter().take(k).flatten())
                .cloned()
                .collect()
        } else {
            unchanged
        };
        let baseline = reference.into_iter().take(batch.len()).collect();
        Some((batch, baseline))
    }
}

/// Where a bake is: samples taken of the current step and how many it needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bake {
    pub samples_taken: u32,
    pub samples_target: u32,
    pub extensions: u32,
}

/// Where the state machine goes after a stage (the ASL's Choice states read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Next {
    /// Wait the bake interval, then collect a sample.
    Bake,
    Judge,
    /// Run rollout step `next_step`.
    Rollout,
    Complete,
    Rollback,
    /// The workflow has ended.
    Done,
}

/// One judgement of one step's bake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictRecord {
    pub stage: Stage,
    pub step: u32,
    /// Samples of the bake when judged: with the step, the judgement's idempotency key.
    pub samples: u32,
    pub at_ms: i64,
    pub report: JudgeReport,
    /// What the judge decided: PASS → ROLLOUT/COMPLETE, FAIL → ROLLBACK, INCONCLUSIVE → BAKE
    /// (extended) or, with the extension budget spent, ROLLBACK.
    pub decision: Next,
}

/// One change of a workflow, kept forever with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// The approver's principal, or the stage function's name (e.g. `start_canary`).
    pub actor: String,
    pub event: Event,
    pub from: State,
    pub to: State,
    pub stage: Stage,
    pub step: u32,
    pub reason: String,
}

/// An optimization rollout and everything needed to finish or undo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Workflow {
    pub id: Id,
    pub group: Id,
    pub recommendation: Recommendation,
    /// Advisory: approve and plan, never change an instance.
    pub advisory: bool,
    pub state: State,
    pub stage: Stage,
    pub step: u32,
    pub params: Params,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// The current step's changed instances and the unchanged ones they are compared with.
    #[serde(default)]
    pub canary: Vec<Id>,
    #[serde(default)]
    pub baseline: Vec<Id>,
    /// Each touched instance's config before this workflow changed it, written before the change
    /// was asked for: the set of instances a rollback restores.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Object>)]
    pub previous_configs: BTreeMap<Id, EngineConfig>,
    /// Instances the orchestrator confirmed changed.
    #[serde(default)]
    pub applied: BTreeSet<Id>,
    /// Instances a rollback confirmed restored.
    #[serde(default)]
    pub restored: BTreeSet<Id>,
    /// Instances whose last restore attempt failed, with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollback_failures: BTreeMap<Id, String>,
    #[serde(default)]
    pub bake: Bake,
    #[serde(default)]
    pub verdicts: Vec<VerdictRecord>,
    /// The state machine's token while it waits for the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
    /// After this instant an approval is refused as expired.
    pub approval_deadline_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why it failed or was rolled back (the first reason wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Optimistic concurrency: the store refuses a write whose version is not the stored one.
    pub version: u64,
    #[serde(default)]
    pub audit: Vec<AuditEntry>,
}

impl Workflow {
    /// A new workflow, PENDING_APPROVAL, version 0 (the store sets 1).
    pub fn new(
        id: Id,
        group: Id,
        recommendation: Recommendation,
        advisory: bool,
        params: Params,
        now_ms: i64,
    ) -> Self {
        let deadline = now_ms.saturating_add(
            i64::try_from(params.approval_timeout_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        );
        Workflow {
            id,
            group,
            recommendation,
            advisory,
            state: State::PendingApproval,
            stage: Stage::Approval,
            step: 0,
            params,
            plan: None,
            canary: Vec::new(),
            baseline: Vec::new(),
            previous_configs: BTreeMap::new(),
            applied: BTreeSet::new(),
            restored: BTreeSet::new(),
            rollback_failures: BTreeMap::new(),
            bake: Bake::default(),
            verdicts: Vec::new(),
            task_token: None,
            approval_deadline_ms: deadline,
            decided_by: None,
            error: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            version: 0,
            audit: Vec::new(),
        }
    }

    /// The record as the API shows it: without the task token, which is a capability to drive the
    /// state machine and belongs only to the approval path.
    pub fn redacted(&self) -> Workflow {
        Workflow {
            task_token: None,
            ..self.clone()
        }
    }

    /// Instances this workflow asked to change: what a rollback must restore.
    pub fn touched(&self) -> impl Iterator<Item = &Id> {
        self.previous_configs.keys()
    }

    /// The latest verdict of the current step, if judged.
    pub fn current_verdict(&self) -> Option<&VerdictRecord> {
        self.verdicts
            .iter()
            .rev()
            .find(|v| v.stage == self.stage && v.step == self.step)
    }

    /// The config an instance gets: its previous config with the recommendation's changes on top.
    pub fn target_config(&self, previous: &EngineConfig) -> EngineConfig {
        let mut c = previous.clone();
        c.extend(
            self.recommendation
                .changes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        c
    }
}

/// Whether a sampled instance is the changed side or the reference side of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Canary,
    Baseline,
}

/// One scrape of one instance during a bake. Keyed by (workflow, step, round, instance): a
/// re-delivered collection overwrites its round instead of adding one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub step: u32,
    pub round: u32,
    pub instance: Id,
    pub role: Role,
    pub at_ms: i64,
    #[serde(default)]
    pub models: Vec<ModelMetrics>,
    /// Set when the scrape failed: the judge counts it as a missing observation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<Id> {
        names
            .iter()
            .filter_map(|n| Id::parse("id", n).ok())
            .collect()
    }

    #[test]
    fn the_canary_is_never_the_whole_group_and_never_empty() {
        assert_eq!(CanarySize::Fraction(0.1).resolve(2), 1);
        assert_eq!(CanarySize::Fraction(0.1).resolve(30), 3);
        assert_eq!(CanarySize::Count(5).resolve(4), 2);
        assert_eq!(CanarySize::Count(0).resolve(4), 1);
        assert_eq!(CanarySize::Fraction(0.5).resolve(3), 1);
    }

    #[test]
    fn the_last_rollout_step_is_compared_with_validated_instances() {
        let plan = Plan {
            canary: ids(&["c"]),
            baseline: ids(&["a"]),
            batches: vec![ids(&["a", "b"]), ids(&["d", "e", "f"])],
        };
        let (canary, baseline) = plan.rollout_roles(1).unwrap();
        assert_eq!((canary, baseline), (ids(&["a", "b"]), ids(&["d", "e"])));
        let (canary, baseline) = plan.rollout_roles(2).unwrap();
        assert_eq!(
            (canary, baseline),
            (ids(&["d", "e", "f"]), ids(&["c", "a", "b"]))
        );
        assert_eq!(plan.rollout_roles(0), None);
        assert_eq!(plan.rollout_roles(3), None);
    }

    #[test]
    fn params_report_every_problem_at_once() {
        let p = Params {
            canary_size: CanarySize::Fraction(0.9),
            bake_samples: 2,
            rollout_percent: vec![50, 40],
            ..Params::default()
        };
        let errs = p.validate().unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(Params::default().validate().is_ok());
    }
}
