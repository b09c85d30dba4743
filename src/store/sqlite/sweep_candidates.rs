//! The sweep's candidates on SQLite: the one query that reads every pending message with the
//! gates' inputs, and the decision on each. A candidate whose gate inputs cannot be read is
//! never decided (so never requeued): see [`decide_all`].

use serde::Deserialize;

use crate::domain::Provider;
use crate::domain::gates::{
    self, ConversationMode, GateSnapshot, GroupPolicy, LedgerState, SweepFacts,
};
use crate::store::{StoreError, SweepAction, SweepBatch, SweepCursor, SweepDecision};

/// Pending messages after the cursor, oldest payload first, with everything the gates read, as
/// one JSON array (one row back from SQLite's worker thread instead of one per candidate).
/// `INDEXED BY` pins the plan to the pending index: a plan over the whole table would be a
/// silent regression from milliseconds to seconds.
pub(super) const CANDIDATES_SQL: &str = "
    SELECT json_group_array(json_array(id, message_id, payload_ts, received_at_ms, opted_out,
                                       last_inbound_ts, mode, ledger_state, has_job, superseded,
                                       provider, phone_number_id, in_group))
    FROM (
        SELECT m.id, m.message_id, m.payload_ts, m.received_at_ms, m.provider, m.phone_number_id,
               m.group_id IS NOT NULL AS in_group,
               coalesce(c.opted_out, 0) AS opted_out,
               coalesce(c.last_inbound_ts, m.payload_ts) AS last_inbound_ts,
               coalesce(v.mode, 'bot') AS mode,
               l.state AS ledger_state,
               j.inbound_id IS NOT NULL AS has_job,
               CASE WHEN coalesce(c.last_inbound_ts, m.payload_ts) > m.payload_ts THEN (
                   SELECT 1 FROM ledger n INDEXED BY ledger_by_conversation_claimed
                   JOIN inbound_messages nm ON nm.id = n.inbound_id
                   WHERE n.phone_number_id = m.phone_number_id AND n.wa_id = m.wa_id
                     AND n.provider = m.provider
                     AND n.claimed_at_ms >= (m.payload_ts - ?6) * 1000
                     AND n.state <> ?5 AND nm.payload_ts > m.payload_ts
                   LIMIT 1
               ) END IS NOT NULL AS superseded
        FROM inbound_messages m INDEXED BY inbound_pending
        LEFT JOIN contacts c
            ON c.provider = m.provider AND c.phone_number_id = m.phone_number_id AND c.wa_id = m.wa_id
        LEFT JOIN conversations v
            ON v.provider = m.provider AND v.phone_number_id = m.phone_number_id AND v.wa_id = m.wa_id
        LEFT JOIN ledger l ON l.inbound_id = m.id
        LEFT JOIN jobs j ON j.inbound_id = m.id
        WHERE m.outcome IS NULL AND m.payload_ts <= ?1 AND (m.payload_ts, m.id) > (?2, ?3)
        ORDER BY m.payload_ts, m.id
        LIMIT ?4
    )";

/// How far before a candidate's payload time a reply to a newer message can have been claimed:
/// a message is received (and claimed) no earlier than its payload time less the skew between
/// WhatsApp's clock and ours, assumed to be under a day.
pub(super) const SUPERSEDED_LOOKBACK_S: i64 = gates::WINDOW_SECS;

/// One pending message with the gates' inputs, in the column order of `CANDIDATES_SQL`.
#[derive(Debug, Deserialize)]
pub(super) struct Candidate {
    id: i64,
    message_id: String,
    payload_ts: i64,
    received_at_ms: i64,
    opted_out: i64,
    last_inbound_ts: i64,
    mode: String,
    ledger_state: Option<String>,
    has_job: i64,
    superseded: i64,
    provider: String,
    phone_number_id: String,
    in_group: i64,
}

