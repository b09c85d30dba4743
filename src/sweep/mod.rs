//! The reconcile sweep: finds inbound messages that never reached an outcome (the job was never
//! written, or the queue lost it) and sends each through the same gates as the live path, plus
//! the sweep's own `in_flight` and `superseded`. Only a message that passes every gate gets a
//! job again; `opted_out`, `operator`, `escalated`, `window_closed` and `superseded` become its
//! outcome, so nothing stays pending forever; `in_flight` and `answered` are left to their job or
//! ledger row. Every run and decision is recorded; a dry run computes the same decisions and
//! changes nothing.
//!
//! One sweep at a time across every process: a run holds the store lock `sweep` (a lease, so a
//! killed holder cannot keep it). `run_once` does one run and returns what it did; `run` repeats
//! it every `sweep_interval`.

mod report;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, SweepBatch, SweepMode};
pub use report::{SweepDecisionAnswer, SweepReport, SweepReportAnswer, counts_by_name};

/// The name of the store lock a sweep holds while it acts.
pub const SWEEP_LOCK: &str = "sweep";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSettings {
    /// Messages younger than this (by payload time) are not looked at; ones that arrived within
    /// it count as in flight.
    pub grace: Duration,
    /// Pending messages decided per transaction: bounds how long the writer is held when a
    /// large backlog is pending (a lost broker queue), so ingest is never starved.
    pub batch_size: u32,
    /// How long the lock is ours without renewal (renewed before every batch).
    pub lock_ttl: Duration,
}

impl SweepSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            grace: config.sweep_grace,
            ..Self::default()
        }
    }
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(2 * 60),
            batch_size: 2_000,
            lock_ttl: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("another sweep is running")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs sweeps; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sweeper {
    store: Store,
    clock: Clock,
    settings: SweepSettings,
    /// Rung after a run re-enqueued jobs, so an idle worker leases them at once.
    jobs_ready: Arc<Notify>,
    /// Where runs and decisions are counted (a server's sweeps; the CLI's run has none).
    metrics: Option<Arc<Metrics>>,
}

impl Sweeper {
    pub fn new(
        store: Store,
        clock: Clock,
        settings: SweepSettings,
        jobs_ready: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            clock,
            settings,
            jobs_ready,
            metrics: None,
        }
    }

    /// Counts every run that acted and its decisions in `replyd_sweep_runs_total` and
    /// `replyd_sweep_decisions_total{decision,reason}`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One sweep over every pending message. A dry run takes no lock and writes nothing; a real
    /// one fails with [`SweepError::Busy`] while another holds the lock.
    #[tracing::instrument(name = "sweep", skip(self))]
    pub async fn run_once(&self, dry_run: bool) -> Result<SweepReport, SweepError> {
        if dry_run {
            return self.sweep(SweepMode::DryRun, None).await;
        }
        // Unique per run: two runs of one process exclude each other like two processes do.
        let holder = format!("{}:{:016x}", std::process::id(), rand::random::<u64>());
        let ttl_ms = ms(self.settings.lock_ttl);
        if !self
            .store
            .try_lock(SWEEP_LOCK, &holder, ttl_ms, self.clock.now_ms())
            .await?
        {
            return Err(SweepError::Busy);
        }
        let result = self
            .sweep(SweepMode::Act { run_id: None }, Some(&holder))
            .await;
        if let Err(e) = self.store.unlock(SWEEP_LOCK, &holder).await {
            tracing::warn!(error = %e, "could not release the sweep lock; it expires on its own");
        }
        let report = result?;
        if let Some(m) = &self.metrics {
            m.sweep_runs.inc();
            for d in &report.decisions {
                let reason = d.action.reason().map_or("none", |r| r.as_str());
                m.sweep_decisions
                    .get_or_create(&[("decision", d.action.kind()), ("reason", reason)])
                    .inc();
            }
        }
        if report.requeued > 0 {
            self.jobs_ready.notify_one();
        }
        Ok(report)
    }

    /// The batches of one run, each its own transaction, renewing the lock (when held) before each.
    async fn sweep(
        &self,
        mut mode: SweepMode,
        holder: Option<&str>,
    ) -> Result<SweepReport, SweepError> {
        let mut report = SweepReport::new(mode == SweepMode::DryRun, self.clock.now_ms());
        let mut after = None;
        loop {
            let now_ms = self.clock.now_ms();
            if let Some(holder) = holder {
                let ttl_ms = ms(self.settings.lock_ttl);
                if !self
                    .store
                    .try_lock(SWEEP_LOCK, holder, ttl_ms, now_ms)
                    .await?
                {
                    return Err(SweepError::Busy);
                }
            }
            let batch = SweepBatch {
                mode,
                after,
                limit: self.settings.batch_size.max(1),
                now_ms,
                grace_ms: ms(self.settings.grace),
            };
            let done = self.store.sweep_batch(&batch).await?;
            if let SweepMode::Act { run_id: None } = mode {
                mode = SweepMode::Act {
                    run_id: done.run_id,
                };
            }
            report.add(done.run_id, done.decisions);
            match done.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        report.finished_at_ms = self.clock.now_ms();
        Ok(report)
    }

    /// Sweeps every `every` until `shutdown`; logs only runs that changed something.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            match self.run_once(false).await {
                Ok(report) if report.acted() => tracing::info!(
                    run_id = report.run_id,
                    scanned = report.scanned,
                    requeued = report.requeued,
                    silenced = report.silenced(),
                    duration_ms = report.finished_at_ms - report.started_at_ms,
                    "sweep re-enqueued or silenced pending messages"
                ),
                Ok(_) => {}
                Err(SweepError::Busy) => {
                    tracing::debug!("sweep skipped: another process is sweeping");
                }
                Err(e) => tracing::warn!(error = %e, "sweep failed; will try again"),
            }
        }
    }
}
