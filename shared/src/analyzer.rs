//! The scheduled analyzer: reads each instance's recent snapshots, runs the bottleneck rules and the
//! optimizers, aggregates per deployment group (bottlenecks, SLO compliance and burn-rate alerts,
//! group recommendations) and stores it all, overwriting the previous run's results (re-running the
//! same analysis writes the same items: idempotent).

use crate::analysis::slo::{
    evaluate_slo, window_counts, Counting, Sli, SloObjective, SloPolicy, SloReport, WindowCounts,
    BUDGET_PERIOD_S, BURN_RATE_WINDOWS_S,
};
use crate::analysis::{
    analyze_group, analyze_instance, GroupAnalysis, InstanceAnalysis, Thresholds,
};
use crate::instance::Id;
use crate::optimize::{recommend, Recommendation};
use crate::snapshot::{Canonical, Engine};
use crate::store::{InstanceStore, Registered, SnapshotStore, StoreError, StoredSnapshot};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far back the bottleneck rules look by default.
pub const DEFAULT_WINDOW_MINUTES: i64 = 10;
/// Instances whose reads (and analysis write) are in flight at once. One after the other, a run
/// over 1,000 instances was ~11,000 sequential DynamoDB calls (`docs/performance.md`).
const READ_CONCURRENCY: usize = 16;

/// A group's tunables: bottleneck thresholds and SLO objectives (both with defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    #[serde(default)]
    pub thresholds: Thresholds,
    #[serde(default = "default_slo_policy")]
    pub slo: SloPolicy,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            thresholds: Thresholds::default(),
            slo: default_slo_policy(),
        }
    }
}

/// Objectives a group gets until its operators set their own; thresholds sit on the engines'
/// histogram bucket bounds (vLLM and SGLang both have 0.5 s TTFT and 10 s end-to-end bounds).
pub fn default_slo_policy() -> SloPolicy {
    SloPolicy {
        objectives: vec![
            SloObjective {
                name: "ttft-500ms".into(),
                sli: Sli::Latency {
                    metric: Canonical::TtftSeconds,
                    threshold_s: 0.5,
                },
                target: 0.99,
            },
            SloObjective {
                name: "e2e-10s".into(),
                sli: Sli::Latency {
                    metric: Canonical::E2eLatencySeconds,
                    threshold_s: 10.0,
                },
                target: 0.99,
            },
            SloObjective {
                name: "availability".into(),
                sli: Sli::ErrorRatio,
                target: 0.999,
            },
        ],
    }
}

/// One model's analysis on one instance, with the recommendations it leads to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelAnalysis {
    pub model: String,
    pub analysis: InstanceAnalysis,
    pub recommendations: Vec<Recommendation>,
}

/// The latest analysis of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceAnalysisRecord {
    pub instance_id: Id,
    pub group: Id,
    pub engine: Engine,
    pub analyzed_at_ms: i64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub snapshots: usize,
    pub models: Vec<ModelAnalysis>,
}

/// The latest analysis of one deployment group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupAnalysisRecord {
    pub group: Id,
    pub analyzed_at_ms: i64,
    pub analysis: GroupAnalysis,
    pub slo: Vec<SloReport>,
    /// Why some instances could not count towards an objective (e.g. TGI exports no TTFT buckets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo_notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecommendationStatus {
    /// Proposed by the latest analysis, no workflow yet.
    Open,
    /// A workflow is rolling it out (or ran it).
    InWorkflow,
}

/// A recommendation for the instances of one engine in one deployment group: what a workflow rolls out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupRecommendation {
    /// Stable: the group and the recommendation's own id.
    pub id: String,
    pub group: Id,
    pub engine: Engine,
    pub status: RecommendationStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// The instances whose analysis proposed it.
    pub proposed_for: Vec<Id>,
    /// All instances of the group running this engine (what a rollout would touch).
    pub eligible_instances: usize,
    pub recommendation: Recommendation,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// A group recommendation needs the analyses of at least this share of the group's instances of
