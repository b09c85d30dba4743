//! `POST /api/v1/spool/replay`: the running server owns its spool (no other process may replay
//! it), so this is how an operator asks for a replay now instead of at the next interval.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::error::ApiError;
use crate::ingest::{ReplayError, ReplayReport, WriteError};
use crate::store::StoreError;

/// Replays the spool and answers what the pass did. 503 when the store takes no writes (the
/// spool is kept for the next pass).
#[utoipa::path(post, path = "/spool/replay",
    summary = "Replay this server's spool now (it also replays by itself at an interval); \
        503 when the store takes no writes, the spool is then kept",
    responses((status = 200, description = "OK", body = ReplayReport)))]
pub async fn replay(State(state): State<AppState>) -> Result<Json<ReplayReport>, ApiError> {
    match state.ingestor.replay_spool().await {
        Ok(report) => Ok(Json(report)),
        Err(ReplayError::Store(WriteError::Store(e))) => Err(StoreError::Shared(e).into()),
        Err(ReplayError::Store(WriteError::Stopped)) => Err(StoreError::Stopped.into()),
        Err(ReplayError::Io(e)) => Err(ApiError::Spool(e)),
    }
}
