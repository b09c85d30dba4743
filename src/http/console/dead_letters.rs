//! Dead letters: what could not be handled, with the error, the attempts and a bounded preview
//! of the kept bytes; replay or discard one or many (checkboxes, no script).
//!
//! A replay goes through `Ingestor::replay_dead_letter`, as `POST /api/v1/dead-letters/{id}/replay`
//! does: a message goes back through the gates with a new job, a payload is parsed again. The
//! result is shown after a redirect (post/redirect/get), so reloading the page repeats nothing.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Nav, at_ms, bytes, conversation_url, csrf_field, notice, page};
use super::session::{ConsoleForm, ConsoleSession};
use super::{ConsoleError, ConsoleState};
use crate::domain::Provider;
use crate::ingest::DeadLetterReplay;
use crate::store::{DeadLetterAction, DeadLetterPreview};

/// Open dead letters listed on the page.
const LISTED: i64 = 200;
/// Bytes of each kept payload shown.
const PREVIEW_BYTES: i64 = 600;
/// Dead letters one form may act on.
const MAX_SELECTED: usize = 500;

#[derive(Debug, Default, Deserialize)]
pub struct ResultQuery {
    replayed: Option<u64>,
    discarded: Option<u64>,
    /// Comma-separated ids that could not be replayed or discarded.
    failed: Option<String>,
    none: Option<u8>,
}

/// `GET /console/dead-letters`
pub async fn list(
    State(state): State<ConsoleState>,
    session: ConsoleSession,
    Query(q): Query<ResultQuery>,
) -> Result<Markup, ConsoleError> {
    let letters = state
        .app
        .store
        .dead_letter_previews(LISTED, PREVIEW_BYTES)
        .await?;
    let csrf = &session.csrf;
    let body = html! {
        (result_notice(&q))
        @if letters.is_empty() {
            p.muted { "No open dead letters." }
        } @else {
            form method="post" action="/console/dead-letters" {
                (csrf_field(csrf))
                div.actions {
                    button type="submit" name="action" value="replay" { "Replay selected" }
                    button.danger type="submit" name="action" value="discard" { "Discard selected" }
                }
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Select" } th scope="col" { "Dead letter" }
                            th scope="col" { "Error" } th.num scope="col" { "Attempts" }
                            th scope="col" { "Kept bytes" } th scope="col" { "Act" }
                        } }
                        tbody { @for p in &letters { (row(p)) } }
                    }
                }
            }
            @if letters.len() as i64 >= LISTED {
                p.muted { "Showing the newest " (LISTED) " open dead letters." }
            }
        }
    };
    Ok(page(
        "Dead letters",
        Some(Nav::DeadLetters),
        Some(csrf),
        body,
    ))
}

fn row(p: &DeadLetterPreview) -> Markup {
    let l = &p.letter;
    let check_id = format!("dl-{}", l.id);
    html! {
        tr {
            td {
                input type="checkbox" name="id" value=(l.id) id=(check_id);
                label.muted for=(check_id) { " #" (l.id) }
            }
            td {
                div { (l.kind) " · " (l.provider) }
                @if let Some(m) = &l.message_id {
                    div.mono { (m) }
                }
                @if let (Some((number, user)), Some(provider)) = (&p.conversation, Provider::parse(&l.provider)) {
                    div { a href=(conversation_url(provider, number, user)) { "Conversation with " (user) } }
                }
                div.muted { (at_ms(l.created_at_ms)) }
            }
            td {
                div.mono { (l.error) }
                @if let Some(detail) = &l.detail { div.muted { (detail) } }
            }
            td.num { (l.attempts) }
            td {
                @match (&l.raw, l.raw_bytes) {
                    (Some(preview), Some(size)) => {
                        details {
                            summary { (bytes(size)) }
                            pre { (preview) @if size > preview.len() as u64 { "…" } }
                        }
                    }
                    _ => span.muted { "none" },
                }
            }
            td {
                button.secondary type="submit" name="one" value={ "replay:" (l.id) }
                    aria-label={ "Replay dead letter " (l.id) } { "Replay" }
                " "
                button.danger type="submit" name="one" value={ "discard:" (l.id) }
                    aria-label={ "Discard dead letter " (l.id) } { "Discard" }
            }
        }
    }
}

