//! Sends whose fate is unknown, settled by evidence: the status webhooks that tie back to the
//! ledger (in the ingest transaction), and the quiet-period pass that settles what no status
//! confirmed (from the worker's maintenance).
//!
//! Invariants:
//! - a status for the row's current attempt moves the row forward only and settles a claimed
//!   or ambiguous send as `replied` (recording `resolved_by = status` for an ambiguous one);
//! - a status for an attempt the row gave up on (an earlier attempt, or the current one of a
//!   row that went back to `unsent`) proves that attempt went out: before the row is claimed
//!   again it settles the row (no resend); after, it is a double send — counted on the row,
//!   reported and logged once per outbound message, and never moves the row's state back;
//! - a gateway carries no callback data, and its send answer names the message by an id its
//!   statuses do not carry: a gateway status that matches no row by outbound id is taken as
//!   the send in flight or of unknown fate to the same recipient of the same session (oldest
//!   first) — so a send that timed out but went out is settled, never sent twice;
//! - an ambiguous send is sent once more only when a send of the same number claimed after it
//!   was confirmed by a status while none came for it; with no such evidence it is the dead
//!   letter `ambiguous_send`, as it always is under the `operator` setting.

use sqlx::Row;

use super::replies::{begin, insert_message_dead_letter, set_outcome};
use super::{SqliteStore, Tx};
use crate::domain::{
    AmbiguousResolution, LedgerState, Outcome, Provider, ResolvedBy, SendRef, StatusUpdate,
};
use crate::store::{AmbiguousSettlement, StoreError};

/// What one new status webhook meant for the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StatusMatch {
    /// It is about one of our sends (by callback data or outbound id): no human takeover.
    pub ours: bool,
    /// It settled an ambiguous send as `replied`.
    pub confirmed_ambiguous: bool,
    /// It showed an attempt went out although the row was sent again.
    pub double_send: bool,
}

/// The ledger row a status names, as the decision needs it.
struct Target {
    id: i64,
    inbound_id: i64,
    state: LedgerState,
    attempts: u32,
}

/// Ties one new status webhook to the ledger (see the module invariants).
pub(super) async fn match_status(
    tx: &mut Tx<'_>,
    status: &StatusUpdate,
    now_ms: i64,
) -> Result<StatusMatch, StoreError> {
    let send = status.callback_data.as_deref().and_then(SendRef::parse);
    let Some(rank) = status.status.rank() else {
        // A status that never moves a row (an unknown kind) is still never a human's reply.
        return Ok(StatusMatch {
            ours: true,
            ..StatusMatch::default()
        });
    };
    let Some(row) = target(tx, status, send).await? else {
        // Our callback data marks the send as ours even when its row is gone (pruned).
        return Ok(StatusMatch {
            ours: send.is_some(),
            ..StatusMatch::default()
        });
    };
    let attempt = send.and_then(|s| s.attempt);
    let gave_up_on = row.state == LedgerState::Unsent || attempt.is_some_and(|a| a < row.attempts);
    let mut found = StatusMatch {
        ours: true,
        ..StatusMatch::default()
    };
    if gave_up_on && row.state != LedgerState::Unsent {
        // The row was sent again (or is being sent): this attempt went out too.
        found.double_send = first_sight(tx, status).await?;
        if found.double_send {
            sqlx::query("UPDATE ledger SET double_sends = double_sends + 1 WHERE id = ?")
                .bind(row.id)
                .execute(&mut **tx)
                .await?;
            tracing::error!(
                ledger.id = row.id,
                attempt,
                current_attempt = row.attempts,
                outbound.id = status.message_id.as_str(),
                "double send: an earlier attempt of a resent reply went out too"
            );
        }
        if !matches!(row.state, LedgerState::Claimed | LedgerState::Ambiguous) {
            // The resend went out and its own statuses move the row.
            return Ok(found);
        }
    }
    found.confirmed_ambiguous = row.state == LedgerState::Ambiguous;
    sqlx::query(
        "UPDATE ledger SET
             state = CASE WHEN ?1 > status_rank THEN ?2 ELSE state END,
             status_rank = max(status_rank, ?1),
             outbound_id = coalesce(outbound_id, ?3),
             error_code = CASE WHEN ?1 > status_rank AND ?2 = 'failed' THEN ?4 ELSE error_code END,
             confirmed_at_ms = coalesce(confirmed_at_ms, ?5),
             resolved_by = CASE WHEN state = 'ambiguous' OR (?7 AND resolved_by = 'evidence')
                                THEN 'status' ELSE resolved_by END,
             updated_at_ms = ?5
         WHERE id = ?6",
    )
    .bind(i64::from(rank.min(9)))
    .bind(status.status.as_str())
    .bind(status.message_id.as_str())
    .bind(status.error_code.map(|c| format!("cloud_api_{c}")))
    .bind(now_ms)
    .bind(row.id)
    .bind(gave_up_on)
    .execute(&mut **tx)
    .await?;
    set_outcome(tx, row.inbound_id, &Outcome::Replied, now_ms).await?;
    sqlx::query("DELETE FROM jobs WHERE inbound_id = ?")
        .bind(row.inbound_id)
        .execute(&mut **tx)
        .await?;
    Ok(found)
}

