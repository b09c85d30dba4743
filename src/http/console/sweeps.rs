//! Sweeps: the recorded runs with their counts per reason, one run's decisions, a dry run (what
//! a sweep would decide now, recorded nowhere) and a real run — both through the same
//! `Sweeper::run_once` as `POST /api/v1/sweep`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Nav, age, at_ms, csrf_field, notice, page};
use super::session::{ConsoleForm, ConsoleSession};
use super::{ConsoleError, ConsoleState};
use crate::store::{SweepDecision, SweepRun};
use crate::sweep::{SweepError, SweepReport, SweepSettings, Sweeper};

/// Decisions shown on one page; the rest are counted.
const DECISIONS_SHOWN: usize = 500;

#[derive(Debug, Default, Deserialize)]
pub struct SweepsQuery {
    run: Option<i64>,
    busy: Option<u8>,
}

/// `GET /console/sweeps[?run=ID]`
pub async fn show(
    State(state): State<ConsoleState>,
    session: ConsoleSession,
    Query(q): Query<SweepsQuery>,
) -> Result<Markup, ConsoleError> {
    let store = &state.app.store;
    let run = match q.run {
        Some(id) => Some(store.sweep_run(id).await?.ok_or(ConsoleError::NotFound)?),
        None => None,
    };
    let runs = store.sweep_runs(20).await?;
    let body = html! {
        @if q.busy.is_some() {
            (notice("Another sweep is running; try again in a moment.", false))
        }
        (buttons(&session.csrf))
        @if let Some((run, decisions)) = &run {
            h2 { "Run " (run.id) }
            p { (run_line(run)) }
            (decisions_table(decisions))
        }
        h2 { "Recorded runs" }
        (runs_table(&runs))
    };
    Ok(page("Sweeps", Some(Nav::Sweeps), Some(&session.csrf), body))
}

/// `POST /console/sweeps/dry-run`: shows what a sweep would decide now; changes nothing.
pub async fn dry_run(
    State(state): State<ConsoleState>,
    form: ConsoleForm,
) -> Result<Response, ConsoleError> {
    match sweeper(&state).run_once(true).await {
        Ok(report) => Ok(page(
            "Sweep dry run",
            Some(Nav::Sweeps),
            Some(&form.session.csrf),
            report_view(&report),
        )
        .into_response()),
        Err(SweepError::Busy) => Ok(Redirect::to("/console/sweeps?busy=1").into_response()),
        Err(SweepError::Store(e)) => Err(e.into()),
    }
}

/// `POST /console/sweeps/run`: sweeps now, then shows the recorded run.
pub async fn run_now(
    State(state): State<ConsoleState>,
    form: ConsoleForm,
) -> Result<Response, ConsoleError> {
    let _ = form;
    match sweeper(&state).run_once(false).await {
        Ok(SweepReport {
            run_id: Some(id), ..
        }) => Ok(Redirect::to(&format!("/console/sweeps?run={id}")).into_response()),
        Ok(_) => Ok(Redirect::to("/console/sweeps").into_response()),
        Err(SweepError::Busy) => Ok(Redirect::to("/console/sweeps?busy=1").into_response()),
        Err(SweepError::Store(e)) => Err(e.into()),
    }
}

fn sweeper(state: &ConsoleState) -> Sweeper {
    let app = &state.app;
    Sweeper::new(
        app.store.clone(),
        app.clock.clone(),
        SweepSettings::from_config(&app.config),
        app.jobs_ready.clone(),
    )
}

fn buttons(csrf: &str) -> Markup {
    html! {
        div.actions {
            form method="post" action="/console/sweeps/dry-run" {
                (csrf_field(csrf))
                button.secondary type="submit" { "Dry run" }
            }
            form method="post" action="/console/sweeps/run" {
                (csrf_field(csrf))
                button type="submit" { "Sweep now" }
            }
        }
        p.muted {
            "A dry run shows what the sweep would decide for every pending message now, and \
             changes nothing. Sweeping re-enqueues what passes every gate and records a silence \
             for the rest."
        }
    }
}

fn report_view(r: &SweepReport) -> Markup {
    html! {
        (notice(&format!(
            "Dry run: {} pending messages looked at; {} would be re-enqueued. Nothing was changed.",
            r.scanned, r.requeued
        ), true))
        p { "Per reason: " (counts(&r.counts)) }
        (decisions_table(&r.decisions))
        p { a href="/console/sweeps" { "Back to sweeps" } }
    }
}

fn run_line(run: &SweepRun) -> String {
    let took = run
        .finished_at_ms
        .map_or("unfinished".to_owned(), |f| age(f - run.started_at_ms));
    format!(
        "Started {}, took {took}: {} looked at, {} re-enqueued.",
        at_ms(run.started_at_ms),
        run.scanned,
        run.requeued
    )
}

fn counts(counts: &std::collections::BTreeMap<crate::domain::SilenceReason, u64>) -> String {
    if counts.is_empty() {
        return "—".to_owned();
    }
    counts
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Recent runs, newest first (also on the overview).
pub fn runs_table(runs: &[SweepRun]) -> Markup {
    html! {
        @if runs.is_empty() {
            p.muted { "No sweep has been recorded yet." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Run" } th scope="col" { "Started" } th scope="col" { "Took" }
                        th.num scope="col" { "Looked at" } th.num scope="col" { "Re-enqueued" }
                        th scope="col" { "Per reason" }
                    } }
                    tbody {
                        @for run in runs {
                            tr {
                                td { a href={ "/console/sweeps?run=" (run.id) } { "#" (run.id) } }
                                td { (at_ms(run.started_at_ms)) }
                                td { (run.finished_at_ms.map_or("unfinished".to_owned(), |f| age(f - run.started_at_ms))) }
                                td.num { (run.scanned) }
                                td.num { (run.requeued) }
                                td { (counts(&run.counts)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn decisions_table(decisions: &[SweepDecision]) -> Markup {
    html! {
        @if decisions.is_empty() {
            p.muted { "No pending message was old enough to be decided." }
        } @else {
            div.scroll {
                table {
                    thead { tr { th scope="col" { "Message" } th scope="col" { "Decision" } th scope="col" { "Reason" } } }
                    tbody {
                        @for d in decisions.iter().take(DECISIONS_SHOWN) {
                            tr {
                                td.mono { (d.message_id) }
                                td { (d.action.kind()) }
                                td { (d.action.reason().map_or("—", |r| r.as_str())) }
                            }
                        }
                    }
                }
            }
            @if decisions.len() > DECISIONS_SHOWN {
                p.muted { "… and " (decisions.len() - DECISIONS_SHOWN) " more." }
            }
        }
    }
}