fn result_notice(q: &ResultQuery) -> Markup {
    let failed: Vec<i64> = q
        .failed
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter_map(|id| id.parse().ok())
        .collect();
    html! {
        @if q.none.is_some() {
            (notice("Select at least one dead letter first.", false))
        }
        @if let Some(n) = q.replayed.filter(|n| *n > 0) {
            (notice(&format!("Replayed {n} dead letter(s)."), true))
        }
        @if let Some(n) = q.discarded.filter(|n| *n > 0) {
            (notice(&format!("Discarded {n} dead letter(s)."), true))
        }
        @if !failed.is_empty() {
            (notice(&format!(
                "Not done for {}: not open any more, or it still fails (its error is shown).",
                failed.iter().map(|id| format!("#{id}")).collect::<Vec<_>>().join(", ")
            ), false))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Replay,
    Discard,
}

/// `POST /console/dead-letters`: `one=replay:ID` (a row's button) or `action=replay|discard`
/// with the checked `id`s.
pub async fn act(
    State(state): State<ConsoleState>,
    form: ConsoleForm,
) -> Result<Response, ConsoleError> {
    let (act, ids) = selection(&form)?;
    if ids.is_empty() {
        return Ok(Redirect::to("/console/dead-letters?none=1").into_response());
    }
    let app = &state.app;
    let (mut done, mut failed) = (0u64, Vec::new());
    for id in ids {
        let ok = match act {
            Act::Replay => {
                let now = app.clock.now_ms();
                match app.ingestor.replay_dead_letter(&app.store, id, now).await? {
                    DeadLetterReplay::MessageQueued | DeadLetterReplay::PayloadIngested => {
                        app.jobs_ready.notify_one();
                        true
                    }
                    DeadLetterReplay::StillMalformed(_)
                    | DeadLetterReplay::NotFound
                    | DeadLetterReplay::NotOpen => false,
                }
            }
            Act::Discard => matches!(
                app.store.discard_dead_letter(id).await?,
                DeadLetterAction::Discarded
            ),
        };
        if ok {
            done += 1;
        } else {
            failed.push(id.to_string());
        }
    }
    let verb = match act {
        Act::Replay => "replayed",
        Act::Discard => "discarded",
    };
    Ok(Redirect::to(&format!(
        "/console/dead-letters?{verb}={done}&failed={}",
        failed.join(",")
    ))
    .into_response())
}

fn selection(form: &ConsoleForm) -> Result<(Act, Vec<i64>), ConsoleError> {
    let parse_act = |raw: &str| match raw {
        "replay" => Ok(Act::Replay),
        "discard" => Ok(Act::Discard),
        _ => Err(ConsoleError::BadRequest(format!("unknown action `{raw}`"))),
    };
    let parse_id = |raw: &str| {
        raw.parse::<i64>()
            .map_err(|_| ConsoleError::BadRequest(format!("`{raw}` is not a dead letter id")))
    };
    if let Some(one) = form.fields.first("one") {
        let (act, id) = one
            .split_once(':')
            .ok_or_else(|| ConsoleError::BadRequest("malformed button".into()))?;
        return Ok((parse_act(act)?, vec![parse_id(id)?]));
    }
    let act = parse_act(form.fields.first("action").unwrap_or_default())?;
    let ids = form
        .fields
        .all("id")
        .map(parse_id)
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() > MAX_SELECTED {
        return Err(ConsoleError::BadRequest(format!(
            "at most {MAX_SELECTED} dead letters at once"
        )));
    }
    Ok((act, ids))
}
