//! Time as a parameter: production reads the system clock, tests set and advance a manual one.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System,
    Manual(AtomicI64),
}

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(Source::System))
    }

    /// A clock that stands still at `unix_ms` until moved with [`Clock::advance`] or [`Clock::set_ms`].
    pub fn manual(unix_ms: i64) -> Self {
        Self(Arc::new(Source::Manual(AtomicI64::new(unix_ms))))
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &*self.0 {
            Source::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Source::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }

    /// Seconds since the Unix epoch (the unit of WhatsApp payload timestamps).
    pub fn now_s(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves a manual clock forward; a no-op on the system clock.
    pub fn advance(&self, by: Duration) {
        if let Source::Manual(ms) = &*self.0 {
            ms.fetch_add(
                i64::try_from(by.as_millis()).unwrap_or(i64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    pub fn set_ms(&self, unix_ms: i64) {
        if let Source::Manual(ms) = &*self.0 {
            ms.store(unix_ms, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!((clock.now_ms(), clock.now_s()), (3_000, 3));
        assert!(Clock::system().now_s() > 1_700_000_000);
    }
}
