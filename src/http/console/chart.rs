//! A bar chart of messages per minute, drawn on the server as inline SVG (no script, no image
//! request): one bar per minute, the scale's top and the time axis labelled, and a text
//! alternative for screen readers.

use maud::{Markup, html};

use crate::store::MinuteCount;

/// Bar heights are drawn on a 0–100 scale; the SVG is stretched to the page's width (bars may
/// stretch, text may not: the labels are HTML around it).
const PLOT_HEIGHT: f64 = 100.0;

/// `minutes` oldest first; the last one is the current (partial) minute.
pub fn per_minute(minutes: &[MinuteCount]) -> Markup {
    let total: u64 = minutes.iter().map(|m| m.messages).sum();
    let peak = minutes.iter().map(|m| m.messages).max().unwrap_or(0);
    let scale = nice_ceiling(peak);
    let span = minutes.len().saturating_sub(1);
    let summary = format!(
        "{total} new inbound messages in the last {span} minutes; the busiest minute had {peak}."
    );
    html! {
        figure.chart {
            div.chart-scale aria-hidden="true" { "per minute, scale 0–" (scale) }
            svg viewBox={ "0 0 " (minutes.len().max(1)) " " (PLOT_HEIGHT) } preserveAspectRatio="none"
                role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg" {
                title #chart-title { "Inbound messages per minute" }
                desc #chart-desc { (summary) }
                line.grid x1="0" y1="0.5" x2=(minutes.len()) y2="0.5" vector-effect="non-scaling-stroke" {}
                line.grid x1="0" y1=(PLOT_HEIGHT) x2=(minutes.len()) y2=(PLOT_HEIGHT) vector-effect="non-scaling-stroke" {}
                @for (i, m) in minutes.iter().enumerate() {
                    @if m.messages > 0 {
                        @let h = PLOT_HEIGHT * m.messages as f64 / scale as f64;
                        rect.bar x=(fmt(i as f64 + 0.1)) y=(fmt(PLOT_HEIGHT - h)) width="0.8" height=(fmt(h)) {
                            title { (m.messages) " at " (super::layout::at_ms(m.minute_start_ms)) }
                        }
                    }
                }
            }
            div.chart-axis aria-hidden="true" {
                span { "−" (span) " min" } span { "−" (span / 2) " min" } span { "now" }
            }
            figcaption.muted { (summary) }
        }
    }
}

/// The smallest of 1, 2, 5 × 10ⁿ at or above `n` (at least 1): a round top for the scale.
fn nice_ceiling(n: u64) -> u64 {
    let mut base = 1u64;
    loop {
        for step in [1, 2, 5] {
            let candidate = base.saturating_mul(step);
            if candidate >= n || candidate == u64::MAX {
                return candidate.max(1);
            }
        }
        base = base.saturating_mul(10);
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_tops_are_round() {
        let tops: Vec<u64> = [0, 1, 2, 3, 7, 10, 11, 480, 5001]
            .into_iter()
            .map(nice_ceiling)
            .collect();
        assert_eq!(tops, [1, 1, 2, 5, 10, 10, 20, 500, 10_000]);
        assert_eq!(nice_ceiling(u64::MAX), u64::MAX);
    }

    #[test]
    fn one_bar_per_busy_minute_and_a_text_alternative() {
        let minutes: Vec<MinuteCount> = (0..61)
            .map(|i| MinuteCount {
                minute_start_ms: i * 60_000,
                messages: if i % 20 == 0 { 5 } else { 0 },
            })
            .collect();
        let svg = per_minute(&minutes).into_string();
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("20 new inbound messages in the last 60 minutes"));
        assert!(svg.contains("busiest minute had 5"));
        assert!(
            svg.contains("height=\"100.0\""),
            "the peak fills the plot: {svg}"
        );
    }
}
