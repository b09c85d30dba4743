//! Supervised background tasks: the ingest writer and the reply write batcher are each one task
//! that every write goes through, so a task that panicked would leave the process up but unable
//! to write. A supervised task is started again after a panic, on the same channel (its receiver
//! lives outside the task), so every handle keeps working: the writes that were in the dead
//! task's hands are answered with an error (their callers spool or retry), the next ones are
//! served by the new task. Restarts back off (50 ms doubling to 5 s) so a task that keeps
//! panicking does not spin; each one is logged as an error and counted.
//!
//! Restarting was chosen over exiting: the other tasks (HTTP, workers) are healthy and the
//! spool keeps every acknowledged webhook meanwhile; `/readyz` reports a task that is down.
//! A task that returns normally is finished (its channel closed: every handle dropped), and is
//! not restarted.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};
use tokio::task::JoinHandle;

const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A task that ran this long before panicking starts again without waiting long.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// What a supervised task's handles can see of it.
#[derive(Debug, Clone, Default)]
pub struct TaskStatus(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    running: AtomicBool,
    restarts: AtomicU64,
}

impl TaskStatus {
    /// Up and taking work (false while it waits to be restarted, and once finished).
    pub fn is_running(&self) -> bool {
        self.0.running.load(Ordering::SeqCst)
    }

    /// How often it was restarted after a panic.
    pub fn restarts(&self) -> u64 {
        self.0.restarts.load(Ordering::SeqCst)
    }
}

/// A channel's receiving end shared by the successive runs of one supervised task.
pub struct SharedReceiver<T>(Arc<Mutex<mpsc::Receiver<T>>>);

impl<T> Clone for SharedReceiver<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> SharedReceiver<T> {
    pub fn new(rx: mpsc::Receiver<T>) -> Self {
        Self(Arc::new(Mutex::new(rx)))
    }

    /// The receiver for this run; a run that panics drops it on unwinding and the next run
    /// takes it over (a tokio mutex is not poisoned by a panic).
    pub async fn take(self) -> OwnedMutexGuard<mpsc::Receiver<T>> {
        self.0.lock_owned().await
    }
}

/// Runs `start()` as a task, and again whenever that task panics, until one run returns.
/// The returned handle completes once a run returns (or the runtime shuts down).
pub fn spawn<F, Fut>(name: &'static str, mut start: F) -> (TaskStatus, JoinHandle<()>)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let status = TaskStatus::default();
    let seen = status.clone();
    let supervisor = tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = tokio::time::Instant::now();
            seen.0.running.store(true, Ordering::SeqCst);
            let run = tokio::spawn(start()).await;
            seen.0.running.store(false, Ordering::SeqCst);
            match run {
                Ok(()) => break,
                Err(e) if e.is_panic() => {
                    let restarts = seen.0.restarts.fetch_add(1, Ordering::SeqCst) + 1;
                    if started.elapsed() >= STABLE_AFTER {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::error!(
                        task = name,
                        restarts,
                        backoff_ms = backoff.as_millis() as u64,
                        panic = panic_message(e.into_panic()),
                        "task panicked; restarting it"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => break,
            }
        }
    });
    (status, supervisor)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    type Ask = (u32, oneshot::Sender<u32>);

    #[tokio::test]
    async fn a_panicking_task_is_restarted_on_the_same_channel() {
        let (tx, rx) = mpsc::channel::<Ask>(4);
        let rx = SharedReceiver::new(rx);
        let (status, handle) = spawn("doubler", move || {
            let rx = rx.clone();
            async move {
                let mut rx = rx.take().await;
                while let Some((n, answer)) = rx.recv().await {
                    assert_ne!(n, 13, "unlucky");
                    let _ = answer.send(n * 2);
                }
            }
        });
        let asker = tx.clone();
        let ask = move |n| {
            let tx = asker.clone();
            async move {
                let (answer, reply) = oneshot::channel();
                tx.send((n, answer)).await.expect("the channel stays open");
                reply.await
            }
        };
        assert_eq!(ask(2).await, Ok(4));
        assert!(
            ask(13).await.is_err(),
            "the run that panicked drops its work"
        );
        assert_eq!(ask(3).await, Ok(6), "the next run serves the same handle");
        assert_eq!(status.restarts(), 1);
        assert!(status.is_running());
        drop((tx, ask));
        handle.await.unwrap();
        assert!(!status.is_running(), "a run that returns is not restarted");
    }
}
