//! Retry policy for failed sends and responder calls. Pure: the caller passes the attempt count,
//! the kind of failure, the time and a random number, and gets back when to try again — or
//! why not to.
//!
//! delay = min(cap, base · multiplier^(attempt-1)) + jitter (0–25 % of it); 503-class failures
//! use a larger multiplier; a `Retry-After` answer is honoured up to the cap; 131056 (pair rate limit) waits
//! 4^n seconds as Meta asks; a retry is never scheduled at or past the close of the 24-hour window.

use std::time::Duration;

/// How a retryable failure wants to be backed off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    Normal,
    /// 503-class: the service is overloaded, back off harder.
    ServiceUnavailable,
    /// 429-class rate limits: long waits.
    RateLimited,
    /// Throughput (130429): retry soon, the limiter will pace it.
    Throughput,
    /// Pair rate limit (131056): 4^n seconds.
    PairRateLimit,
    /// Ambiguous server-side failures (codes 1, 131000): only a few tries.
    Limited,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub multiplier: f64,
    pub unavailable_multiplier: f64,
    pub cap: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Attempts in all for [`Backoff::Limited`] failures.
    pub limited_attempts: u32,
    /// Largest jitter as a share of the delay.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            unavailable_multiplier: 4.0,
            cap: Duration::from_secs(5 * 60),
            max_attempts: 7,
            limited_attempts: 3,
            jitter: 0.25,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this unix ms.
    RetryAt(i64),
    /// Attempts are used up.
    Exhausted,
    /// The next attempt would fall at or after the window's close.
    WindowClosed,
}

impl RetryPolicy {
    /// `attempts` is how many attempts were made so far (≥ 1); `jitter_unit` is uniform in [0, 1).
    pub fn next(
        &self,
        attempts: u32,
        backoff: Backoff,
        retry_after: Option<Duration>,
        now_ms: i64,
        window_closes_ms: i64,
        jitter_unit: f64,
    ) -> RetryDecision {
        let limit = if backoff == Backoff::Limited {
            self.limited_attempts.min(self.max_attempts)
        } else {
            self.max_attempts
        };
        if attempts >= limit {
            return RetryDecision::Exhausted;
        }
        let delay = self.delay(attempts, backoff, retry_after, jitter_unit);
        let at = now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        if at >= window_closes_ms {
            RetryDecision::WindowClosed
        } else {
            RetryDecision::RetryAt(at)
        }
    }

