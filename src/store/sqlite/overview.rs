//! SQLite reads for the operator console (see `store::overview`).
//!
//! Arrivals per minute without an index on arrival time: rows get their ids from the single
//! writer in commit order and `received_at_ms` is that commit's clock, so arrival time never
//! decreases along the ids, and ids are dense at the newest end (only retention deletes whole
//! rows, and only ones far older than an hour). The first id of each minute is found with point
//! lookups (gallop, then bisect), and a minute's count is the difference of two such ids: a few
//! lookups per minute whatever the traffic, where a `GROUP BY` would read every row of the hour
//! (raw payloads included) — gigabytes at 1 000 messages/s.

use sqlx::Row;

use super::conversations::summary_from;
use super::{SqliteStore, Tx};
use crate::domain::Provider;
use crate::store::{
    ConversationQuery, ConversationSummary, DeadLetter, DeadLetterPreview, MinuteCount,
    PendingHead, StoreError,
};

const MINUTE_MS: i64 = 60_000;

/// Every known conversation (as in the admin list), filtered. `?1` mode or NULL, `?2` 1 = only
/// opted out, `?3` part of a number or name or NULL, `?4` limit.
const FIND_SQL: &str = "
SELECT * FROM (
    SELECT k.provider, k.phone_number_id, k.wa_id, k.display_name, coalesce(c.mode, 'bot') AS mode,
           c.taken_by, c.escalation_reason, k.opted_out, k.last_inbound_ts,
           max(k.updated_at_ms, coalesce(c.updated_at_ms, 0)) AS activity_ms
    FROM contacts k
    LEFT JOIN conversations c
        ON c.provider = k.provider AND c.phone_number_id = k.phone_number_id AND c.wa_id = k.wa_id
    UNION ALL
    SELECT c.provider, c.phone_number_id, c.wa_id, NULL, c.mode, c.taken_by, c.escalation_reason, 0,
           NULL, c.updated_at_ms
    FROM conversations c
    WHERE NOT EXISTS (SELECT 1 FROM contacts k
                      WHERE k.provider = c.provider AND k.phone_number_id = c.phone_number_id
                        AND k.wa_id = c.wa_id))
WHERE (?1 IS NULL OR mode = ?1)
  AND (?2 = 0 OR opted_out = 1)
  AND (?3 IS NULL OR instr(wa_id, ?3) > 0 OR instr(phone_number_id, ?3) > 0
       OR instr(lower(coalesce(display_name, '')), lower(?3)) > 0)
ORDER BY activity_ms DESC, provider, phone_number_id, wa_id
LIMIT ?4";

const PREVIEWS_SQL: &str = "
SELECT d.id, d.kind, d.provider, d.session_id, m.message_id, m.phone_number_id, m.wa_id, d.error,
       d.detail, d.state, d.attempts, d.created_at_ms, substr(d.raw, 1, ?2) AS preview,
       length(d.raw) AS raw_bytes
FROM dead_letters d LEFT JOIN inbound_messages m ON m.id = d.inbound_id
WHERE d.state = 'open' ORDER BY d.id DESC LIMIT ?1";

impl SqliteStore {
    pub async fn inbound_per_minute(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<MinuteCount>, StoreError> {
        let first = since_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let last = until_ms.max(since_ms).div_euclid(MINUTE_MS) * MINUTE_MS;
        let boundaries: Vec<i64> = (first..=last + MINUTE_MS)
            .step_by(MINUTE_MS as usize)
            .collect();
        // One snapshot: every lookup sees the same rows.
        let mut tx = self.pool.begin().await?;
        // Bare min()/max(): answered from the b-tree's edges.
        let lowest: Option<i64> = sqlx::query_scalar("SELECT min(id) FROM inbound_messages")
            .fetch_one(&mut *tx)
            .await?;
        let highest: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM inbound_messages")
            .fetch_one(&mut *tx)
            .await?;
        let mut positions = Vec::with_capacity(boundaries.len());
        if let (Some(lowest), Some(highest)) = (lowest, highest) {
            let end = highest + 1;
            let mut from = lowest;
            for &boundary in &boundaries {
                from = first_position_at_or_after(&mut tx, boundary, from, end).await?;
                positions.push(from);
            }
        } else {
            positions.resize(boundaries.len(), 0);
        }
        tx.commit().await?;
        Ok(boundaries
            .iter()
            .zip(positions.windows(2))
            .map(|(&minute_start_ms, pair)| MinuteCount {
                minute_start_ms,
                messages: u64::try_from(pair[1] - pair[0]).unwrap_or(0),
            })
            .collect())
    }

    pub async fn oldest_pending(&self) -> Result<Option<PendingHead>, StoreError> {
        // Ordered by the partial index `inbound_pending`: one index step, not a scan.
        let row = sqlx::query(
            "SELECT provider, message_id, payload_ts, received_at_ms FROM inbound_messages
             WHERE outcome IS NULL ORDER BY payload_ts LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let provider: &str = row.try_get("provider")?;
            Ok(PendingHead {
                provider: Provider::parse(provider)
                    .ok_or_else(|| StoreError::Corrupt(format!("message provider `{provider}`")))?,
                message_id: row.try_get("message_id")?,
                payload_ts: row.try_get("payload_ts")?,
                received_at_ms: row.try_get("received_at_ms")?,
            })
        })
        .transpose()
    }

