//! Write batching for the reply pipeline. SQLite has one writer and each commit is an fsync, so
//! the workers' small writes (claim, mark sent, finish…) are queued to one task that runs
//! whatever has arrived in a single `BEGIN IMMEDIATE` transaction. Each caller is answered only
//! after that transaction commits; if any write in it fails, all of them get the error and
//! nothing of the batch is kept (their jobs come back when their leases run out).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::Tx;
use crate::store::StoreError;

type Completion = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;
type Op = Box<
    dyn for<'t> FnOnce(&'t mut Tx<'static>) -> BoxFuture<'t, Result<Completion, StoreError>> + Send,
>;

const MAX_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub(super) struct Batcher {
    ops: mpsc::Sender<Op>,
}

impl Batcher {
    pub(super) fn spawn(writer: SqlitePool) -> Self {
        let (ops, rx) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(run(writer, rx));
        Self { ops }
    }

    /// Runs `write` inside the next batch transaction; returns its value once committed.
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<'static>) -> BoxFuture<'t, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (done, answer) = oneshot::channel::<Result<T, Arc<StoreError>>>();
        let op: Op = Box::new(move |tx| {
            Box::pin(async move {
                let value = write(tx).await?;
                let completion: Completion = Box::new(move |committed| {
                    let _ = done.send(committed.map(|()| value));
                });
                Ok(completion)
            })
        });
        self.ops.send(op).await.map_err(|_| StoreError::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(StoreError::Shared),
            // The op itself failed (its sender was dropped with it) or the task stopped.
            Err(_) => Err(StoreError::BatchFailed),
        }
    }
}

async fn run(writer: SqlitePool, mut rx: mpsc::Receiver<Op>) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut ops, MAX_BATCH).await > 0 {
        let mut completions = Vec::with_capacity(ops.len());
        let result = async {
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            for op in ops.drain(..) {
                completions.push(op(&mut tx).await?);
            }
            tx.commit().await?;
            Ok::<_, StoreError>(())
        }
        .await;
        ops.clear();
        let result = result.map_err(|e| {
            tracing::warn!(error = %e, writes = completions.len(), "reply write batch failed");
            Arc::new(e)
        });
        for complete in completions {
            complete(result.clone());
        }
    }
}
