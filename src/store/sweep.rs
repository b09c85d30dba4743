//! The reconcile sweep's store operations: decide pending messages in batches, record each run
//! and decision, list past runs, and the named lock that keeps the sweep to one process at a time.
//!
//! Invariants every backend keeps:
//! - candidates are read through the index of pending messages (never the whole history);
//! - one batch is one transaction that re-reads every gate's input, acts and records, so a
//!   decision never rests on a snapshot another writer changed in between;
//! - only a message that passes every gate gets a job again (`ON CONFLICT DO NOTHING`); outcomes
//!   are written only when none exists; `in_flight` and `answered` record the decision only;
//! - a dry run reads the same snapshot and writes nothing.

use std::collections::BTreeMap;

use super::{Store, StoreError};
use crate::domain::{SilenceReason, Verdict};

/// What the sweep does (or, in a dry run, would do) with one pending inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SweepAction {
    /// Every gate passed: the reply job is written again.
    Requeue,
    /// A gate holds: the outcome becomes `silent:<reason>` and any job is removed.
    Silent(SilenceReason),
    /// `in_flight` or `answered`: the job or the ledger row owns the outcome; only the decision
    /// is recorded.
    Skip(SilenceReason),
}

impl SweepAction {
    /// The one mapping from the gates' verdict to what the sweep does.
    pub fn from_verdict(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Proceed => Self::Requeue,
            Verdict::Silent(reason @ (SilenceReason::InFlight | SilenceReason::Answered)) => {
                Self::Skip(reason)
            }
            Verdict::Silent(reason) => Self::Silent(reason),
        }
    }

    /// The `decision` column / API field.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Requeue => "requeue",
            Self::Silent(_) => "silent",
            Self::Skip(_) => "skip",
        }
    }

    pub fn reason(self) -> Option<SilenceReason> {
        match self {
            Self::Requeue => None,
            Self::Silent(reason) | Self::Skip(reason) => Some(reason),
        }
    }

    /// Rebuilds an action from its two stored columns; `None` for unreadable rows.
    pub fn from_columns(kind: &str, reason: Option<&str>) -> Option<Self> {
        let reason = reason.and_then(SilenceReason::parse);
        match (kind, reason) {
            ("requeue", None) => Some(Self::Requeue),
            ("silent", Some(reason)) => Some(Self::Silent(reason)),
            ("skip", Some(reason)) => Some(Self::Skip(reason)),
            _ => None,
        }
    }
}

/// One decision of a sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepDecision {
    pub inbound_id: i64,
    pub message_id: String,
    pub action: SweepAction,
}

/// A position in the order the sweep reads pending messages: (payload timestamp, row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SweepCursor {
    pub payload_ts: i64,
    pub inbound_id: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepMode {
    /// Decide only: nothing is written, nothing recorded.
    DryRun,
    /// Act, and record the decisions under `run_id`; `None` starts a new run at `now_ms`.
    Act { run_id: Option<i64> },
}

/// One batch of a sweep: up to `limit` pending messages after `after`, decided at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepBatch {
    pub mode: SweepMode,
    pub after: Option<SweepCursor>,
    pub limit: u32,
    pub now_ms: i64,
    /// Messages whose payload is younger than this are not candidates; ones that arrived within
    /// it are `in_flight`.
    pub grace_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepBatchResult {
    /// The run the decisions were recorded under (`None` in a dry run).
    pub run_id: Option<i64>,
    pub decisions: Vec<SweepDecision>,
    /// Where the next batch starts; `None` when this batch was the last (and, when acting, the
    /// run row was finished in the same transaction).
    pub next: Option<SweepCursor>,
}

/// A recorded run, as `GET /api/v1/sweeps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepRun {
    pub id: i64,
    pub started_at_ms: i64,
    /// `None` while running, or for a run that died half-way.
    pub finished_at_ms: Option<i64>,
    pub dry_run: bool,
    pub scanned: u64,
    pub requeued: u64,
    /// Silent and skip decisions per reason.
    pub counts: BTreeMap<SilenceReason, u64>,
}

impl Store {
    /// Decides one batch of pending messages through the gates, in one transaction; when acting,
    /// re-enqueues what passes, records silences and every decision.
    pub async fn sweep_batch(&self, batch: &SweepBatch) -> Result<SweepBatchResult, StoreError> {
        match self {
            Self::Sqlite(s) => s.sweep_batch(batch).await,
        }
    }

    /// Recorded runs, newest first.
    pub async fn sweep_runs(&self, limit: i64) -> Result<Vec<SweepRun>, StoreError> {
        match self {
            Self::Sqlite(s) => s.sweep_runs(limit).await,
        }
    }

    /// One recorded run with its decisions.
    pub async fn sweep_run(
        &self,
        run_id: i64,
    ) -> Result<Option<(SweepRun, Vec<SweepDecision>)>, StoreError> {
        match self {
            Self::Sqlite(s) => s.sweep_run(run_id).await,
        }
    }

    /// Takes (or, for the same holder, extends) the named lock until `now_ms + ttl_ms`; `false`
    /// when someone else holds it and their lease has not run out.
    pub async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sqlite(s) => s.try_lock(name, holder, ttl_ms, now_ms).await,
        }
    }

    /// Releases the named lock if `holder` still has it.
    pub async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.unlock(name, holder).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_map_to_actions_and_round_trip_through_their_columns() {
        assert_eq!(
            SweepAction::from_verdict(Verdict::Proceed),
            SweepAction::Requeue
        );
        for reason in SilenceReason::ALL {
            let action = SweepAction::from_verdict(Verdict::Silent(reason));
            let owned_elsewhere =
                matches!(reason, SilenceReason::InFlight | SilenceReason::Answered);
            assert_eq!(matches!(action, SweepAction::Skip(_)), owned_elsewhere);
            assert_eq!(action.reason(), Some(reason));
            assert_eq!(
                SweepAction::from_columns(action.kind(), action.reason().map(|r| r.as_str())),
                Some(action)
            );
        }
        assert_eq!(
            SweepAction::from_columns("requeue", None),
            Some(SweepAction::Requeue)
        );
        assert_eq!(SweepAction::from_columns("silent", None), None);
        assert_eq!(SweepAction::from_columns("requeue", Some("operator")), None);
    }
}
