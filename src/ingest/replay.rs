//! Spool replay: every spooled record goes back through the normal ingest path.
//!
//! Records are streamed from each claimed file in bounded chunks (never a whole file in
//! memory) and written concurrently so the group-commit writer batches them. A file is deleted
//! only when each of its records is settled: stored, or — when the store refuses that record
//! while it takes others — dead-lettered with its bytes, or else retained in a new spool file
//! for the next pass. One refused record never holds up the records after it. When the store
//! takes no writes at all the pass stops and the file stays as it is: replaying it again later
//! is harmless, dedup turns what was already stored into duplicates.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::spool::{RecordReader, SpoolRecord};
use super::{Ingestor, WriteError};
use crate::domain::{Notification, Origin};
use crate::store::{IngestReport, IngestUnit, UndecodablePayload};
use crate::whatsapp::cloud::PayloadError;

/// Records written concurrently per chunk, and the body bytes a chunk may hold.
const CHUNK_RECORDS: usize = 256;
const CHUNK_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the spool failed: {0}")]
    Io(#[from] io::Error),
    #[error("the store takes no writes; the spool is kept for the next replay: {0}")]
    Store(#[from] WriteError),
}

/// What one spool replay did. A record is settled when stored, dead-lettered or retained; a
/// file is deleted once all of its records are settled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = SpoolReplayReport)]
pub struct ReplayReport {
    /// Files fully settled and deleted.
    pub files: usize,
    /// Records stored (new or duplicate).
    pub records: usize,
    pub new_messages: u64,
    pub duplicate_messages: u64,
    pub torn_bytes: usize,
    /// Records the store refused, now dead letters holding their bytes.
    pub dead_lettered: usize,
    /// Records that could not be settled, written to a new spool file for the next pass.
    pub retained: usize,
}

/// How one refused record was settled.
enum Settled {
    Stored,
    DeadLettered,
    Retained(SpoolRecord),
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
}

impl Ingestor {
    /// Re-ingests everything in the spool. Safe to repeat: dedup turns a second pass into
    /// duplicates. Passes in this process run one at a time; other processes cannot touch the
    /// spool (it has one owner).
    pub async fn replay_spool(&self) -> Result<ReplayReport, ReplayError> {
        let _one_pass = self.replaying.lock().await;
        let spool = self.spool.clone();
        let files = blocking(move || spool.claim_for_replay()).await??;
        let mut report = ReplayReport::default();
        for path in files {
            self.replay_file(path, &mut report).await?;
        }
        Ok(report)
    }

    async fn replay_file(
        &self,
        path: PathBuf,
        report: &mut ReplayReport,
    ) -> Result<(), ReplayError> {
        let open = path.clone();
        let mut reader = match blocking(move || RecordReader::open(&open)).await? {
            Ok(reader) => reader,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut retained = Vec::new();
        loop {
            let (back, chunk) = blocking(move || {
                let chunk = reader.next_chunk(CHUNK_RECORDS, CHUNK_BYTES);
                (reader, chunk)
            })
            .await?;
            reader = back;
            let chunk = chunk?;
            if chunk.is_empty() {
                break;
            }
            self.replay_chunk(chunk, report, &mut retained).await?;
        }
        let torn = reader.torn_bytes() as usize;
        if torn > 0 {
            tracing::warn!(path = %path.display(), torn_bytes = torn, "spool: skipped torn records");
        }
        report.torn_bytes += torn;
        let spool = self.spool.clone();
        blocking(move || finish(&spool, &path, &retained)).await??;
        report.files += 1;
        Ok(())
    }

    async fn replay_chunk(
        &self,
        chunk: Vec<SpoolRecord>,
        report: &mut ReplayReport,
        retained: &mut Vec<SpoolRecord>,
    ) -> Result<(), ReplayError> {
        let writes = chunk
            .iter()
            .map(|r| self.writer.write(self.parse(&r.origin, &r.body)));
        let results = join_all(writes).await;
        let mut refused = Vec::new();
        for (record, result) in chunk.into_iter().zip(results) {
            match result {
                Ok(r) => self.stored(&r, report),
                Err(_) => refused.push(record),
            }
        }
        for record in refused {
            match self.settle_refused(record, report).await? {
                Settled::Stored => {}
                Settled::DeadLettered => report.dead_lettered += 1,
                Settled::Retained(record) => {
                    report.retained += 1;
                    retained.push(record);
                }
            }
        }
        Ok(())
    }

    /// A record whose write failed: alone this time (a batch fails as a whole, so it may only
    /// have shared a batch with the one at fault), then, if the store takes writes but not this
    /// record, as a dead letter with its bytes, else retained.
    async fn settle_refused(
        &self,
        record: SpoolRecord,
        report: &mut ReplayReport,
    ) -> Result<Settled, ReplayError> {
        let error = match self
            .writer
            .write(self.parse(&record.origin, &record.body))
            .await
        {
            Ok(r) => {
                self.stored(&r, report);
                return Ok(Settled::Stored);
            }
            Err(e) => e,
        };
        // The store or this record? A write of nothing still takes the write lock and commits.
        self.writer.write(nothing(record.origin.clone())).await?;
        tracing::warn!(error = %error, provider = %record.origin.provider(), bytes = record.body.len(), "spool: the store refuses this record; keeping it as a dead letter");
        let letter = refused(&record, &error);
        match self.writer.write(letter).await {
            Ok(r) => {
                self.metrics.dead_lettered("store_refused", r.dead_letters);
                Ok(Settled::DeadLettered)
            }
            Err(e) => {
                tracing::warn!(error = %e, provider = %record.origin.provider(), "spool: the refused record cannot be dead-lettered either; retained for the next replay");
                Ok(Settled::Retained(record))
            }
        }
    }

    fn stored(&self, r: &IngestReport, report: &mut ReplayReport) {
        self.count(r);
        report.new_messages += r.new_messages;
        report.duplicate_messages += r.duplicate_messages;
        report.records += 1;
        self.metrics.spool_replayed.inc();
    }

    /// Replays the spool whenever it holds something, until shutdown.
    pub async fn run_spool_replayer(self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if self.spool.pending_bytes() == 0 {
                continue;
            }
            match self.replay_spool().await {
                Ok(r) if r.records + r.torn_bytes + r.dead_lettered + r.retained > 0 => {
                    tracing::info!(
                        records = r.records,
                        new_messages = r.new_messages,
                        torn_bytes = r.torn_bytes,
                        dead_lettered = r.dead_lettered,
                        retained = r.retained,
                        "spool replayed"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "spool replay postponed"),
            }
        }
    }
}

/// Deletes a replayed file, once the records it still owes are durable in a new one.
fn finish(spool: &super::Spool, path: &Path, retained: &[SpoolRecord]) -> io::Result<()> {
    if !retained.is_empty() {
        spool.retain(retained)?;
    }
    match spool.finish(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A unit with no rows: its write only proves the store takes writes.
fn nothing(origin: Origin) -> IngestUnit {
    IngestUnit {
        origin,
        notification: Notification::default(),
        undecodable: None,
        keyword_actions: Vec::new(),
        delivery_digest: String::new(),
    }
}

/// The dead letter of a record the store refused: its bytes and the store's error.
fn refused(record: &SpoolRecord, error: &WriteError) -> IngestUnit {
    IngestUnit {
        undecodable: Some(UndecodablePayload {
            error: PayloadError::Refused(error.to_string()),
            raw: record.body.clone(),
        }),
        ..nothing(record.origin.clone())
    }
}
