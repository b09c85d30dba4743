//! SQLite backend: one file in WAL mode with `synchronous=FULL`, so a commit is durable before the
//! webhook is answered. Writes come from a single group-commit writer; reads share the pool.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

mod ambiguous;
mod batch;
mod conversations;
mod ingest;
mod operators;
mod replies;
mod sweep;

pub(super) type Tx<'c> = Transaction<'c, Sqlite>;

use super::{
    ContactRecord, DeadLetter, IngestReport, IngestUnit, MessageRecord, ReplyRecord, StoreError,
    StoreOptions, Summary,
};
use crate::domain::{LedgerState, Outcome, Provider, ResolvedBy};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite allows one writer at a time, so writes get a pool of exactly one connection: its page
/// cache stays warm across transactions instead of being invalidated by writes made through
/// another connection. Reads share a separate pool and run concurrently (WAL).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    pool: SqlitePool,
    /// The reply pipeline's small writes, batched into shared transactions on `writer`.
    batch: batch::Batcher,
    human_reply_takeover: bool,
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
        let batch = batch::Batcher::spawn(writer.clone());
        Ok(Self {
            writer,
            pool,
            batch,
            human_reply_takeover: options.human_reply_takeover,
        })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn ingest_batch(
        &self,
        units: &[IngestUnit],
        now_ms: i64,
    ) -> Result<Vec<IngestReport>, StoreError> {
        ingest::ingest_batch(&self.writer, units, now_ms, self.human_reply_takeover).await
    }

    pub async fn message(&self, message_id: &str) -> Result<Option<MessageRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT m.provider, m.message_id, m.phone_number_id, m.wa_id, m.kind, m.payload_ts, m.outcome,
                    m.outcome_reason, l.id AS ledger_id, l.state AS ledger_state, l.outbound_id, l.attempts,
                    l.resolved_by, l.double_sends
             FROM inbound_messages m LEFT JOIN ledger l ON l.inbound_id = m.id
             WHERE m.message_id = ? ORDER BY m.id LIMIT 1",
        )
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let reply = match (
            row.get::<Option<i64>, _>("ledger_id"),
            row.get::<Option<&str>, _>("ledger_state"),
        ) {
            (Some(ledger_id), Some(state)) => LedgerState::parse(state).map(|state| ReplyRecord {
                ledger_id,
                state,
                outbound_id: row.get("outbound_id"),
                attempts: row.get::<i64, _>("attempts").max(0) as u32,
                resolved_by: row
                    .get::<Option<&str>, _>("resolved_by")
                    .and_then(ResolvedBy::parse),
                double_sends: row.get::<i64, _>("double_sends").max(0) as u32,
            }),
            _ => None,
        };
        Ok(Some(MessageRecord {
            reply,
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
            sends: count(
                &self.pool,
                "SELECT count(*) FROM ledger WHERE status_rank > 0",
            )
            .await?,
            first_attempt_sends: count(
                &self.pool,
                "SELECT count(*) FROM ledger WHERE status_rank > 0 AND first_attempt = 1",
            )
            .await?,
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
        self.query_dead_letters(None, limit).await
    }

    /// Open dead letters newest first, or the one with `id` whatever its state.
    async fn query_dead_letters(
        &self,
        id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.kind, d.provider, m.message_id, d.error, d.detail, d.state, d.attempts,
                    d.created_at_ms, d.raw
             FROM dead_letters d LEFT JOIN inbound_messages m ON m.id = d.inbound_id
             WHERE (?1 IS NULL AND d.state = 'open') OR d.id = ?1 ORDER BY d.id DESC LIMIT ?2",
        )
        .bind(id)
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
pub(super) async fn high_water_mark(
    tx: &mut Tx<'_>,
    bare_max_query: &str,
) -> Result<i64, StoreError> {
    let max: Option<i64> = sqlx::query_scalar(bare_max_query)
        .fetch_one(&mut **tx)
        .await?;
    Ok(max.unwrap_or(0))
}

pub(super) fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

async fn count(pool: &SqlitePool, sql: &str) -> Result<u64, StoreError> {
    let n: Option<i64> = sqlx::query_scalar(sql).fetch_optional(pool).await?;
    Ok(n.unwrap_or(0).max(0) as u64)
}
