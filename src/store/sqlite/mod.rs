//! SQLite backend: one file in WAL mode with `synchronous=FULL`, so a commit is durable before the
//! webhook is answered. Writes come from a single group-commit writer; reads share the pool.

use sqlx::sqlite::SqlitePool;
use sqlx::{Row, Sqlite, Transaction};

mod ambiguous;
mod batch;
mod connection;
mod context;
mod conversations;
mod erasure;
mod ingest;
mod operators;
mod overview;
mod rare_rows;
mod replies;
mod retention;
mod sessions;
mod sweep;
mod sweep_candidates;

pub(super) type Tx<'c> = Transaction<'c, Sqlite>;

use super::{
    ContactRecord, DeadLetter, IngestReport, IngestUnit, MessageRecord, ReplyRecord, StoreError,
    StoreOptions, Summary,
};
use crate::domain::{ConversationKey, GroupPolicy, LedgerState, Outcome, Provider, ResolvedBy};

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
    page_limit: std::sync::Arc<connection::PageLimit>,
    ingest: ingest::IngestOptions,
    /// Which channels answer in groups: read into every gate snapshot.
    groups: GroupPolicy,
}

impl SqliteStore {
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connection::Pools {
            writer,
            reader,
            page_limit,
        } = connection::open(url, options).await?;
        let batch = batch::Batcher::spawn(writer.clone());
        Ok(Self {
            writer,
            pool: reader,
            batch,
            page_limit,
            ingest: ingest::IngestOptions {
                human_reply_takeover: options.human_reply_takeover,
                session_probe_ms: i64::try_from(options.session_probe_interval.as_millis())
                    .unwrap_or(i64::MAX),
            },
            groups: options.group_policy.clone(),
        })
    }

    /// Caps the database at `pages` pages (`None`: no cap) on every writer connection: a write
    /// past it fails as on a full disk. What tests use to fill the disk and free it again.
    pub async fn limit_pages(&self, pages: Option<u32>) -> Result<(), StoreError> {
        connection::limit_pages(&self.writer, &self.page_limit, pages).await
    }

    /// Runs the migrations with foreign-key enforcement off, as SQLite's table rebuilds need
    /// (a `PRAGMA foreign_keys` inside the migration's transaction would do nothing), then
    /// checks every foreign key. The connection is closed afterwards, so the next one opens
    /// with enforcement on whatever happened.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        sqlx::query("PRAGMA foreign_keys = OFF")
            .execute(&mut *conn)
            .await?;
        let migrated = MIGRATOR.run(&mut *conn).await;
        conn.close().await?;
        migrated?;
        let broken: Vec<(String, Option<i64>, String)> =
            sqlx::query_as("SELECT \"table\", rowid, parent FROM pragma_foreign_key_check")
                .fetch_all(&self.pool)
                .await?;
        if let Some((table, rowid, parent)) = broken.first() {
            return Err(StoreError::Corrupt(format!(
                "{} row(s) refer to rows that do not exist, e.g. in {table} (rowid {rowid:?}) → {parent}; \
                 restore a backup or delete them before migrating",
                broken.len()
            )));
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The migrations this build has that the database has not applied, by version; reads only.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let (tracked,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await?;
        let applied: Vec<i64> = if tracked == 0 {
            Vec::new()
        } else {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await?
        };
        Ok(MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// A write that needs new pages, past the free ones inside the file (up to 1 MiB at the
    /// default page size; rolled back to its savepoint: only the allocation is tested) and a one-row change that is committed, through the batcher like the
    /// pipeline's writes: fails while the disk is full, the writer connection is unusable or
    /// the batcher is down.
    pub async fn probe_writes(&self) -> Result<(), StoreError> {
        if !self.batch.status().is_running() {
            return Err(StoreError::Stopped);
        }
        self.batch
            .write(|tx| {
                Box::pin(async move {
                    sqlx::query("SAVEPOINT probe_pages")
                        .execute(&mut **tx)
                        .await?;
                    let grown = sqlx::query(
                        // INSERT … SELECT: a statement with a statement journal, so a full
                        // database rolls back this statement, not the batch's transaction.
                        "INSERT INTO write_probes (id, pad) SELECT 1, zeroblob(
                             (SELECT page_size FROM pragma_page_size)
                             * min((SELECT freelist_count FROM pragma_freelist_count) + 2, 256))",
                    )
                    .execute(&mut **tx)
                    .await;
                    let undone = sqlx::query("ROLLBACK TO probe_pages; RELEASE probe_pages")
                        .execute(&mut **tx)
                        .await;
                    grown?;
                    undone?;
                    sqlx::query(
                        "UPDATE counters SET value = value + 1 WHERE name = 'write_probes'",
                    )
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub async fn ingest_batch(
        &self,
        units: &[IngestUnit],
        now_ms: i64,
    ) -> Result<Vec<IngestReport>, StoreError> {
        ingest::ingest_batch(&self.writer, units, now_ms, &self.ingest).await
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
            (Some(ledger_id), Some(state)) => Some(ReplyRecord {
                ledger_id,
                state: LedgerState::parse(state)
                    .ok_or_else(|| StoreError::Corrupt(format!("ledger state `{state}`")))?,
                outbound_id: row.get("outbound_id"),
                attempts: row.get::<i64, _>("attempts").max(0) as u32,
                resolved_by: row
                    .get::<Option<&str>, _>("resolved_by")
                    .and_then(ResolvedBy::parse),
                double_sends: row.get::<i64, _>("double_sends").max(0) as u32,
            }),
            _ => None,
        };
        let provider: &str = row.get("provider");
        Ok(Some(MessageRecord {
            reply,
            provider: Provider::parse(provider)
                .ok_or_else(|| StoreError::Corrupt(format!("provider `{provider}`")))?,
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
        key: &ConversationKey,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT display_name, last_inbound_ts, opted_out FROM contacts
             WHERE provider = ? AND phone_number_id = ? AND wa_id = ?",
        )
        .bind(key.provider.as_str())
        .bind(key.phone_number_id.as_str())
        .bind(key.wa_id.as_str())
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
                "dead" => {
                    s.dead += n;
                    s.dead_errors.push((
                        row.get::<Option<String>, _>("outcome_reason")
                            .unwrap_or_default(),
                        n,
                    ));
                }
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

    /// Open dead letters newest first, without their kept bytes (a listing of a thousand 4 MiB
    /// payloads would be a 4 GB answer): [`SqliteStore::dead_letter`] fetches one whole.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        self.query_dead_letters(None, limit, false).await
    }

    /// Open dead letters newest first, or the one with `id` whatever its state; the kept bytes
    /// only when `with_raw`.
    async fn query_dead_letters(
        &self,
        id: Option<i64>,
        limit: i64,
        with_raw: bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.id, d.kind, d.provider, d.session_id, m.message_id, d.error, d.detail, d.state, d.attempts,
                    d.created_at_ms, CASE WHEN ?3 THEN d.raw END AS raw, length(d.raw) AS raw_bytes
             FROM dead_letters d LEFT JOIN inbound_messages m ON m.id = d.inbound_id
             WHERE (?1 IS NULL AND d.state = 'open') OR d.id = ?1 ORDER BY d.id DESC LIMIT ?2",
        )
        .bind(id)
        .bind(limit)
        .bind(with_raw)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| DeadLetter {
                id: row.get("id"),
                kind: row.get("kind"),
                provider: row.get("provider"),
                session_id: row.get("session_id"),
                message_id: row.get("message_id"),
                error: row.get("error"),
                detail: row.get("detail"),
                state: row.get("state"),
                attempts: row.get("attempts"),
                created_at_ms: row.get("created_at_ms"),
                raw: row
                    .get::<Option<Vec<u8>>, _>("raw")
                    .map(|raw| String::from_utf8_lossy(&raw).into_owned()),
                raw_bytes: row
                    .get::<Option<i64>, _>("raw_bytes")
                    .map(|n| n.max(0) as u64),
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
