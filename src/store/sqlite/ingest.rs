//! The ingest write: one transaction per group-commit batch, one statement per table.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};

use super::{Tx, corrupt, high_water_mark};
use crate::domain::keywords::KeywordAction;
use crate::domain::{DeliveryStatus, InboundMessage, Provider, StatusUpdate};
use crate::store::{IngestReport, IngestUnit, StoreError};

/// Set-based: each table gets one statement per batch whatever the batch size, because per-row
/// round trips to SQLite's worker thread and random index pages, not fsync, are what limit a
/// durable ingest.
pub(super) async fn ingest_batch(
    writer: &SqlitePool,
    units: &[IngestUnit],
    now_ms: i64,
    options: &IngestOptions,
) -> Result<Vec<IngestReport>, StoreError> {
    let mut reports = vec![IngestReport::default(); units.len()];
    // IMMEDIATE takes the write lock up front: no other writer, in this process or another,
    // can commit between the high-water marks read below and our inserts.
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;

    let messages: Vec<(usize, &InboundMessage)> = units
        .iter()
        .enumerate()
        .flat_map(|(i, u)| u.notification.messages.iter().map(move |m| (i, m)))
        .collect();
    // Rows inserted by this transaction are exactly those above the previous high-water
    // mark: the transaction holds the write lock. Asking for them as one JSON row avoids
    // streaming a row per message back from SQLite's worker thread.
    let before = high_water_mark(&mut tx, "SELECT max(id) FROM inbound_messages").await?;
    insert_inbound(&mut tx, &messages, now_ms).await?;
    let new_keys: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(provider, message_id)) FROM inbound_messages WHERE id > ?",
    )
    .bind(before)
    .fetch_one(&mut *tx)
    .await?;
    let mut new_keys: HashSet<(String, String)> =
        serde_json::from_str(&new_keys).map_err(corrupt)?;
    let mut new_messages = Vec::with_capacity(new_keys.len());
    for &(unit, m) in &messages {
        // The first delivery of a message in the batch is the new one; the rest are duplicates.
        if new_keys.remove(&(m.provider.as_str().to_owned(), m.id.as_str().to_owned())) {
            reports[unit].new_messages += 1;
            new_messages.push(m);
        } else {
            // Searchable ("ignored duplicates"), without the sender's number or the body.
            tracing::info!(message.id = %m.id, provider = %m.provider, "duplicate delivery ignored");
            reports[unit].duplicate_messages += 1;
        }
    }
    if !new_messages.is_empty() {
        // One reply job per new inbound message, in the same transaction as the message.
        sqlx::query(
            "INSERT INTO jobs (inbound_id, provider, phone_number_id, wa_id, payload_ts, run_at_ms, created_at_ms)
             SELECT id, provider, phone_number_id, wa_id, payload_ts, ?1, ?1 FROM inbound_messages WHERE id > ?2 ORDER BY id",
        )
        .bind(now_ms)
        .bind(before)
        .execute(&mut *tx)
        .await?;
        // The window anchor: newest payload timestamp wins, whatever the arrival order.
        sqlx::query(
            "INSERT INTO contacts (provider, phone_number_id, wa_id, last_inbound_ts, updated_at_ms)
             SELECT provider, phone_number_id, wa_id, max(payload_ts), ?1 FROM inbound_messages WHERE id > ?2
             GROUP BY provider, phone_number_id, wa_id
             ON CONFLICT (provider, phone_number_id, wa_id) DO UPDATE SET
                 last_inbound_ts = max(coalesce(contacts.last_inbound_ts, 0), excluded.last_inbound_ts),
                 updated_at_ms = excluded.updated_at_ms",
        )
        .bind(now_ms)
        .bind(before)
        .execute(&mut *tx)
        .await?;
    }
    update_display_names(&mut tx, units, now_ms).await?;
    apply_keywords(&mut tx, units, &new_messages, now_ms).await?;
    super::sessions::apply_session_events(&mut tx, units, now_ms, options.session_probe_ms).await?;

    let statuses: Vec<(usize, &StatusUpdate)> = units
        .iter()
        .enumerate()
        .flat_map(|(i, u)| u.notification.statuses.iter().map(move |s| (i, s)))
        .collect();
    let mut new_statuses = insert_statuses(&mut tx, &statuses, now_ms).await?;
    for &(unit, s) in &statuses {
        if new_statuses.remove(&(
            s.provider.as_str().to_owned(),
            s.message_id.as_str().to_owned(),
            s.status.as_str().to_owned(),
        )) {
            reports[unit].new_statuses += 1;
            let found = super::ambiguous::match_status(&mut tx, s, now_ms).await?;
            reports[unit].ambiguous_confirmed += u64::from(found.confirmed_ambiguous);
            reports[unit].double_sends += u64::from(found.double_send);
            // Only Cloud API statuses are tied to our sends for certain (callback data); a
            // gateway status we could not match may still be one of ours.
            if !found.ours && options.human_reply_takeover && s.provider == Provider::Cloud {
                take_over_for_a_human_reply(&mut tx, s, now_ms).await?;
            }
        } else {
            reports[unit].duplicate_statuses += 1;
        }
    }

    // Rare rows (errors, dead letters) go one statement each.
    use super::rare_rows::{insert_dead_letter, insert_platform_errors};
    for (unit, report) in units.iter().zip(reports.iter_mut()) {
        insert_platform_errors(&mut tx, unit, now_ms).await?;
        for item in &unit.notification.rejected {
            report.dead_letters += insert_dead_letter(
                &mut tx,
                &unit.origin,
                "malformed_item",
                &item.error,
                item.raw.as_bytes(),
                now_ms,
            )
            .await?;
        }
        if let Some(payload) = &unit.undecodable {
            report.dead_letters += insert_dead_letter(
                &mut tx,
                &unit.origin,
                payload.error.code(),
                &payload.error.to_string(),
                &payload.raw,
                now_ms,
            )
            .await?;
        }
    }

    let duplicate_messages: u64 = reports.iter().map(|r| r.duplicate_messages).sum();
    let duplicate_statuses: u64 = reports.iter().map(|r| r.duplicate_statuses).sum();
    for (name, n) in [
        ("duplicate_messages", duplicate_messages),
        ("duplicate_statuses", duplicate_statuses),
    ] {
        if n > 0 {
            sqlx::query("UPDATE counters SET value = value + ? WHERE name = ?")
                .bind(n as i64)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(reports)
}

/// The store settings the ingest transaction applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct IngestOptions {
    pub human_reply_takeover: bool,
    /// When a gateway session that reported itself gone is first probed.
    pub session_probe_ms: i64,
}

