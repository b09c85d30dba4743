//! SQLite backend: one file in WAL mode with `synchronous=FULL`, so a commit is durable before the
//! webhook is answered. Writes come from a single group-commit writer; reads share the pool.

use std::path::Path;
use std::str::FromStr;

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use super::{
    ContactRecord, DeadLetter, IngestReport, IngestUnit, MessageRecord, StoreError, StoreOptions,
    Summary,
};
use crate::domain::{InboundMessage, Outcome, Provider, StatusUpdate};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite allows one writer at a time, so writes get a pool of exactly one connection: its page
/// cache stays warm across transactions instead of being invalidated by writes made through
/// another connection. Reads share a separate pool and run concurrently (WAL).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true)
            // Statement journals of multi-row statements stay in memory, off the disk.
            .pragma("temp_store", "memory");
        if let Some(parent) = Path::new(connect.get_filename()).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let acquire_timeout = options.busy_timeout.max(std::time::Duration::from_secs(1));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(connect.clone().pragma("cache_size", "-32768"))
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self { writer, pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Set-based: each table gets one statement per batch whatever the batch size (rows travel
    /// as one JSON array through `json_each`), because per-row round trips to SQLite's worker
    /// thread, not fsync, are what limit a durable ingest.
    pub async fn ingest_batch(
        &self,
        units: &[IngestUnit],
        now_ms: i64,
    ) -> Result<Vec<IngestReport>, StoreError> {
        let mut reports = vec![IngestReport::default(); units.len()];
        // IMMEDIATE takes the write lock up front: no other writer, in this process or another,
        // can commit between the high-water marks read below and our inserts.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;

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
                reports[unit].duplicate_messages += 1;
            }
        }
        if !new_messages.is_empty() {
            // One reply job per new inbound message, in the same transaction as the message.
            sqlx::query(
                "INSERT INTO jobs (inbound_id, phone_number_id, wa_id, run_at_ms, created_at_ms)
                 SELECT id, phone_number_id, wa_id, ?1, ?1 FROM inbound_messages WHERE id > ?2 ORDER BY id",
            )
            .bind(now_ms)
            .bind(before)
            .execute(&mut *tx)
            .await?;
            // The window anchor: newest payload timestamp wins, whatever the arrival order.
            sqlx::query(
                "INSERT INTO contacts (phone_number_id, wa_id, last_inbound_ts, updated_at_ms)
                 SELECT phone_number_id, wa_id, max(payload_ts), ?1 FROM inbound_messages WHERE id > ?2
                 GROUP BY phone_number_id, wa_id
                 ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET
                     last_inbound_ts = max(coalesce(contacts.last_inbound_ts, 0), excluded.last_inbound_ts),
                     updated_at_ms = excluded.updated_at_ms",
            )
            .bind(now_ms)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        }
        update_display_names(&mut tx, units, now_ms).await?;

        let statuses: Vec<(usize, &StatusUpdate)> = units
            .iter()
            .enumerate()
            .flat_map(|(i, u)| u.notification.statuses.iter().map(move |s| (i, s)))
            .collect();
        let mut new_statuses = insert_statuses(&mut tx, &statuses, now_ms).await?;
        for &(unit, s) in &statuses {
            if new_statuses.remove(&(
                s.message_id.as_str().to_owned(),
                s.status.as_str().to_owned(),
            )) {
                reports[unit].new_statuses += 1;
            } else {
                reports[unit].duplicate_statuses += 1;
            }
        }

        // Rare rows (errors, dead letters) go one statement each.
        for (unit, report) in units.iter().zip(reports.iter_mut()) {
            insert_platform_errors(&mut tx, unit, now_ms).await?;
            for item in &unit.notification.rejected {
                report.dead_letters += insert_dead_letter(
                    &mut tx,
                    unit.provider,
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
                    unit.provider,
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

    pub async fn message(&self, message_id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT provider, message_id, phone_number_id, wa_id, kind, payload_ts, outcome, outcome_reason
             FROM inbound_messages WHERE message_id = ? ORDER BY id LIMIT 1",
        )
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(MessageRecord {
            provider: Provider::parse(row.get("provider")).unwrap_or(Provider::Cloud),
            message_id: row.get("message_id"),
            phone_number_id: row.get("phone_number_id"),
            wa_id: row.get("wa_id"),
            kind: row.get("kind"),
            timestamp: row.get("payload_ts"),
            outcome: Outcome::from_columns(row.get("outcome"), row.get("outcome_reason")),
        }))
    }

    pub async fn contact(
        &self,
        phone_number_id: &str,
        wa_id: &str,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT display_name, last_inbound_ts, opted_out FROM contacts WHERE phone_number_id = ? AND wa_id = ?",
        )
        .bind(phone_number_id)
        .bind(wa_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| ContactRecord {
            display_name: row.get("display_name"),
            last_inbound_ts: row.get("last_inbound_ts"),
            opted_out: row.get::<i64, _>("opted_out") != 0,
        }))
    }

    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let mut s = Summary {
            inbound: count(&self.pool, "SELECT count(*) FROM inbound_messages").await?,
            duplicates: count(
                &self.pool,
                "SELECT value FROM counters WHERE name = 'duplicate_messages'",
            )
            .await?,
            pending: count(
                &self.pool,
                "SELECT count(*) FROM inbound_messages WHERE outcome IS NULL",
            )
            .await?,
            dead_letters_open: count(
                &self.pool,
                "SELECT count(*) FROM dead_letters WHERE state = 'open'",
            )
            .await?,
            jobs_available: self.queue_depth().await?,
            jobs_total: count(&self.pool, "SELECT count(*) FROM jobs").await?,
            ..Summary::default()
        };
        let rows = sqlx::query(
            "SELECT outcome, outcome_reason, count(*) AS n FROM inbound_messages
             WHERE outcome IS NOT NULL GROUP BY outcome, outcome_reason ORDER BY outcome, outcome_reason",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let n = row.get::<i64, _>("n") as u64;
            match row.get::<&str, _>("outcome") {
                "replied" => s.replied += n,
                "dead" => s.dead += n,
                "silent" => s.silent.push((
                    row.get::<Option<String>, _>("outcome_reason")
                        .unwrap_or_default(),
                    n,
                )),
                _ => {}
            }
        }
        Ok(s)
    }

    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.kind, d.provider, m.message_id, d.error, d.detail, d.state, d.attempts,
                    d.created_at_ms, d.raw
             FROM dead_letters d LEFT JOIN inbound_messages m ON m.id = d.inbound_id
             WHERE d.state = 'open' ORDER BY d.id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| DeadLetter {
                id: row.get("id"),
                kind: row.get("kind"),
                provider: row.get("provider"),
                message_id: row.get("message_id"),
                error: row.get("error"),
                detail: row.get("detail"),
                state: row.get("state"),
                attempts: row.get("attempts"),
                created_at_ms: row.get("created_at_ms"),
                raw: row
                    .get::<Option<Vec<u8>>, _>("raw")
                    .map(|raw| String::from_utf8_lossy(&raw).into_owned()),
            })
            .collect())
    }

    pub async fn queue_depth(&self) -> Result<u64, StoreError> {
        count(
            &self.pool,
            "SELECT count(*) FROM jobs WHERE state = 'available'",
        )
        .await
    }
}

