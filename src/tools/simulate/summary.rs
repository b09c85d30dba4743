//! What a run sent, how the server answered, and (with `--until-settled`) what became of it.

use serde::Serialize;

use super::mix::{KindCounts, Mix};
use super::settle::Settled;

/// What a run sent and how the server answered. Latency runs from send to the full response.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub url: String,
    pub seed: u64,
    pub requests_sent: u64,
    pub unique_payloads: u64,
    pub duplicate_payloads: u64,
    /// Messages in the unique payloads that were sent.
    pub messages_sent: u64,
    /// Status updates in the unique payloads that were sent.
    pub statuses_sent: u64,
    pub status_2xx: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub transport_errors: u64,
    pub elapsed_s: f64,
    pub requests_per_s: f64,
    /// Messages of unique payloads answered 2xx (stored or spooled by the server).
    pub messages_acknowledged: u64,
    /// Unique messages whose payload was answered 2xx, per second.
    pub messages_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    /// The configured shares of keywords, media and reactions.
    pub mix: Mix,
    /// The messages of the unique payloads sent, by kind.
    pub kinds: KindCounts,
    /// What the server made of the traffic, once settled (`--until-settled`).
    pub outcomes: Option<Settled>,
}

impl Summary {
    pub fn print_table(&self) {
        let k = &self.kinds;
        let share = |n: u64| {
            if k.total() == 0 {
                0.0
            } else {
                100.0 * n as f64 / k.total() as f64
            }
        };
        let mut rows = vec![
            ("url", self.url.clone()),
            (
                "requests",
                format!(
                    "{} sent ({} unique, {} duplicate) in {:.2} s",
                    self.requests_sent,
                    self.unique_payloads,
                    self.duplicate_payloads,
                    self.elapsed_s
                ),
            ),
            (
                "throughput",
                format!(
                    "{:.0} req/s, {:.0} msg/s acknowledged",
                    self.requests_per_s, self.messages_per_s
                ),
            ),
            (
                "payloads",
                format!(
                    "{} messages, {} statuses (unique payloads)",
                    self.messages_sent, self.statuses_sent
                ),
            ),
            (
                "mix",
                format!(
                    "text {} ({:.1}%)  keyword {} ({:.1}%)  media {} ({:.1}%)  reaction {} ({:.1}%)  button {} ({:.1}%)  location {} ({:.1}%)",
                    k.text,
                    share(k.text),
                    k.keyword,
                    share(k.keyword),
                    k.media,
                    share(k.media),
                    k.reaction,
                    share(k.reaction),
                    k.interactive,
                    share(k.interactive),
                    k.location,
                    share(k.location)
                ),
            ),
            (
                "mix asked",
                format!(
                    "keyword {:.1}%  media {:.1}%  reaction {:.1}%",
                    100.0 * self.mix.keyword,
                    100.0 * self.mix.media,
                    100.0 * self.mix.reaction
                ),
            ),
            (
                "answers",
                format!(
                    "2xx {}  4xx {}  5xx {}  transport errors {}",
                    self.status_2xx, self.status_4xx, self.status_5xx, self.transport_errors
                ),
            ),
            (
                "latency ms",
                format!(
                    "p50 {:.3}  p99 {:.3}  max {:.3}",
                    self.latency_p50_ms, self.latency_p99_ms, self.latency_max_ms
                ),
            ),
            ("seed", self.seed.to_string()),
        ];
        if let Some(o) = &self.outcomes {
            rows.extend(o.rows());
        }
        for (label, value) in rows {
            println!("{label:<12} {value}");
        }
    }
}
