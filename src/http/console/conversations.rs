//! Conversations: the list (by who is in charge, by consent, by number or name), one
//! conversation's timeline — every message with its outcome and reason, the reply and its
//! delivery statuses — and the operator's buttons.
//!
//! The provider is part of every link and form (`/console/conversations/{provider}/…`): a
//! gateway session and a Cloud API number with the same id are two different conversations.
//! The buttons call the store operations the admin API uses (`set_conversation_mode`,
//! `set_opted_out`), then redirect back to the page (post/redirect/get).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Nav, at_s, conversation_url, csrf_field, notice, outcome_badge, page};
use super::session::{ConsoleForm, ConsoleSession};
use super::{ConsoleError, ConsoleState};
use crate::domain::{
    ConversationKey, ConversationMode, OperatorNote, PhoneNumberId, Provider, WaId,
};
use crate::store::{ConversationDetail, ConversationQuery, ConversationSummary, TimelineEntry};

const LISTED: i64 = 200;
const TIMELINE: i64 = 100;
const SEARCH_MAX_CHARS: usize = 64;
const FILTERS: [(&str, &str); 5] = [
    ("", "All"),
    ("bot", "Bot"),
    ("operator", "Operator"),
    ("escalated", "Escalated"),
    ("opted_out", "Opted out"),
];

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    mode: Option<String>,
    q: Option<String>,
}

/// `GET /console/conversations[?mode=bot|operator|escalated|opted_out][&q=number]`
pub async fn list(
    State(state): State<ConsoleState>,
    session: ConsoleSession,
    Query(q): Query<ListQuery>,
) -> Result<Markup, ConsoleError> {
    let mode = q.mode.as_deref().unwrap_or_default();
    let query = ConversationQuery {
        mode: match mode {
            "" | "opted_out" => None,
            raw => Some(ConversationMode::parse(raw).ok_or_else(|| {
                ConsoleError::BadRequest(
                    "mode must be one of bot, operator, escalated, opted_out".into(),
                )
            })?),
        },
        opted_out: mode == "opted_out",
        number: search_term(q.q.as_deref().unwrap_or_default()),
    };
    let found = state.app.store.find_conversations(&query, LISTED).await?;
    let typed = q.q.as_deref().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/conversations" role="search" {
            div.field {
                label for="mode" { "Who is in charge" }
                select #mode name="mode" {
                    @for (value, label) in FILTERS {
                        option value=(value) selected[value == mode] { (label) }
                    }
                }
            }
            div.field {
                label for="q" { "Number or name" }
                input #q type="search" name="q" value=(typed) maxlength="64" inputmode="search";
            }
            button type="submit" { "Show" }
        }
        @if found.is_empty() {
            p.muted { "No conversation matches." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Contact" } th scope="col" { "In charge" }
                        th scope="col" { "Business number" } th scope="col" { "Last message" }
                    } }
                    tbody { @for c in &found { (list_row(c)) } }
                }
            }
        }
    };
    Ok(page(
        "Conversations",
        Some(Nav::Conversations),
        Some(&session.csrf),
        body,
    ))
}

/// What the search box matches: a phone number typed with `+`, spaces or dashes becomes its
/// digits; anything else (a name, a user id) is matched as typed.
fn search_term(raw: &str) -> Option<String> {
    let raw: String = raw.trim().chars().take(SEARCH_MAX_CHARS).collect();
    let phone_like = raw
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let term = if phone_like {
        raw.chars().filter(char::is_ascii_digit).collect()
    } else {
        raw
    };
    (!term.is_empty()).then_some(term)
}

fn list_row(c: &ConversationSummary) -> Markup {
    html! {
        tr {
            td {
                a href=(conversation_url(c.provider, &c.phone_number_id, &c.wa_id)) {
                    (c.display_name.as_deref().unwrap_or(&c.wa_id))
                }
                div.mono.muted { (c.wa_id) }
            }
            td { (mode_badges(c)) }
            td { span.mono { (c.phone_number_id) } div.muted { (c.provider) } }
            td { (c.last_inbound_ts.map_or("—".to_owned(), at_s)) }
        }
    }
}

