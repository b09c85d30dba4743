//! Group commit: one writer task owns all ingest writes. Deliveries that arrive while a
//! transaction is committing wait in the channel and go into the next one together, so durable
//! throughput is not one fsync per request. Each caller is answered only after the transaction
//! holding its data has committed (or failed).

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{IngestReport, IngestUnit, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] Arc<StoreError>),
    #[error("the ingest writer has stopped")]
    Stopped,
}

struct WriteRequest {
    unit: IngestUnit,
    done: oneshot::Sender<Result<IngestReport, Arc<StoreError>>>,
}

/// Handle to the writer task. The task ends when every handle is dropped.
#[derive(Clone, Debug)]
pub struct GroupCommitWriter {
    requests: mpsc::Sender<WriteRequest>,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteRequest")
    }
}

impl GroupCommitWriter {
    /// `jobs_ready` is rung after a commit that created reply jobs.
    pub fn spawn(
        store: Store,
        clock: Clock,
        metrics: Arc<Metrics>,
        max_batch: usize,
        jobs_ready: Arc<Notify>,
    ) -> (Self, JoinHandle<()>) {
        let max_batch = max_batch.max(1);
        let (requests, rx) = mpsc::channel(max_batch * 4);
        let task = tokio::spawn(run(store, clock, metrics, rx, max_batch, jobs_ready));
        (Self { requests }, task)
    }

    /// Writes one delivery; returns once it is committed.
    pub async fn write(&self, unit: IngestUnit) -> Result<IngestReport, WriteError> {
        let (done, answer) = oneshot::channel();
        self.requests
            .send(WriteRequest { unit, done })
            .await
            .map_err(|_| WriteError::Stopped)?;
        Ok(answer.await.map_err(|_| WriteError::Stopped)??)
    }
}

async fn run(
    store: Store,
    clock: Clock,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<WriteRequest>,
    max_batch: usize,
    jobs_ready: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        // A caller that gave up (timed out and spooled) still gets its data written: dedup
        // makes the later spool replay harmless, and losing nothing matters more.
        let (units, waiters): (Vec<_>, Vec<_>) = batch.drain(..).map(|r| (r.unit, r.done)).unzip();
        metrics.group_commit_size.observe(units.len() as f64);
        match store.ingest_batch(&units, clock.now_ms()).await {
            Ok(reports) => {
                if reports.iter().any(|r| r.new_messages > 0) {
                    jobs_ready.notify_one();
                }
                for (waiter, report) in waiters.into_iter().zip(reports) {
                    let _ = waiter.send(Ok(report));
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, deliveries = units.len(), "ingest transaction failed");
                let error = Arc::new(error);
                for waiter in waiters {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
    }
}