pub(super) fn json_rows<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("plain rows serialise")
}

/// Rows per multi-row INSERT: 10 parameters each, well under SQLite's 32,766-parameter limit.
const INBOUND_ROWS_PER_STATEMENT: usize = 1000;

/// Inserts the messages not seen before (a seen one is skipped by the unique key).
/// Plain multi-row VALUES: the raw message text is bound as is, not re-encoded.
async fn insert_inbound(
    tx: &mut Tx<'_>,
    messages: &[(usize, &InboundMessage)],
    now_ms: i64,
) -> Result<(), StoreError> {
    for chunk in messages.chunks(INBOUND_ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO inbound_messages
                 (provider, message_id, phone_number_id, wa_id, group_id, kind, body, payload_ts, received_at_ms, raw) ",
        );
        insert.push_values(chunk, |mut row, (_, m)| {
            row.push_bind(m.provider.as_str())
                .push_bind(m.id.as_str())
                .push_bind(m.phone_number_id.as_str())
                .push_bind(m.from.as_str())
                .push_bind(m.group.as_ref().map(|g| g.as_str()))
                .push_bind(m.kind.as_str())
                .push_bind(m.text.as_deref())
                .push_bind(m.timestamp)
                .push_bind(now_ms)
                .push_bind(m.raw.as_str());
        });
        insert.push(" ON CONFLICT (message_id, provider) DO NOTHING");
        insert.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// STOP / START / escalation keywords of new messages, oldest first. A re-delivered keyword
/// message is a duplicate and changes nothing; an older consent change never overrides a newer one.
async fn apply_keywords(
    tx: &mut Tx<'_>,
    units: &[IngestUnit],
    new_messages: &[&InboundMessage],
    now_ms: i64,
) -> Result<(), StoreError> {
    let mut hits: Vec<(&InboundMessage, KeywordAction)> = Vec::new();
    for hit in units.iter().flat_map(|u| &u.keyword_actions) {
        if let Some(m) = new_messages
            .iter()
            .find(|m| m.provider == hit.provider && m.id.as_str() == hit.message_id)
        {
            hits.push((m, hit.action));
        }
    }
    hits.sort_by_key(|(m, _)| m.timestamp);
    for (m, action) in hits {
        let (provider, phone, wa) = (
            m.provider.as_str(),
            m.phone_number_id.as_str(),
            m.from.as_str(),
        );
        match action {
            KeywordAction::OptOut | KeywordAction::OptIn => {
                sqlx::query(
                    "UPDATE contacts SET opted_out = ?, consent_ts = ?, updated_at_ms = ?
                     WHERE provider = ? AND phone_number_id = ? AND wa_id = ? AND coalesce(consent_ts, 0) <= ? AND opted_out != ?",
                )
                .bind(action == KeywordAction::OptOut)
                .bind(m.timestamp)
                .bind(now_ms)
                .bind(provider)
                .bind(phone)
                .bind(wa)
                .bind(m.timestamp)
                .bind(action == KeywordAction::OptOut)
                .execute(&mut **tx)
                .await?;
            }
            KeywordAction::Escalate => {
                sqlx::query(
                    "INSERT INTO conversations (phone_number_id, wa_id, mode, escalation_reason, updated_at_ms, provider)
                     VALUES (?1, ?2, 'escalated', ?3, ?4, ?5)
                     ON CONFLICT (provider, phone_number_id, wa_id) DO UPDATE SET mode = 'escalated',
                         escalation_reason = excluded.escalation_reason, updated_at_ms = excluded.updated_at_ms
                     WHERE conversations.mode = 'bot'",
                )
                .bind(phone)
                .bind(wa)
                .bind(format!("asked for a person: {}", m.text.as_deref().unwrap_or("")))
                .bind(now_ms)
                .bind(provider)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// Display names as the payloads give them (the last one in the batch wins).
async fn update_display_names(
    tx: &mut Tx<'_>,
    units: &[IngestUnit],
    now_ms: i64,
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        p: &'a str,
        n: &'a str,
        w: &'a str,
        d: &'a str,
    }
    let names: BTreeMap<(&str, &str, &str), &str> = units
        .iter()
        .flat_map(|u| &u.notification.contacts)
        .filter_map(|c| {
            Some((
                (
                    c.provider.as_str(),
                    c.phone_number_id.as_str(),
                    c.wa_id.as_str(),
                ),
                c.name.as_deref()?,
            ))
        })
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let rows: Vec<Row> = names
        .into_iter()
        .map(|((p, n, w), d)| Row { p, n, w, d })
        .collect();
    sqlx::query(
        "INSERT INTO contacts (provider, phone_number_id, wa_id, display_name, updated_at_ms)
         SELECT j.value ->> 'p', j.value ->> 'n', j.value ->> 'w', j.value ->> 'd', ?1 FROM json_each(?2) AS j WHERE true
         ON CONFLICT (provider, phone_number_id, wa_id) DO UPDATE SET display_name = excluded.display_name
         WHERE contacts.display_name IS NOT excluded.display_name",
    )
    .bind(now_ms)
    .bind(json_rows(&rows))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts statuses not seen before; returns the new (provider, message id, status) triples.
async fn insert_statuses(
    tx: &mut Tx<'_>,
    statuses: &[(usize, &StatusUpdate)],
    now_ms: i64,
) -> Result<HashSet<(String, String, String)>, StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        m: &'a str,
        s: &'a str,
        p: &'a str,
        n: &'a str,
        r: Option<&'a str>,
        t: i64,
        c: Option<&'a str>,
        e: Option<i64>,
        x: &'a str,
    }
    if statuses.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<Row> = statuses
        .iter()
        .map(|(_, s)| Row {
            m: s.message_id.as_str(),
            s: s.status.as_str(),
            p: s.provider.as_str(),
            n: s.phone_number_id.as_str(),
            r: s.recipient_id.as_deref(),
            t: s.timestamp,
            c: s.callback_data.as_deref(),
            e: s.error_code,
            x: &s.raw,
        })
        .collect();
    let before = high_water_mark(tx, "SELECT max(rowid) FROM statuses").await?;
    sqlx::query(
        "INSERT INTO statuses (message_id, status, provider, phone_number_id, recipient_id, payload_ts,
                               callback_data, error_code, raw, received_at_ms)
         SELECT j.value ->> 'm', j.value ->> 's', j.value ->> 'p', j.value ->> 'n', j.value ->> 'r',
                j.value ->> 't', j.value ->> 'c', j.value ->> 'e', j.value ->> 'x', ?1
         FROM json_each(?2) AS j WHERE true
         ON CONFLICT (provider, message_id, status) DO NOTHING",
    )
    .bind(now_ms)
    .bind(json_rows(&rows))
    .execute(&mut **tx)
    .await?;
    let new_keys: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(provider, message_id, status)) FROM statuses WHERE rowid > ?",
    )
    .bind(before)
    .fetch_one(&mut **tx)
    .await?;
    serde_json::from_str(&new_keys).map_err(corrupt)
}

