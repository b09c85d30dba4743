//! Write batching for the reply pipeline. SQLite has one writer and each commit is an fsync, so
//! the workers' small writes (claim, mark sent, finish…) are queued to one task that runs
//! whatever has arrived in a single `BEGIN IMMEDIATE` transaction.
//!
//! Each write runs under its own `SAVEPOINT`: a write that fails is rolled back alone and its
//! caller gets its own error at once, while the others commit together. Each of those is
//! answered only after the commit. Only when the transaction itself fails (`BEGIN`, a savepoint
//! SQLite can no longer roll back because it abandoned the whole transaction, `COMMIT`) does
//! every caller of the batch get an error, and nothing of it is kept (their jobs come back when
//! their leases run out). The task is supervised: a panic in a write drops that batch (every
//! caller gets an error) and the next batch runs in a new task on the same queue.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::Tx;
use crate::store::StoreError;
use crate::supervise::{self, SharedReceiver, TaskStatus};

type Completion = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;

/// What one write did inside the batch.
enum Done {
    /// Kept under its savepoint; answered with the outcome of the commit.
    Wrote(Completion),
    /// Rolled back to its savepoint; answered with its own error.
    Failed(Completion),
}

/// A queued write: run inside the batch's transaction, or, when the transaction failed before
/// it ran, answered with that failure.
type Op = Box<
    dyn for<'t> FnOnce(Result<&'t mut Tx<'static>, Arc<StoreError>>) -> BoxFuture<'t, Done> + Send,
>;

const MAX_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub(super) struct Batcher {
    ops: mpsc::Sender<Op>,
    status: TaskStatus,
}

impl Batcher {
    pub(super) fn spawn(writer: SqlitePool) -> Self {
        let (ops, rx) = mpsc::channel(MAX_BATCH * 4);
        let rx = SharedReceiver::new(rx);
        let (status, _task) = supervise::spawn("reply write batcher", move || {
            run(writer.clone(), rx.clone())
        });
        Self { ops, status }
    }

    pub(super) fn status(&self) -> &TaskStatus {
        &self.status
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
                let tx = match tx {
                    Ok(tx) => tx,
                    Err(abandoned) => {
                        let _ = done.send(Err(abandoned));
                        return Done::Failed(Box::new(|_| {}));
                    }
                };
                match write(tx).await {
                    Ok(value) => Done::Wrote(Box::new(move |committed| {
                        let _ = done.send(committed.map(|()| value));
                    })),
                    Err(error) => Done::Failed(Box::new(move |_| {
                        let _ = done.send(Err(Arc::new(error)));
                    })),
                }
            })
        });
        self.ops.send(op).await.map_err(|_| StoreError::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(StoreError::Shared),
            // The batcher's task panicked with this write in hand.
            Err(_) => Err(StoreError::BatchFailed),
        }
    }
}

async fn run(writer: SqlitePool, rx: SharedReceiver<Op>) {
    let mut rx = rx.take().await;
    let mut received = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut received, MAX_BATCH).await > 0 {
        let mut ops: VecDeque<Op> = received.drain(..).collect();
        let mut wrote = Vec::with_capacity(ops.len());
        let result = run_batch(&writer, &mut ops, &mut wrote).await;
        let result = result.map_err(|e| {
            tracing::warn!(error = %e, writes = wrote.len() + ops.len(), "reply write batch failed");
            Arc::new(e)
        });
        // Writes the failed transaction never reached hear why.
        if let Err(e) = &result {
            for op in ops.drain(..) {
                op(Err(e.clone())).await;
            }
        }
        for complete in wrote {
            complete(result.clone());
        }
    }
}

/// One transaction over `ops`; a failed write is answered here, the kept ones go to `wrote`.
/// On an error, the writes not run yet are left in `ops`.
async fn run_batch(
    writer: &SqlitePool,
    ops: &mut VecDeque<Op>,
    wrote: &mut Vec<Completion>,
) -> Result<(), StoreError> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    while let Some(op) = ops.pop_front() {
        sqlx::query("SAVEPOINT batch_write")
            .execute(&mut *tx)
            .await?;
        match op(Ok(&mut tx)).await {
            Done::Wrote(complete) => {
                wrote.push(complete);
                sqlx::query("RELEASE batch_write").execute(&mut *tx).await?;
            }
            Done::Failed(complete) => {
                complete(Ok(()));
                sqlx::query("ROLLBACK TO batch_write")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("RELEASE batch_write").execute(&mut *tx).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    async fn batcher() -> (Batcher, SqlitePool, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("batch.db").display());
        let pools = super::super::connection::open(&url, &StoreOptions::default())
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER NOT NULL)")
            .execute(&pools.writer)
            .await
            .unwrap();
        (Batcher::spawn(pools.writer), pools.reader, dir)
    }

    fn insert(
        x: Option<i64>,
    ) -> impl for<'t> FnOnce(&'t mut Tx<'static>) -> BoxFuture<'t, Result<(), StoreError>> {
        move |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (x) VALUES (?)")
                    .bind(x)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        }
    }

    async fn rows(reader: &SqlitePool) -> Vec<i64> {
        sqlx::query_scalar("SELECT x FROM t ORDER BY x")
            .fetch_all(reader)
            .await
            .unwrap()
    }

    /// The three writes are queued before the batcher task first runs (one thread: `join!`
    /// enqueues all of them before it yields), so they share one transaction.
    #[tokio::test]
    async fn a_failing_write_rolls_back_alone() {
        let (batcher, reader, _dir) = batcher().await;
        let (a, poisoned, c) = tokio::join!(
            batcher.write(insert(Some(1))),
            batcher.write(insert(None)),
            batcher.write(insert(Some(3))),
        );
        assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
        let error = poisoned.expect_err("NULL is refused").to_string();
        assert!(error.contains("NOT NULL"), "its own error: {error}");
        assert_eq!(rows(&reader).await, [1, 3]);
    }

    #[tokio::test]
    async fn a_write_that_panics_costs_its_batch_not_the_batcher() {
        let (batcher, reader, _dir) = batcher().await;
        let (kept, panicked) = tokio::join!(
            batcher.write(insert(Some(1))),
            batcher.write(|_| Box::pin(async { panic!("poisoned write") })),
        );
        assert!(matches!(panicked, Err::<(), _>(StoreError::BatchFailed)));
        assert!(kept.is_err(), "its batch never committed");
        batcher.write(insert(Some(2))).await.unwrap();
        assert_eq!(rows(&reader).await, [2]);
        assert_eq!(batcher.status().restarts(), 1);
        assert!(batcher.status().is_running());
    }
}
