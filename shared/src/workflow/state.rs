//! The workflow's states and the one pure function that says which event may move which state:
//! every write of a workflow goes through [`transition`], so an impossible move cannot be stored.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a workflow is. The five terminal states are final.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Created; waiting for an approver (the task token is stored once the orchestrator was told).
    PendingApproval,
    /// An approver said yes; the state machine has not started the canary yet.
    Approved,
    /// Canary, bake, judge, rollout or rollback running: see the workflow's `stage` and `step`.
    InProgress,
    Completed,
    Rejected,
    /// Ended before any instance was changed.
    Failed,
    /// Ended after changes, every touched instance restored.
    RolledBack,
    /// Nobody decided before the approval timeout.
    Expired,
}

impl State {
    pub const ALL: [State; 8] = [
        State::PendingApproval,
        State::Approved,
        State::InProgress,
        State::Completed,
        State::Rejected,
        State::Failed,
        State::RolledBack,
        State::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::PendingApproval => "PENDING_APPROVAL",
            State::Approved => "APPROVED",
            State::InProgress => "IN_PROGRESS",
            State::Completed => "COMPLETED",
            State::Rejected => "REJECTED",
            State::Failed => "FAILED",
            State::RolledBack => "ROLLED_BACK",
            State::Expired => "EXPIRED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Completed | State::Rejected | State::Failed | State::RolledBack | State::Expired
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown workflow state {s:?}"))
    }
}

/// What part of the work an IN_PROGRESS workflow is doing (kept after the end: where it stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    Approval,
    /// Step 0: the canary subset changed, baked and judged.
    Canary,
    /// Step k ≥ 1: the k-th rollout batch changed, baked and judged.
    Rollout,
    RollingBack,
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Approval => "approval",
            Stage::Canary => "canary",
            Stage::Rollout => "rollout",
            Stage::RollingBack => "rollback",
            Stage::Done => "done",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Event {
    /// The workflow was created (the first audit entry; not a transition).
    Create,
    Approve,
    Reject,
    Expire,
    /// The canary stage began (before the first change is asked for).
    Start,
    /// A stage or step change inside IN_PROGRESS (a rollout step, a verdict, the rollback starting).
    Advance,
    Complete,
    /// Every touched instance is back on its previous config.
    RollBack,
    /// Ended without changes.
    Fail,
    /// Something worth keeping happened (a change applied, a verdict, a token stored); the state
    /// stays. Not allowed on a terminal workflow: its record is final.
    Note,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Create => "CREATE",
            Event::Approve => "APPROVE",
            Event::Reject => "REJECT",
            Event::Expire => "EXPIRE",
            Event::Start => "START",
            Event::Advance => "ADVANCE",
            Event::Complete => "COMPLETE",
            Event::RollBack => "ROLL_BACK",
            Event::Fail => "FAIL",
            Event::Note => "NOTE",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not allowed in state {from}")]
pub struct InvalidTransition {
    pub from: State,
    pub event: Event,
}

/// The state an event leads to, or why it may not happen.
///
/// `Approved → Expired` exists for an approval whose `SendTaskSuccess` never reached the state
/// machine: the wait then times out, nothing was changed, and the workflow ends as expired.
/// `InProgress → Failed` is allowed here; the stage functions add the rule that it is only taken
/// when no instance was touched (after a change, only a rollback may end the workflow).
pub fn transition(from: State, event: Event) -> Result<State, InvalidTransition> {
    use Event as E;
    use State as S;
    let to = match (from, event) {
        (S::PendingApproval, E::Approve) => S::Approved,
        (S::PendingApproval, E::Reject) => S::Rejected,
        (S::PendingApproval | S::Approved, E::Expire) => S::Expired,
        (S::PendingApproval | S::Approved | S::InProgress, E::Fail) => S::Failed,
        (S::Approved, E::Start) => S::InProgress,
        (S::InProgress, E::Advance) => S::InProgress,
        (S::InProgress, E::Complete) => S::Completed,
        (S::InProgress, E::RollBack) => S::RolledBack,
        (s, E::Note) if !s.is_terminal() => s,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [Event; 10] = [
        Event::Create,
        Event::Note,
        Event::Approve,
        Event::Reject,
        Event::Expire,
        Event::Start,
        Event::Advance,
        Event::Complete,
        Event::RollBack,
        Event::Fail,
    ];

    #[test]
    fn terminal_states_accept_no_event() {
        for s in State::ALL.into_iter().filter(|s| s.is_terminal()) {
            for e in EVENTS {
                assert_eq!(
                    transition(s, e),
                    Err(InvalidTransition { from: s, event: e })
                );
            }
        }
    }

    #[test]
    fn the_happy_path_is_pending_approved_in_progress_completed() {
        let s = transition(State::PendingApproval, Event::Approve).unwrap();
        let s = transition(s, Event::Start).unwrap();
        let s = transition(s, Event::Advance).unwrap();
        assert_eq!(transition(s, Event::Complete), Ok(State::Completed));
    }

    #[test]
    fn creation_is_not_a_transition_and_notes_keep_the_state() {
        assert!(transition(State::PendingApproval, Event::Create).is_err());
        assert_eq!(
            transition(State::InProgress, Event::Note),
            Ok(State::InProgress)
        );
    }

    #[test]
    fn a_pending_workflow_cannot_start_or_roll_back() {
        assert!(transition(State::PendingApproval, Event::Start).is_err());
        assert!(transition(State::PendingApproval, Event::RollBack).is_err());
        assert!(transition(State::Approved, Event::Reject).is_err());
        assert!(transition(State::InProgress, Event::Expire).is_err());
    }

    #[test]
    fn states_read_back_from_their_names() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