    /// The wait before attempt `attempts + 1`, jitter included.
    pub fn delay(
        &self,
        attempts: u32,
        backoff: Backoff,
        retry_after: Option<Duration>,
        jitter_unit: f64,
    ) -> Duration {
        let exponent = attempts.saturating_sub(1).min(64) as i32;
        let base = self.base.as_secs_f64();
        let cap = self.cap.as_secs_f64();
        let secs = match (retry_after, backoff) {
            // Honoured, but never past the cap: a hostile or broken `Retry-After: 31536000`
            // must not park a message until its window has long closed.
            (Some(after), _) => after.as_secs_f64(),
            (None, Backoff::ServiceUnavailable) => {
                base * self.unavailable_multiplier.powi(exponent)
            }
            (None, Backoff::RateLimited) => (base * 30.0) * self.multiplier.powi(exponent),
            (None, Backoff::Throughput) => base,
            (None, Backoff::PairRateLimit) => 4f64.powi(exponent),
            (None, Backoff::Normal | Backoff::Limited) => base * self.multiplier.powi(exponent),
        };
        let secs = secs.min(cap);
        let jitter = secs * self.jitter * jitter_unit.clamp(0.0, 1.0);
        Duration::from_secs_f64((secs + jitter).clamp(0.0, 1e9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;
    const FAR: i64 = i64::MAX / 2;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::default();
        let delays: Vec<f64> = (1..=12)
            .map(|a| secs(p.delay(a, Backoff::Normal, None, 0.0)))
            .collect();
        assert_eq!(&delays[..4], &[1.0, 2.0, 4.0, 8.0]);
        assert_eq!(delays[11], 300.0);
        assert!(
            secs(p.delay(3, Backoff::ServiceUnavailable, None, 0.0))
                > secs(p.delay(3, Backoff::Normal, None, 0.0))
        );
        assert_eq!(secs(p.delay(3, Backoff::PairRateLimit, None, 0.0)), 16.0);
        assert_eq!(
            secs(p.delay(2, Backoff::Normal, Some(Duration::from_secs(7)), 0.0)),
            7.0
        );
    }

    #[test]
    fn gives_up_after_max_attempts_and_sooner_for_limited_failures() {
        let p = RetryPolicy::default();
        assert!(matches!(
            p.next(6, Backoff::Normal, None, NOW, FAR, 0.5),
            RetryDecision::RetryAt(_)
        ));
        assert_eq!(
            p.next(7, Backoff::Normal, None, NOW, FAR, 0.5),
            RetryDecision::Exhausted
        );
        assert_eq!(
            p.next(3, Backoff::Limited, None, NOW, FAR, 0.5),
            RetryDecision::Exhausted
        );
    }

    #[test]
    fn never_schedules_past_the_window() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.next(1, Backoff::Normal, None, NOW, NOW + 500, 0.0),
            RetryDecision::WindowClosed
        );
        assert_eq!(
            p.next(1, Backoff::Normal, None, NOW, NOW + 1_001, 0.0),
            RetryDecision::RetryAt(NOW + 1_000)
        );
    }

    fn any_backoff() -> impl Strategy<Value = Backoff> {
        prop::sample::select(vec![
            Backoff::Normal,
            Backoff::ServiceUnavailable,
            Backoff::RateLimited,
            Backoff::Throughput,
            Backoff::PairRateLimit,
            Backoff::Limited,
        ])
    }

    proptest! {
        #[test]
        fn delay_is_bounded_by_cap_plus_jitter(attempts in 1u32..100, backoff in any_backoff(), j in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = secs(p.delay(attempts, backoff, None, j));
            let bare = secs(p.delay(attempts, backoff, None, 0.0));
            prop_assert!(d >= bare);
            prop_assert!(d <= bare * (1.0 + p.jitter) + 1e-9);
            prop_assert!(bare <= secs(p.cap) + 1e-9);
        }

        #[test]
        fn retry_after_is_honoured_up_to_the_cap(attempts in 1u32..100, backoff in any_backoff(), after_s in 0u64..100_000_000, j in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let after = Duration::from_secs(after_s);
            let bare = secs(p.delay(attempts, backoff, Some(after), 0.0));
            prop_assert_eq!(bare, secs(after).min(secs(p.cap)));
            prop_assert!(secs(p.delay(attempts, backoff, Some(after), j)) <= secs(p.cap) * (1.0 + p.jitter) + 1e-9);
        }

        #[test]
        fn delay_never_shrinks_as_attempts_grow(attempts in 1u32..100, backoff in any_backoff()) {
            let p = RetryPolicy::default();
            prop_assert!(p.delay(attempts + 1, backoff, None, 0.0) >= p.delay(attempts, backoff, None, 0.0));
        }

        #[test]
        fn a_scheduled_retry_is_always_in_the_future_and_inside_the_window(
            attempts in 1u32..20, backoff in any_backoff(), after in prop::option::of(0u64..10_000),
            window_left_ms in 0i64..100_000_000, j in 0.0f64..1.0
        ) {
            let p = RetryPolicy::default();
            let closes = NOW + window_left_ms;
            match p.next(attempts, backoff, after.map(Duration::from_millis), NOW, closes, j) {
                RetryDecision::RetryAt(at) => { prop_assert!(at >= NOW); prop_assert!(at < closes); }
                RetryDecision::Exhausted => prop_assert!(attempts >= p.limited_attempts),
                RetryDecision::WindowClosed => {}
            }
        }
    }
}
