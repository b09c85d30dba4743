//! A bar chart of messages per minute, drawn on the server as inline SVG (no script, no image
//! request): one bar per minute, the scale's top and the time axis labelled, and a text
//! alternative for screen readers.

use maud::{Markup, html};

use crate::store::MinuteCount;

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 18.0;
const TOP: f64 = 8.0;

/// `minutes` oldest first; the last one is the current (partial) minute.
pub fn per_minute(minutes: &[MinuteCount]) -> Markup {
    let total: u64 = minutes.iter().map(|m| m.messages).sum();
    let peak = minutes.iter().map(|m| m.messages).max().unwrap_or(0);
    let scale = nice_ceiling(peak);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / minutes.len().max(1) as f64;
    let span = minutes.len().saturating_sub(1);
    let summary = format!(
        "{total} new inbound messages in the last {span} minutes; the busiest minute had {peak}."
    );
    html! {
        svg.chart viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg" {
            title #chart-title { "Inbound messages per minute" }
            desc #chart-desc { (summary) }
            line x1=(LEFT) y1=(TOP) x2=(WIDTH) y2=(TOP) {}
            line x1=(LEFT) y1=(TOP + plot_h) x2=(WIDTH) y2=(TOP + plot_h) {}
            text x=(LEFT - 4.0) y=(TOP + 8.0) text-anchor="end" { (scale) }
            text x=(LEFT - 4.0) y=(TOP + plot_h) text-anchor="end" { "0" }
            @for (i, m) in minutes.iter().enumerate() {
                @if m.messages > 0 {
                    @let h = plot_h * m.messages as f64 / scale as f64;
                    rect.bar x=(fmt(LEFT + i as f64 * slot + slot * 0.1)) y=(fmt(TOP + plot_h - h))
                        width=(fmt(slot * 0.8)) height=(fmt(h)) {
                        title { (m.messages) " at " (super::layout::at_ms(m.minute_start_ms)) }
                    }
                }
            }
            text x=(LEFT) y=(HEIGHT - 4.0) { "−" (span) " min" }
            text x=(LEFT + plot_w / 2.0) y=(HEIGHT - 4.0) text-anchor="middle" { "−" (span / 2) " min" }
            text x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { "now" }
        }
        p.muted { (summary) }
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
            svg.contains("height=\"124.0\""),
            "the peak fills the plot: {svg}"
        );
    }
}
