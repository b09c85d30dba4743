//! Read receipts: before the responder is asked, a Cloud API message is marked read with the
//! typing indicator, so the customer sees that the business is answering.
//!
//! Invariants: only a message the gates let through is marked (never one silenced because the
//! contact opted out or an operator holds the conversation: marking it read would hide it from
//! the human handling it); a receipt never blocks or fails the reply — it runs beside the
//! responder, the reply waits for it at most [`RECEIPT_WAIT`], and a failed one is tried once
//! more and then given up on.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::Worker;
use super::sender::MarkRead;
use crate::domain::Channel;
use crate::store::ReplyContext;

/// How long a reply waits, at most, for its read receipt to be answered before it is sent.
const RECEIPT_WAIT: Duration = Duration::from_millis(500);

/// A read receipt under way.
pub(super) struct PendingReceipt(JoinHandle<()>);

impl PendingReceipt {
    /// Lets the receipt reach the API before the reply when it can, without waiting long: past
    /// [`RECEIPT_WAIT`] it goes on by itself.
    pub(super) async fn settle(mut self) {
        let _ = tokio::time::timeout(RECEIPT_WAIT, &mut self.0).await;
    }
}

impl Worker {
    /// Starts marking the message read, when its channel does that.
    pub(super) fn start_read_receipt(
        &self,
        channel: &Channel,
        ctx: &ReplyContext,
    ) -> Option<PendingReceipt> {
        if !self.settings.read_receipts.enabled_for(channel) || self.sender.is_sandbox(channel) {
            return None;
        }
        let (sender, metrics) = (self.sender.clone(), self.metrics.clone());
        let (channel, message_id) = (channel.clone(), ctx.message.message_id.clone());
        Some(PendingReceipt(tokio::spawn(async move {
            for attempt in 1..=2 {
                match sender.mark_read(&channel, &message_id).await {
                    Ok(MarkRead::Marked) => {
                        metrics
                            .read_receipts
                            .get_or_create(&[("result", "marked")])
                            .inc();
                        return;
                    }
                    Ok(MarkRead::NotApplicable) => return,
                    Err(e) => {
                        metrics
                            .read_receipts
                            .get_or_create(&[("result", "failed")])
                            .inc();
                        tracing::debug!(message.id = %message_id, attempt, error = %e, "mark read failed");
                    }
                }
            }
        })))
    }
}