/// The row named by our callback data, else the row whose send got this outbound id.
async fn target(
    tx: &mut Tx<'_>,
    status: &StatusUpdate,
    send: Option<SendRef>,
) -> Result<Option<Target>, StoreError> {
    // Two shapes of the same statement so each uses its index (an OR would scan the ledger).
    let sql = if send.is_some() {
        "SELECT id, inbound_id, state, attempts FROM ledger WHERE id = ? AND provider = ?"
    } else {
        "SELECT id, inbound_id, state, attempts FROM ledger WHERE outbound_id = ? AND provider = ?"
    };
    let query = sqlx::query(sql);
    let query = match send {
        Some(send) => query.bind(send.ledger_id),
        None => query.bind(status.message_id.as_str()),
    }
    .bind(status.provider.as_str());
    let row = match query.fetch_optional(&mut **tx).await? {
        Some(row) => row,
        None => match gateway_send_in_doubt(tx, status, send).await? {
            Some(row) => row,
            None => return Ok(None),
        },
    };
    let state: String = row.try_get("state")?;
    let state = LedgerState::parse(&state).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "ledger row {} has the unknown state {state:?}",
            row.get::<i64, _>("id")
        ))
    })?;
    Ok(Some(Target {
        id: row.try_get("id")?,
        inbound_id: row.try_get("inbound_id")?,
        state,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
    }))
}

/// For a gateway status no outbound id matched: the oldest send of its session to its recipient
/// whose outbound id is not known yet (claimed and in flight, or ambiguous).
async fn gateway_send_in_doubt(
    tx: &mut Tx<'_>,
    status: &StatusUpdate,
    send: Option<SendRef>,
) -> Result<Option<sqlx::sqlite::SqliteRow>, StoreError> {
    let recipient = match (status.provider, send, status.recipient_id.as_deref()) {
        (Provider::Wasender, None, Some(recipient)) => recipient.trim_start_matches('+'),
        _ => return Ok(None),
    };
    Ok(sqlx::query(
        "SELECT l.id, l.inbound_id, l.state, l.attempts FROM ledger l
         INDEXED BY ledger_by_conversation_claimed
         WHERE l.phone_number_id = ?1 AND l.wa_id = ?2 AND l.provider = 'wasender'
           AND l.state IN ('claimed', 'ambiguous') AND l.outbound_id IS NULL
         ORDER BY l.claimed_at_ms, l.id LIMIT 1",
    )
    .bind(status.phone_number_id.as_str())
    .bind(recipient)
    .fetch_optional(&mut **tx)
    .await?)
}

/// Is this the first status stored for its outbound message (it was inserted just before)?
async fn first_sight(tx: &mut Tx<'_>, status: &StatusUpdate) -> Result<bool, StoreError> {
    let seen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM statuses WHERE provider = ? AND message_id = ?")
            .bind(status.provider.as_str())
            .bind(status.message_id.as_str())
            .fetch_one(&mut **tx)
            .await?;
    Ok(seen <= 1)
}