fn mode_badges(c: &ConversationSummary) -> Markup {
    html! {
        span class={ "badge " (c.mode.as_str()) } { (c.mode.as_str()) }
        @if c.opted_out { " " span.badge.opted-out { "opted out" } }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    done: Option<String>,
    problem: Option<String>,
}

/// `GET /console/conversations/{provider}/{phone_number_id}/{wa_id}`
pub async fn detail(
    State(state): State<ConsoleState>,
    session: ConsoleSession,
    Path(path): Path<(String, String, String)>,
    Query(q): Query<DetailQuery>,
) -> Result<Markup, ConsoleError> {
    let key = conversation_key(&path)?;
    let detail = state
        .app
        .store
        .conversation(&key, TIMELINE)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    let s = &detail.summary;
    let title = match &s.display_name {
        Some(name) => format!("{name} ({})", s.wa_id),
        None => s.wa_id.clone(),
    };
    let body = html! {
        @if let Some(done) = q.done.as_deref().and_then(done_text) { (notice(done, true)) }
        @if q.problem.is_some() {
            (notice("A name or reason must be 1–256 characters on one line.", false))
        }
        p {
            (mode_badges(s)) " "
            @match s.mode {
                ConversationMode::Operator => { "taken over by " (s.taken_by.as_deref().unwrap_or("an operator")) }
                ConversationMode::Escalated => { "escalated: " (s.escalation_reason.as_deref().unwrap_or("no reason given")) }
                ConversationMode::Bot => { "the bot answers" }
            }
        }
        p.muted {
            "Business number " span.mono { (s.phone_number_id) } " · " (s.provider)
            " · last message " (s.last_inbound_ts.map_or("—".to_owned(), at_s))
        }
        (actions(&detail, &session.csrf))
        h2 { "Timeline" }
        (timeline(&detail))
        p { a href="/console/conversations" { "All conversations" } }
    };
    Ok(page(
        &title,
        Some(Nav::Conversations),
        Some(&session.csrf),
        body,
    ))
}

fn done_text(done: &str) -> Option<&'static str> {
    Some(match done {
        "takeover" => "You took the conversation over: the bot stays silent until it is released.",
        "release" => "Released: the bot answers new messages again.",
        "escalate" => "Escalated: the bot stays silent until it is resolved.",
        "resolve" => "Resolved: the bot answers new messages again.",
        "opt-out" => "The contact is opted out: nothing more is sent to them.",
        "opt-in" => "The contact is opted in again.",
        _ => return None,
    })
}

/// The operator's buttons; each names its action (`name="action"`), so the one pressed is the
/// one done.
fn actions(d: &ConversationDetail, csrf: &str) -> Markup {
    let s = &d.summary;
    let url = conversation_url(s.provider, &s.phone_number_id, &s.wa_id);
    let button = |action: &str, label: &str, class: &str| {
        html! {
            form method="post" action=(url) {
                (csrf_field(csrf))
                button class=(class) type="submit" name="action" value=(action) { (label) }
            }
        }
    };
    html! {
        div.actions {
            @if s.mode == ConversationMode::Operator {
                (button("release", "Release to the bot", ""))
            } @else {
                form method="post" action=(url) {
                    (csrf_field(csrf))
                    div.field {
                        label for="by" { "Your name" }
                        input #by type="text" name="by" value="console" maxlength="256" required;
                    }
                    button type="submit" name="action" value="takeover" { "Take over" }
                }
            }
            @if s.mode == ConversationMode::Escalated {
                (button("resolve", "Resolve", ""))
            } @else {
                form method="post" action=(url) {
                    (csrf_field(csrf))
                    div.field {
                        label for="reason" { "Escalation reason" }
                        input #reason type="text" name="reason" maxlength="256" placeholder="optional";
                    }
                    button.secondary type="submit" name="action" value="escalate" { "Escalate" }
                }
            }
            @if s.opted_out {
                (button("opt-in", "Opt in", "secondary"))
            } @else {
                (button("opt-out", "Opt out", "danger"))
            }
        }
    }
}

