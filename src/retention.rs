//! Retention: what is older than `retention` loses its content, in bounded batches.
//!
//! Message bodies, raw payloads and reply texts of settled messages, statuses, settled dead
//! letters, platform errors and the sweep's history are pruned; what the promise needs stays
//! (see `store::retention`): every inbound row keeps its dedup key (provider + message id), its
//! outcome and its reason for as long as the store lives, so a re-delivery of a pruned message
//! is a duplicate however late it comes and a message is never answered twice. Rows that are
//! dedup keys of their own (statuses, settled dead letters, platform errors) are deleted only
//! past the dedup horizon: `retention`, but never under [`DEDUP_FLOOR`] (Meta re-delivers for
//! up to 7 days).
//!
//! One batch is one short transaction of at most `batch_size` rows per table, with a pause
//! between batches, so ingest (which shares SQLite's single writer) is never stalled.
//! `run_once` does one whole prune and returns its counts; `run` repeats it every
//! `prune_interval` in `serve`.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::store::{PruneCounts, PruneCutoffs, PruneStep, Store, StoreError};

/// How long a message id and the other dedup keys are kept at least, whatever `retention` says.
pub const DEDUP_FLOOR: Duration = Duration::from_secs(7 * 24 * 60 * 60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    pub retention: Duration,
    /// Rows per table per transaction.
    pub batch_size: u32,
    /// Between two batches: the writer is free for ingest meanwhile.
    pub pause: Duration,
}

impl RetentionSettings {
    /// Fails closed on a retention or interval of zero (every settled message's text would go
    /// the moment it is answered; a zero interval would prune in a busy loop).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        if config.retention.is_zero() {
            return Err(ConfigError::Invalid(
                "retention must be longer than 0: set it like `30d` or `24h` (REPLYD_RETENTION)"
                    .into(),
            ));
        }
        if config.prune_interval.is_zero() {
            return Err(ConfigError::Invalid(
                "prune_interval must be longer than 0: set it like `1h` (REPLYD_PRUNE_INTERVAL)"
                    .into(),
            ));
        }
        Ok(Self {
            retention: config.retention,
            ..Self::default()
        })
    }

    pub fn cutoffs(&self, now_ms: i64) -> PruneCutoffs {
        PruneCutoffs {
            retention_before_ms: now_ms.saturating_sub(ms(self.retention)),
            dedup_before_ms: now_ms.saturating_sub(ms(self.retention.max(DEDUP_FLOOR))),
        }
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(30 * 24 * 60 * 60),
            batch_size: 1_000,
            pause: Duration::from_millis(5),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What one prune did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub retention_before_ms: i64,
    pub dedup_before_ms: i64,
    #[serde(flatten)]
    pub counts: PruneCounts,
    /// Transactions written (0 in a dry run).
    pub batches: u64,
    pub duration_ms: u64,
}

impl PruneReport {
    /// The lines `replyd prune` prints.
    pub fn table(&self) -> String {
        let c = &self.counts;
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let rows = [
            ("message bodies and payloads", c.messages),
            ("reply texts", c.reply_texts),
            ("status payloads", c.statuses_stripped),
            ("statuses", c.statuses_deleted),
            ("dead-letter payloads", c.dead_letters_stripped),
            ("settled dead letters", c.dead_letters_deleted),
            ("sweep decisions", c.sweep_decisions_deleted),
            ("sweep runs", c.sweep_runs_deleted),
            ("platform errors", c.platform_errors_deleted),
        ];
        let mut out = format!(
            "prune (retention {}, dedup keys kept at least {}): {verb}\n",
            humantime::format_duration(self.retention),
            humantime::format_duration(self.retention.max(DEDUP_FLOOR)),
        );
        for (what, n) in rows {
            out.push_str(&format!("{n:>10}  {what}\n"));
        }
        out.push_str(&format!(
            "{:>10}  in all, {} batch(es), {} ms; message ids and outcomes are kept\n",
            c.total(),
            self.batches,
            self.duration_ms
        ));
        out
    }
}