/// A status for an outbound message that is not in the ledger and carries none of our callback
/// data was sent by someone else — a human answering from another tool: the conversation is
/// theirs now, until an operator releases it (each further human message keeps it theirs, and
/// resets the idle time after which it returns to the bot).
async fn take_over_for_a_human_reply(
    tx: &mut Tx<'_>,
    status: &StatusUpdate,
    now_ms: i64,
) -> Result<(), StoreError> {
    let first_sight = matches!(
        status.status,
        DeliveryStatus::Sent | DeliveryStatus::Delivered
    );
    // The caller has already ruled out our own sends (by ledger row or callback data).
    let Some(recipient) = status.recipient_id.as_deref().filter(|_| first_sight) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO conversations (phone_number_id, wa_id, mode, taken_by, updated_at_ms, provider)
         VALUES (?1, ?2, 'operator', 'another tool', ?3, ?4)
         ON CONFLICT (provider, phone_number_id, wa_id) DO UPDATE SET mode = 'operator',
             taken_by = coalesce(conversations.taken_by, 'another tool'), updated_at_ms = excluded.updated_at_ms
         WHERE conversations.mode IN ('bot', 'operator')",
    )
    .bind(status.phone_number_id.as_str())
    .bind(recipient.trim_start_matches('+'))
    .bind(now_ms)
    .bind(status.provider.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