impl Candidate {
    pub(super) fn cursor(&self) -> SweepCursor {
        SweepCursor {
            payload_ts: self.payload_ts,
            inbound_id: self.id,
        }
    }

    /// The gates' verdict on this candidate; an unreadable gate input is an error, never a
    /// default that would requeue (and so let the bot speak over an operator).
    fn decide(self, batch: &SweepBatch, groups: &GroupPolicy) -> Result<SweepDecision, StoreError> {
        let unreadable = |column: &str, raw: &str| {
            StoreError::Corrupt(format!(
                "inbound message {}: unreadable {column} `{raw}`; correct the row",
                self.id
            ))
        };
        let provider = Provider::parse(&self.provider)
            .ok_or_else(|| unreadable("provider", &self.provider))?;
        let snapshot = GateSnapshot {
            opted_out: match self.opted_out {
                0 => false,
                1 => true,
                other => return Err(unreadable("opted_out", &other.to_string())),
            },
            mode: ConversationMode::parse(&self.mode)
                .ok_or_else(|| unreadable("mode", &self.mode))?,
            ledger: match self.ledger_state.as_deref() {
                None => None,
                Some(state) => Some(
                    LedgerState::parse(state).ok_or_else(|| unreadable("ledger state", state))?,
                ),
            },
            last_inbound_ts: self.last_inbound_ts,
            unanswered_group: groups.unanswered(
                provider,
                &self.phone_number_id,
                self.in_group != 0,
            ),
        };
        let arrived_within_grace =
            self.received_at_ms > batch.now_ms.saturating_sub(batch.grace_ms);
        let facts = SweepFacts {
            in_flight: self.has_job != 0 || arrived_within_grace,
            superseded: self.superseded != 0,
        };
        let verdict = gates::evaluate_for_sweep(&snapshot, facts, batch.now_ms);
        Ok(SweepDecision {
            inbound_id: self.id,
            message_id: self.message_id,
            action: SweepAction::from_verdict(verdict),
        })
    }
}

/// Decides every candidate; one whose gate inputs cannot be read is left exactly as it is (no
/// job, no outcome, no recorded decision) and reported as an error, for every run to repeat
/// until the row is corrected.
pub(super) fn decide_all(
    candidates: Vec<Candidate>,
    batch: &SweepBatch,
    groups: &GroupPolicy,
) -> Vec<SweepDecision> {
    candidates
        .into_iter()
        .filter_map(|c| {
            let inbound_id = c.id;
            c.decide(batch, groups)
                .map_err(|e| {
                    tracing::error!(inbound_id, error = %e, "sweep: message left alone");
                })
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SweepMode;

    fn candidate(mode: &str, ledger_state: Option<&str>) -> Candidate {
        Candidate {
            id: 7,
            message_id: "wamid.7".into(),
            payload_ts: 1_700_000_000,
            received_at_ms: 1_700_000_000_000,
            opted_out: 0,
            last_inbound_ts: 1_700_000_000,
            mode: mode.into(),
            ledger_state: ledger_state.map(Into::into),
            has_job: 0,
            superseded: 0,
            provider: "cloud".into(),
            phone_number_id: "111".into(),
            in_group: 0,
        }
    }

    #[test]
    fn the_sweep_never_requeues_on_an_unreadable_gate_input() {
        let batch = SweepBatch {
            now_ms: 1_700_000_600_000,
            grace_ms: 0,
            limit: 10,
            after: None,
            mode: SweepMode::DryRun,
        };
        let groups = GroupPolicy::default();
        let readable = candidate("bot", None).decide(&batch, &groups).unwrap();
        assert_eq!(readable.action, SweepAction::Requeue);
        let decisions = decide_all(
            vec![
                candidate("robot", None),
                candidate("bot", Some("maybe")),
                Candidate {
                    provider: "carrier-pigeon".into(),
                    ..candidate("bot", None)
                },
            ],
            &batch,
            &groups,
        );
        assert!(decisions.is_empty(), "left alone: {decisions:?}");
    }
}