/// the engine to propose it, so one odd instance does not change a whole group.
pub const RECOMMENDATION_QUORUM: f64 = 0.5;

pub fn group_recommendation_id(group: &Id, rec_id: &str) -> String {
    format!("{group}.{rec_id}")
}

#[async_trait]
pub trait AnalysisStore: Send + Sync {
    async fn group_config(&self, group: &Id) -> Result<Option<GroupConfig>, StoreError>;
    async fn put_group_config(&self, group: &Id, config: &GroupConfig) -> Result<(), StoreError>;
    async fn put_instance_analysis(&self, a: &InstanceAnalysisRecord) -> Result<(), StoreError>;
    async fn instance_analysis(
        &self,
        id: &Id,
    ) -> Result<Option<InstanceAnalysisRecord>, StoreError>;
    async fn list_instance_analyses(
        &self,
        group: Option<&Id>,
    ) -> Result<Vec<InstanceAnalysisRecord>, StoreError>;
    async fn put_group_analysis(&self, a: &GroupAnalysisRecord) -> Result<(), StoreError>;
    async fn group_analysis(&self, group: &Id) -> Result<Option<GroupAnalysisRecord>, StoreError>;
    /// Inserts or refreshes recommendations, keeping `status`, `workflow_id` and `first_seen_ms`
    /// of those already stored.
    async fn upsert_recommendations(&self, recs: &[GroupRecommendation]) -> Result<(), StoreError>;
    async fn recommendations(
        &self,
        group: Option<&Id>,
    ) -> Result<Vec<GroupRecommendation>, StoreError>;
    async fn recommendation(&self, id: &str) -> Result<Option<GroupRecommendation>, StoreError>;
    /// Marks a recommendation as taken by a workflow; `false` if it does not exist.
    async fn mark_recommendation(&self, id: &str, workflow_id: &str) -> Result<bool, StoreError>;
}

/// What one analyzer run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzerReport {
    pub analyzed_at_ms: i64,
    pub instances: usize,
    pub groups: usize,
    pub bottlenecks: usize,
    pub recommendations: usize,
    pub slo_alerts_firing: usize,
}

/// Analyzes one instance over `[now - window, now]`.
pub async fn analyze_one<S>(
    store: &S,
    reg: &Registered,
    thresholds: &Thresholds,
    now_ms: i64,
    window_ms: i64,
) -> Result<InstanceAnalysisRecord, StoreError>
where
    S: SnapshotStore + ?Sized,
{
    let inst = &reg.instance;
    let from = now_ms - window_ms;
    let snaps = store.snapshots(&inst.id, from, now_ms, now_ms).await?;
    let models = crate::store::model_series(&snaps)
        .into_iter()
        .map(|(model, points)| {
            let analysis = analyze_instance(&points, inst.engine, thresholds);
            let recommendations = recommend(&analysis, inst.engine, &inst.config);
            ModelAnalysis {
                model: model.to_string(),
                analysis,
                recommendations,
            }
        })
        .collect();
    Ok(InstanceAnalysisRecord {
        instance_id: inst.id.clone(),
        group: inst.group.clone(),
        engine: inst.engine,
        analyzed_at_ms: now_ms,
        window_start_ms: from,
        window_end_ms: now_ms,
        snapshots: snaps.len(),
        models,
    })
}

/// The SLO windows, in seconds: the budget period, then each of `BURN_RATE_WINDOWS_S`. The order
/// of [`WindowEnds::firsts`].
fn slo_windows() -> impl Iterator<Item = u64> {
    std::iter::once(BUDGET_PERIOD_S).chain(BURN_RATE_WINDOWS_S)
}

/// One instance's snapshots for the SLO windows: its latest (the end of every window) and the
/// first of each of [`slo_windows`] (none without a latest).
struct WindowEnds {
    last: Option<StoredSnapshot>,
    firsts: Vec<Option<StoredSnapshot>>,
}