/// The largest row id so far (0 for an empty table). The query must be a bare `max()`: SQLite
/// answers that from the b-tree's edge, where any wrapper (`coalesce`…) would scan the table.
async fn high_water_mark(tx: &mut Tx<'_>, bare_max_query: &str) -> Result<i64, StoreError> {
    let max: Option<i64> = sqlx::query_scalar(bare_max_query)
        .fetch_one(&mut **tx)
        .await?;
    Ok(max.unwrap_or(0))
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

async fn count(pool: &SqlitePool, sql: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = sqlx::query_scalar(sql).fetch_optional(pool).await?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

type Tx<'c> = Transaction<'c, Sqlite>;

fn json_rows<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("plain rows serialise")
}

/// Rows per multi-row INSERT: 9 parameters each, well under SQLite's 32,766-parameter limit.
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
                 (provider, message_id, phone_number_id, wa_id, kind, body, payload_ts, received_at_ms, raw) ",
        );
        insert.push_values(chunk, |mut row, (_, m)| {
            row.push_bind(m.provider.as_str())
                .push_bind(m.id.as_str())
                .push_bind(m.phone_number_id.as_str())
                .push_bind(m.from.as_str())
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

/// Display names as the payloads give them (the last one in the batch wins).
async fn update_display_names(
    tx: &mut Tx<'_>,
    units: &[IngestUnit],
    now_ms: i64,
) -> Result<(), StoreError> {
    #[derive(Serialize)]
    struct Row<'a> {
        n: &'a str,
        w: &'a str,
        d: &'a str,
    }
    let names: BTreeMap<(&str, &str), &str> = units
        .iter()
        .flat_map(|u| &u.notification.contacts)
        .filter_map(|c| {
            Some((
                (c.phone_number_id.as_str(), c.wa_id.as_str()),
                c.name.as_deref()?,
            ))
        })
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let rows: Vec<Row> = names
        .into_iter()
        .map(|((n, w), d)| Row { n, w, d })
        .collect();
    sqlx::query(
        "INSERT INTO contacts (phone_number_id, wa_id, display_name, updated_at_ms)
         SELECT j.value ->> 'n', j.value ->> 'w', j.value ->> 'd', ?1 FROM json_each(?2) AS j WHERE true
         ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET display_name = excluded.display_name
         WHERE contacts.display_name IS NOT excluded.display_name",
    )
    .bind(now_ms)
    .bind(json_rows(&rows))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts statuses not seen before; returns the new (message id, status) pairs.
async fn insert_statuses(
    tx: &mut Tx<'_>,
    statuses: &[(usize, &StatusUpdate)],
    now_ms: i64,
) -> Result<HashSet<(String, String)>, StoreError> {
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
         ON CONFLICT (message_id, status) DO NOTHING",
    )
    .bind(now_ms)
    .bind(json_rows(&rows))
    .execute(&mut **tx)
    .await?;
    let new_keys: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(message_id, status)) FROM statuses WHERE rowid > ?",
    )
    .bind(before)
    .fetch_one(&mut **tx)
    .await?;
    serde_json::from_str(&new_keys).map_err(corrupt)
}

