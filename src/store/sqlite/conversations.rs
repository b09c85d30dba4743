//! SQLite conversation reads: the operator list and one conversation's timeline.
//!
//! Costs (measured with the real schema, 20 k contacts, SQLite 3.4x, warm cache):
//! - the list reads every contact (no index orders contacts by activity: one would be rewritten
//!   on every ingest batch), ~10–20 ms for 20 k contacts; `operator` and `escalated` read only
//!   the small `conversations` table;
//! - the timeline never scans the message history: ledger and jobs by conversation (indexed),
//!   the pending-messages index, and a rowid range over the newest [`RECENT_SCAN_ROWS`] inbound
//!   rows for silences: ~3–4 ms with 100 k and with 1 M messages, where a
//!   `WHERE phone_number_id = ? AND wa_id = ?` scan of `inbound_messages` takes ~25 ms and
//!   ~200 ms (and grows with the history). A partial index on `(phone_number_id, wa_id, id)
//!   WHERE outcome IN ('silent', 'dead')` — free at ingest, which never writes those outcomes —
//!   would make the timeline complete at ~0.6 ms; it needs a migration.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::domain::{
    ConversationKey, ConversationMode, DeliveryStatus, LedgerState, Outcome, Provider,
};
use crate::store::StoreError;
use crate::store::conversations::{
    ConversationDetail, ConversationSummary, DeliveryRecord, RECENT_SCAN_ROWS, TimelineEntry,
    TimelineReply,
};

/// Every known conversation: contacts (with their conversations row, if any), plus conversations
/// an operator acted on before the contact ever wrote. `?1` = mode filter or NULL, `?2` = limit.
const LIST_ALL_SQL: &str = "
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
WHERE ?1 IS NULL OR mode = ?1
ORDER BY activity_ms DESC, provider, phone_number_id, wa_id
LIMIT ?2";

/// Operator and escalated conversations always have a conversations row: read only that table.
const LIST_HELD_SQL: &str = "
SELECT c.provider, c.phone_number_id, c.wa_id, k.display_name, c.mode, c.taken_by,
       c.escalation_reason, coalesce(k.opted_out, 0) AS opted_out, k.last_inbound_ts,
       max(c.updated_at_ms, coalesce(k.updated_at_ms, 0)) AS activity_ms
FROM conversations c
LEFT JOIN contacts k
    ON k.provider = c.provider AND k.phone_number_id = c.phone_number_id AND k.wa_id = c.wa_id
WHERE c.mode = ?1
ORDER BY activity_ms DESC, c.provider, c.phone_number_id, c.wa_id
LIMIT ?2";

/// One conversation by key; always one row, `known` = 0 when neither side has it.
const ONE_SQL: &str = "
SELECT ?3 AS provider, ?1 AS phone_number_id, ?2 AS wa_id, k.display_name, coalesce(c.mode, 'bot') AS mode,
       c.taken_by, c.escalation_reason, coalesce(k.opted_out, 0) AS opted_out, k.last_inbound_ts,
       max(coalesce(k.updated_at_ms, 0), coalesce(c.updated_at_ms, 0)) AS activity_ms,
       (k.wa_id IS NOT NULL OR c.wa_id IS NOT NULL) AS known
FROM (SELECT 1)
LEFT JOIN contacts k ON k.provider = ?3 AND k.phone_number_id = ?1 AND k.wa_id = ?2
LEFT JOIN conversations c ON c.provider = ?3 AND c.phone_number_id = ?1 AND c.wa_id = ?2";

/// The newest `?3` messages of a conversation, found without a per-conversation index on
/// `inbound_messages`: answered ones through the ledger, queued ones through the jobs, pending
/// ones through `inbound_pending`, and the rest (silences) in the rowid range above `?4`.
const TIMELINE_SQL: &str = "
WITH ids(id) AS (
    SELECT * FROM (SELECT inbound_id FROM ledger
                   WHERE phone_number_id = ?1 AND wa_id = ?2 AND provider = ?5
                   ORDER BY inbound_id DESC LIMIT ?3)
    UNION
    SELECT * FROM (SELECT inbound_id FROM jobs
                   WHERE phone_number_id = ?1 AND wa_id = ?2 AND provider = ?5
                   ORDER BY inbound_id DESC LIMIT ?3)
    UNION
    SELECT * FROM (SELECT id FROM inbound_messages
                   WHERE outcome IS NULL AND phone_number_id = ?1 AND wa_id = ?2 AND provider = ?5
                   ORDER BY id DESC LIMIT ?3)
    UNION
    SELECT * FROM (SELECT id FROM inbound_messages
                   WHERE id > ?4 AND phone_number_id = ?1 AND wa_id = ?2 AND provider = ?5
                   ORDER BY id DESC LIMIT ?3)
),
page AS (SELECT id FROM ids ORDER BY id DESC LIMIT ?3)
SELECT m.id, m.message_id, m.kind, m.body, m.payload_ts, m.outcome, m.outcome_reason,
       l.id AS ledger_id, l.state, l.outbound_id, l.reply_text, l.attempts
FROM page
JOIN inbound_messages m ON m.id = page.id
LEFT JOIN ledger l ON l.inbound_id = m.id
ORDER BY m.payload_ts, m.id";

const STATUSES_SQL: &str = "
SELECT message_id, status, payload_ts, error_code FROM statuses
WHERE message_id IN (SELECT value FROM json_each(?1)) AND provider = ?2";

