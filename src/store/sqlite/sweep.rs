//! The sweep on SQLite: one `BEGIN IMMEDIATE` transaction per batch on the writer connection
//! (a dry run reads the same snapshot in a read transaction), set-based writes via `json_each`.
//!
//! Cost: candidates come from the partial index `inbound_pending`, the gate inputs are primary
//! key lookups, and `superseded` runs only when the contact has a message newer than the
//! candidate, reading that conversation's replies claimed since a day before the candidate's
//! payload time (`ledger_by_conversation_claimed`), never its whole history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, Tx, corrupt};
use crate::domain::gates::{self, ConversationMode, GateSnapshot, LedgerState, SweepFacts};
use crate::domain::{Outcome, SilenceReason};
use crate::store::{
    StoreError, SweepAction, SweepBatch, SweepBatchResult, SweepCursor, SweepDecision, SweepMode,
    SweepRun,
};

/// Pending messages after the cursor, oldest payload first, with everything the gates read, as
/// one JSON array (one row back from SQLite's worker thread instead of one per candidate).
/// `INDEXED BY` pins the plan to the pending index: a plan over the whole table would be a
/// silent regression from milliseconds to seconds.
const CANDIDATES_SQL: &str = "
    SELECT json_group_array(json_array(id, message_id, payload_ts, received_at_ms, opted_out,
                                       last_inbound_ts, mode, ledger_state, has_job, superseded))
    FROM (
        SELECT m.id, m.message_id, m.payload_ts, m.received_at_ms,
               coalesce(c.opted_out, 0) AS opted_out,
               coalesce(c.last_inbound_ts, m.payload_ts) AS last_inbound_ts,
               coalesce(v.mode, 'bot') AS mode,
               l.state AS ledger_state,
               j.inbound_id IS NOT NULL AS has_job,
               CASE WHEN coalesce(c.last_inbound_ts, m.payload_ts) > m.payload_ts THEN (
                   SELECT 1 FROM ledger n INDEXED BY ledger_by_conversation_claimed
                   JOIN inbound_messages nm ON nm.id = n.inbound_id
                   WHERE n.phone_number_id = m.phone_number_id AND n.wa_id = m.wa_id
                     AND n.claimed_at_ms >= (m.payload_ts - ?6) * 1000
                     AND n.state <> ?5 AND nm.payload_ts > m.payload_ts
                   LIMIT 1
               ) END IS NOT NULL AS superseded
        FROM inbound_messages m INDEXED BY inbound_pending
        LEFT JOIN contacts c ON c.phone_number_id = m.phone_number_id AND c.wa_id = m.wa_id
        LEFT JOIN conversations v ON v.phone_number_id = m.phone_number_id AND v.wa_id = m.wa_id
        LEFT JOIN ledger l ON l.inbound_id = m.id
        LEFT JOIN jobs j ON j.inbound_id = m.id
        WHERE m.outcome IS NULL AND m.payload_ts <= ?1 AND (m.payload_ts, m.id) > (?2, ?3)
        ORDER BY m.payload_ts, m.id
        LIMIT ?4
    )";

/// How far before a candidate's payload time a reply to a newer message can have been claimed:
/// a message is received (and claimed) no earlier than its payload time less the skew between
/// WhatsApp's clock and ours, assumed to be under a day.
const SUPERSEDED_LOOKBACK_S: i64 = gates::WINDOW_SECS;

/// One pending message with the gates' inputs, in the column order of `CANDIDATES_SQL`.
#[derive(Debug, Deserialize)]
struct Candidate {
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
}

impl Candidate {
    fn cursor(&self) -> SweepCursor {
        SweepCursor {
            payload_ts: self.payload_ts,
            inbound_id: self.id,
        }
    }

