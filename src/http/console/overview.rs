//! The overview: is the promise holding? Arrivals per minute, duplicates, first-attempt sends,
//! outcomes, what is pending and for how long, dead letters, paused channels, the last sweeps
//! and the spool backlog — each read at request time, nothing cached.

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{Nav, age, at_ms, bytes, page, percent};
use super::session::ConsoleSession;
use super::{ConsoleError, ConsoleState, chart};
use crate::store::{PendingHead, SendHold, Summary};

/// Minutes the chart covers.
const CHART_MINUTES: i64 = 60;
/// A duplicate share above this is unusual for Meta's re-deliveries: worth a look.
const DUPLICATE_WARN: f64 = 0.05;
/// Below this, sends are failing on first try more than a healthy number does.
const FIRST_ATTEMPT_WARN: f64 = 0.98;

/// `GET /console`
pub async fn show(
    State(state): State<ConsoleState>,
    session: ConsoleSession,
) -> Result<Markup, ConsoleError> {
    let store = &state.app.store;
    let now = state.app.clock.now_ms();
    let spool = state.app.ingestor.spool().clone();
    let (minutes, summary, oldest, holds, sweeps, spool_bytes) = tokio::try_join!(
        store.inbound_per_minute(now - CHART_MINUTES * 60_000, now),
        store.summary(),
        store.oldest_pending(),
        store.send_holds(),
        store.sweep_runs(5),
        async {
            Ok(tokio::task::spawn_blocking(move || spool.pending_bytes())
                .await
                .unwrap_or(0))
        },
    )?;
    let body = html! {
        (cards(&summary, oldest.as_ref(), spool_bytes, now))
        h2 { "Inbound messages per minute" }
        (chart::per_minute(&minutes))
        h2 { "Outcomes" }
        (outcomes(&summary))
        h2 { "Paused channels" }
        (paused(&holds, now))
        h2 { "Last sweeps" }
        (super::sweeps::runs_table(&sweeps))
    };
    Ok(page(
        "Overview",
        Some(Nav::Overview),
        Some(&session.csrf),
        body,
    ))
}

fn cards(s: &Summary, oldest: Option<&PendingHead>, spool_bytes: u64, now: i64) -> Markup {
    let deliveries = s.inbound + s.duplicates;
    let duplicate_ratio = if deliveries == 0 {
        0.0
    } else {
        s.duplicates as f64 / deliveries as f64
    };
    let first_attempt = (s.sends > 0).then(|| s.first_attempt_sends as f64 / s.sends as f64);
    html! {
        div.cards {
            (card("Inbound messages", &s.inbound.to_string(), &format!("{} duplicate deliveries", s.duplicates), false))
            (card("Duplicate ratio", &percent(duplicate_ratio),
                if duplicate_ratio > DUPLICATE_WARN { "above 5 %: check the webhook's answers" } else { "of all deliveries" },
                duplicate_ratio > DUPLICATE_WARN))
            @match first_attempt {
                Some(r) => (card("First-attempt sends", &percent(r),
                    if r < FIRST_ATTEMPT_WARN { "below 98 %: sends are being retried" } else { "of replies sent" },
                    r < FIRST_ATTEMPT_WARN)),
                None => (card("First-attempt sends", "—", "no reply sent yet", false)),
            }
            (card("Pending", &s.pending.to_string(), &match oldest {
                Some(o) => format!("oldest {} ({})", age(now - o.payload_ts * 1000), o.message_id),
                None => "nothing waiting".to_owned(),
            }, false))
            (card("Open dead letters", &s.dead_letters_open.to_string(),
                if s.dead_letters_open > 0 { "replay or discard them" } else { "none" },
                s.dead_letters_open > 0))
            (card("Reply queue", &s.jobs_available.to_string(), &format!("due now; {} in all", s.jobs_total), false))
            (card("Spool backlog", &bytes(spool_bytes),
                if spool_bytes > 0 { "waiting to be replayed into the store" } else { "empty" },
                spool_bytes > 0))
        }
    }
}

fn card(label: &str, value: &str, note: &str, warn: bool) -> Markup {
    html! {
        section.card.warn[warn] aria-label=(label) {
            div.label { (label) }
            div.value { (value) }
            div.muted { @if warn { span.warn-text { "⚠ " } } (note) }
        }
    }
}

fn outcomes(s: &Summary) -> Markup {
    html! {
        div.scroll {
            table {
                thead { tr { th scope="col" { "Outcome" } th scope="col" { "Reason" } th.num scope="col" { "Messages" } } }
                tbody {
                    tr { td { span.badge.replied { "replied" } } td { "—" } td.num { (s.replied) } }
                    @for (reason, n) in &s.silent {
                        tr { td { span.badge.silent { "silent" } } td { (reason) } td.num { (n) } }
                    }
                    @for (error, n) in &s.dead_errors {
                        tr { td { span.badge.dead { "dead" } } td.mono { (error) } td.num { (n) } }
                    }
                    tr { td { span.badge.pending { "pending" } } td { "—" } td.num { (s.pending) } }
                }
            }
        }
    }
}

fn paused(holds: &[SendHold], now: i64) -> Markup {
    html! {
        @if holds.is_empty() {
            p.muted { "No channel's sends are paused." }
        } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Provider" } th scope="col" { "Number or session" }
                        th scope="col" { "Error" } th scope="col" { "Paused for" } th scope="col" { "Next probe" }
                    } }
                    tbody {
                        @for h in holds {
                            tr {
                                td { (h.channel.provider) }
                                td.mono { (h.channel.id) }
                                td.mono { (h.error_code) }
                                td { (age(now - h.since_ms)) }
                                td { (at_ms(h.next_probe_ms)) }
                            }
                        }
                    }
                }
            }
        }
    }
}