/// Prunes; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pruner {
    store: Store,
    clock: Clock,
    settings: RetentionSettings,
}

impl Pruner {
    pub fn new(store: Store, clock: Clock, settings: RetentionSettings) -> Self {
        Self {
            store,
            clock,
            settings,
        }
    }

    pub async fn run_once(&self, dry_run: bool) -> Result<PruneReport, StoreError> {
        self.run_once_with(dry_run, |_| {}).await
    }

    /// One prune, calling `progress` after every batch with the counts so far.
    #[tracing::instrument(name = "prune", skip(self, progress))]
    pub async fn run_once_with(
        &self,
        dry_run: bool,
        mut progress: impl FnMut(&PruneReport),
    ) -> Result<PruneReport, StoreError> {
        let started = Instant::now();
        let cutoffs = self.settings.cutoffs(self.clock.now_ms());
        let mut report = PruneReport {
            dry_run,
            retention: self.settings.retention,
            retention_before_ms: cutoffs.retention_before_ms,
            dedup_before_ms: cutoffs.dedup_before_ms,
            counts: PruneCounts::default(),
            batches: 0,
            duration_ms: 0,
        };
        if dry_run {
            report.counts = self.store.prune_preview(&cutoffs).await?;
        } else {
            for step in PruneStep::ALL {
                loop {
                    let done = self
                        .store
                        .prune_batch(step, &cutoffs, self.settings.batch_size)
                        .await?;
                    report.counts.add(&done.counts);
                    report.batches += 1;
                    report.duration_ms = elapsed_ms(started);
                    progress(&report);
                    if !done.more {
                        break;
                    }
                    tokio::time::sleep(self.settings.pause).await;
                }
            }
        }
        report.duration_ms = elapsed_ms(started);
        progress(&report);
        Ok(report)
    }

    /// Prunes every `every` until `shutdown`, the first after one interval (like the sweep);
    /// logs only prunes that removed something. A prune cut by shutdown loses only its open
    /// batch, rolled back.
    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let pruned = tokio::select! {
                () = shutdown.cancelled() => return,
                pruned = self.run_once(false) => pruned,
            };
            match pruned {
                Ok(report) if report.counts.total() > 0 => tracing::info!(
                    messages = report.counts.messages,
                    statuses = report.counts.statuses_deleted + report.counts.statuses_stripped,
                    dead_letters =
                        report.counts.dead_letters_deleted + report.counts.dead_letters_stripped,
                    rows = report.counts.total(),
                    batches = report.batches,
                    duration_ms = report.duration_ms,
                    "pruned what is past retention"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "prune failed; will try again"),
            }
        }
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dedup_horizon_is_never_under_seven_days() {
        let day = 24 * 60 * 60 * 1000;
        let now = 100 * day;
        let short = RetentionSettings {
            retention: Duration::from_secs(3600),
            ..RetentionSettings::default()
        };
        let c = short.cutoffs(now);
        assert_eq!(c.retention_before_ms, now - 3_600_000);
        assert_eq!(c.dedup_before_ms, now - 7 * day);
        let long = RetentionSettings::default().cutoffs(now);
        assert_eq!(long.retention_before_ms, now - 30 * day);
        assert_eq!(long.dedup_before_ms, now - 30 * day);
    }

    #[test]
    fn zero_retention_or_interval_is_refused() {
        let config = Config {
            retention: Duration::ZERO,
            ..Config::default()
        };
        let e = RetentionSettings::from_config(&config).unwrap_err();
        assert!(e.to_string().contains("REPLYD_RETENTION"), "{e}");
        let config = Config {
            prune_interval: Duration::ZERO,
            ..Config::default()
        };
        assert!(RetentionSettings::from_config(&config).is_err());
        let ok = RetentionSettings::from_config(&Config::default()).unwrap();
        assert_eq!(ok.retention, Duration::from_secs(30 * 24 * 3600));
    }
}