    /// The gates' verdict on this candidate; an unreadable gate input is an error, never a
    /// default that would requeue (and so let the bot speak over an operator).
    fn decide(self, batch: &SweepBatch) -> Result<SweepDecision, StoreError> {
        let unreadable = |column: &str, raw: &str| {
            StoreError::Corrupt(format!(
                "inbound message {}: unreadable {column} `{raw}`; correct the row",
                self.id
            ))
        };
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
fn decide_all(candidates: Vec<Candidate>, batch: &SweepBatch) -> Vec<SweepDecision> {
    candidates
        .into_iter()
        .filter_map(|c| {
            let inbound_id = c.id;
            c.decide(batch)
                .map_err(|e| {
                    tracing::error!(inbound_id, error = %e, "sweep: message left alone");
                })
                .ok()
        })
        .collect()
}

impl SqliteStore {
    pub async fn sweep_batch(&self, batch: &SweepBatch) -> Result<SweepBatchResult, StoreError> {
        let mut tx = match batch.mode {
            SweepMode::DryRun => self.pool.begin().await?,
            SweepMode::Act { .. } => self.writer.begin_with("BEGIN IMMEDIATE").await?,
        };
        let after = batch.after.unwrap_or(SweepCursor {
            payload_ts: i64::MIN,
            inbound_id: i64::MIN,
        });
        let cutoff_s = batch.now_ms.saturating_sub(batch.grace_ms).div_euclid(1000);
        let candidates: String = sqlx::query_scalar(CANDIDATES_SQL)
            .bind(cutoff_s)
            .bind(after.payload_ts)
            .bind(after.inbound_id)
            .bind(batch.limit)
            .bind(LedgerState::Unsent.as_str())
            .bind(SUPERSEDED_LOOKBACK_S)
            .fetch_one(&mut *tx)
            .await?;
        let mut candidates: Vec<Candidate> = serde_json::from_str(&candidates).map_err(corrupt)?;
        // An aggregate's input order is not promised by SQL: the cursor needs it, so restore it.
        candidates.sort_unstable_by_key(Candidate::cursor);
        let next = match candidates.last() {
            Some(last) if candidates.len() >= batch.limit as usize => Some(last.cursor()),
            _ => None,
        };
        let decisions = decide_all(candidates, batch);
        let SweepMode::Act { run_id } = batch.mode else {
            // Nothing was written: dropping the read transaction ends it.
            return Ok(SweepBatchResult {
                run_id: None,
                decisions,
                next,
            });
        };
        let run_id = match run_id {
            Some(id) => id,
            None => {
                sqlx::query_scalar("INSERT INTO sweep_runs (started_at_ms) VALUES (?) RETURNING id")
                    .bind(batch.now_ms)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        act(&mut tx, &decisions, batch.now_ms).await?;
        record(&mut tx, run_id, &decisions).await?;
        if next.is_none() {
            finish_run(&mut tx, run_id, batch.now_ms).await?;
        }
        tx.commit().await?;
        Ok(SweepBatchResult {
            run_id: Some(run_id),
            decisions,
            next,
        })
    }

    pub async fn sweep_runs(&self, limit: i64) -> Result<Vec<SweepRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, started_at_ms, finished_at_ms, dry_run, scanned, requeued, counts
             FROM sweep_runs ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from).collect()
    }

    pub async fn sweep_run(
        &self,
        run_id: i64,
    ) -> Result<Option<(SweepRun, Vec<SweepDecision>)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT id, started_at_ms, finished_at_ms, dry_run, scanned, requeued, counts
             FROM sweep_runs WHERE id = ?",
        )
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT inbound_id, message_id, decision, reason FROM sweep_decisions
             WHERE run_id = ? ORDER BY inbound_id",
        )
        .bind(run_id)
        .fetch_all(&mut *tx)
        .await?;
        let decisions = rows
            .iter()
            .map(|r| {
                let (kind, reason) = (r.get("decision"), r.get("reason"));
                let action = SweepAction::from_columns(kind, reason).ok_or_else(|| {
                    StoreError::Corrupt(format!("sweep decision `{kind}` / {reason:?}"))
                })?;
                Ok(SweepDecision {
                    inbound_id: r.get("inbound_id"),
                    message_id: r.get("message_id"),
                    action,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Some((run_from(&row)?, decisions)))
    }

    pub async fn try_lock(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO locks (name, holder, until_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
             WHERE locks.until_ms <= ?4 OR locks.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    pub async fn unlock(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM locks WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

fn ids_json(ids: impl Iterator<Item = i64>) -> String {
    serde_json::to_string(&ids.collect::<Vec<_>>()).expect("integers serialise")
}

/// Re-enqueues what passed, records the silences (and drops their jobs). `Skip` writes nothing.
async fn act(tx: &mut Tx<'_>, decisions: &[SweepDecision], now_ms: i64) -> Result<(), StoreError> {
    let requeue: Vec<i64> = decisions
        .iter()
        .filter(|d| d.action == SweepAction::Requeue)
        .map(|d| d.inbound_id)
        .collect();
    if !requeue.is_empty() {
        sqlx::query(
            "INSERT INTO jobs (inbound_id, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms)
             SELECT id, phone_number_id, wa_id, payload_ts, ?1, ?1 FROM inbound_messages
             WHERE id IN (SELECT value FROM json_each(?2))
             ON CONFLICT (inbound_id) DO NOTHING",
        )
        .bind(now_ms)
        .bind(ids_json(requeue.into_iter()))
        .execute(&mut **tx)
        .await?;
    }
    let mut silenced: BTreeMap<SilenceReason, Vec<i64>> = BTreeMap::new();
    for d in decisions {
        if let SweepAction::Silent(reason) = d.action {
            silenced.entry(reason).or_default().push(d.inbound_id);
        }
    }
    for (reason, ids) in &silenced {
        let outcome = Outcome::Silent(*reason);
        // An outcome is written only where none exists: it never changes once reached.
        sqlx::query(
            "UPDATE inbound_messages SET outcome = ?1, outcome_reason = ?2, outcome_at_ms = ?3
             WHERE id IN (SELECT value FROM json_each(?4)) AND outcome IS NULL",
        )
        .bind(outcome.kind())
        .bind(outcome.reason())
        .bind(now_ms)
        .bind(ids_json(ids.iter().copied()))
        .execute(&mut **tx)
        .await?;
        sqlx::query("DELETE FROM jobs WHERE inbound_id IN (SELECT value FROM json_each(?))")
            .bind(ids_json(ids.iter().copied()))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn record(
    tx: &mut Tx<'_>,
    run_id: i64,
    decisions: &[SweepDecision],
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        i: i64,
        m: &'a str,
        d: &'static str,
        r: Option<&'static str>,
    }
    if decisions.is_empty() {
        return Ok(());
    }
    let rows: Vec<Row> = decisions
        .iter()
        .map(|d| Row {
            i: d.inbound_id,
            m: &d.message_id,
            d: d.action.kind(),
            r: d.action.reason().map(SilenceReason::as_str),
        })
        .collect();
    sqlx::query(
        "INSERT INTO sweep_decisions (run_id, inbound_id, message_id, decision, reason)
         SELECT ?1, j.value ->> 'i', j.value ->> 'm', j.value ->> 'd', j.value ->> 'r'
         FROM json_each(?2) AS j WHERE true
         ON CONFLICT (run_id, inbound_id) DO NOTHING",
    )
    .bind(run_id)
    .bind(serde_json::to_string(&rows).map_err(corrupt)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The run's totals, counted from its recorded decisions (so a run of many batches adds up).
async fn finish_run(tx: &mut Tx<'_>, run_id: i64, now_ms: i64) -> Result<(), StoreError> {
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT decision, reason, count(*) FROM sweep_decisions WHERE run_id = ?
         GROUP BY decision, reason",
    )
    .bind(run_id)
    .fetch_all(&mut **tx)
    .await?;
    let (mut scanned, mut requeued) = (0, 0);
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for (decision, reason, n) in &rows {
        scanned += n;
        match reason {
            None if decision == SweepAction::Requeue.kind() => requeued += n,
            None => {}
            Some(reason) => *counts.entry(reason).or_default() += n,
        }
    }
    sqlx::query(
        "UPDATE sweep_runs SET finished_at_ms = ?, scanned = ?, requeued = ?, counts = ? WHERE id = ?",
    )
    .bind(now_ms)
    .bind(scanned)
    .bind(requeued)
    .bind(serde_json::to_string(&counts).map_err(corrupt)?)
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn run_from(row: &SqliteRow) -> Result<SweepRun, StoreError> {
    let counts: BTreeMap<String, u64> = serde_json::from_str(row.get("counts")).map_err(corrupt)?;
    let counts = counts
        .into_iter()
        .map(|(reason, n)| {
            SilenceReason::parse(&reason)
                .map(|r| (r, n))
                .ok_or_else(|| StoreError::Corrupt(format!("sweep count reason `{reason}`")))
        })
        .collect::<Result<_, _>>()?;
    Ok(SweepRun {
        id: row.get("id"),
        started_at_ms: row.get("started_at_ms"),
        finished_at_ms: row.get("finished_at_ms"),
        dry_run: row.get::<i64, _>("dry_run") != 0,
        scanned: row.get::<i64, _>("scanned").max(0) as u64,
        requeued: row.get::<i64, _>("requeued").max(0) as u64,
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let readable = candidate("bot", None).decide(&batch).unwrap();
        assert_eq!(readable.action, SweepAction::Requeue);
        let decisions = decide_all(
            vec![candidate("robot", None), candidate("bot", Some("maybe"))],
            &batch,
        );
        assert!(decisions.is_empty(), "left alone: {decisions:?}");
    }
}
