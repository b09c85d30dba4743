//! The store: a narrow set of domain operations over one backend.
//!
//! `Store` dispatches to one implementation per backend (SQLite today). Each implementation
//! passes the same conformance suite (`tests/it/conformance.rs`). Invariants every backend keeps:
//! - an inbound message is unique per (provider, message id), enforced by a unique key, and its
//!   reply job is written in the same transaction as the message;
//! - a status is unique per (message id, status);
//! - a contact's window anchor (`last_inbound_ts`) never moves backwards;
//! - a dead letter is unique per content, so replaying a spool or a re-delivery adds nothing.

mod sqlite;

use std::time::Duration;

use serde::Serialize;

use crate::domain::{Notification, Outcome, Provider};
use crate::whatsapp::PayloadError;

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url `{0}` (expected sqlite://…)")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database returned something unreadable: {0}")]
    Corrupt(String),
    #[error("cannot prepare the database directory: {0}")]
    Io(#[from] std::io::Error),
}

/// Connection settings that do not belong in the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a write waits on a lock held by someone else before failing.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(2),
        }
    }
}

/// What one webhook delivery asks the store to keep.
#[derive(Debug, Clone)]
pub struct IngestUnit {
    pub provider: Provider,
    pub notification: Notification,
    /// Set when the whole authentic payload could not be parsed: kept as a dead letter.
    pub undecodable: Option<UndecodablePayload>,
    /// Hex digest of the raw body; makes per-delivery rows (platform errors) idempotent.
    /// Empty when the delivery carries no such rows.
    pub delivery_digest: String,
}

#[derive(Debug, Clone)]
pub struct UndecodablePayload {
    pub error: PayloadError,
    pub raw: Vec<u8>,
}

/// What the store did with one [`IngestUnit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    pub new_messages: u64,
    pub duplicate_messages: u64,
    pub new_statuses: u64,
    pub duplicate_statuses: u64,
    pub dead_letters: u64,
}

/// One inbound message as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub provider: Provider,
    pub message_id: String,
    pub phone_number_id: String,
    pub wa_id: String,
    pub kind: String,
    pub timestamp: i64,
    pub outcome: Option<Outcome>,
}

/// Counts over the whole store, for `GET /api/v1/summary`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub inbound: u64,
    pub duplicates: u64,
    pub pending: u64,
    pub replied: u64,
    pub silent: Vec<(String, u64)>,
    pub dead: u64,
    pub dead_letters_open: u64,
    pub jobs_available: u64,
    pub jobs_total: u64,
}

/// A user of a business number as the store knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRecord {
    pub display_name: Option<String>,
    /// Payload timestamp of their newest inbound message: the 24-hour window runs from it.
    pub last_inbound_ts: Option<i64>,
    pub opted_out: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub kind: String,
    pub provider: String,
    pub message_id: Option<String>,
    pub error: String,
    pub detail: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub created_at_ms: i64,
    /// The kept bytes (payload or item) as text, lossily decoded for display.
    pub raw: Option<String>,
}

/// The store, one variant per backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the backend named by the URL's scheme. Does not migrate.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            return Ok(Self::Sqlite(SqliteStore::connect(url, options).await?));
        }
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.migrate().await,
        }
    }

    /// Readiness: can the store answer a query?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.ping().await,
        }
    }

    /// Writes every unit in one transaction (group commit); one report per unit, in order.
    pub async fn ingest_batch(
        &self,
        units: &[IngestUnit],
        now_ms: i64,
    ) -> Result<Vec<IngestReport>, StoreError> {
        match self {
            Self::Sqlite(s) => s.ingest_batch(units, now_ms).await,
        }
    }

    /// An inbound message by provider message id (any provider).
    pub async fn message(&self, message_id: &str) -> Result<Option<MessageRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.message(message_id).await,
        }
    }

    pub async fn contact(
        &self,
        phone_number_id: &str,
        wa_id: &str,
    ) -> Result<Option<ContactRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.contact(phone_number_id, wa_id).await,
        }
    }

    pub async fn summary(&self) -> Result<Summary, StoreError> {
        match self {
            Self::Sqlite(s) => s.summary().await,
        }
    }

    /// Open dead letters, newest first.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        match self {
            Self::Sqlite(s) => s.dead_letters(limit).await,
        }
    }

    /// Reply jobs waiting to be leased (a scrape-time gauge).
    pub async fn queue_depth(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.queue_depth().await,
        }
    }
}