/// Sums an objective's counts over the group's instances for the `k`-th window (`window_s` long),
/// from each instance's snapshots (`ends`, in `members` order). Instances whose metrics cannot count
/// (missing, no buckets) are skipped and named in `notes`.
fn group_window_counts(
    members: &[&Registered],
    ends: &[WindowEnds],
    k: usize,
    window_s: u64,
    objective: &SloObjective,
    notes: &mut Vec<String>,
) -> Option<WindowCounts> {
    let mut sum: Option<WindowCounts> = None;
    for (reg, e) in members.iter().zip(ends) {
        let id = &reg.instance.id;
        let (Some(start), Some(end)) = (e.firsts.get(k).and_then(Option::as_ref), &e.last) else {
            continue;
        };
        if start.slot_ms >= end.slot_ms {
            continue;
        }
        for (a, b) in pair_models(start, end) {
            match window_counts(objective, window_s, a, b) {
                Ok(c) => {
                    let s = sum.get_or_insert(WindowCounts {
                        window_s,
                        good: 0.0,
                        total: 0.0,
                        counting: Counting::Exact,
                    });
                    s.good += c.good;
                    s.total += c.total;
                    if c.counting != Counting::Exact {
                        s.counting = c.counting;
                    }
                }
                Err(e) => {
                    let note = format!("{}: {id}: {e}", objective.name);
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
    }
    sum
}

fn pair_models<'a>(
    start: &'a StoredSnapshot,
    end: &'a StoredSnapshot,
) -> impl Iterator<
    Item = (
        &'a crate::snapshot::ModelMetrics,
        &'a crate::snapshot::ModelMetrics,
    ),
> {
    end.models.iter().filter_map(move |b| {
        start
            .models
            .iter()
            .find(|a| a.model == b.model)
            .map(|a| (a, b))
    })
}

/// Evaluates a group's objectives: compliance over the budget period (or as much of it as the
/// snapshots still cover) and every burn-rate window.
///
/// Every objective counts over the same windows, so each instance's snapshots are read once for
/// all of them: its latest (the end of every window) and the first of each window — 1 + 8 queries
/// per instance, not 2 per instance, window and objective (49 with the three default objectives).
pub async fn evaluate_group_slo<S>(
    store: &S,
    members: &[&Registered],
    policy: &SloPolicy,
    now_ms: i64,
) -> Result<(Vec<SloReport>, Vec<String>), StoreError>
where
    S: SnapshotStore + ?Sized,
{
    let mut notes = Vec::new();
    if policy.objectives.is_empty() {
        return Ok((Vec::new(), notes));
    }
    // Each instance's reads one after the other, instances `READ_CONCURRENCY` at a time.
    let ends: Vec<WindowEnds> = futures::stream::iter(members.iter().map(|reg| async move {
        let id = &reg.instance.id;
        let last = store.last_snapshot_before(id, now_ms, now_ms).await?;
        let mut firsts = Vec::new();
        if last.is_some() {
            for w in slo_windows() {
                let from = now_ms - w as i64 * 1000;
                firsts.push(store.first_snapshot_since(id, from, now_ms).await?);
            }
        }
        Ok::<_, StoreError>(WindowEnds { last, firsts })
    }))
    .buffered(READ_CONCURRENCY)
    .try_collect()
    .await?;
    let mut reports = Vec::new();
    for objective in &policy.objectives {
        // The k-th window's counts from the k-th of each instance's firsts.
        let mut counts = slo_windows()
            .enumerate()
            .map(|(k, w)| group_window_counts(members, &ends, k, w, objective, &mut notes));
        let period = counts.next().flatten().unwrap_or(WindowCounts {
            window_s: BUDGET_PERIOD_S,
            good: 0.0,
            total: 0.0,
            counting: Counting::Exact,
        });
        let windows: Vec<WindowCounts> = counts.flatten().collect();
        reports.push(evaluate_slo(objective, &period, &windows));
    }
    Ok((reports, notes))
}

/// Merges instance recommendations into group recommendations (per engine, with a quorum).
pub fn group_recommendations(
    group: &Id,
    members: &[&Registered],
    analyses: &[InstanceAnalysisRecord],
    now_ms: i64,
) -> Vec<GroupRecommendation> {
    let mut by_id: BTreeMap<String, (Recommendation, Vec<Id>)> = BTreeMap::new();
    for a in analyses {
        for m in &a.models {
            for r in &m.recommendations {
                let entry = by_id
                    .entry(r.id.clone())
                    .or_insert_with(|| (r.clone(), Vec::new()));
                if !entry.1.contains(&a.instance_id) {
                    entry.1.push(a.instance_id.clone());
                }
            }
        }
    }
    by_id
        .into_values()
        .filter_map(|(rec, mut proposed_for)| {
            let eligible = members
                .iter()
                .filter(|m| m.instance.engine == rec.engine)
                .count();
            let share = proposed_for.len() as f64 / eligible.max(1) as f64;
            if share < RECOMMENDATION_QUORUM {
                return None;
            }
            proposed_for.sort();
            Some(GroupRecommendation {
                id: group_recommendation_id(group, &rec.id),
                group: group.clone(),
                engine: rec.engine,
                status: RecommendationStatus::Open,
                workflow_id: None,
                proposed_for,
                eligible_instances: eligible,
                recommendation: rec,
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
            })
        })
        .collect()
}

/// One analyzer run over the whole fleet.
pub async fn run<S>(store: &S, now_ms: i64, window_ms: i64) -> Result<AnalyzerReport, StoreError>
where
    S: InstanceStore + SnapshotStore + AnalysisStore,
{
    let instances = store.list_instances(None).await?;
    let mut groups: BTreeMap<Id, Vec<&Registered>> = BTreeMap::new();
    for reg in &instances {
        groups
            .entry(reg.instance.group.clone())
            .or_default()
            .push(reg);
    }
    let mut report = AnalyzerReport {
        analyzed_at_ms: now_ms,
        instances: instances.len(),
        groups: groups.len(),
        bottlenecks: 0,
        recommendations: 0,
        slo_alerts_firing: 0,
    };
    for (group, members) in &groups {
        let config = store.group_config(group).await?.unwrap_or_default();
        // Each instance is a read and a write, independent of the others: `READ_CONCURRENCY` at a
        // time (in order, so the group's analysis does not depend on which answered first).
        let analyses: Vec<InstanceAnalysisRecord> =
            futures::stream::iter(members.iter().map(|reg| {
                let thresholds = &config.thresholds;
                async move {
                    let a = analyze_one(store, reg, thresholds, now_ms, window_ms).await?;
                    store.put_instance_analysis(&a).await?;
                    Ok::<_, StoreError>(a)
                }
            }))
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        report.bottlenecks += analyses
            .iter()
            .flat_map(|a| &a.models)
            .map(|m| m.analysis.bottlenecks.len())
            .sum::<usize>();
        let ids: Vec<String> = analyses.iter().map(|a| a.instance_id.to_string()).collect();
        let member_analyses: Vec<(&str, &InstanceAnalysis)> = analyses
            .iter()
            .zip(&ids)
            .flat_map(|(a, id)| a.models.iter().map(move |m| (id.as_str(), &m.analysis)))
            .collect();
        let group_analysis = analyze_group(group.as_str(), &member_analyses);
        let (slo, slo_notes) = evaluate_group_slo(store, members, &config.slo, now_ms).await?;
        report.slo_alerts_firing += slo
            .iter()
            .flat_map(|r| &r.alerts)
            .filter(|a| a.state == crate::analysis::slo::AlertState::Firing)
            .count();
        store
            .put_group_analysis(&GroupAnalysisRecord {
                group: group.clone(),
                analyzed_at_ms: now_ms,
                analysis: group_analysis,
                slo,
                slo_notes,
            })
            .await?;
        let recs = group_recommendations(group, members, &analyses, now_ms);
        report.recommendations += recs.len();
        store.upsert_recommendations(&recs).await?;
    }
    Ok(report)
}
