//! SQLite side of retention: bounded prune batches, their dry-run count, and the scrape-time
//! gauges. Each batch is one `BEGIN IMMEDIATE` transaction of a few set-based statements, each
//! limited to `limit` rows and read through an index (`inbound_with_content`,
//! `statuses_by_arrival`, the ledger's unique `inbound_id`, the sweep runs' id order), so the
//! single writer is held for milliseconds.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::replies::begin;
use super::{SqliteStore, Tx, count};
use crate::store::StoreError;
use crate::store::gauges::PromiseGauges;
use crate::store::retention::{PruneBatchDone, PruneCounts, PruneCutoffs, PruneStep};

/// Settled inbound messages that still have content and arrived before `?1`, oldest first.
/// Pending ones (no outcome, or a job) and ones with an open dead letter keep their text.
const SETTLED_WITH_CONTENT: &str = "
    FROM inbound_messages m
    WHERE m.raw <> '' AND m.received_at_ms < ?1 AND m.outcome IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.inbound_id = m.id)
      AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.inbound_id = m.id AND d.state = 'open')";

/// Ledger states whose text can no longer be sent: the text is history only.
const SETTLED_LEDGER: &str = "state NOT IN ('claimed', 'ambiguous')";

impl SqliteStore {
    pub async fn prune_batch(
        &self,
        step: PruneStep,
        cutoffs: &PruneCutoffs,
        limit: u32,
    ) -> Result<PruneBatchDone, StoreError> {
        let limit = i64::from(limit.max(1));
        let mut tx = begin(&self.writer).await?;
        let mut c = PruneCounts::default();
        let hit = match step {
            PruneStep::MessageContent => {
                let ids = strip_messages(&mut tx, cutoffs.retention_before_ms, limit).await?;
                c.messages = ids.len() as u64;
                c.reply_texts = strip_reply_texts(&mut tx, &ids).await?;
                c.messages == limit as u64
            }
            PruneStep::Statuses => {
                c.statuses_deleted = exec(
                    &mut tx,
                    "DELETE FROM statuses WHERE rowid IN (SELECT rowid FROM statuses
                       WHERE received_at_ms < ?1 ORDER BY received_at_ms LIMIT ?2)",
                    cutoffs.dedup_before_ms,
                    limit,
                )
                .await?;
                c.statuses_stripped = exec(
                    &mut tx,
                    "UPDATE statuses SET raw = '' WHERE rowid IN (SELECT rowid FROM statuses
                       WHERE received_at_ms < ?1 AND raw <> '' ORDER BY received_at_ms LIMIT ?2)",
                    cutoffs.retention_before_ms,
                    limit,
                )
                .await?;
                c.statuses_deleted.max(c.statuses_stripped) == limit as u64
            }
            PruneStep::DeadLetters => {
                c.dead_letters_deleted = exec(
                    &mut tx,
                    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters
                       WHERE state <> 'open' AND created_at_ms < ?1 ORDER BY id LIMIT ?2)",
                    cutoffs.dedup_before_ms,
                    limit,
                )
                .await?;
                c.dead_letters_stripped = exec(
                    &mut tx,
                    "UPDATE dead_letters SET raw = NULL WHERE id IN (SELECT id FROM dead_letters
                       WHERE state <> 'open' AND created_at_ms < ?1 AND raw IS NOT NULL
                       ORDER BY id LIMIT ?2)",
                    cutoffs.retention_before_ms,
                    limit,
                )
                .await?;
                c.dead_letters_deleted.max(c.dead_letters_stripped) == limit as u64
            }
            PruneStep::SweepHistory => {
                // Run ids grow with their start, so "every run up to the newest old one" is a
                // range of the decisions' primary key.
                c.sweep_decisions_deleted = exec(
                    &mut tx,
                    "DELETE FROM sweep_decisions WHERE (run_id, inbound_id) IN (
                       SELECT run_id, inbound_id FROM sweep_decisions
                       WHERE run_id <= (SELECT max(id) FROM sweep_runs WHERE started_at_ms < ?1)
                       ORDER BY run_id LIMIT ?2)",
                    cutoffs.retention_before_ms,
                    limit,
                )
                .await?;
                c.sweep_runs_deleted = exec(
                    &mut tx,
                    "DELETE FROM sweep_runs WHERE id IN (SELECT r.id FROM sweep_runs r
                       WHERE r.started_at_ms < ?1
                         AND NOT EXISTS (SELECT 1 FROM sweep_decisions d WHERE d.run_id = r.id)
                       ORDER BY r.id LIMIT ?2)",
                    cutoffs.retention_before_ms,
                    limit,
                )
                .await?;
                c.sweep_decisions_deleted.max(c.sweep_runs_deleted) == limit as u64
            }
            PruneStep::PlatformErrors => {
                c.platform_errors_deleted = exec(
                    &mut tx,
                    "DELETE FROM platform_errors WHERE id IN (SELECT id FROM platform_errors
                       WHERE received_at_ms < ?1 ORDER BY id LIMIT ?2)",
                    cutoffs.dedup_before_ms,
                    limit,
                )
                .await?;
                // Between retention and the dedup horizon the row stays, its payload goes.
                let stripped = exec(
                    &mut tx,
                    "UPDATE platform_errors SET raw = '' WHERE id IN (SELECT id FROM platform_errors
                       WHERE received_at_ms < ?1 AND raw <> '' ORDER BY id LIMIT ?2)",
                    cutoffs.retention_before_ms,
                    limit,
                )
                .await?;
                c.platform_errors_deleted.max(stripped) == limit as u64
            }
        };
        tx.commit().await?;
        Ok(PruneBatchDone {
            counts: c,
            more: hit,
        })
    }

    /// The counts a prune would reach, read on the reader pool (no write lock). Reply texts
    /// are counted for the messages that would be stripped.
    pub async fn prune_preview(&self, cutoffs: &PruneCutoffs) -> Result<PruneCounts, StoreError> {
        let (content, records) = (cutoffs.retention_before_ms, cutoffs.dedup_before_ms);
        let pool = &self.pool;
        Ok(PruneCounts {
            messages: between(
                pool,
                &format!("SELECT count(*) {SETTLED_WITH_CONTENT}"),
                content,
                0,
            )
            .await?,
            reply_texts: between(
                pool,
                &format!(
                    "SELECT count(*) FROM ledger WHERE reply_text <> '' AND {SETTLED_LEDGER}
                     AND inbound_id IN (SELECT m.id {SETTLED_WITH_CONTENT})"
                ),
                content,
                0,
            )
            .await?,
            statuses_deleted: between(
                pool,
                "SELECT count(*) FROM statuses WHERE received_at_ms < ?1",
                records,
                0,
            )
            .await?,
            statuses_stripped: between(
                pool,
                "SELECT count(*) FROM statuses
                 WHERE received_at_ms < ?1 AND received_at_ms >= ?2 AND raw <> ''",
                content,
                records,
            )
            .await?,
            dead_letters_deleted: between(
                pool,
                "SELECT count(*) FROM dead_letters WHERE state <> 'open' AND created_at_ms < ?1",
                records,
                0,
            )
            .await?,
            dead_letters_stripped: between(
                pool,
                "SELECT count(*) FROM dead_letters WHERE state <> 'open'
                 AND created_at_ms < ?1 AND created_at_ms >= ?2 AND raw IS NOT NULL",
                content,
                records,
            )
            .await?,
            sweep_decisions_deleted: between(
                pool,
                "SELECT count(*) FROM sweep_decisions
                 WHERE run_id <= (SELECT max(id) FROM sweep_runs WHERE started_at_ms < ?1)",
                content,
                0,
            )
            .await?,
            sweep_runs_deleted: between(
                pool,
                "SELECT count(*) FROM sweep_runs WHERE started_at_ms < ?1",
                content,
                0,
            )
            .await?,
            platform_errors_deleted: between(
                pool,
                "SELECT count(*) FROM platform_errors WHERE received_at_ms < ?1",
                records,
                0,
            )
            .await?,
        })
    }

    pub async fn promise_gauges(&self) -> Result<PromiseGauges, StoreError> {
        // Both read the pending-messages index only (count and min over a partial index).
        let row = sqlx::query(
            "SELECT count(*) AS pending, min(payload_ts) AS oldest
             FROM inbound_messages WHERE outcome IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(PromiseGauges {
            pending: row.get::<i64, _>("pending").max(0) as u64,
            oldest_pending_ts: row.get("oldest"),
            dead_letters_open: count(
                &self.pool,
                "SELECT count(*) FROM dead_letters WHERE state = 'open'",
            )
            .await?,
        })
    }
}

