//! The console's page shell (header, navigation, logout), its stylesheet, and the small
//! formatting helpers every page shares: times, ages, ratios, sizes, outcome badges, links.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use maud::{DOCTYPE, Markup, html};

use crate::domain::{Outcome, Provider};

const STYLESHEET: &str = include_str!("console.css");

/// `GET /console/assets/console.css`: public (the login page needs it), holds no data.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        STYLESHEET,
    )
}

/// The page the navigation marks as current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Conversations,
    DeadLetters,
    Sweeps,
}

const NAV: [(Nav, &str, &str); 4] = [
    (Nav::Overview, "/console", "Overview"),
    (
        Nav::Conversations,
        "/console/conversations",
        "Conversations",
    ),
    (Nav::DeadLetters, "/console/dead-letters", "Dead letters"),
    (Nav::Sweeps, "/console/sweeps", "Sweeps"),
];

/// A whole page. `session_csrf` is `Some` for a logged-in page: the navigation and the logout
/// button are shown.
pub fn page(title: &str, current: Option<Nav>, session_csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · replyd" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "replyd" }
                    @if let Some(csrf) = session_csrf {
                        nav aria-label="Console" {
                            ul {
                                @for (item, href, label) in NAV {
                                    li {
                                        @if Some(item) == current {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form.logout method="post" action="/console/logout" {
                            (csrf_field(csrf))
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        None,
        html! {
            p.notice.bad role="alert" { (message) }
            p { a href="/console" { "Back to the console" } " · " a href="/console/login" { "Log in" } }
        },
    )
}

/// The hidden field every form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A notice shown after an action (`role="status"`, so screen readers announce it).
pub fn notice(text: &str, good: bool) -> Markup {
    html! { p.notice.good[good].bad[!good] role="status" { (text) } }
}

/// Unix milliseconds as `2026-01-31 12:00:00 UTC`.
pub fn at_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
            .to_string()
            .replace('T', " ")
            .replace('Z', " UTC"),
        Err(_) => "—".to_owned(),
    }
}

/// A payload timestamp (unix seconds).
pub fn at_s(s: i64) -> String {
    at_ms(s.saturating_mul(1000))
}

/// A span of time in its two largest units: `3m 12s`, `2h 5m`, `4d 1h`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let units = [
        (s / 86_400, "d"),
        (s / 3600 % 24, "h"),
        (s / 60 % 60, "m"),
        (s % 60, "s"),
    ];
    let parts: Vec<String> = units
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

pub fn percent(ratio: f64) -> String {
    format!("{:.1} %", ratio * 100.0)
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / f64::from(1 << 10)),
        n => format!("{n} B"),
    }
}

/// An outcome as a badge: `replied`, `silent · operator`, `dead · cloud_api_131026`, `pending`.
pub fn outcome_badge(outcome: Option<&Outcome>) -> Markup {
    let (class, text) = match outcome {
        None => ("pending", "pending".to_owned()),
        Some(o) => (
            o.kind(),
            match o.reason() {
                Some(reason) => format!("{} · {reason}", o.kind()),
                None => o.kind().to_owned(),
            },
        ),
    };
    html! { span class={ "badge " (class) } { (text) } }
}

/// The console page of one conversation.
pub fn conversation_url(provider: Provider, phone_number_id: &str, wa_id: &str) -> String {
    format!(
        "/console/conversations/{provider}/{}/{}",
        path_segment(phone_number_id),
        path_segment(wa_id)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn path_segment(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(at_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(at_s(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(at_ms(-1), "—");
        assert_eq!(age(0), "0s");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(192_000), "3m 12s");
        assert_eq!(age(2 * 3_600_000 + 5 * 60_000 + 7_000), "2h 5m");
        assert_eq!(
            age(86_400_000 + 30_000),
            "1d",
            "zero middle units are left out"
        );
        assert_eq!(percent(0.048), "4.8 %");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(
            conversation_url(Provider::Wasender, "111", "US.ENT.1 x/"),
            "/console/conversations/wasender/111/US.ENT.1%20x%2F"
        );
    }

    #[test]
    fn text_is_escaped_by_the_templates() {
        let markup = page("<b>", None, None, html! { p { "<script>" } }).into_string();
        assert!(markup.contains("&lt;b&gt;") && markup.contains("&lt;script&gt;"));
        assert!(!markup.contains("<script>"));
    }
}
