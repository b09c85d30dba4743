//! The HTTP accept loop: hyper's HTTP/1 connection driver under our own loop, so that what a
//! client can hold is bounded and shutdown has a deadline.
//!
//! - A connection must send its request headers within `header_read_timeout` (hyper's timer;
//!   it also closes a keep-alive connection idle that long), so slowloris clients are cut.
//! - At most `max_connections` are open: beyond it the loop stops accepting and new clients
//!   wait in the kernel's listen backlog until a connection closes.
//! - On shutdown the listener is closed, every connection is told to finish its current
//!   request and close; whatever is still open at `shutdown_deadline` is closed unfinished
//!   (its request was never acknowledged, so nothing acknowledged is lost: a 200 is only sent
//!   once the delivery is durable).
//!
//! The per-request limits (in-flight bound, body deadline) are middleware, see [`super::limits`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;

/// How long the loop pauses after a failed `accept` (out of file descriptors, typically)
/// instead of spinning on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The connection-level limits, checked once at start-up.
#[derive(Debug, Clone, Copy)]
pub struct ServeSettings {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_deadline: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeSettingsError {
    #[error("{0} must be longer than zero (e.g. `10s`)")]
    ZeroDuration(&'static str),
    #[error("{0} must be at least 1")]
    ZeroCount(&'static str),
}

impl ServeSettings {
    /// Zero limits would refuse every client or cut every connection: refused with the setting
    /// to fix.
    pub fn from_config(config: &Config) -> Result<Self, ServeSettingsError> {
        if config.header_read_timeout.is_zero() {
            return Err(ServeSettingsError::ZeroDuration(
                "REPLYD_HEADER_READ_TIMEOUT",
            ));
        }
        if config.body_read_timeout.is_zero() {
            return Err(ServeSettingsError::ZeroDuration("REPLYD_BODY_READ_TIMEOUT"));
        }
        if config.max_connections == 0 {
            return Err(ServeSettingsError::ZeroCount("REPLYD_MAX_CONNECTIONS"));
        }
        if config.max_in_flight == 0 {
            return Err(ServeSettingsError::ZeroCount("REPLYD_MAX_IN_FLIGHT"));
        }
        Ok(Self {
            header_read_timeout: config.header_read_timeout,
            max_connections: config.max_connections,
            shutdown_deadline: config.shutdown_deadline,
        })
    }
}

/// Serves `router` on `listener` until `shutdown` fires, then drains within the deadline.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServeSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let connections = TaskTracker::new();
    let close_now = CancellationToken::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.context("the connection semaphore closed")?,
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // Responses are small and sent whole: do not hold them back for Nagle.
        stream.set_nodelay(true).ok();
        let connection = http.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        );
        let (shutdown, close_now) = (shutdown.clone(), close_now.clone());
        connections.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        ended = connection.as_mut() => ended,
                        // Dropping the connection closes the socket mid-request.
                        () = close_now.cancelled() => return,
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(settings.shutdown_deadline, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            deadline_ms = settings.shutdown_deadline.as_millis() as u64,
            "shutdown deadline reached: closing the connections still open"
        );
        close_now.cancel();
        connections.wait().await;
    }
    Ok(())
}