/// Removes the body and raw payload of up to `limit` settled messages; returns their ids.
async fn strip_messages(
    tx: &mut Tx<'_>,
    before_ms: i64,
    limit: i64,
) -> Result<Vec<i64>, StoreError> {
    let sql = format!(
        "UPDATE inbound_messages SET body = NULL, raw = '' WHERE id IN (
           SELECT m.id {SETTLED_WITH_CONTENT} ORDER BY m.received_at_ms LIMIT ?2)
         RETURNING id"
    );
    Ok(sqlx::query_scalar(&sql)
        .bind(before_ms)
        .bind(limit)
        .fetch_all(&mut **tx)
        .await?)
}

/// The reply texts of messages just stripped, through the ledger's unique `inbound_id`.
async fn strip_reply_texts(tx: &mut Tx<'_>, inbound_ids: &[i64]) -> Result<u64, StoreError> {
    if inbound_ids.is_empty() {
        return Ok(0);
    }
    let ids = serde_json::to_string(inbound_ids).map_err(super::corrupt)?;
    let sql = format!(
        "UPDATE ledger SET reply_text = '' WHERE inbound_id IN (SELECT value FROM json_each(?1))
           AND reply_text <> '' AND {SETTLED_LEDGER}"
    );
    Ok(sqlx::query(&sql)
        .bind(ids)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}

/// A count with up to two time bounds (`?1` before, `?2` from; a query may use only the first).
async fn between(
    pool: &SqlitePool,
    sql: &str,
    before_ms: i64,
    from_ms: i64,
) -> Result<u64, StoreError> {
    let sql = if sql.contains("?2") {
        sql.to_owned()
    } else {
        format!("{sql} AND ?2 IS NOT NULL")
    };
    let n: i64 = sqlx::query_scalar(&sql)
        .bind(before_ms)
        .bind(from_ms)
        .fetch_one(pool)
        .await?;
    Ok(n.max(0) as u64)
}

async fn exec(tx: &mut Tx<'_>, sql: &str, before_ms: i64, limit: i64) -> Result<u64, StoreError> {
    Ok(sqlx::query(sql)
        .bind(before_ms)
        .bind(limit)
        .execute(&mut **tx)
        .await?
        .rows_affected())
}