fn timeline(d: &ConversationDetail) -> Markup {
    html! {
        @if d.timeline.is_empty() {
            p.muted { "No message yet." }
        } @else {
            ol.timeline { @for e in &d.timeline { (entry(e)) } }
        }
        @if !d.complete {
            p.muted { "Older silent or dead-lettered messages may not be shown." }
        }
    }
}

fn entry(e: &TimelineEntry) -> Markup {
    html! {
        li id={ "m-" (e.message_id) } {
            div.msg-head {
                (outcome_badge(e.outcome.as_ref()))
                span { (at_s(e.timestamp)) }
                span { (e.kind) }
                span.mono { (e.message_id) }
            }
            @if let Some(text) = &e.text { p.msg-text { (text) } }
            @if let Some(r) = &e.reply {
                div.reply {
                    div.msg-head {
                        span { "Reply · " (r.state.as_str()) }
                        span { (r.attempts) " attempt(s)" }
                        @if let Some(id) = &r.outbound_id { span.mono { (id) } }
                    }
                    p.msg-text { (r.text) }
                    @if !r.statuses.is_empty() {
                        ul.statuses aria-label="Delivery statuses" {
                            @for st in &r.statuses {
                                li {
                                    (st.status.as_str()) " " (at_s(st.timestamp))
                                    @if let Some(code) = st.error_code { " (error " (code) ")" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /console/conversations/{provider}/{phone_number_id}/{wa_id}`: `action` is one of
/// takeover (`by`), release, escalate (`reason`), resolve, opt-out, opt-in.
pub async fn act(
    State(state): State<ConsoleState>,
    Path(path): Path<(String, String, String)>,
    form: ConsoleForm,
) -> Result<Response, ConsoleError> {
    let key = conversation_key(&path)?;
    let url = conversation_url(
        key.provider,
        key.phone_number_id.as_str(),
        key.wa_id.as_str(),
    );
    let action = form.fields.first("action").unwrap_or_default();
    let note = |field: &str, default: &str| {
        let given = form
            .fields
            .first(field)
            .map(str::trim)
            .filter(|v| !v.is_empty());
        OperatorNote::parse(given.unwrap_or(default))
    };
    let store = &state.app.store;
    let now = state.app.clock.now_ms();
    let mode = match action {
        "takeover" => Some((ConversationMode::Operator, note("by", "console"))),
        "escalate" => Some((
            ConversationMode::Escalated,
            note("reason", "escalated by an operator"),
        )),
        "release" | "resolve" => None,
        "opt-out" | "opt-in" => {
            store.set_opted_out(&key, action == "opt-out", now).await?;
            return Ok(Redirect::to(&format!("{url}?done={action}")).into_response());
        }
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "unknown action `{other}`"
            )));
        }
    };
    let (mode, note) = match mode {
        Some((mode, Ok(note))) => (mode, Some(note)),
        Some((_, Err(_))) => {
            return Ok(Redirect::to(&format!("{url}?problem=note")).into_response());
        }
        None => (ConversationMode::Bot, None),
    };
    store
        .set_conversation_mode(&key, mode, note.as_ref().map(OperatorNote::as_str), now)
        .await?;
    Ok(Redirect::to(&format!("{url}?done={action}")).into_response())
}

fn conversation_key(
    (provider, phone_number_id, wa_id): &(String, String, String),
) -> Result<ConversationKey, ConsoleError> {
    Ok(ConversationKey {
        provider: Provider::parse(provider).ok_or(ConsoleError::NotFound)?,
        phone_number_id: PhoneNumberId::parse(phone_number_id.clone())
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?,
        wa_id: WaId::parse(wa_id.clone()).map_err(|e| ConsoleError::BadRequest(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::search_term;

    #[test]
    fn phone_numbers_are_searched_by_their_digits() {
        assert_eq!(
            search_term(" +34 600-000 001 ").as_deref(),
            Some("34600000001")
        );
        assert_eq!(search_term("Ana Pérez").as_deref(), Some("Ana Pérez"));
        assert_eq!(search_term("US.ENT.118").as_deref(), Some("US.ENT.118"));
        assert_eq!(search_term("  "), None);
        assert_eq!(search_term("+"), None);
        assert_eq!(search_term(&"9".repeat(100)).map(|t| t.len()), Some(64));
    }
}