    pub async fn find_conversations(
        &self,
        query: &ConversationQuery,
        limit: i64,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let rows = sqlx::query(FIND_SQL)
            .bind(query.mode.map(|m| m.as_str()))
            .bind(query.opted_out)
            .bind(query.number.as_deref().filter(|n| !n.is_empty()))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(summary_from).collect()
    }

    pub async fn dead_letter_previews(
        &self,
        limit: i64,
        preview_bytes: i64,
    ) -> Result<Vec<DeadLetterPreview>, StoreError> {
        let rows = sqlx::query(PREVIEWS_SQL)
            .bind(limit)
            .bind(preview_bytes.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                let conversation = match (
                    row.try_get::<Option<String>, _>("phone_number_id")?,
                    row.try_get::<Option<String>, _>("wa_id")?,
                ) {
                    (Some(number), Some(user)) => Some((number, user)),
                    _ => None,
                };
                let preview: Option<Vec<u8>> = row.try_get("preview")?;
                Ok(DeadLetterPreview {
                    letter: DeadLetter {
                        id: row.try_get("id")?,
                        kind: row.try_get("kind")?,
                        provider: row.try_get("provider")?,
                        session_id: row.try_get("session_id")?,
                        message_id: row.try_get("message_id")?,
                        error: row.try_get("error")?,
                        detail: row.try_get("detail")?,
                        state: row.try_get("state")?,
                        attempts: row.try_get("attempts")?,
                        created_at_ms: row.try_get("created_at_ms")?,
                        raw: preview.map(|p| String::from_utf8_lossy(&p).into_owned()),
                        raw_bytes: row
                            .try_get::<Option<i64>, _>("raw_bytes")?
                            .map(|n| n.max(0) as u64),
                    },
                    conversation,
                })
            })
            .collect()
    }
}

/// The smallest position `p` in `[from, end]` such that the first row at or after `p` arrived at
/// or after `boundary` (or there is none): every row before `p` arrived earlier. `end` is one
/// past the highest id; `from` a position no later than the answer.
///
/// Gallops from `from` (1, 2, 4… rows ahead) before bisecting, so a minute costs about
/// 2 × log₂ of its own arrivals — one lookup when it had none — not log₂ of the whole table.
async fn first_position_at_or_after(
    tx: &mut Tx<'_>,
    boundary: i64,
    from: i64,
    end: i64,
) -> Result<i64, StoreError> {
    let (mut low, mut high) = (from, from);
    let mut step = 1;
    while high < end && !arrived_at_or_after(tx, high, boundary).await? {
        low = high + 1;
        high = from.saturating_add(step).min(end);
        step = step.saturating_mul(2);
    }
    // The answer is in [low, high]: everything before `low` arrived earlier, `high` qualifies.
    while low < high {
        let mid = low + (high - low) / 2;
        if arrived_at_or_after(tx, mid, boundary).await? {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    Ok(low)
}

/// Whether the first row at or after `position` arrived at or after `boundary` (true when there
/// is no such row).
async fn arrived_at_or_after(
    tx: &mut Tx<'_>,
    position: i64,
    boundary: i64,
) -> Result<bool, StoreError> {
    let arrived: Option<i64> = sqlx::query_scalar(
        "SELECT received_at_ms FROM inbound_messages WHERE id >= ? ORDER BY id LIMIT 1",
    )
    .bind(position)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(arrived.is_none_or(|at| at >= boundary))
}
