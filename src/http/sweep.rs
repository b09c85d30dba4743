//! Admin routes of the reconcile sweep: run it now (or show what it would decide), and its
//! recorded history.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::store::SweepRun;
use crate::sweep::{SweepError, SweepSettings, Sweeper};

#[derive(Debug, Default, Deserialize)]
pub struct SweepQuery {
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/sweep[?dry_run=true]`: the report of the run, every decision with its reason.
/// 409 while another sweep (this process or another) holds the lock.
pub async fn run(
    State(state): State<AppState>,
    Query(q): Query<SweepQuery>,
) -> Result<Json<Value>, ApiError> {
    let sweeper = Sweeper::new(
        state.store.clone(),
        state.clock.clone(),
        SweepSettings::from_config(&state.config),
        state.jobs_ready.clone(),
    )
    .with_metrics(state.metrics.clone());
    match sweeper.run_once(q.dry_run).await {
        Ok(report) => Ok(Json(report.to_json())),
        Err(SweepError::Busy) => Err(ApiError::Conflict(SweepError::Busy.to_string())),
        Err(SweepError::Store(e)) => Err(ApiError::Store(e)),
    }
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
    run_id: Option<i64>,
}

/// `GET /api/v1/sweeps[?limit=N]`: recent runs, newest first, with counts per reason;
/// `?run_id=N`: that run with its decisions.
pub async fn history(
    State(state): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(run_id) = q.run_id {
        let (run, decisions) = state
            .store
            .sweep_run(run_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let mut body = run_json(&run);
        body["decisions"] = decisions
            .iter()
            .map(|d| {
                json!({
                    "message_id": d.message_id,
                    "decision": d.action.kind(),
                    "reason": d.action.reason(),
                })
            })
            .collect();
        return Ok(Json(body));
    }
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let runs = state.store.sweep_runs(limit).await?;
    Ok(Json(
        json!({ "sweeps": runs.iter().map(run_json).collect::<Vec<_>>() }),
    ))
}

fn run_json(run: &SweepRun) -> Value {
    json!({
        "id": run.id,
        "started_at_ms": run.started_at_ms,
        "finished_at_ms": run.finished_at_ms,
        "dry_run": run.dry_run,
        "scanned": run.scanned,
        "requeued": run.requeued,
        "counts": run.counts,
    })
}
