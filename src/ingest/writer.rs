//! Group commit: one writer task owns all ingest writes. Deliveries that arrive while a
//! transaction is committing wait in the channel and go into the next one together, so durable
//! throughput is not one fsync per request. Each caller is answered only after the transaction
//! holding its data has committed (or failed).
//!
//! The task is supervised ([`crate::supervise`]): if it panics, the deliveries of that batch
//! are answered with an error (their webhooks are spooled) and a new task takes over the same
//! queue, so the process never stays up unable to ingest.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::{IngestReport, IngestUnit, Store, StoreError};
use crate::supervise::{self, SharedReceiver, TaskStatus};

/// Writes one batch of deliveries in one transaction: the store's `ingest_batch`, or in tests
/// something that fails in a chosen way.
pub type CommitFn =
    Arc<dyn Fn(Vec<IngestUnit>, i64) -> BoxFuture<'static, CommitResult> + Send + Sync>;
pub type CommitResult = Result<Vec<IngestReport>, StoreError>;

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
    status: TaskStatus,
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
        let commit: CommitFn = Arc::new(move |units, now_ms| {
            let store = store.clone();
            Box::pin(async move { store.ingest_batch(&units, now_ms).await })
        });
        Self::spawn_with(commit, clock, metrics, max_batch, jobs_ready)
    }

    /// Like [`GroupCommitWriter::spawn`], committing through `commit`.
    pub fn spawn_with(
        commit: CommitFn,
        clock: Clock,
        metrics: Arc<Metrics>,
        max_batch: usize,
        jobs_ready: Arc<Notify>,
    ) -> (Self, JoinHandle<()>) {
        let max_batch = max_batch.max(1);
        let (requests, rx) = mpsc::channel(max_batch * 4);
        let rx = SharedReceiver::new(rx);
        let (status, task) = supervise::spawn("ingest writer", move || {
            run(
                commit.clone(),
                clock.clone(),
                metrics.clone(),
                rx.clone(),
                max_batch,
                jobs_ready.clone(),
            )
        });
        (Self { requests, status }, task)
    }

    /// Whether the writer task is up (false while it is being restarted after a panic).
    pub fn is_running(&self) -> bool {
        self.status.is_running()
    }

    /// How often the writer task was restarted after a panic.
    pub fn restarts(&self) -> u64 {
        self.status.restarts()
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
    commit: CommitFn,
    clock: Clock,
    metrics: Arc<Metrics>,
    rx: SharedReceiver<WriteRequest>,
    max_batch: usize,
    jobs_ready: Arc<Notify>,
) {
    let mut rx = rx.take().await;
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        // A caller that gave up (timed out and spooled) still gets its data written: dedup
        // makes the later spool replay harmless, and losing nothing matters more.
        let (units, waiters): (Vec<_>, Vec<_>) = batch.drain(..).map(|r| (r.unit, r.done)).unzip();
        metrics.group_commit_size.observe(units.len() as f64);
        let deliveries = units.len();
        match commit(units, clock.now_ms()).await {
            Ok(reports) => {
                if reports.iter().any(|r| r.new_messages > 0) {
                    jobs_ready.notify_one();
                }
                for (waiter, report) in waiters.into_iter().zip(reports) {
                    let _ = waiter.send(Ok(report));
                }
            }
            Err(error) => {
                tracing::warn!(error = %error, deliveries, "ingest transaction failed");
                let error = Arc::new(error);
                for waiter in waiters {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::domain::keywords::Keywords;
    use crate::store::StoreOptions;

    fn delivery(id: &str) -> IngestUnit {
        let body = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": "111"},
                "messages": [{"from": "34600000001", "id": id, "timestamp": "1700000000",
                              "type": "text", "text": {"body": "hi"}}]
            }}]}]
        });
        crate::ingest::parse(
            &crate::domain::Origin::Cloud,
            body.to_string().as_bytes(),
            &Keywords::default(),
        )
    }

    #[tokio::test]
    async fn a_writer_that_panics_is_restarted_on_the_same_queue() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display()).into();
        let store = Store::connect(&url, &StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let panicked = Arc::new(AtomicBool::new(false));
        let (real, once) = (store.clone(), panicked.clone());
        let commit: CommitFn = Arc::new(move |units, now_ms| {
            let (store, once) = (real.clone(), once.clone());
            Box::pin(async move {
                assert!(once.swap(true, Ordering::SeqCst), "the first batch panics");
                store.ingest_batch(&units, now_ms).await
            })
        });
        let (writer, task) = GroupCommitWriter::spawn_with(
            commit,
            Clock::manual(1_700_000_000_000),
            Arc::new(Metrics::new()),
            8,
            Arc::new(Notify::new()),
        );
        assert!(matches!(
            writer.write(delivery("wamid.lost")).await,
            Err(WriteError::Stopped)
        ));
        let report = writer.write(delivery("wamid.kept")).await.unwrap();
        assert_eq!(report.new_messages, 1);
        assert!(store.message("wamid.kept").await.unwrap().is_some());
        assert_eq!(writer.restarts(), 1);
        assert!(writer.is_running());
        drop(writer);
        task.await.unwrap();
    }
}
