//! Failure injection (`PUT /admin/fail`): make the orchestrator down, slow or failing, for all
//! operations or one, until cleared or for the next N calls, so tests can drive the agent's
//! retry, timeout and rollback paths.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest injected delay.
pub const MAX_SLOW_SECONDS: f64 = 3600.0;
/// Status of an injected error when the request does not give one.
pub const DEFAULT_ERROR_STATUS: u16 = 500;

/// The contract's operations (the orchestrator's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `POST /v1/approvals` (notifyApproval).
    Approvals,
    /// `POST /v1/configs/apply` (applyConfig).
    Apply,
    /// `POST /v1/configs/rollback` (rollbackConfig).
    Rollback,
    /// `POST /v1/status` (reportStatus).
    Status,
}

impl Operation {
    pub const ALL: [Operation; 4] = [
        Operation::Approvals,
        Operation::Apply,
        Operation::Rollback,
        Operation::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Approvals => "approvals",
            Operation::Apply => "apply",
            Operation::Rollback => "rollback",
            Operation::Status => "status",
        }
    }

    /// The contract's path.
    pub fn path(self) -> &'static str {
        match self {
            Operation::Approvals => "/v1/approvals",
            Operation::Apply => "/v1/configs/apply",
            Operation::Rollback => "/v1/configs/rollback",
            Operation::Status => "/v1/status",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a failing call gets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Failure {
    /// 503 with `Connection: close`; with `close`, a new connection is closed as soon as its
    /// request line names the operation, without any answer (a request on a connection already
    /// open still gets the 503).
    Down { close: bool },
    /// The call is processed and its answer kept, then sent this long after (a client that
    /// times out and retries gets the kept answer).
    Slow { seconds: f64 },
    /// An error answer with this status, nothing processed.
    Error { status: u16 },
}

/// One injected failure and how many more calls it affects (`None`: until cleared).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rule {
    #[serde(flatten)]
    pub failure: Failure,
    pub remaining: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    Down,
    Slow,
    Error,
    Off,
}

/// The body of `PUT /admin/fail`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// One operation; absent: all of them.
    #[serde(default)]
    pub operation: Option<Operation>,
    /// Absent with `fail_next`: `error`.
    #[serde(default)]
    pub mode: Option<ModeName>,
    /// `slow`: the delay.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// `error`: the status (400–599, default 500).
    #[serde(default)]
    pub status: Option<u16>,
    /// Only the next N calls fail, then the rule clears itself.
    #[serde(default)]
    pub fail_next: Option<u32>,
    /// `down`: close new connections without answering instead of answering 503.
    #[serde(default)]
    pub close: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct FailRequestError(pub String);

impl FailRequest {
    /// The rule it sets (`None`: clear).
    pub fn rule(&self) -> Result<Option<Rule>, FailRequestError> {
        let mode = match (self.mode, self.fail_next) {
            (Some(m), _) => m,
            (None, Some(_)) => ModeName::Error,
            (None, None) => {
                return Err(FailRequestError(
                    "give a mode (down, slow, error, off) or fail_next".into(),
                ))
            }
        };
        if self.fail_next == Some(0) {
            return Err(FailRequestError("fail_next must be at least 1".into()));
        }
        let failure = match mode {
            ModeName::Off => return Ok(None),
            ModeName::Down => Failure::Down {
                close: self.close.unwrap_or(false),
            },
            ModeName::Slow => {
                let seconds = self.seconds.ok_or_else(|| {
                    FailRequestError("slow needs seconds (the delay before answering)".into())
                })?;
                if !(seconds > 0.0 && seconds <= MAX_SLOW_SECONDS) {
                    return Err(FailRequestError(format!(
                        "seconds must be in (0, {MAX_SLOW_SECONDS}]"
                    )));
                }
                Failure::Slow { seconds }
            }
            ModeName::Error => {
                let status = self.status.unwrap_or(DEFAULT_ERROR_STATUS);
                if !(400..=599).contains(&status) {
                    return Err(FailRequestError(format!(
                        "status must be 400..=599, got {status}"
                    )));
                }
                Failure::Error { status }
            }
        };
        Ok(Some(Rule {
            failure,
            remaining: self.fail_next,
        }))
    }
}

