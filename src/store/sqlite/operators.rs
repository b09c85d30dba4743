//! Operator-facing writes: paused channels (send holds), consent and conversation modes, idle
//! takeovers, and the dead-letter queue's replay and discard. Every key carries its provider.

use sqlx::Row;

use super::replies::begin;
use super::{SqliteStore, Tx};
use crate::domain::gates::ConversationMode;
use crate::domain::{Channel, ConversationKey, PhoneNumberId, Provider};
use crate::store::{DeadLetter, DeadLetterAction, SendHold, StoreError};

/// A held channel's jobs that were put off until its next probe become due now.
pub(super) async fn make_waiting_jobs_due(
    tx: &mut Tx<'_>,
    provider: &str,
    channel_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE jobs SET run_at_ms = ?1
         WHERE provider = ?2 AND phone_number_id = ?3 AND state = 'available' AND run_at_ms > ?1",
    )
    .bind(now_ms)
    .bind(provider)
    .bind(channel_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    pub async fn hold_sends(
        &self,
        channel: &Channel,
        error_code: &str,
        now_ms: i64,
        next_probe_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO send_holds (provider, phone_number_id, error_code, since_ms, next_probe_ms) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (provider, phone_number_id) DO UPDATE SET error_code = excluded.error_code, next_probe_ms = excluded.next_probe_ms",
        )
        .bind(channel.provider.as_str())
        .bind(channel.id.as_str())
        .bind(error_code)
        .bind(now_ms)
        .bind(next_probe_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Every hold, failing closed: a row whose provider or channel id cannot be read is an error,
    /// never a hold silently dropped (that would let its sends through).
    pub async fn send_holds(&self) -> Result<Vec<SendHold>, StoreError> {
        let rows = sqlx::query(
            "SELECT provider, phone_number_id, error_code, since_ms, next_probe_ms FROM send_holds
             ORDER BY provider, phone_number_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let provider: String = r.try_get("provider")?;
                let id: String = r.try_get("phone_number_id")?;
                let unreadable =
                    || StoreError::Corrupt(format!("send hold `{provider}`/`{id}` is unreadable"));
                Ok(SendHold {
                    channel: Channel::new(
                        Provider::parse(&provider).ok_or_else(unreadable)?,
                        PhoneNumberId::parse(id.clone()).map_err(|_| unreadable())?,
                    ),
                    error_code: r.try_get("error_code")?,
                    since_ms: r.try_get("since_ms")?,
                    next_probe_ms: r.try_get("next_probe_ms")?,
                })
            })
            .collect()
    }

    pub async fn lift_hold(&self, channel: &Channel, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = begin(&self.writer).await?;
        sqlx::query("DELETE FROM send_holds WHERE provider = ? AND phone_number_id = ?")
            .bind(channel.provider.as_str())
            .bind(channel.id.as_str())
            .execute(&mut *tx)
            .await?;
        make_waiting_jobs_due(
            &mut tx,
            channel.provider.as_str(),
            channel.id.as_str(),
            now_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn release_idle_takeovers(
        &self,
        idle_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET mode = 'bot', taken_by = NULL, updated_at_ms = ?1
             WHERE mode = 'operator' AND updated_at_ms <= ?2",
        )
        .bind(now_ms)
        .bind(now_ms.saturating_sub(idle_ms))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn set_opted_out(
        &self,
        key: &ConversationKey,
        opted_out: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO contacts (provider, phone_number_id, wa_id, opted_out, updated_at_ms) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (provider, phone_number_id, wa_id) DO UPDATE SET opted_out = excluded.opted_out, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(key.provider.as_str())
        .bind(key.phone_number_id.as_str())
        .bind(key.wa_id.as_str())
        .bind(opted_out)
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn set_conversation_mode(
        &self,
        key: &ConversationKey,
        mode: ConversationMode,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (taken_by, reason) = match mode {
            ConversationMode::Operator => (note, None),
            ConversationMode::Escalated => (None, note),
            ConversationMode::Bot => (None, None),
        };
        sqlx::query(
            "INSERT INTO conversations (provider, phone_number_id, wa_id, mode, taken_by, escalation_reason, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (provider, phone_number_id, wa_id) DO UPDATE SET mode = excluded.mode, taken_by = excluded.taken_by,
                 escalation_reason = excluded.escalation_reason, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(key.provider.as_str())
        .bind(key.phone_number_id.as_str())
        .bind(key.wa_id.as_str())
        .bind(mode.as_str())
        .bind(taken_by)
        .bind(reason)
        .bind(now_ms)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn replay_dead_letter(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<DeadLetterAction, StoreError> {
        let mut tx = begin(&self.writer).await?;
        let row: Option<(String, String, Option<i64>)> =
            sqlx::query_as("SELECT kind, state, inbound_id FROM dead_letters WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let action = match row {
            None => DeadLetterAction::NotFound,
            Some((_, state, _)) if state != "open" => DeadLetterAction::NotOpen,
            Some((kind, _, Some(inbound_id))) if kind == "message" => {
                // A status that arrived after the dead letter proves the send went out
                // (status_rank > 0: sent or beyond): the message was replied once, and that is
                // its outcome; no job, no second send.
                let confirmed: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM ledger WHERE inbound_id = ? AND status_rank > 0)",
                )
                .bind(inbound_id)
                .fetch_one(&mut *tx)
                .await?;
                if confirmed {
                    sqlx::query(
                        "UPDATE inbound_messages SET outcome = 'replied', outcome_reason = NULL, outcome_at_ms = ?
                         WHERE id = ? AND outcome = 'dead'",
                    )
                    .bind(now_ms)
                    .bind(inbound_id)
                    .execute(&mut *tx)
                    .await?;
                } else {
                    // Back to pending with a fresh job; the gates decide again (an opted-out contact
                    // stays silent). An ambiguous or refused ledger row may be claimed once more.
                    sqlx::query(
                        "UPDATE inbound_messages SET outcome = NULL, outcome_reason = NULL, outcome_at_ms = NULL
                         WHERE id = ? AND outcome = 'dead'",
                    )
                    .bind(inbound_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE ledger SET state = 'unsent', updated_at_ms = ? WHERE inbound_id = ? AND state IN ('ambiguous', 'unsent')")
                        .bind(now_ms)
                        .bind(inbound_id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO jobs (inbound_id, provider, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms)
                         SELECT id, provider, phone_number_id, wa_id, payload_ts, ?1, ?1 FROM inbound_messages WHERE id = ?2
                         ON CONFLICT (inbound_id) DO NOTHING",
                    )
                    .bind(now_ms)
                    .bind(inbound_id)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query("UPDATE dead_letters SET state = 'replayed' WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                DeadLetterAction::Replayed
            }
            Some(_) => DeadLetterAction::ReingestPayload,
        };
        tx.commit().await?;
        Ok(action)
    }

    pub async fn discard_dead_letter(&self, id: i64) -> Result<DeadLetterAction, StoreError> {
        let done = sqlx::query(
            "UPDATE dead_letters SET state = 'discarded' WHERE id = ? AND state = 'open'",
        )
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(DeadLetterAction::Discarded);
        }
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM dead_letters WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(if exists.is_some() {
            DeadLetterAction::NotOpen
        } else {
            DeadLetterAction::NotFound
        })
    }

    pub async fn mark_dead_letter_replayed(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE dead_letters SET state = 'replayed' WHERE id = ? AND state = 'open'")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self
            .query_dead_letters(Some(id), 1, true)
            .await?
            .into_iter()
            .next())
    }
}
