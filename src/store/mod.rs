//! The store: a narrow set of domain operations over one backend.
//!
//! `Store` dispatches to one implementation per backend (SQLite today). Each implementation
//! passes the same conformance suite (`tests/it/conformance.rs`). Invariants every backend keeps:
//! - an inbound message is unique per (provider, message id), enforced by a unique key, and its
//!   reply job is written in the same transaction as the message;
//! - a status is unique per (provider, message id, status); contacts, conversations, send holds
//!   and ledger matches are keyed by provider too, so one provider's events never touch the
//!   other's rows;
//! - a contact's window anchor (`last_inbound_ts`) never moves backwards;
//! - a dead letter is unique per content, so replaying a spool or a re-delivery adds nothing.

mod conversations;
mod gauges;
mod overview;
mod retention;
mod sqlite;
mod sweep;

use std::time::Duration;

use serde::Serialize;

use crate::domain::keywords::KeywordAction;
use crate::domain::{
    AmbiguousResolution, Channel, ConversationKey, ConversationMode, GateSnapshot, GroupPolicy,
    LedgerState, Notification, Origin, Outcome, Provider, ResolvedBy, SilenceReason,
};
use crate::secret::DatabaseUrl;
use crate::whatsapp::PayloadError;

pub use conversations::*;
pub use gauges::PromiseGauges;
pub use overview::{ConversationQuery, DeadLetterPreview, MinuteCount, PendingHead};
pub use retention::{ErasureCounts, PruneBatchDone, PruneCounts, PruneCutoffs, PruneStep};
pub use sqlite::SqliteStore;
pub use sweep::{
    SweepAction, SweepBatch, SweepBatchResult, SweepCursor, SweepDecision, SweepMode, SweepRun,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Shown with its password hidden.
    #[error("unsupported database url `{0}` (expected sqlite://…)")]
    UnsupportedUrl(DatabaseUrl),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
    #[error(
        "the write batch was abandoned before it committed (its transaction failed, or its task stopped); nothing of it was kept"
    )]
    BatchFailed,
    #[error("the store has stopped")]
    Stopped,
    #[error("the database returned something unreadable: {0}")]
    Corrupt(String),
    #[error("cannot prepare the database directory: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether the store found a row it cannot read (a gate input, say): an operator must
    /// correct it, retrying alone will not help.
    pub fn is_corrupt(&self) -> bool {
        match self {
            Self::Corrupt(_) => true,
            Self::Shared(inner) => inner.is_corrupt(),
            _ => false,
        }
    }
}

/// Connection settings that do not belong in the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long a write waits on a lock held by someone else before failing.
    pub busy_timeout: Duration,
    /// A status for an outbound message replyd did not send puts its conversation in operator mode.
    pub human_reply_takeover: bool,
    /// Which channels answer in group chats: the `group` gate's input.
    pub group_policy: GroupPolicy,
    /// When a gateway session that reported itself gone is probed (its hold's first probe).
    pub session_probe_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(2),
            human_reply_takeover: true,
            group_policy: GroupPolicy::default(),
            session_probe_interval: Duration::from_secs(60),
        }
    }
}

/// What one webhook delivery asks the store to keep.
#[derive(Debug, Clone)]
pub struct IngestUnit {
    /// The provider, and for a gateway its session (kept with a payload dead letter, so a
    /// replay parses it under the same session).
    pub origin: Origin,
    pub notification: Notification,
    /// Set when the whole authentic payload could not be parsed: kept as a dead letter.
    pub undecodable: Option<UndecodablePayload>,
    /// Messages that are keywords by themselves (STOP, START, "agent"…), applied in the ingest
    /// transaction when the message is new.
    pub keyword_actions: Vec<KeywordHit>,
    /// Hex digest of the raw body; makes per-delivery rows (platform errors) idempotent.
    /// Empty when the delivery carries no such rows.
    pub delivery_digest: String,
}

/// A message that is a keyword by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordHit {
    pub provider: Provider,
    pub message_id: String,
    pub action: KeywordAction,
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
    /// Ambiguous sends a status webhook with their callback data settled as `replied`.
    pub ambiguous_confirmed: u64,
    /// Statuses showing an earlier attempt of a resent reply went out too.
    pub double_sends: u64,
}

