//! Per-worker counts of what was sent and how it was answered, merged into the [`Summary`].

use std::time::Duration;

use reqwest::StatusCode;

use super::feed::Carried;
use super::mix::{KindCounts, Mix};
use super::summary::Summary;

#[derive(Debug, Default)]
pub(super) struct Tally {
    requests: u64,
    unique: u64,
    duplicate: u64,
    messages: u64,
    statuses: u64,
    status_2xx: u64,
    status_4xx: u64,
    status_5xx: u64,
    pub(super) transport_errors: u64,
    messages_acked: u64,
    kinds: KindCounts,
    latencies_us: Vec<u64>,
}

impl Tally {
    pub(super) fn count_post(&mut self, fresh: Option<Carried>) {
        self.requests += 1;
        match fresh {
            Some(c) => {
                self.unique += 1;
                self.messages += u64::from(c.messages);
                self.statuses += u64::from(c.statuses);
                self.kinds.merge(&c.kinds);
            }
            None => self.duplicate += 1,
        }
    }

    pub(super) fn count_answer(
        &mut self,
        status: StatusCode,
        fresh: Option<Carried>,
        latency: Duration,
    ) {
        self.latencies_us.push(latency.as_micros() as u64);
        if status.is_success() {
            self.status_2xx += 1;
            self.messages_acked += fresh.map_or(0, |c| u64::from(c.messages));
        } else if status.is_client_error() {
            self.status_4xx += 1;
        } else if status.is_server_error() {
            self.status_5xx += 1;
        }
    }

    pub(super) fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.unique += other.unique;
        self.duplicate += other.duplicate;
        self.messages += other.messages;
        self.statuses += other.statuses;
        self.status_2xx += other.status_2xx;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.transport_errors += other.transport_errors;
        self.messages_acked += other.messages_acked;
        self.kinds.merge(&other.kinds);
        self.latencies_us.extend(other.latencies_us);
    }

    pub(super) fn into_summary(
        mut self,
        url: String,
        seed: u64,
        mix: Mix,
        elapsed: Duration,
    ) -> Summary {
        self.latencies_us.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let per_s = |n: u64| {
            if elapsed.is_zero() {
                0.0
            } else {
                n as f64 / elapsed.as_secs_f64()
            }
        };
        Summary {
            url,
            seed,
            requests_sent: self.requests,
            unique_payloads: self.unique,
            duplicate_payloads: self.duplicate,
            messages_sent: self.messages,
            statuses_sent: self.statuses,
            status_2xx: self.status_2xx,
            status_4xx: self.status_4xx,
            status_5xx: self.status_5xx,
            transport_errors: self.transport_errors,
            elapsed_s: elapsed.as_secs_f64(),
            requests_per_s: per_s(self.requests),
            messages_acknowledged: self.messages_acked,
            messages_per_s: per_s(self.messages_acked),
            latency_p50_ms: ms(percentile(&self.latencies_us, 50.0)),
            latency_p99_ms: ms(percentile(&self.latencies_us, 99.0)),
            latency_max_ms: ms(self.latencies_us.last().copied().unwrap_or(0)),
            mix,
            kinds: self.kinds,
            outcomes: None,
        }
    }
}

/// Nearest-rank percentile of an ascending slice; 0 for an empty one.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2, 3], 50.0), 2);
    }

    #[test]
    fn only_fresh_payloads_acknowledged_2xx_count_as_messages() {
        let mut t = Tally::default();
        let kinds = KindCounts {
            text: 3,
            ..KindCounts::default()
        };
        let fresh = Some(Carried {
            messages: 3,
            statuses: 1,
            kinds,
        });
        for (post, status) in [(fresh, 200), (None, 200), (fresh, 500), (fresh, 401)] {
            t.count_post(post);
            t.count_answer(
                StatusCode::from_u16(status).unwrap(),
                post,
                Duration::from_millis(2),
            );
        }
        let mix = Mix::new(0.0, 0.0, 0.0).unwrap();
        let s = t.into_summary("u".into(), 1, mix, Duration::from_secs(1));
        assert_eq!(s.kinds.text, 9, "kinds of the unique payloads sent");
        assert_eq!(
            (s.unique_payloads, s.duplicate_payloads, s.messages_sent),
            (3, 1, 9)
        );
        assert_eq!((s.status_2xx, s.status_4xx, s.status_5xx), (2, 1, 1));
        assert_eq!(s.messages_per_s, 3.0);
        assert_eq!(s.latency_p99_ms, 2.0);
    }
}
