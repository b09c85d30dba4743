//! What a failed send or responder leads to: a retry with backoff, a dead letter, a held
//! channel (auth or account errors, a gateway session reconnecting), or an ambiguous send whose
//! conversation waits for evidence. Nothing here sends.

use rand::Rng;

use super::Worker;
use super::pipeline::JobResult;
use crate::domain::gates;
use crate::domain::retry::{Backoff, RetryDecision};
use crate::domain::{Channel, Provider, SilenceReason};
use crate::store::{LeasedJob, ReplyContext, StoreError};
use crate::whatsapp::errors::FailureClass;
use crate::whatsapp::send::SendError;

/// The hold a gateway session answering 503 (reconnecting) puts on its sends, as its
/// `session.status` DISCONNECTED does.
const SESSION_HOLD: &str = "session_disconnected";

impl Worker {
    pub(super) async fn send_failed(
        &self,
        job: &LeasedJob,
        ctx: &ReplyContext,
        channel: &Channel,
        ledger_id: i64,
        error: SendError,
    ) -> Result<JobResult, StoreError> {
        let label = error.code_label();
        let id = job.inbound_id;
        if channel.provider == Provider::Wasender && error.http_status() == Some(503) {
            // The gateway's session is reconnecting: hold the session (its `session.status`
            // CONNECTED, or a probe, resumes it) rather than burn the message's attempts.
            return self
                .hold_channel(channel, id, ledger_id, SESSION_HOLD, &error)
                .await;
        }
        if let SendError::Unknown(_) = error {
            self.store
                .mark_ambiguous(id, ledger_id, &label, self.clock.now_ms())
                .await?;
            self.metrics
                .send_failures
                .get_or_create(&[("class", "ambiguous")])
                .inc();
            tracing::warn!(message.id = %ctx.message.message_id, error = %error, "send outcome unknown; its conversation waits for the evidence");
            return Ok(JobResult::Ambiguous);
        }
        match error.class() {
            FailureClass::Retryable(hint) => {
                self.metrics
                    .send_failures
                    .get_or_create(&[("class", "retryable")])
                    .inc();
                let detail = error.to_string();
                self.retry_or_give_up(
                    job,
                    ctx,
                    Some(ledger_id),
                    hint.into(),
                    error.retry_after(),
                    &label,
                    &detail,
                )
                .await
            }
            FailureClass::Permanent => {
                self.metrics
                    .send_failures
                    .get_or_create(&[("class", "permanent")])
                    .inc();
                self.dead_letter(job, Some(ledger_id), &label, &error.to_string())
                    .await
            }
            FailureClass::HaltSender => {
                self.metrics
                    .send_failures
                    .get_or_create(&[("class", "halt")])
                    .inc();
                self.metrics.sends_halted.inc();
                self.hold_channel(channel, id, ledger_id, &label, &error)
                    .await
            }
        }
    }

    /// Pauses a channel's sends until a probe succeeds (or its session reconnects); the job
    /// waits, its attempt refunded.
    async fn hold_channel(
        &self,
        channel: &Channel,
        inbound_id: i64,
        ledger_id: i64,
        label: &str,
        error: &SendError,
    ) -> Result<JobResult, StoreError> {
        let now = self.clock.now_ms();
        let next_probe = now + self.settings.halt_probe_interval_ms;
        tracing::error!(channel = %channel, error = %error, "sends paused for this channel until a probe succeeds");
        self.store
            .hold_sends(channel, label, now, next_probe)
            .await?;
        self.hold_locally(channel, next_probe);
        self.store
            .retry_later(inbound_id, Some(ledger_id), next_probe, label, true)
            .await?;
        Ok(JobResult::Held)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per failure source; the arguments are the failure"
    )]
    pub(super) async fn retry_or_give_up(
        &self,
        job: &LeasedJob,
        ctx: &ReplyContext,
        ledger_id: Option<i64>,
        backoff: Backoff,
        retry_after: Option<std::time::Duration>,
        label: &str,
        detail: &str,
    ) -> Result<JobResult, StoreError> {
        let now = self.clock.now_ms();
        let closes = gates::window_closes_at_ms(ctx.snapshot.last_inbound_ts);
        let jitter = rand::thread_rng().gen_range(0.0..1.0);
        match self
            .settings
            .retry
            .next(job.attempts, backoff, retry_after, now, closes, jitter)
        {
            RetryDecision::RetryAt(at) => {
                self.store
                    .retry_later(job.inbound_id, ledger_id, at, label, false)
                    .await?;
                Ok(JobResult::RetryScheduled)
            }
            RetryDecision::Exhausted => self.dead_letter(job, ledger_id, label, detail).await,
            RetryDecision::WindowClosed => {
                self.store
                    .retry_later(job.inbound_id, ledger_id, now, label, false)
                    .await?;
                self.silence(job.inbound_id, SilenceReason::WindowClosed)
                    .await
            }
        }
    }

    pub(super) async fn dead_letter(
        &self,
        job: &LeasedJob,
        ledger_id: Option<i64>,
        label: &str,
        detail: &str,
    ) -> Result<JobResult, StoreError> {
        let now = self.clock.now_ms();
        self.store
            .dead_letter_message(job.inbound_id, ledger_id, label, detail, job.attempts, now)
            .await?;
        self.metrics.dead_lettered("send", 1);
        tracing::warn!(
            inbound_id = job.inbound_id,
            error = label,
            "reply dead-lettered"
        );
        Ok(JobResult::DeadLettered(label.to_owned()))
    }
}
