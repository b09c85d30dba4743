//! Offline maintenance commands that can run long — `prune`, `spool replay`, `dlq replay` —
//! with a progress bar on stderr once they do (see [`crate::progress`]); each returns the
//! summary its command prints on stdout.

use std::time::Duration;

use anyhow::Context;

use crate::app::Core;
use crate::clock::Clock;
use crate::config::Config;
use crate::ingest::{DeadLetterReplay, ReplayReport};
use crate::progress::Progress;
use crate::retention::{PruneReport, Pruner, RetentionSettings};
use crate::store::Store;

/// `replyd prune [--dry-run]`
pub async fn prune(config: &Config, store: &Store, dry_run: bool) -> anyhow::Result<PruneReport> {
    let settings = RetentionSettings::from_config(config)?;
    let pruner = Pruner::new(store.clone(), Clock::system(), settings);
    let progress = Progress::new(None);
    let report = pruner
        .run_once_with(dry_run, |r| {
            progress.update(r.counts.total(), || {
                format!(
                    "{} row(s) pruned in {} batch(es)",
                    r.counts.total(),
                    r.batches
                )
            });
        })
        .await
        .context("pruning")?;
    progress.finish();
    Ok(report)
}

/// `replyd spool replay`: the bar follows the spool's bytes as its files are settled.
pub async fn spool_replay(core: &Core) -> anyhow::Result<ReplayReport> {
    let spool = core.ingestor.spool().clone();
    let total = tokio::task::spawn_blocking({
        let spool = spool.clone();
        move || spool.pending_bytes()
    })
    .await?;
    let progress = std::sync::Arc::new(Progress::new(Some(total)));
    let watcher = tokio::spawn({
        let progress = progress.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let spool = spool.clone();
                let left = tokio::task::spawn_blocking(move || spool.pending_bytes())
                    .await
                    .unwrap_or(total);
                progress.update(total.saturating_sub(left), || "bytes replayed".to_owned());
            }
        }
    });
    let report = core.ingestor.replay_spool().await;
    watcher.abort();
    progress.finish();
    report.context("replaying the spool")
}

/// What `replyd dlq replay` did with each dead letter.
#[derive(Debug, Default)]
pub struct DlqReplaySummary {
    pub lines: Vec<String>,
    pub failed: usize,
}

/// `replyd dlq replay ID… | --all`: each dead letter in turn; one that fails does not stop
/// the others.
pub async fn dlq_replay(core: &Core, ids: &[i64], all: bool) -> anyhow::Result<DlqReplaySummary> {
    let mut ids = ids.to_vec();
    if all {
        // Open ones, oldest first, so messages go back in the order they died.
        let mut open: Vec<i64> = core
            .store
            .dead_letters(i64::MAX)
            .await?
            .iter()
            .map(|l| l.id)
            .collect();
        open.reverse();
        ids.extend(open);
    }
    anyhow::ensure!(
        !ids.is_empty(),
        "name the dead letters to replay (`replyd dlq replay 12 13`) or pass --all"
    );
    let progress = Progress::new(Some(ids.len() as u64));
    let mut summary = DlqReplaySummary::default();
    for (done, id) in ids.iter().copied().enumerate() {
        let now = Clock::system().now_ms();
        let line = match core
            .ingestor
            .replay_dead_letter(&core.store, id, now)
            .await?
        {
            DeadLetterReplay::MessageQueued => {
                format!("dead letter {id} replayed: the message is queued again")
            }
            DeadLetterReplay::PayloadIngested => {
                format!("dead letter {id} replayed: the payload was ingested")
            }
            DeadLetterReplay::StillMalformed(why) => {
                summary.failed += 1;
                format!("dead letter {id} still fails: {why}")
            }
            DeadLetterReplay::NotFound => {
                summary.failed += 1;
                format!("no dead letter {id}")
            }
            DeadLetterReplay::NotOpen => {
                summary.failed += 1;
                format!("dead letter {id} is not open")
            }
        };
        summary.lines.push(line);
        progress.update(done as u64 + 1, || format!("{} failed", summary.failed));
    }
    progress.finish();
    Ok(summary)
}