impl SqliteStore {
    /// Settles every ambiguous send quiet for `quiet_ms`: sent once more on evidence that it
    /// did not go out (`evidence` setting only), else the dead letter `ambiguous_send`.
    pub async fn settle_ambiguous(
        &self,
        quiet_ms: i64,
        now_ms: i64,
        resolution: AmbiguousResolution,
    ) -> Result<AmbiguousSettlement, StoreError> {
        let mut tx = begin(&self.writer).await?;
        let stale = sqlx::query(
            "SELECT l.id, l.inbound_id, l.attempts,
                    EXISTS (SELECT 1 FROM ledger e INDEXED BY ledger_confirmed_by_number
                            WHERE e.phone_number_id = l.phone_number_id
                              AND e.provider = l.provider
                              AND e.claimed_at_ms > l.claimed_at_ms
                              AND e.confirmed_at_ms IS NOT NULL) AS later_confirmed
             FROM ledger l JOIN inbound_messages m ON m.id = l.inbound_id
             WHERE l.state = 'ambiguous' AND l.updated_at_ms <= ? AND m.outcome IS NULL",
        )
        .bind(now_ms.saturating_sub(quiet_ms))
        .fetch_all(&mut *tx)
        .await?;
        let mut settled = AmbiguousSettlement::default();
        for row in &stale {
            let ledger_id: i64 = row.try_get("id")?;
            let inbound_id: i64 = row.try_get("inbound_id")?;
            let attempts: i64 = row.try_get("attempts")?;
            let evidence = row.try_get::<bool, _>("later_confirmed")?
                && resolution == AmbiguousResolution::Evidence;
            if evidence {
                send_again(&mut tx, ledger_id, inbound_id, attempts, now_ms).await?;
                settled.resent += 1;
            } else {
                let detail = match resolution {
                    AmbiguousResolution::Evidence => {
                        "the send's fate is unknown: no status webhook confirmed it and no later send of the number was confirmed either; replay to send again"
                    }
                    AmbiguousResolution::Operator => {
                        "the send's fate is unknown and no status webhook confirmed it (ambiguous_resolution = operator); replay to send again"
                    }
                };
                let dead = (ledger_id, inbound_id, attempts);
                leave_to_an_operator(&mut tx, dead, detail, now_ms).await?;
                settled.dead_lettered += 1;
            }
        }
        tx.commit().await?;
        Ok(settled)
    }
}

/// It did not go out: the row may be claimed once more (a new attempt, gated and paced like
/// any), and the message gets its job back — still the head of its conversation's queue.
async fn send_again(
    tx: &mut Tx<'_>,
    ledger_id: i64,
    inbound_id: i64,
    attempts: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE ledger SET state = 'unsent', resolved_by = ?, updated_at_ms = ?
         WHERE id = ? AND state = 'ambiguous'",
    )
    .bind(ResolvedBy::Evidence.as_str())
    .bind(now_ms)
    .bind(ledger_id)
    .execute(&mut **tx)
    .await?;
    // Counted as a retry (attempts > 0): a later message of the conversation waits behind it
    // even while it is not yet due.
    sqlx::query(
        "INSERT INTO jobs (inbound_id, provider, phone_number_id, wa_id, payload_ts, attempts, run_at_ms, created_at_ms)
         SELECT id, provider, phone_number_id, wa_id, payload_ts, max(?1, 1), ?2, ?2 FROM inbound_messages WHERE id = ?3
         ON CONFLICT (inbound_id) DO NOTHING",
    )
    .bind(attempts)
    .bind(now_ms)
    .bind(inbound_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// No evidence either way: never resent blindly; an operator can replay the dead letter.
async fn leave_to_an_operator(
    tx: &mut Tx<'_>,
    (ledger_id, inbound_id, attempts): (i64, i64, i64),
    detail: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE ledger SET resolved_by = ? WHERE id = ?")
        .bind(ResolvedBy::Operator.as_str())
        .bind(ledger_id)
        .execute(&mut **tx)
        .await?;
    set_outcome(
        tx,
        inbound_id,
        &Outcome::Dead("ambiguous_send".into()),
        now_ms,
    )
    .await?;
    insert_message_dead_letter(
        tx,
        inbound_id,
        "ambiguous_send",
        detail,
        u32::try_from(attempts).unwrap_or(0),
        now_ms,
    )
    .await
}
