//! The promise's numbers read at scrape time (`/metrics`), each from an index: what is pending,
//! how old the oldest pending message is, what sits in the dead-letter queue.

use super::{Store, StoreError};

/// Gauges computed when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromiseGauges {
    /// Inbound messages without an outcome.
    pub pending: u64,
    /// Payload time (unix s) of the oldest message without an outcome: the same clock the
    /// sweep's grace and the 24-hour window read.
    pub oldest_pending_ts: Option<i64>,
    pub dead_letters_open: u64,
}

impl Store {
    pub async fn promise_gauges(&self) -> Result<PromiseGauges, StoreError> {
        match self {
            Self::Sqlite(s) => s.promise_gauges().await,
        }
    }
}