impl SqliteStore {
    pub async fn conversations(
        &self,
        mode: Option<ConversationMode>,
        limit: i64,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        let sql = match mode {
            Some(ConversationMode::Operator | ConversationMode::Escalated) => LIST_HELD_SQL,
            Some(ConversationMode::Bot) | None => LIST_ALL_SQL,
        };
        let rows = sqlx::query(sql)
            .bind(mode.map(ConversationMode::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(summary_from).collect()
    }

    pub async fn conversation(
        &self,
        key: &ConversationKey,
        limit: i64,
    ) -> Result<Option<ConversationDetail>, StoreError> {
        // One read transaction: the summary, the timeline and the statuses are one snapshot.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(ONE_SQL)
            .bind(key.phone_number_id.as_str())
            .bind(key.wa_id.as_str())
            .bind(key.provider.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if !row.get::<bool, _>("known") {
            return Ok(None);
        }
        let summary = summary_from(&row)?;
        let newest: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM inbound_messages")
            .fetch_one(&mut *tx)
            .await?;
        let horizon = newest.saturating_sub(RECENT_SCAN_ROWS);
        let rows = sqlx::query(TIMELINE_SQL)
            .bind(key.phone_number_id.as_str())
            .bind(key.wa_id.as_str())
            .bind(limit)
            .bind(horizon)
            .bind(key.provider.as_str())
            .fetch_all(&mut *tx)
            .await?;
        let oldest_shown = rows.iter().map(|r| r.get::<i64, _>("id")).min();
        // Whatever lies above the horizon was scanned; below it only indexed sides were read.
        let complete = horizon <= 0
            || (i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit
                && oldest_shown.is_some_and(|id| id > horizon));
        let mut timeline = rows.iter().map(entry_from).collect::<Result<Vec<_>, _>>()?;
        let mut statuses = statuses_of(&mut tx, key.provider, &timeline).await?;
        for reply in timeline.iter_mut().filter_map(|e| e.reply.as_mut()) {
            if let Some(id) = &reply.outbound_id {
                reply.statuses = statuses.remove(id).unwrap_or_default();
            }
        }
        tx.commit().await?;
        Ok(Some(ConversationDetail {
            summary,
            timeline,
            complete,
        }))
    }
}

/// The statuses of every reply in the timeline, per outbound id, each list in the order the
/// statuses happened (payload time, then the forward ladder for equal times).
async fn statuses_of(
    tx: &mut super::Tx<'_>,
    provider: Provider,
    timeline: &[TimelineEntry],
) -> Result<HashMap<String, Vec<DeliveryRecord>>, StoreError> {
    let ids: Vec<&str> = timeline
        .iter()
        .filter_map(|e| e.reply.as_ref()?.outbound_id.as_deref())
        .collect();
    let mut by_id: HashMap<String, Vec<DeliveryRecord>> = HashMap::new();
    if ids.is_empty() {
        return Ok(by_id);
    }
    let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let rows = sqlx::query(STATUSES_SQL)
        .bind(ids)
        .bind(provider.as_str())
        .fetch_all(&mut **tx)
        .await?;
    for row in rows {
        by_id
            .entry(row.get("message_id"))
            .or_default()
            .push(DeliveryRecord {
                status: DeliveryStatus::parse(row.get("status")),
                timestamp: row.get("payload_ts"),
                error_code: row.get("error_code"),
            });
    }
    for list in by_id.values_mut() {
        list.sort_by_key(|d| (d.timestamp, d.status.rank().unwrap_or(u8::MAX)));
    }
    Ok(by_id)
}

pub(super) fn summary_from(row: &SqliteRow) -> Result<ConversationSummary, StoreError> {
    let mode: &str = row.get("mode");
    let provider: &str = row.get("provider");
    Ok(ConversationSummary {
        provider: Provider::parse(provider)
            .ok_or_else(|| StoreError::Corrupt(format!("conversation provider `{provider}`")))?,
        phone_number_id: row.get("phone_number_id"),
        wa_id: row.get("wa_id"),
        display_name: row.get("display_name"),
        mode: ConversationMode::parse(mode)
            .ok_or_else(|| StoreError::Corrupt(format!("conversation mode `{mode}`")))?,
        taken_by: row.get("taken_by"),
        escalation_reason: row.get("escalation_reason"),
        opted_out: row.get::<i64, _>("opted_out") != 0,
        last_inbound_ts: row.get("last_inbound_ts"),
        updated_at_ms: row.get("activity_ms"),
    })
}

fn entry_from(row: &SqliteRow) -> Result<TimelineEntry, StoreError> {
    let reply = match row.get::<Option<i64>, _>("ledger_id") {
        None => None,
        Some(ledger_id) => {
            let state: &str = row.get("state");
            Some(TimelineReply {
                ledger_id,
                state: LedgerState::parse(state)
                    .ok_or_else(|| StoreError::Corrupt(format!("ledger state `{state}`")))?,
                outbound_id: row.get("outbound_id"),
                text: row.get("reply_text"),
                attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(0),
                statuses: Vec::new(),
            })
        }
    };
    Ok(TimelineEntry {
        message_id: row.get("message_id"),
        kind: row.get("kind"),
        text: row.get("body"),
        timestamp: row.get("payload_ts"),
        outcome: Outcome::from_columns(row.get("outcome"), row.get("outcome_reason")),
        reply,
    })
}