/// What one pass over the ambiguous sends past their quiet period did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmbiguousSettlement {
    /// Shown not to have gone out (later sends of the number were confirmed): sent once more.
    pub resent: u64,
    /// No evidence either way (or the `operator` setting): the dead letter `ambiguous_send`.
    pub dead_lettered: u64,
}

/// One inbound message as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub reply: Option<ReplyRecord>,
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
    /// Replies that went out on their first attempt, and replies sent in all.
    pub first_attempt_sends: u64,
    pub sends: u64,
    pub inbound: u64,
    pub duplicates: u64,
    pub pending: u64,
    pub replied: u64,
    pub silent: Vec<(String, u64)>,
    pub dead: u64,
    /// Dead outcomes per error (they add up to `dead`).
    pub dead_errors: Vec<(String, u64)>,
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

/// A dead letter as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    pub id: i64,
    pub kind: String,
    pub provider: String,
    /// The gateway session a payload was received for (gateway payloads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub message_id: Option<String>,
    pub error: String,
    pub detail: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub created_at_ms: i64,
    /// The kept bytes (payload or item) as text, lossily decoded for display; only when one
    /// dead letter is fetched by id, never in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// How many bytes are kept (shown in listings, where `raw` is left out).
    pub raw_bytes: Option<u64>,
}

/// A job the worker holds until its lease runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasedJob {
    pub inbound_id: i64,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

/// An inbound message as the reply pipeline needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub inbound_id: i64,
    /// When replyd received it (unix ms), for reply latency.
    pub received_at_ms: i64,
    pub provider: Provider,
    pub message_id: String,
    pub phone_number_id: String,
    pub wa_id: String,
    /// The group chat it was written in, if any.
    pub group_id: Option<String>,
    pub kind: String,
    pub text: Option<String>,
    pub timestamp: i64,
}

impl StoredMessage {
    /// The channel it came in on, which its reply goes out through. An id the edge would refuse
    /// is a corrupt row: nothing is sent until it is corrected.
    pub fn channel(&self) -> Result<Channel, StoreError> {
        let id = crate::domain::PhoneNumberId::parse(self.phone_number_id.clone())
            .map_err(|e| self.unreadable("phone_number_id", e))?;
        Ok(Channel::new(self.provider, id))
    }

    pub fn conversation(&self) -> Result<ConversationKey, StoreError> {
        Ok(ConversationKey {
            provider: self.provider,
            phone_number_id: self.channel()?.id,
            wa_id: crate::domain::WaId::parse(self.wa_id.clone())
                .map_err(|e| self.unreadable("wa_id", e))?,
        })
    }

    fn unreadable(&self, column: &str, e: crate::domain::IdError) -> StoreError {
        StoreError::Corrupt(format!(
            "inbound message {}: unreadable {column}: {e}; correct the row (nothing is sent until then)",
            self.inbound_id
        ))
    }
}

/// Everything the reply pipeline reads about one message, in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyContext {
    pub message: StoredMessage,
    pub contact_name: Option<String>,
    pub snapshot: GateSnapshot,
    pub outcome: Option<Outcome>,
    pub ledger_id: Option<i64>,
    /// Payload time of the message that last changed the contact's consent.
    pub consent_ts: Option<i64>,
}

/// One earlier exchange of a conversation (for responders that want history).
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub inbound_text: Option<String>,
    pub inbound_ts: i64,
    pub reply_text: String,
}

/// What claiming the reply ledger row decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The row is ours: send, then record the result against it.
    Claimed { ledger_id: i64, attempts: u32 },
    /// A gate holds now (re-checked inside the claim): the outcome is recorded, do not send.
    Silenced(SilenceReason),
    /// The message already has its outcome.
    AlreadyDecided,
}

/// A business number whose sends are paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendHold {
    pub channel: Channel,
    pub error_code: String,
    pub since_ms: i64,
    pub next_probe_ms: i64,
}