/// The rules in force: one for all operations, and per operation (which wins).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Faults {
    pub all: Option<Rule>,
    pub operations: BTreeMap<Operation, Rule>,
}

impl Faults {
    pub fn set(&mut self, operation: Option<Operation>, rule: Option<Rule>) {
        match (operation, rule) {
            (None, r) => self.all = r,
            (Some(op), Some(r)) => {
                self.operations.insert(op, r);
            }
            (Some(op), None) => {
                self.operations.remove(&op);
            }
        }
    }

    /// The failure a call of `op` gets now, counting it against a `fail_next` budget.
    pub fn take(&mut self, op: Operation) -> Option<Failure> {
        if let Some(rule) = self.operations.get_mut(&op) {
            let (failure, spent) = spend(rule);
            if spent {
                self.operations.remove(&op);
            }
            return Some(failure);
        }
        let rule = self.all.as_mut()?;
        let (failure, spent) = spend(rule);
        if spent {
            self.all = None;
        }
        Some(failure)
    }

    /// Whether a connection whose first request is for `op` is to be dropped (a `down` rule
    /// with `close`), counting it against a `fail_next` budget.
    pub fn take_connection(&mut self, op: Operation) -> bool {
        let closes = |r: Option<&Rule>| {
            matches!(
                r,
                Some(Rule {
                    failure: Failure::Down { close: true },
                    ..
                })
            )
        };
        let rule = self.operations.get(&op).or(self.all.as_ref());
        if closes(rule) {
            self.take(op);
            true
        } else {
            false
        }
    }
}

/// Counts one use; true when the rule is used up.
fn spend(rule: &mut Rule) -> (Failure, bool) {
    match rule.remaining.as_mut() {
        Some(n) => {
            *n = n.saturating_sub(1);
            (rule.failure, *n == 0)
        }
        None => (rule.failure, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> FailRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn fail_next_fails_exactly_that_many_calls_then_clears() {
        let mut f = Faults::default();
        let r = req(r#"{"operation":"apply","fail_next":2}"#);
        f.set(r.operation, r.rule().unwrap());
        assert_eq!(
            f.take(Operation::Apply),
            Some(Failure::Error { status: 500 })
        );
        assert_eq!(
            f.take(Operation::Status),
            None,
            "other operations unaffected"
        );
        assert!(f.take(Operation::Apply).is_some());
        assert_eq!(f.take(Operation::Apply), None);
    }

    #[test]
    fn a_per_operation_rule_wins_over_the_rule_for_all() {
        let mut f = Faults::default();
        f.set(None, req(r#"{"mode":"down"}"#).rule().unwrap());
        f.set(
            Some(Operation::Status),
            req(r#"{"mode":"slow","seconds":2}"#).rule().unwrap(),
        );
        assert_eq!(
            f.take(Operation::Status),
            Some(Failure::Slow { seconds: 2.0 })
        );
        assert_eq!(
            f.take(Operation::Apply),
            Some(Failure::Down { close: false })
        );
        f.set(None, req(r#"{"mode":"off"}"#).rule().unwrap());
        assert_eq!(f.take(Operation::Apply), None);
    }

    #[test]
    fn requests_that_cannot_mean_anything_are_refused() {
        for bad in [
            r#"{}"#,
            r#"{"mode":"slow"}"#,
            r#"{"mode":"slow","seconds":0}"#,
            r#"{"mode":"error","status":200}"#,
            r#"{"fail_next":0}"#,
        ] {
            assert!(req(bad).rule().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<FailRequest>(r#"{"mode":"down","x":1}"#).is_err());
    }

    #[test]
    fn only_a_close_rule_drops_connections_and_each_drop_counts_as_a_call() {
        let mut f = Faults::default();
        f.set(None, req(r#"{"mode":"down"}"#).rule().unwrap());
        assert!(!f.take_connection(Operation::Apply));
        f.set(
            Some(Operation::Apply),
            req(r#"{"mode":"down","close":true,"fail_next":1}"#)
                .rule()
                .unwrap(),
        );
        assert!(!f.take_connection(Operation::Status));
        assert!(f.take_connection(Operation::Apply));
        assert!(!f.take_connection(Operation::Apply));
    }
}
