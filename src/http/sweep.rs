//! Admin routes of the reconcile sweep: run it now (or show what it would decide), and its
//! recorded history.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::openapi::{BadRequest, Conflict, NotFound};
use crate::store::SweepRun;
use crate::sweep::{
    SweepDecisionAnswer, SweepError, SweepReportAnswer, SweepSettings, Sweeper, counts_by_name,
};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SweepQuery {
    /// Decide without acting.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /api/v1/sweep[?dry_run=true]`: the report of the run, every decision with its reason.
/// 409 while another sweep (this process or another) holds the lock.
#[utoipa::path(post, path = "/sweep", params(SweepQuery), summary = "Run the reconcile sweep now",
    responses((status = 200, description = "OK", body = SweepReportAnswer), (status = 409, response = Conflict)))]
pub async fn run(
    State(state): State<AppState>,
    Query(q): Query<SweepQuery>,
) -> Result<Json<SweepReportAnswer>, ApiError> {
    let sweeper = Sweeper::new(
        state.store.clone(),
        state.clock.clone(),
        SweepSettings::from_config(&state.config),
        state.jobs_ready.clone(),
    )
    .with_metrics(state.metrics.clone());
    match sweeper.run_once(q.dry_run).await {
        Ok(report) => Ok(Json(report.answer())),
        Err(SweepError::Busy) => Err(ApiError::Conflict(SweepError::Busy.to_string())),
        Err(SweepError::Store(e)) => Err(ApiError::Store(e)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1 to 1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// One run with its decisions.
    run_id: Option<i64>,
}

/// One recorded sweep run.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SweepRun)]
pub struct SweepRunAnswer {
    id: i64,
    started_at_ms: i64,
    /// Null while running, or for a run that died half-way.
    finished_at_ms: Option<i64>,
    dry_run: bool,
    scanned: u64,
    requeued: u64,
    counts: BTreeMap<String, u64>,
    /// Only with `?run_id=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    decisions: Option<Vec<SweepDecisionAnswer>>,
}

/// The recent runs, or (with `?run_id=`) one run with its decisions.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum SweepHistory {
    Runs { sweeps: Vec<SweepRunAnswer> },
    Run(SweepRunAnswer),
}

/// `GET /api/v1/sweeps[?limit=N]`: recent runs, newest first, with counts per reason;
/// `?run_id=N`: that run with its decisions.
#[utoipa::path(get, path = "/sweeps", params(HistoryQuery),
    summary = "Sweep history with counts per reason, or one run with its decisions",
    responses((status = 200, description = "OK", body = SweepHistory), (status = 400, response = BadRequest),
        (status = 404, response = NotFound)))]
pub async fn history(
    State(state): State<AppState>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<SweepHistory>, ApiError> {
    if let Some(run_id) = q.run_id {
        let (run, decisions) = state
            .store
            .sweep_run(run_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let mut run = run_answer(&run);
        run.decisions = Some(decisions.iter().map(SweepDecisionAnswer::from).collect());
        return Ok(Json(SweepHistory::Run(run)));
    }
    let limit = q.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let runs = state.store.sweep_runs(limit).await?;
    Ok(Json(SweepHistory::Runs {
        sweeps: runs.iter().map(run_answer).collect(),
    }))
}

fn run_answer(run: &SweepRun) -> SweepRunAnswer {
    SweepRunAnswer {
        id: run.id,
        started_at_ms: run.started_at_ms,
        finished_at_ms: run.finished_at_ms,
        dry_run: run.dry_run,
        scanned: run.scanned,
        requeued: run.requeued,
        counts: counts_by_name(&run.counts),
        decisions: None,
    }
}
