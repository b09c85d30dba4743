//! One job, start to finish: gates → mark read (Cloud API, with typing; never for a message the
//! gates silence) → responder → claim the ledger row (gates re-checked inside) → pace → send
//! through the channel the message came in on → record. Every path ends in exactly one store
//! call that settles the job.

use super::Worker;
use super::responder::{Decision, HistoryItem, ResponderError, ResponderInput};
use crate::domain::gates::{self, LedgerState, Verdict};
use crate::domain::keywords::KeywordAction;
use crate::domain::retry::Backoff;
use crate::domain::{Channel, ConversationMode, Provider, SendRef, SilenceReason};
use crate::store::{Claim, LeasedJob, ReplyContext, StoreError};
use crate::whatsapp::errors::RetryHint;

use super::limiter::Pace;
use super::responder::Direction;
use super::sender::{OutgoingReply, gateway_recipient, recipient};

/// What happened to a job (for logs, metrics and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Replied,
    Silent(SilenceReason),
    /// A previous attempt was cut off mid-send: its fate is unknown.
    Ambiguous,
    RetryScheduled,
    /// The number's sends are paused; the job waits for the probe.
    Held,
    DeadLettered(String),
    /// Nothing to do (the message already has its outcome, or is settled elsewhere).
    Skipped,
}

impl From<RetryHint> for Backoff {
    fn from(hint: RetryHint) -> Self {
        match hint {
            RetryHint::Normal => Backoff::Normal,
            RetryHint::ServiceUnavailable => Backoff::ServiceUnavailable,
            RetryHint::RateLimited => Backoff::RateLimited,
            RetryHint::Throughput => Backoff::Throughput,
            RetryHint::PairRateLimit => Backoff::PairRateLimit,
            RetryHint::Limited => Backoff::Limited,
        }
    }
}

impl Worker {
    pub(super) async fn process(&self, job: LeasedJob) -> Result<JobResult, StoreError> {
        let id = job.inbound_id;
        let Some(ctx) = self.store.reply_context(id).await? else {
            self.store.drop_job(id).await?;
            return Ok(JobResult::Skipped);
        };
        if ctx.outcome.is_some() {
            self.store.drop_job(id).await?;
            return Ok(JobResult::Skipped);
        }
        match (ctx.snapshot.ledger, ctx.ledger_id) {
            // The lease of a worker that claimed and then died ran out: the send may or may not
            // have happened. Never resend blindly.
            (Some(LedgerState::Claimed), Some(ledger_id)) => {
                self.store
                    .mark_ambiguous(id, ledger_id, "interrupted", self.clock.now_ms())
                    .await?;
                self.metrics
                    .send_failures
                    .get_or_create(&[("class", "ambiguous")])
                    .inc();
                return Ok(JobResult::Ambiguous);
            }
            (Some(LedgerState::Ambiguous), _) => {
                self.store.drop_job(id).await?;
                return Ok(JobResult::Skipped);
            }
            _ => {}
        }
        let now = self.clock.now_ms();
        // The message that changed consent may get its configured confirmation (an opt-out's is
        // the one message an opted-out contact receives); a repeated keyword does not.
        if let Some((text, confirming_opt_out)) = self.consent_confirmation(&ctx) {
            return self.send_reply(&job, &ctx, text, confirming_opt_out).await;
        }
        if let Verdict::Silent(reason) = gates::evaluate(&ctx.snapshot, now) {
            return self.silence(id, reason).await;
        }
        let channel = ctx.message.channel()?;
        if let Some(next_probe) = self.held_until(&channel).await? {
            self.store
                .retry_later(id, None, next_probe, "sends_held", true)
                .await?;
            return Ok(JobResult::Held);
        }
        // Read receipt and typing, started before the responder is asked and never waited on
        // for long: the reply does not depend on it.
        let receipt = self.start_read_receipt(&channel, &ctx);
        let decided = self
            .responders
            .get(&channel)
            .decide(&self.responder_input(&ctx).await?)
            .await;
        if let Some(receipt) = receipt {
            receipt.settle().await;
        }
        let decision = match decided {
            Ok(decision) => decision,
            Err(ResponderError::Retryable(why)) => {
                return self
                    .retry_or_give_up(
                        &job,
                        &ctx,
                        None,
                        Backoff::Normal,
                        None,
                        "responder_unavailable",
                        &why,
                    )
                    .await;
            }
            Err(ResponderError::Permanent(why)) => {
                return self
                    .dead_letter(&job, None, "responder_refused", &why)
                    .await;
            }
        };
        let text = match decision {
            Decision::Reply(text) => text,
            Decision::NoReply => return self.silence(id, SilenceReason::NoReply).await,
            Decision::Escalate { reason } => {
                self.store
                    .set_conversation_mode(
                        &ctx.message.conversation()?,
                        ConversationMode::Escalated,
                        Some(&reason),
                        now,
                    )
                    .await?;
                return self.silence(id, SilenceReason::Escalated).await;
            }
        };
        self.send_reply(&job, &ctx, text, false).await
    }

