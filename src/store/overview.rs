//! Reads for the operator console beyond what the admin API lists: arrivals per minute, the
//! oldest pending message, conversations found by mode, consent and number, and open dead
//! letters with a bounded preview of their kept bytes.
//!
//! Invariants every backend keeps:
//! - none of these reads the whole message history: arrivals are counted from row-id positions
//!   found by point lookups, the oldest pending message comes from the pending-messages index,
//!   and a preview is cut inside the database, never loaded whole;
//! - they are reads only: the console changes state solely through the operations the admin API
//!   uses (`set_conversation_mode`, `set_opted_out`, dead-letter replay and discard).

use super::{ConversationSummary, DeadLetter, Store, StoreError};
use crate::domain::{ConversationMode, Provider};

/// New inbound messages stored during one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCount {
    /// Start of the minute (unix ms, a multiple of 60 000).
    pub minute_start_ms: i64,
    pub messages: u64,
}

/// The pending message with the oldest payload time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingHead {
    pub provider: Provider,
    pub message_id: String,
    /// Payload timestamp (unix s).
    pub payload_ts: i64,
    pub received_at_ms: i64,
}

/// Which conversations to list. `number` matches part of the user's id, the business number
/// or the contact's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationQuery {
    pub mode: Option<ConversationMode>,
    /// Only contacts that opted out.
    pub opted_out: bool,
    pub number: Option<String>,
}

/// An open dead letter with the start of its kept bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterPreview {
    /// `raw` holds the preview (at most the requested bytes, lossily decoded); `raw_bytes` the
    /// whole size.
    pub letter: DeadLetter,
    /// The conversation of a message dead letter (business number, user id).
    pub conversation: Option<(String, String)>,
}

impl Store {
    /// New inbound messages per minute, from the minute holding `since_ms` to the one holding
    /// `until_ms`, zeros included.
    pub async fn inbound_per_minute(
        &self,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<MinuteCount>, StoreError> {
        match self {
            Self::Sqlite(s) => s.inbound_per_minute(since_ms, until_ms).await,
        }
    }

    /// The pending message with the oldest payload time, if any is pending.
    pub async fn oldest_pending(&self) -> Result<Option<PendingHead>, StoreError> {
        match self {
            Self::Sqlite(s) => s.oldest_pending().await,
        }
    }

    /// Conversations matching `query`, newest activity first.
    pub async fn find_conversations(
        &self,
        query: &ConversationQuery,
        limit: i64,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        match self {
            Self::Sqlite(s) => s.find_conversations(query, limit).await,
        }
    }

    /// Open dead letters, newest first, each with at most `preview_bytes` of its kept bytes.
    pub async fn dead_letter_previews(
        &self,
        limit: i64,
        preview_bytes: i64,
    ) -> Result<Vec<DeadLetterPreview>, StoreError> {
        match self {
            Self::Sqlite(s) => s.dead_letter_previews(limit, preview_bytes).await,
        }
    }
}