async fn insert_platform_errors(
    tx: &mut Tx<'_>,
    unit: &IngestUnit,
    now_ms: i64,
) -> Result<(), StoreError> {
    for (i, e) in unit.notification.platform_errors.iter().enumerate() {
        sqlx::query(
            "INSERT INTO platform_errors (phone_number_id, code, title, raw, received_at_ms, dedup_key)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (dedup_key) DO NOTHING",
        )
        .bind(e.phone_number_id.as_ref().map(|p| p.as_str()))
        .bind(e.code)
        .bind(e.title.as_deref())
        .bind(&e.raw)
        .bind(now_ms)
        .bind(format!("{}:{i}", unit.delivery_digest))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Returns 1 when a new dead letter was written, 0 when the same content was already kept.
async fn insert_dead_letter(
    tx: &mut Tx<'_>,
    provider: Provider,
    error: &str,
    detail: &str,
    raw: &[u8],
    now_ms: i64,
) -> Result<u64, StoreError> {
    let dedup_key = format!("{error}:{}", hex::encode(Sha256::digest(raw)));
    let done = sqlx::query(
        "INSERT INTO dead_letters (kind, provider, error, detail, raw, dedup_key, created_at_ms)
         VALUES ('payload', ?, ?, ?, ?, ?, ?)
         ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(provider.as_str())
    .bind(error)
    .bind(detail)
    .bind(raw)
    .bind(dedup_key)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}
