//! Send pacing: per business number (Meta's throughput, 80/s by default) and per recipient
//! (the pair limit, about one message per 6 s with a small burst). A generic cell-rate
//! algorithm: each key has a theoretical arrival time; a reservation returns when the send may go.
//! Pure over the time passed in.

use std::collections::HashMap;
use std::sync::Mutex;

/// One key's pacing: `interval_ms` between sends, up to `burst` sends at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub interval_ms: f64,
    pub burst: u32,
}

impl Pace {
    pub fn per_second(rate: u32) -> Self {
        Self {
            interval_ms: 1000.0 / f64::from(rate.max(1)),
            burst: 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct Limiter {
    next_free: Mutex<HashMap<String, f64>>,
}

impl Limiter {
    /// Reserves the next slot for `key`; returns the unix ms at which it may be used (≥ now).
    pub fn reserve(&self, key: &str, pace: Pace, now_ms: i64) -> i64 {
        let now = now_ms as f64;
        let tolerance = pace.interval_ms * f64::from(pace.burst.saturating_sub(1));
        let mut map = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Keys whose pacing has fully relaxed carry no information.
            map.retain(|_, tat| *tat > now);
        }
        let tat = map.get(key).copied().unwrap_or(now).max(now);
        let slot = (tat - tolerance).max(now);
        map.insert(key.to_owned(), tat.max(slot) + pace.interval_ms);
        slot.ceil() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_sends_at_the_rate() {
        let l = Limiter::default();
        let pace = Pace::per_second(80);
        let slots: Vec<i64> = (0..81).map(|_| l.reserve("n", pace, 1_000)).collect();
        assert_eq!(slots[0], 1_000);
        assert_eq!(
            slots[80], 2_000,
            "the 81st send of a burst waits a full second at 80/s"
        );
        assert!(slots.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            l.reserve("other", pace, 1_000),
            1_000,
            "keys are independent"
        );
    }

    #[test]
    fn burst_then_interval() {
        let l = Limiter::default();
        let pace = Pace {
            interval_ms: 6_000.0,
            burst: 3,
        };
        let slots: Vec<i64> = (0..5).map(|_| l.reserve("u", pace, 0)).collect();
        assert_eq!(slots, [0, 0, 0, 6_000, 12_000]);
        // After a quiet spell the burst is available again.
        assert_eq!(l.reserve("u", pace, 100_000), 100_000);
    }
}
