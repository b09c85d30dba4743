//! Retention and erasure in the store: what a prune batch removes, and what a contact's erasure
//! removes, keeping only what the promise needs.
//!
//! Invariants every backend keeps:
//! - the dedup key of an inbound message (provider + message id) and its outcome and reason are
//!   never removed by a prune or an erasure: an inbound row loses its body and raw payload, never
//!   the row itself, so a re-delivery of a pruned message — however late — is still a duplicate;
//! - content is removed only from messages that are settled: an outcome, no job, no open dead
//!   letter (a pending message still needs its text for its reply; an open dead letter may be
//!   replayed). Erasure is the exception: it removes a contact's content whatever the state of
//!   their messages, except the text of a reply in the middle of its send (claimed or
//!   ambiguous), which may still have to go out;
//! - a status row or a settled dead letter is deleted only past the dedup horizon (retention,
//!   but never under 7 days: Meta re-delivers for up to 7 days, and these rows are what make a
//!   re-delivered status or payload add nothing); before that only its raw payload goes;
//! - open dead letters are never touched by a prune;
//! - one batch is one short transaction touching at most `limit` rows per table, so the single
//!   SQLite writer is never held for long and ingest goes on between batches.

use serde::Serialize;

use super::{Store, StoreError};
use crate::domain::ConversationKey;

/// When things count as old, in the store's clock (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCutoffs {
    /// Retention: content (bodies, raw payloads, reply texts) and sweep history from before this
    /// goes.
    pub retention_before_ms: i64,
    /// The dedup horizon: rows that are dedup keys (statuses, settled dead letters, platform
    /// errors) from before this go. Never after `retention_before_ms`, and at least 7 days back.
    pub dedup_before_ms: i64,
}

/// The kinds of rows a prune goes through, one after the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneStep {
    /// Bodies and raw payloads of settled inbound messages, and the texts of their replies.
    MessageContent,
    /// Status webhooks: raw payloads past retention, rows past the dedup horizon.
    Statuses,
    /// Settled (replayed or discarded) dead letters: kept bytes, then rows.
    DeadLetters,
    /// Decisions of old sweep runs, then the runs.
    SweepHistory,
    /// Errors Meta reported at the notification level.
    PlatformErrors,
}

impl PruneStep {
    pub const ALL: [Self; 5] = [
        Self::MessageContent,
        Self::Statuses,
        Self::DeadLetters,
        Self::SweepHistory,
        Self::PlatformErrors,
    ];
}

/// What a prune removed (or, dry, would remove).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PruneCounts {
    /// Inbound messages whose body and raw payload were removed (the row, its dedup key and its
    /// outcome stay).
    pub messages: u64,
    /// Reply texts removed from the ledger (the row, its state and outbound id stay).
    pub reply_texts: u64,
    pub statuses_stripped: u64,
    pub statuses_deleted: u64,
    pub dead_letters_stripped: u64,
    pub dead_letters_deleted: u64,
    pub sweep_decisions_deleted: u64,
    pub sweep_runs_deleted: u64,
    pub platform_errors_deleted: u64,
}

impl PruneCounts {
    pub fn add(&mut self, o: &Self) {
        self.messages += o.messages;
        self.reply_texts += o.reply_texts;
        self.statuses_stripped += o.statuses_stripped;
        self.statuses_deleted += o.statuses_deleted;
        self.dead_letters_stripped += o.dead_letters_stripped;
        self.dead_letters_deleted += o.dead_letters_deleted;
        self.sweep_decisions_deleted += o.sweep_decisions_deleted;
        self.sweep_runs_deleted += o.sweep_runs_deleted;
        self.platform_errors_deleted += o.platform_errors_deleted;
    }

    /// Rows changed or removed, all kinds together.
    pub fn total(&self) -> u64 {
        self.messages
            + self.reply_texts
            + self.statuses_stripped
            + self.statuses_deleted
            + self.dead_letters_stripped
            + self.dead_letters_deleted
            + self.sweep_decisions_deleted
            + self.sweep_runs_deleted
            + self.platform_errors_deleted
    }
}

/// What one batch did, and whether its step has more to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneBatchDone {
    pub counts: PruneCounts,
    /// A table hit the batch's limit: run the step again.
    pub more: bool,
}

/// What erasing a contact removed. Kept: dedup keys, outcomes and reasons, ledger states and
/// outbound ids, the opt-out flag and the conversation's mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErasureCounts {
    /// Their inbound messages whose body and raw payload were removed.
    pub messages: u64,
    /// Whether a display name was removed.
    pub display_name: bool,
    /// Reply texts sent (or recorded) to them removed from the ledger.
    pub reply_texts: u64,
    /// Raw payloads of statuses of messages sent to them.
    pub statuses: u64,
    /// Kept bytes of dead letters of their messages.
    pub dead_letters: u64,
    /// Replies in the middle of their send (claimed or ambiguous) whose text was kept: it may
    /// still have to be sent. Erase again once they are settled.
    pub replies_in_flight: u64,
}

impl Store {
    /// One bounded transaction of `step`: at most `limit` rows per table.
    pub async fn prune_batch(
        &self,
        step: PruneStep,
        cutoffs: &PruneCutoffs,
        limit: u32,
    ) -> Result<PruneBatchDone, StoreError> {
        match self {
            Self::Sqlite(s) => s.prune_batch(step, cutoffs, limit).await,
        }
    }

    /// What a prune at `cutoffs` would remove, counted without writing.
    pub async fn prune_preview(&self, cutoffs: &PruneCutoffs) -> Result<PruneCounts, StoreError> {
        match self {
            Self::Sqlite(s) => s.prune_preview(cutoffs).await,
        }
    }

    /// Removes a contact's message bodies, name and payloads at once (one transaction).
    pub async fn erase_contact(
        &self,
        key: &ConversationKey,
        now_ms: i64,
    ) -> Result<ErasureCounts, StoreError> {
        match self {
            Self::Sqlite(s) => s.erase_contact(key, now_ms).await,
        }
    }
}
