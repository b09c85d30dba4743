//! SQLite backend: one file in WAL mode with `synchronous=FULL`, so a commit is durable before the
//! webhook is answered. Writes come from a single group-commit writer; reads share the pool.

use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use super::{ContactRecord, DeadLetter, IngestReport, IngestUnit, MessageRecord, StoreError, StoreOptions, Summary};
use crate::domain::{Outcome, Provider};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        if let Some(parent) = Path::new(connect.get_filename()).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(options.busy_timeout.max(std::time::Duration::from_secs(1)))
            .connect_with(connect)
            .await?;
        Ok(Self { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn ingest_batch(&self, units: &[IngestUnit], now_ms: i64) -> Result<Vec<IngestReport>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut reports = Vec::with_capacity(units.len());
        for unit in units {
            reports.push(ingest_unit(&mut tx, unit, now_ms).await?);
        }
        let duplicate_messages: u64 = reports.iter().map(|r| r.duplicate_messages).sum();
        let duplicate_statuses: u64 = reports.iter().map(|r| r.duplicate_statuses).sum();
        for (name, n) in [("duplicate_messages", duplicate_messages), ("duplicate_statuses", duplicate_statuses)] {
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

    pub async fn contact(&self, phone_number_id: &str, wa_id: &str) -> Result<Option<ContactRecord>, StoreError> {
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
            duplicates: count(&self.pool, "SELECT value FROM counters WHERE name = 'duplicate_messages'").await?,
            pending: count(&self.pool, "SELECT count(*) FROM inbound_messages WHERE outcome IS NULL").await?,
            dead_letters_open: count(&self.pool, "SELECT count(*) FROM dead_letters WHERE state = 'open'").await?,
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
                "silent" => s.silent.push((row.get::<Option<String>, _>("outcome_reason").unwrap_or_default(), n)),
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
        count(&self.pool, "SELECT count(*) FROM jobs WHERE state = 'available'").await
    }
}

async fn count(pool: &SqlitePool, sql: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = sqlx::query_scalar(sql).fetch_optional(pool).await?;
    Ok(n.unwrap_or(0).max(0) as u64)
}

async fn ingest_unit(
    tx: &mut Transaction<'_, Sqlite>,
    unit: &IngestUnit,
    now_ms: i64,
) -> Result<IngestReport, StoreError> {
    let mut report = IngestReport::default();
    let n = &unit.notification;

    for m in &n.messages {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO inbound_messages
                 (provider, message_id, phone_number_id, wa_id, kind, body, payload_ts, received_at_ms, raw)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (provider, message_id) DO NOTHING
             RETURNING id",
        )
        .bind(m.provider.as_str())
        .bind(m.id.as_str())
        .bind(m.phone_number_id.as_str())
        .bind(m.from.as_str())
        .bind(m.kind.as_str())
        .bind(m.text.as_deref())
        .bind(m.timestamp)
        .bind(now_ms)
        .bind(&m.raw)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(inbound_id) = inserted else {
            report.duplicate_messages += 1;
            continue;
        };
        report.new_messages += 1;
        sqlx::query(
            "INSERT INTO jobs (inbound_id, phone_number_id, wa_id, run_at_ms, created_at_ms)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(inbound_id)
        .bind(m.phone_number_id.as_str())
        .bind(m.from.as_str())
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        // The window anchor only moves forward, whatever order deliveries arrive in.
        sqlx::query(
            "INSERT INTO contacts (phone_number_id, wa_id, last_inbound_ts, updated_at_ms)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET
                 last_inbound_ts = max(coalesce(contacts.last_inbound_ts, 0), excluded.last_inbound_ts),
                 updated_at_ms = excluded.updated_at_ms",
        )
        .bind(m.phone_number_id.as_str())
        .bind(m.from.as_str())
        .bind(m.timestamp)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }

    for c in n.contacts.iter().filter(|c| c.name.is_some()) {
        sqlx::query(
            "INSERT INTO contacts (phone_number_id, wa_id, display_name, updated_at_ms)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (phone_number_id, wa_id) DO UPDATE SET display_name = excluded.display_name
             WHERE contacts.display_name IS NOT excluded.display_name",
        )
        .bind(c.phone_number_id.as_str())
        .bind(c.wa_id.as_str())
        .bind(c.name.as_deref())
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }

    for s in &n.statuses {
        let done = sqlx::query(
            "INSERT INTO statuses (message_id, status, provider, phone_number_id, recipient_id, payload_ts,
                                   callback_data, error_code, raw, received_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (message_id, status) DO NOTHING",
        )
        .bind(s.message_id.as_str())
        .bind(s.status.as_str())
        .bind(s.provider.as_str())
        .bind(s.phone_number_id.as_str())
        .bind(s.recipient_id.as_deref())
        .bind(s.timestamp)
        .bind(s.callback_data.as_deref())
        .bind(s.error_code)
        .bind(&s.raw)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 1 {
            report.new_statuses += 1;
        } else {
            report.duplicate_statuses += 1;
        }
    }

    for (i, e) in n.platform_errors.iter().enumerate() {
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

    for item in &n.rejected {
        report.dead_letters +=
            insert_dead_letter(tx, unit.provider, "malformed_item", &item.error, item.raw.as_bytes(), now_ms).await?;
    }
    if let Some(payload) = &unit.undecodable {
        report.dead_letters += insert_dead_letter(
            tx,
            unit.provider,
            payload.error.code(),
            &payload.error.to_string(),
            &payload.raw,
            now_ms,
        )
        .await?;
    }
    Ok(report)
}

/// Returns 1 when a new dead letter was written, 0 when the same content was already kept.
async fn insert_dead_letter(
    tx: &mut Transaction<'_, Sqlite>,
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
