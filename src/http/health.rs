//! Liveness, readiness and the Prometheus scrape.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store answers a read, the ingest writer is running, and a probe write through
/// the reply write batcher can grow the database and commit: a process whose writes fail (full
/// disk, unusable writer connection, stopped task) says so with 503 and the reason, and
/// answers 200 again as soon as they succeed.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match ready(&state).await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(why) => {
            tracing::warn!(reason = %why, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
        }
    }
}

async fn ready(state: &AppState) -> Result<(), String> {
    state
        .store
        .ping()
        .await
        .map_err(|e| format!("store unreachable: {e}"))?;
    if !state.ingestor.writer_running() {
        return Err("the ingest writer is not running (it is being restarted)".to_owned());
    }
    state
        .store
        .probe_writes()
        .await
        .map_err(|e| format!("writes are failing: {e}"))
}

/// Gauges are computed here, at scrape time, not by a polling loop.
pub async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(depth) = state.store.queue_depth().await {
        state
            .metrics
            .queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }
    if let Ok(g) = state.store.promise_gauges().await {
        let m = &state.metrics;
        m.pending_messages
            .set(i64::try_from(g.pending).unwrap_or(i64::MAX));
        m.oldest_pending_age_seconds.set(
            g.oldest_pending_ts
                .map_or(0, |ts| (state.clock.now_s() - ts).max(0)),
        );
        m.dead_letters_open
            .set(i64::try_from(g.dead_letters_open).unwrap_or(i64::MAX));
    }
    let spool = state.ingestor.spool().clone();
    if let Ok(bytes) = tokio::task::spawn_blocking(move || spool.pending_bytes()).await {
        state
            .metrics
            .spool_pending_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
