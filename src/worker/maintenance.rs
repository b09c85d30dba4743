//! The worker's housekeeping: probe paused numbers and resume them, and settle ambiguous sends
//! that no status webhook confirmed within the quiet period — sent once more when later sends
//! of the number were confirmed (evidence it did not go out), else left to an operator as the
//! dead letter `ambiguous_send`. `maintain_once` does one pass and says what it did;
//! `run_maintenance` repeats it.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::domain::ResolvedBy;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    pub numbers_resumed: usize,
    pub numbers_still_held: usize,
    /// Ambiguous sends shown not to have gone out, back in the queue for one more attempt.
    pub ambiguous_resent: u64,
    /// Ambiguous sends with no evidence either way: dead letters `ambiguous_send`.
    pub ambiguous_dead_lettered: u64,
    pub takeovers_released: u64,
}

impl Worker {
    pub async fn maintain_once(&self) -> Result<MaintenanceReport, StoreError> {
        let mut report = MaintenanceReport::default();
        let now = self.clock.now_ms();
        for hold in self.store.send_holds().await? {
            if hold.next_probe_ms > now {
                report.numbers_still_held += 1;
                continue;
            }
            match self.sender.probe(&hold.channel).await {
                Ok(()) => {
                    self.store
                        .lift_hold(&hold.channel, self.clock.now_ms())
                        .await?;
                    tracing::info!(channel = %hold.channel, "probe succeeded: sends resumed");
                    report.numbers_resumed += 1;
                }
                Err(e) => {
                    let next = self.clock.now_ms() + self.settings.halt_probe_interval_ms;
                    self.store
                        .hold_sends(&hold.channel, &e.code_label(), hold.since_ms, next)
                        .await?;
                    tracing::warn!(channel = %hold.channel, error = %e, "sends still paused");
                    report.numbers_still_held += 1;
                }
            }
        }
        self.refresh_holds().await?;
        if report.numbers_resumed > 0 {
            self.jobs_ready.notify_one();
        }
        let settled = self
            .store
            .settle_ambiguous(
                self.settings.ambiguous_quiet_ms,
                self.clock.now_ms(),
                self.settings.ambiguous_resolution,
            )
            .await?;
        report.ambiguous_resent = settled.resent;
        report.ambiguous_dead_lettered = settled.dead_lettered;
        self.metrics
            .ambiguous_resolved(ResolvedBy::Evidence, settled.resent);
        self.metrics
            .ambiguous_resolved(ResolvedBy::Operator, settled.dead_lettered);
        if settled.resent > 0 {
            tracing::info!(
                count = settled.resent,
                "ambiguous sends did not go out (later sends of their number were confirmed): sending them once more"
            );
            self.jobs_ready.notify_one();
        }
        if settled.dead_lettered > 0 {
            self.metrics
                .dead_lettered("ambiguous_send", settled.dead_lettered);
            tracing::warn!(
                count = settled.dead_lettered,
                "ambiguous sends with no evidence either way became dead letters (ambiguous_send)"
            );
        }
        report.takeovers_released = self
            .store
            .release_idle_takeovers(self.settings.operator_idle_release_ms, self.clock.now_ms())
            .await?;
        if report.takeovers_released > 0 {
            tracing::info!(
                count = report.takeovers_released,
                "idle operator takeovers handed back to the bot"
            );
        }
        Ok(report)
    }

    pub async fn run_maintenance(self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.maintain_once().await {
                tracing::warn!(error = %e, "worker maintenance failed; will try again");
            }
        }
    }
}