/// The reply ledger row of a message, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRecord {
    pub ledger_id: i64,
    pub state: LedgerState,
    pub outbound_id: Option<String>,
    pub attempts: u32,
    /// How its send was settled, if it was ever ambiguous.
    pub resolved_by: Option<ResolvedBy>,
    /// Statuses that showed an earlier attempt went out although it was sent again.
    pub double_sends: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    Replayed,
    Discarded,
    /// A payload dead letter: the caller re-ingests the raw bytes.
    ReingestPayload,
    NotFound,
    NotOpen,
}

/// The store, one variant per backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the backend named by the URL's scheme. Does not migrate.
    pub async fn connect(url: &DatabaseUrl, options: &StoreOptions) -> Result<Self, StoreError> {
        if url.expose().starts_with("sqlite:") {
            return Ok(Self::Sqlite(
                SqliteStore::connect(url.expose(), options).await?,
            ));
        }
        Err(StoreError::UnsupportedUrl(url.clone()))
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.migrate().await,
        }
    }

    /// Migrations not applied yet (what `replyd doctor` reports); reads only.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, StoreError> {
        match self {
            Self::Sqlite(s) => s.pending_migrations().await,
        }
    }

    /// Readiness: can the store answer a query?
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.ping().await,
        }
    }

    /// Readiness of the write path: one small write through the reply write batcher that must
    /// be able to grow the database by a couple of pages (then rolled back) and commit.
    pub async fn probe_writes(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.probe_writes().await,
        }
    }

    /// Caps the database at `pages` pages (`None`: no cap): a write that needs more fails as on a
    /// full disk, until the cap is raised. Lets tests fill and free "the disk" without root.
    pub async fn limit_pages(&self, pages: Option<u32>) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.limit_pages(pages).await,
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
        key: &ConversationKey,
    ) -> Result<Option<ContactRecord>, StoreError> {
        match self {
            Self::Sqlite(s) => s.contact(key).await,
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

    // ---- the reply pipeline ----

    /// Leases up to `limit` due jobs, each the head of its conversation's queue; first returns
    /// jobs whose lease ran out (a killed worker's) to the queue.
    pub async fn lease_jobs(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<LeasedJob>, StoreError> {
        match self {
            Self::Sqlite(s) => s.lease_jobs(now_ms, lease_ms, limit).await,
        }
    }

    pub async fn reply_context(&self, inbound_id: i64) -> Result<Option<ReplyContext>, StoreError> {
        match self {
            Self::Sqlite(s) => s.reply_context(inbound_id).await,
        }
    }

    /// The conversation's latest answered exchanges before `inbound_id`, oldest first.
    pub async fn history(
        &self,
        key: &ConversationKey,
        before_inbound_id: i64,
        limit: usize,
    ) -> Result<Vec<Exchange>, StoreError> {
        match self {
            Self::Sqlite(s) => s.history(key, before_inbound_id, limit).await,
        }
    }

    /// Removes a job whose message needs nothing more from the worker.
    pub async fn drop_job(&self, inbound_id: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.drop_job(inbound_id).await,
        }
    }

    /// Records `silent:<reason>` (unless an outcome exists, or the reason is `answered`: that
    /// message's outcome belongs to its ledger row) and removes the job.
    pub async fn finish_silent(
        &self,
        inbound_id: i64,
        reason: SilenceReason,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.finish_silent(inbound_id, reason, now_ms).await,
        }
    }

    /// Claims the ledger row for the confirmation of an opt-out: the one message an opted-out
    /// contact may get. Every other gate still holds.
    pub async fn claim_opt_out_confirmation(
        &self,
        inbound_id: i64,
        text: &str,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim_with(inbound_id, text, now_ms, true).await,
        }
    }

    /// Re-checks the gates and claims the ledger row in one transaction.
    pub async fn claim_reply(
        &self,
        inbound_id: i64,
        reply_text: &str,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        match self {
            Self::Sqlite(s) => s.claim_reply(inbound_id, reply_text, now_ms).await,
        }
    }

    /// The send was accepted: ledger `sent` (unless a status got there first), outcome `replied`.
    pub async fn mark_sent(
        &self,
        inbound_id: i64,
        ledger_id: i64,
        outbound_id: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.mark_sent(inbound_id, ledger_id, outbound_id, now_ms)
                    .await
            }
        }
    }

    /// The send's fate is unknown: never resent blindly; a status webhook or the evidence after
    /// the quiet period settles it. Until then the conversation's later messages are not leased.
    pub async fn mark_ambiguous(
        &self,
        inbound_id: i64,
        ledger_id: i64,
        error: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.mark_ambiguous(inbound_id, ledger_id, error, now_ms).await,
        }
    }

    /// Puts the job back for `run_at_ms`; a claimed ledger row becomes `unsent` (nothing went out).
    /// `refund_attempt` for waits that were not attempts (held number, rate limiter).
    pub async fn retry_later(
        &self,
        inbound_id: i64,
        ledger_id: Option<i64>,
        run_at_ms: i64,
        error: &str,
        refund_attempt: bool,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.retry_later(inbound_id, ledger_id, run_at_ms, error, refund_attempt)
                    .await
            }
        }
    }

    /// Outcome `dead:<error>` plus a replayable dead letter; the job is removed.
    pub async fn dead_letter_message(
        &self,
        inbound_id: i64,
        ledger_id: Option<i64>,
        error: &str,
        detail: &str,
        attempts: u32,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.dead_letter_message(inbound_id, ledger_id, error, detail, attempts, now_ms)
                    .await
            }
        }
    }

    /// Settles ambiguous sends no status confirmed within `quiet_ms`. Under `evidence`, one
    /// for which later sends of the same number were confirmed did not go out: its row may be
    /// claimed once more and its job is back. Otherwise it becomes the dead letter
    /// `ambiguous_send`. Either way `resolved_by` records it.
    pub async fn settle_ambiguous(
        &self,
        quiet_ms: i64,
        now_ms: i64,
        resolution: AmbiguousResolution,
    ) -> Result<AmbiguousSettlement, StoreError> {
        match self {
            Self::Sqlite(s) => s.settle_ambiguous(quiet_ms, now_ms, resolution).await,
        }
    }

    pub async fn hold_sends(
        &self,
        channel: &Channel,
        error_code: &str,
        now_ms: i64,
        next_probe_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.hold_sends(channel, error_code, now_ms, next_probe_ms)
                    .await
            }
        }
    }

    pub async fn send_holds(&self) -> Result<Vec<SendHold>, StoreError> {
        match self {
            Self::Sqlite(s) => s.send_holds().await,
        }
    }

    /// Lifts a hold and makes the channel's waiting jobs due now.
    pub async fn lift_hold(&self, channel: &Channel, now_ms: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.lift_hold(channel, now_ms).await,
        }
    }

    // ---- operators ----

    /// Hands conversations back to the bot when their operator has been idle for `idle_ms`.
    pub async fn release_idle_takeovers(
        &self,
        idle_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        match self {
            Self::Sqlite(s) => s.release_idle_takeovers(idle_ms, now_ms).await,
        }
    }

    pub async fn set_opted_out(
        &self,
        key: &ConversationKey,
        opted_out: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.set_opted_out(key, opted_out, now_ms).await,
        }
    }

    pub async fn set_conversation_mode(
        &self,
        key: &ConversationKey,
        mode: ConversationMode,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.set_conversation_mode(key, mode, note, now_ms).await,
        }
    }

    /// Replays an open dead letter: a message one goes back through the gates with a new job.
    pub async fn replay_dead_letter(
        &self,
        id: i64,
        now_ms: i64,
    ) -> Result<DeadLetterAction, StoreError> {
        match self {
            Self::Sqlite(s) => s.replay_dead_letter(id, now_ms).await,
        }
    }

    pub async fn discard_dead_letter(&self, id: i64) -> Result<DeadLetterAction, StoreError> {
        match self {
            Self::Sqlite(s) => s.discard_dead_letter(id).await,
        }
    }

    /// A dead letter's kept payload, for replaying a `payload` dead letter.
    pub async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        match self {
            Self::Sqlite(s) => s.dead_letter(id).await,
        }
    }

    pub async fn mark_dead_letter_replayed(&self, id: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.mark_dead_letter_replayed(id).await,
        }
    }
}
