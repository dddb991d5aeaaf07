//! Group-level aggregation: a bottleneck on at least half of the instances that could evaluate it
//! is a bottleneck of the deployment group, so a group change is justified by more than one server.

use super::{BottleneckType, InstanceAnalysis, Severity};
use serde::{Deserialize, Serialize};

/// The share of a group's evaluating instances a bottleneck must affect to be the group's.
pub const GROUP_QUORUM_FRACTION: f64 = 0.5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupBottleneck {
    #[serde(rename = "type")]
    pub kind: BottleneckType,
    /// The highest severity that at least the quorum of evaluating instances reach.
    pub severity: Severity,
    pub priority: u32,
    /// Instance ids, sorted.
    pub affected_instances: Vec<String>,
    /// Instances whose analysis could evaluate this type (the quorum's denominator).
    pub evaluated_instances: usize,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupNotEvaluated {
    #[serde(rename = "type")]
    pub kind: BottleneckType,
    /// The instances' reasons, deduplicated.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupAnalysis {
    pub group: String,
    pub instances: usize,
    /// In priority order (severity, then type importance).
    pub bottlenecks: Vec<GroupBottleneck>,
    /// Types no instance of the group could evaluate.
    pub not_evaluated: Vec<GroupNotEvaluated>,
}

/// Aggregates the analyses of a group's instances, given as `(instance id, analysis)`.
pub fn analyze_group(group: &str, members: &[(&str, &InstanceAnalysis)]) -> GroupAnalysis {
    let mut bottlenecks = Vec::new();
    let mut not_evaluated = Vec::new();
    for kind in BottleneckType::ALL {
        let evaluating: Vec<&(&str, &InstanceAnalysis)> = members
            .iter()
            .filter(|(_, a)| a.evaluated.contains(&kind))
            .collect();
        if evaluating.is_empty() {
            let mut reasons: Vec<String> = members
                .iter()
                .flat_map(|(_, a)| a.not_evaluated.iter())
                .filter(|n| n.kind == kind)
                .map(|n| n.reason.clone())
                .collect();
            reasons.sort();
            reasons.dedup();
            not_evaluated.push(GroupNotEvaluated { kind, reasons });
            continue;
        }
        let mut affected: Vec<(&str, Severity)> = evaluating
            .iter()
            .filter_map(|(id, a)| Some((*id, a.bottleneck(kind)?.severity)))
            .collect();
        let quorum = |n: usize| n as f64 >= GROUP_QUORUM_FRACTION * evaluating.len() as f64;
        if affected.is_empty() || !quorum(affected.len()) {
            continue;
        }
        let severity = [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ]
        .into_iter()
        .find(|s| quorum(affected.iter().filter(|(_, sev)| sev >= s).count()))
        .unwrap_or(Severity::Low);
        affected.sort();
        bottlenecks.push(GroupBottleneck {
            kind,
            severity,
            priority: 0,
            description: format!(
                "{} on {} of {} instances that could evaluate it ({} of the group's {}); at least \
                 half are {} or worse",
                kind.as_str(),
                affected.len(),
                evaluating.len(),
                evaluating.len(),
                members.len(),
                severity.as_str()
            ),
            affected_instances: affected.iter().map(|(id, _)| id.to_string()).collect(),
            evaluated_instances: evaluating.len(),
        });
    }
    bottlenecks.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.kind.cmp(&b.kind)));
    for (i, b) in bottlenecks.iter_mut().enumerate() {
        b.priority = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    GroupAnalysis {
        group: group.to_string(),
        instances: members.len(),
        bottlenecks,
        not_evaluated,
    }
}
