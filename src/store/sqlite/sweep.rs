//! The sweep on SQLite: one `BEGIN IMMEDIATE` transaction per batch on the writer connection
//! (a dry run reads the same snapshot in a read transaction), set-based writes via `json_each`.
//!
//! Cost: candidates come from the partial index `inbound_pending`, the gate inputs are primary
//! key lookups, and `superseded` runs only when the contact has a message newer than the
//! candidate, reading that conversation's replies claimed since a day before the candidate's
//! payload time (`ledger_by_conversation_claimed`), never its whole history.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::sweep_candidates::{CANDIDATES_SQL, Candidate, SUPERSEDED_LOOKBACK_S, decide_all};
use super::{SqliteStore, Tx, corrupt};
use crate::domain::gates::LedgerState;
use crate::domain::{Outcome, SilenceReason};
use crate::store::{
    StoreError, SweepAction, SweepBatch, SweepBatchResult, SweepCursor, SweepDecision, SweepMode,
    SweepRun,
};

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
        let decisions = decide_all(candidates, batch, &self.groups);
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
            "INSERT INTO jobs (inbound_id, provider, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms)
             SELECT id, provider, phone_number_id, wa_id, payload_ts, ?1, ?1 FROM inbound_messages
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
