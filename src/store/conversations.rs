//! Conversation reads for operators: the list of conversations (filterable by who is in charge)
//! and one conversation's timeline — its inbound messages, their outcomes, the reply sent for
//! each and the delivery statuses of that reply.
//!
//! Invariants every backend keeps:
//! - a conversation is known when its contact row or its conversations row exists; one with no
//!   conversations row is in `bot` mode (filtering by `bot` includes it);
//! - the timeline never reads the whole message history: `inbound_messages` deliberately has no
//!   per-conversation index (it would slow ingest), so messages are found through indexed sides
//!   (the ledger and the job queue by conversation, the pending-messages index) plus a scan of
//!   only the most recent [`RECENT_SCAN_ROWS`] inbound rows. Silent or dead messages older than
//!   that horizon with no ledger row are therefore not shown, and the detail says so
//!   ([`ConversationDetail::complete`]).

use super::{Store, StoreError};
use crate::domain::{
    ConversationKey, ConversationMode, DeliveryStatus, LedgerState, Outcome, Provider,
};

/// How many of the newest inbound rows (all conversations together) the timeline scans for
/// messages that no index of their conversation reaches (silent or dead without a reply).
/// Measured: ~1.5 ms for 10 k rows, whatever the size of the history.
pub(crate) const RECENT_SCAN_ROWS: i64 = 10_000;

/// One conversation as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationSummary {
    pub provider: Provider,
    pub phone_number_id: String,
    pub wa_id: String,
    pub display_name: Option<String>,
    pub mode: ConversationMode,
    /// Who took it over (operator mode only).
    pub taken_by: Option<String>,
    /// Why it was escalated (escalated mode only).
    pub escalation_reason: Option<String>,
    pub opted_out: bool,
    /// Payload timestamp (unix s) of the newest inbound message; `None` before the first one.
    pub last_inbound_ts: Option<i64>,
    /// Latest change to the contact or the conversation (unix ms): the list's order.
    pub updated_at_ms: i64,
}

/// One conversation with the newest part of its timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationDetail {
    pub summary: ConversationSummary,
    /// Oldest first (payload time, then arrival).
    pub timeline: Vec<TimelineEntry>,
    /// `false` when silent or dead messages older than the recent-scan horizon may be missing
    /// from the timeline (answered and pending messages are always there).
    pub complete: bool,
}

/// One inbound message of a conversation with what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEntry {
    pub message_id: String,
    pub kind: String,
    pub text: Option<String>,
    /// Payload timestamp (unix s).
    pub timestamp: i64,
    /// `None` while pending.
    pub outcome: Option<Outcome>,
    pub reply: Option<TimelineReply>,
}

/// The ledger row of a message: the reply claimed, sent (or not) and its delivery statuses.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineReply {
    pub ledger_id: i64,
    pub state: LedgerState,
    pub outbound_id: Option<String>,
    pub text: String,
    pub attempts: u32,
    /// Status webhooks for `outbound_id`, in the order they happened.
    pub statuses: Vec<DeliveryRecord>,
}

/// One status webhook for an outbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub status: DeliveryStatus,
    /// Payload timestamp (unix s).
    pub timestamp: i64,
    /// Meta's error code on a `failed` status.
    pub error_code: Option<i64>,
}

impl Store {
    /// Conversations, newest activity first; `mode` filters by who is in charge.
    pub async fn conversations(
        &self,
        mode: Option<ConversationMode>,
        limit: i64,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        match self {
            Self::Sqlite(s) => s.conversations(mode, limit).await,
        }
    }

    /// One conversation with its newest `limit` messages; `None` when it is unknown.
    pub async fn conversation(
        &self,
        key: &ConversationKey,
        limit: i64,
    ) -> Result<Option<ConversationDetail>, StoreError> {
        match self {
            Self::Sqlite(s) => s.conversation(key, limit).await,
        }
    }
}
