//! The reply pipeline's writes and reads: leasing, the gate snapshot, claiming the ledger row,
//! recording what the send did (settling ambiguous sends is in `ambiguous.rs`, operator-facing
//! writes in `operators.rs`).
//!
//! Every write runs on the single writer connection in a `BEGIN IMMEDIATE` transaction, so
//! the re-check of the gates and the claim of the ledger row are one atomic step.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::context::{CONTEXT_SQL, context_from};
use super::{SqliteStore, Tx};
use crate::domain::gates::{self, GroupPolicy, Verdict};
use crate::domain::{ConversationKey, Outcome, SilenceReason};
use crate::store::{Claim, Exchange, LeasedJob, ReplyContext, StoreError};

pub(super) async fn begin(writer: &SqlitePool) -> Result<Tx<'static>, StoreError> {
    Ok(writer.begin_with("BEGIN IMMEDIATE").await?)
}

/// Sets the outcome unless one exists: an outcome never changes once reached.
pub(super) async fn set_outcome(
    tx: &mut Tx<'_>,
    inbound_id: i64,
    outcome: &Outcome,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE inbound_messages SET outcome = ?, outcome_reason = ?, outcome_at_ms = ?
         WHERE id = ? AND outcome IS NULL",
    )
    .bind(outcome.kind())
    .bind(outcome.reason())
    .bind(now_ms)
    .bind(inbound_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn delete_job(tx: &mut Tx<'_>, inbound_id: i64) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE inbound_id = ?")
        .bind(inbound_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records `silent:<reason>` and removes the job. An answered message's outcome belongs to its
/// ledger row (replied, or settled later), so for `answered` only the job goes.
async fn silence_in(
    tx: &mut Tx<'_>,
    inbound_id: i64,
    reason: SilenceReason,
    now_ms: i64,
) -> Result<(), StoreError> {
    if reason != SilenceReason::Answered {
        set_outcome(tx, inbound_id, &Outcome::Silent(reason), now_ms).await?;
    }
    delete_job(tx, inbound_id).await
}

/// A claimed row whose send is known not to have happened goes back to `unsent`.
async fn unclaim(
    tx: &mut Tx<'_>,
    ledger_id: Option<i64>,
    error: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    if let Some(id) = ledger_id {
        sqlx::query(
            "UPDATE ledger SET state = 'unsent', error_code = ?, updated_at_ms = ? WHERE id = ? AND state = 'claimed'",
        )
        .bind(error)
        .bind(now_ms)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn insert_message_dead_letter(
    tx: &mut Tx<'_>,
    inbound_id: i64,
    error: &str,
    detail: &str,
    attempts: u32,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO dead_letters (kind, provider, inbound_id, error, detail, raw, dedup_key, attempts, created_at_ms)
         SELECT 'message', provider, id, ?, ?, CAST(raw AS BLOB), 'message:' || id || ':' || ?, ?, ?
         FROM inbound_messages WHERE id = ?
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(error)
    .bind(detail)
    .bind(now_ms)
    .bind(attempts)
    .bind(now_ms)
    .bind(inbound_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Re-checks the gates on a fresh snapshot and claims the ledger row, in the caller's transaction.
async fn claim_in(
    tx: &mut Tx<'_>,
    inbound_id: i64,
    reply_text: &str,
    now_ms: i64,
    confirming_opt_out: bool,
    groups: &GroupPolicy,
) -> Result<Claim, StoreError> {
    let Some(row) = sqlx::query(CONTEXT_SQL)
        .bind(inbound_id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(Claim::AlreadyDecided);
    };
    let context = context_from(&row, groups)?;
    if context.outcome.is_some() {
        delete_job(tx, inbound_id).await?;
        return Ok(Claim::AlreadyDecided);
    }
    let mut snapshot = context.snapshot;
    snapshot.opted_out &= !confirming_opt_out;
    if let Verdict::Silent(reason) = gates::evaluate(&snapshot, now_ms) {
        silence_in(tx, inbound_id, reason, now_ms).await?;
        return Ok(Claim::Silenced(reason));
    }
    let m = &context.message;
    let claimed: Option<(i64, i64)> = sqlx::query_as(
        "INSERT INTO ledger (inbound_id, phone_number_id, wa_id, state, reply_text, attempts, claimed_at_ms, updated_at_ms, provider)
         VALUES (?1, ?2, ?3, 'claimed', ?4, 1, ?5, ?5, ?6)
         ON CONFLICT (inbound_id) DO UPDATE SET
             state = 'claimed', reply_text = excluded.reply_text, attempts = ledger.attempts + 1,
             claimed_at_ms = excluded.claimed_at_ms, updated_at_ms = excluded.updated_at_ms
         WHERE ledger.state = 'unsent'
         RETURNING id, attempts",
    )
    .bind(inbound_id)
    .bind(&m.phone_number_id)
    .bind(&m.wa_id)
    .bind(reply_text)
    .bind(now_ms)
    .bind(m.provider.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match claimed {
        Some((ledger_id, attempts)) => Claim::Claimed {
            ledger_id,
            attempts: attempts.max(0) as u32,
        },
        None => Claim::Silenced(SilenceReason::Answered),
    })
}

async fn lease_in(
    tx: &mut Tx<'_>,
    now_ms: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<LeasedJob>, StoreError> {
    // A killed worker's jobs come back first (as retries: they keep their place in order).
    sqlx::query("UPDATE jobs SET state = 'available', lease_until_ms = NULL WHERE state = 'leased' AND lease_until_ms <= ?")
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    // Due jobs, oldest first, whose conversation has nothing leased, nothing earlier waiting
    // for a retry and no send whose fate is unknown (an ambiguous message is still the one in
    // progress until it is settled). Several due jobs of one conversation can qualify; only its
    // first is taken.
    let candidates: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT j.inbound_id, j.provider, j.phone_number_id, j.wa_id FROM jobs j INDEXED BY jobs_available
         WHERE j.state = 'available' AND j.run_at_ms <= ?1
           AND NOT EXISTS (SELECT 1 FROM jobs l INDEXED BY jobs_leased
                           WHERE l.state = 'leased' AND l.phone_number_id = j.phone_number_id AND l.wa_id = j.wa_id
                             AND l.provider = j.provider)
           AND NOT EXISTS (SELECT 1 FROM jobs r INDEXED BY jobs_retrying
                           WHERE r.state = 'available' AND r.attempts > 0
                             AND r.phone_number_id = j.phone_number_id AND r.wa_id = j.wa_id
                             AND r.provider = j.provider
                             AND (r.payload_ts, r.inbound_id) < (j.payload_ts, j.inbound_id))
           AND NOT EXISTS (SELECT 1 FROM ledger a INDEXED BY ledger_ambiguous_by_conversation
                           JOIN inbound_messages am ON am.id = a.inbound_id
                           WHERE a.state = 'ambiguous' AND a.phone_number_id = j.phone_number_id
                             AND a.wa_id = j.wa_id AND a.provider = j.provider AND am.outcome IS NULL)
         ORDER BY j.payload_ts, j.inbound_id
         LIMIT ?2",
    )
    .bind(now_ms)
    .bind(i64::from(limit).saturating_mul(4))
    .fetch_all(&mut **tx)
    .await?;
    let mut conversations = std::collections::HashSet::new();
    let heads: Vec<i64> = candidates
        .into_iter()
        .filter(|(_, provider, phone, wa)| {
            conversations.insert((provider.clone(), phone.clone(), wa.clone()))
        })
        .map(|(id, ..)| id)
        .take(limit as usize)
        .collect();
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let leased: Vec<(i64, i64)> = sqlx::query_as(
        "UPDATE jobs SET state = 'leased', lease_until_ms = ?1, attempts = attempts + 1
         WHERE inbound_id IN (SELECT value FROM json_each(?2))
         RETURNING inbound_id, attempts",
    )
    .bind(now_ms.saturating_add(lease_ms))
    .bind(serde_json::to_string(&heads).expect("ids serialise"))
    .fetch_all(&mut **tx)
    .await?;
    Ok(leased
        .into_iter()
        .map(|(inbound_id, attempts)| LeasedJob {
            inbound_id,
            attempts: attempts.max(0) as u32,
        })
        .collect())
}

impl SqliteStore {
    /// Batched with the pipeline's other writes: a worker leasing one job as a permit frees up
    /// shares the transaction (and the fsync) of the claims and sends around it.
    pub async fn lease_jobs(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<LeasedJob>, StoreError> {
        self.batch
            .write(move |tx| Box::pin(lease_in(tx, now_ms, lease_ms, limit)))
            .await
    }

    pub async fn reply_context(&self, inbound_id: i64) -> Result<Option<ReplyContext>, StoreError> {
        let row = sqlx::query(CONTEXT_SQL)
            .bind(inbound_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(|row| context_from(row, &self.groups))
            .transpose()
    }

    pub async fn history(
        &self,
        key: &ConversationKey,
        before_inbound_id: i64,
        limit: usize,
    ) -> Result<Vec<Exchange>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.body, m.payload_ts, l.reply_text FROM ledger l JOIN inbound_messages m ON m.id = l.inbound_id
             WHERE l.phone_number_id = ? AND l.wa_id = ? AND l.provider = ? AND l.inbound_id < ?
               AND l.state NOT IN ('unsent', 'claimed')
             ORDER BY l.inbound_id DESC LIMIT ?",
        )
        .bind(key.phone_number_id.as_str())
        .bind(key.wa_id.as_str())
        .bind(key.provider.as_str())
        .bind(before_inbound_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut exchanges: Vec<Exchange> = rows
            .into_iter()
            .map(|row| Exchange {
                inbound_text: row.get("body"),
                inbound_ts: row.get("payload_ts"),
                reply_text: row.get("reply_text"),
            })
            .collect();
        exchanges.reverse();
        Ok(exchanges)
    }

    pub async fn drop_job(&self, inbound_id: i64) -> Result<(), StoreError> {
        self.batch
            .write(move |tx| Box::pin(delete_job(tx, inbound_id)))
            .await
    }

    pub async fn finish_silent(
        &self,
        inbound_id: i64,
        reason: SilenceReason,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.batch
            .write(move |tx| Box::pin(silence_in(tx, inbound_id, reason, now_ms)))
            .await
    }

    pub async fn claim_reply(
        &self,
        inbound_id: i64,
        reply_text: &str,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        self.claim_with(inbound_id, reply_text, now_ms, false).await
    }

    pub async fn claim_with(
        &self,
        inbound_id: i64,
        reply_text: &str,
        now_ms: i64,
        confirming_opt_out: bool,
    ) -> Result<Claim, StoreError> {
        let text = reply_text.to_owned();
        let groups = self.groups.clone();
        self.batch
            .write(move |tx| {
                Box::pin(async move {
                    claim_in(tx, inbound_id, &text, now_ms, confirming_opt_out, &groups).await
                })
            })
            .await
    }

    pub async fn mark_sent(
        &self,
        inbound_id: i64,
        ledger_id: i64,
        outbound_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let outbound_id = outbound_id.to_owned();
        self.batch
            .write(move |tx| {
                Box::pin(async move {
                    // A status webhook may have arrived first and moved the row further: keep the furthest.
                    sqlx::query(
                        "UPDATE ledger SET
                             state = CASE WHEN status_rank > 1 THEN state ELSE 'sent' END,
                             status_rank = max(status_rank, 1),
                             outbound_id = coalesce(outbound_id, ?1),
                             first_attempt = (attempts = 1),
                             error_code = NULL, updated_at_ms = ?2
                         WHERE id = ?3",
                    )
                    .bind(&outbound_id)
                    .bind(now_ms)
                    .bind(ledger_id)
                    .execute(&mut **tx)
                    .await?;
                    set_outcome(tx, inbound_id, &Outcome::Replied, now_ms).await?;
                    delete_job(tx, inbound_id).await
                })
            })
            .await
    }

    pub async fn mark_ambiguous(
        &self,
        inbound_id: i64,
        ledger_id: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.batch
            .write(move |tx| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE ledger SET state = 'ambiguous', error_code = ?, updated_at_ms = ?
                         WHERE id = ? AND state = 'claimed'",
                    )
                    .bind(&error)
                    .bind(now_ms)
                    .bind(ledger_id)
                    .execute(&mut **tx)
                    .await?;
                    delete_job(tx, inbound_id).await
                })
            })
            .await
    }

    pub async fn retry_later(
        &self,
        inbound_id: i64,
        ledger_id: Option<i64>,
        run_at_ms: i64,
        error: &str,
        refund_attempt: bool,
    ) -> Result<(), StoreError> {
        let error = error.to_owned();
        self.batch
            .write(move |tx| {
                Box::pin(async move {
                    unclaim(tx, ledger_id, &error, run_at_ms).await?;
                    sqlx::query(
                        "UPDATE jobs SET state = 'available', lease_until_ms = NULL, run_at_ms = ?, last_error = ?,
                             attempts = max(attempts - ?, 0)
                         WHERE inbound_id = ?",
                    )
                    .bind(run_at_ms)
                    .bind(&error)
                    .bind(i64::from(refund_attempt))
                    .bind(inbound_id)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn dead_letter_message(
        &self,
        inbound_id: i64,
        ledger_id: Option<i64>,
        error: &str,
        detail: &str,
        attempts: u32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (error, detail) = (error.to_owned(), detail.to_owned());
        self.batch
            .write(move |tx| {
                Box::pin(async move {
                    unclaim(tx, ledger_id, &error, now_ms).await?;
                    set_outcome(tx, inbound_id, &Outcome::Dead(error.clone()), now_ms).await?;
                    insert_message_dead_letter(tx, inbound_id, &error, &detail, attempts, now_ms)
                        .await?;
                    delete_job(tx, inbound_id).await
                })
            })
            .await
    }
}
