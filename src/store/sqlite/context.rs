//! The reply pipeline's view of one inbound message: the message, its contact, and every gate
//! input, read in one query (by the worker before it asks the responder, and again inside the
//! claim's transaction). Reading fails closed: see [`context_from`].

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::domain::gates::{ConversationMode, GateSnapshot, GroupPolicy, LedgerState};
use crate::domain::{Outcome, Provider};
use crate::store::{ReplyContext, StoreError, StoredMessage};

pub(super) const CONTEXT_SQL: &str = "
    SELECT m.id, m.provider, m.message_id, m.phone_number_id, m.wa_id, m.group_id, m.kind, m.body, m.payload_ts, m.received_at_ms,
           m.outcome, m.outcome_reason, c.display_name,
           coalesce(c.opted_out, 0) AS opted_out,
           coalesce(c.last_inbound_ts, m.payload_ts) AS last_inbound_ts,
           coalesce(v.mode, 'bot') AS mode, l.id AS ledger_id, l.state AS ledger_state, c.consent_ts
    FROM inbound_messages m
    LEFT JOIN contacts c
        ON c.provider = m.provider AND c.phone_number_id = m.phone_number_id AND c.wa_id = m.wa_id
    LEFT JOIN conversations v
        ON v.provider = m.provider AND v.phone_number_id = m.phone_number_id AND v.wa_id = m.wa_id
    LEFT JOIN ledger l ON l.inbound_id = m.id
    WHERE m.id = ?";

/// One row of `CONTEXT_SQL`. These are the inputs that decide whether the bot may speak, so
/// nothing unreadable falls back to a default: an unknown mode, ledger state, outcome or
/// provider (or a value of the wrong type) is [`StoreError::Corrupt`], the job is retried later
/// and nothing is sent meanwhile.
pub(super) fn context_from(
    row: &SqliteRow,
    groups: &GroupPolicy,
) -> Result<ReplyContext, StoreError> {
    let inbound_id: i64 = row.try_get("id")?;
    let unreadable = |column: &str, raw: &str| {
        StoreError::Corrupt(format!(
            "inbound message {inbound_id}: unreadable {column} `{raw}`; correct the row \
             (the job is retried, nothing is sent until then)"
        ))
    };
    let provider: String = row.try_get("provider")?;
    let provider = Provider::parse(&provider).ok_or_else(|| unreadable("provider", &provider))?;
    let phone_number_id: String = row.try_get("phone_number_id")?;
    let group: Option<String> = row.try_get("group_id")?;
    let unanswered_group = groups.unanswered(provider, &phone_number_id, group.is_some());
    let mode: String = row.try_get("mode")?;
    let ledger: Option<String> = row.try_get("ledger_state")?;
    let outcome: Option<String> = row.try_get("outcome")?;
    let reason: Option<String> = row.try_get("outcome_reason")?;
    let outcome = match outcome.as_deref() {
        None => None,
        Some(kind) => Some(
            Outcome::from_columns(Some(kind), reason.as_deref())
                .ok_or_else(|| unreadable("outcome", &format!("{kind}:{reason:?}")))?,
        ),
    };
    Ok(ReplyContext {
        message: StoredMessage {
            inbound_id,
            received_at_ms: row.try_get("received_at_ms")?,
            provider,
            message_id: row.try_get("message_id")?,
            phone_number_id,
            group_id: group,
            wa_id: row.try_get("wa_id")?,
            kind: row.try_get("kind")?,
            text: row.try_get("body")?,
            timestamp: row.try_get("payload_ts")?,
        },
        contact_name: row.try_get("display_name")?,
        snapshot: GateSnapshot {
            opted_out: match row.try_get::<i64, _>("opted_out")? {
                0 => false,
                1 => true,
                other => return Err(unreadable("opted_out", &other.to_string())),
            },
            mode: ConversationMode::parse(&mode).ok_or_else(|| unreadable("mode", &mode))?,
            ledger: match ledger.as_deref() {
                None => None,
                Some(state) => Some(
                    LedgerState::parse(state).ok_or_else(|| unreadable("ledger state", state))?,
                ),
            },
            last_inbound_ts: row.try_get("last_inbound_ts")?,
            unanswered_group,
        },
        outcome,
        ledger_id: row.try_get("ledger_id")?,
        consent_ts: row.try_get("consent_ts")?,
    })
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, SqliteConnection};

    use super::*;

    /// A row shaped like `CONTEXT_SQL`'s, with the gate inputs given.
    async fn row(mode: &str, ledger: Option<&str>, outcome: Option<&str>) -> SqliteRow {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query(
            "SELECT 7 AS id, 'cloud' AS provider, 'wamid.1' AS message_id, '111' AS phone_number_id,
                    '346' AS wa_id, NULL AS group_id, 'text' AS kind, 'hi' AS body, 1700000000 AS payload_ts,
                    1700000000000 AS received_at_ms, ?3 AS outcome, 'no_reply' AS outcome_reason,
                    NULL AS display_name, 0 AS opted_out, 1700000000 AS last_inbound_ts,
                    ?1 AS mode, NULL AS ledger_id, ?2 AS ledger_state, NULL AS consent_ts",
        )
        .bind(mode)
        .bind(ledger)
        .bind(outcome)
        .fetch_one(&mut conn)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn readable_gate_inputs_are_read() {
        let context = context_from(
            &row("operator", Some("sent"), None).await,
            &GroupPolicy::default(),
        )
        .unwrap();
        assert_eq!(context.snapshot.mode, ConversationMode::Operator);
        assert_eq!(context.snapshot.ledger, Some(LedgerState::Sent));
        assert_eq!(context.outcome, None);
    }

    #[tokio::test]
    async fn an_unreadable_gate_input_is_an_error_never_a_default() {
        for (mode, ledger, outcome) in [
            ("robot", None, None),
            ("", None, None),
            ("bot", Some("maybe_sent"), None),
            ("bot", None, Some("replied_twice")),
        ] {
            let error = context_from(&row(mode, ledger, outcome).await, &GroupPolicy::default())
                .expect_err("unreadable input refused");
            assert!(error.is_corrupt(), "{error}");
            assert!(error.to_string().contains("inbound message 7"), "{error}");
        }
    }
}