    /// Claim (gates re-checked inside), send, record.
    async fn send_reply(
        &self,
        job: &LeasedJob,
        ctx: &ReplyContext,
        text: String,
        confirming_opt_out: bool,
    ) -> Result<JobResult, StoreError> {
        let id = job.inbound_id;
        let channel = ctx.message.channel()?;
        if let Some(next_probe) = self.held_until(&channel).await? {
            self.store
                .retry_later(id, None, next_probe, "sends_held", true)
                .await?;
            return Ok(JobResult::Held);
        }
        // Pace before claiming: the wait holds no ledger row, and the gates are re-checked after it.
        self.pace(ctx, &channel).await;
        let now = self.clock.now_ms();
        let claim = if confirming_opt_out {
            self.store
                .claim_opt_out_confirmation(id, &text, now)
                .await?
        } else {
            self.store.claim_reply(id, &text, now).await?
        };
        let (ledger_id, attempts) = match claim {
            Claim::Claimed {
                ledger_id,
                attempts,
            } => (ledger_id, attempts),
            Claim::Silenced(reason) => {
                self.count_silence(reason);
                return Ok(JobResult::Silent(reason));
            }
            Claim::AlreadyDecided => return Ok(JobResult::Skipped),
        };
        let m = &ctx.message;
        let to = match m.provider {
            Provider::Cloud => recipient(&m.wa_id),
            Provider::Wasender => gateway_recipient(&m.wa_id, m.group_id.as_deref()),
        };
        // Names the attempt: a late status for an earlier one is told apart from this one's.
        let callback = SendRef {
            ledger_id,
            attempt: Some(attempts),
        }
        .callback_data();
        let reply = OutgoingReply {
            channel: &channel,
            to: &to,
            body: &text,
            context_message_id: &m.message_id,
            callback_data: &callback,
        };
        match self.sender.send_text(&reply).await {
            Ok(accepted) => {
                let now = self.clock.now_ms();
                self.store
                    .mark_sent(id, ledger_id, &accepted.message_id, now)
                    .await?;
                self.metrics.replies_sent.inc();
                self.metrics
                    .reply_latency
                    .observe((now - m.received_at_ms).max(0) as f64 / 1000.0);
                tracing::debug!(message.id = %m.message_id, attempts, "replied");
                Ok(JobResult::Replied)
            }
            Err(error) => self.send_failed(job, ctx, &channel, ledger_id, error).await,
        }
    }

    /// The configured confirmation for a message that is a consent keyword and is the very
    /// message that changed the contact's consent; with whether it confirms an opt-out.
    fn consent_confirmation(&self, ctx: &ReplyContext) -> Option<(String, bool)> {
        let action = self.keywords.classify(ctx.message.text.as_deref()?)?;
        let text = self.keywords.confirmation(action)?;
        let changed_consent = ctx.consent_ts == Some(ctx.message.timestamp)
            && ctx.snapshot.opted_out == (action == KeywordAction::OptOut);
        changed_consent.then(|| (text.to_owned(), action == KeywordAction::OptOut))
    }

    pub(super) async fn silence(
        &self,
        inbound_id: i64,
        reason: SilenceReason,
    ) -> Result<JobResult, StoreError> {
        self.store
            .finish_silent(inbound_id, reason, self.clock.now_ms())
            .await?;
        self.count_silence(reason);
        Ok(JobResult::Silent(reason))
    }

    fn count_silence(&self, reason: SilenceReason) {
        self.metrics
            .replies_silenced
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    async fn responder_input(&self, ctx: &ReplyContext) -> Result<ResponderInput, StoreError> {
        let m = &ctx.message;
        let wanted = self.responders.history_len(&m.channel()?);
        let mut history = Vec::new();
        if wanted > 0 {
            for exchange in self
                .store
                .history(&m.conversation()?, m.inbound_id, wanted)
                .await?
            {
                history.push(HistoryItem {
                    direction: Direction::Inbound,
                    text: exchange.inbound_text,
                    timestamp: exchange.inbound_ts,
                });
                history.push(HistoryItem {
                    direction: Direction::Outbound,
                    text: Some(exchange.reply_text),
                    timestamp: exchange.inbound_ts,
                });
            }
        }
        Ok(ResponderInput {
            message_id: m.message_id.clone(),
            phone_number_id: m.phone_number_id.clone(),
            wa_id: m.wa_id.clone(),
            kind: m.kind.clone(),
            text: m.text.clone(),
            timestamp: m.timestamp,
            contact_name: ctx.contact_name.clone(),
            history,
        })
    }

    /// Waits for the channel's and the recipient's next send slot.
    async fn pace(&self, ctx: &ReplyContext, channel: &Channel) {
        let m = &ctx.message;
        let now = self.clock.now_ms();
        let number_slot = self.limiter.reserve(
            &channel.to_string(),
            Pace::per_second(self.settings.rate_for(channel)),
            now,
        );
        let pair_key = format!("{channel}/{}", m.wa_id);
        let pair_slot = self
            .limiter
            .reserve(&pair_key, self.settings.pair_pace, now);
        let wait_ms = number_slot.max(pair_slot) - now;
        if wait_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64)).await;
        }
    }
}
