//! The fake's shared state: current faults, the send and read-receipt records, per-number (and
//! per-session) throughput buckets and the seeded random source that decides which sends get an
//! injected fault.
//!
//! Every lock here is a `std::sync::Mutex` held for a few instructions and never across an
//! `.await`, so handlers and test-side setters can share it freely.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::args::StatusKeyId;
use super::webhook::{GatewayWebhook, StatusWebhook};
use super::{ReadReceipt, RecordedSend};
use crate::domain::Provider;

/// Faults that can be changed while the fake runs (from tests, or `PATCH /faults`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(super) struct Faults {
    /// Every send is answered with this error code.
    pub permanent_error_code: Option<i64>,
    /// Every send and every probe is answered with this (halt-class) error code.
    pub halt_code: Option<i64>,
    pub error_5xx_ratio: f64,
    pub rate_limit_ratio: f64,
    /// Accepted, sent, answer held back (the client times out after the message went out).
    pub timeout_ratio: f64,
    /// Stalled before anything goes out (the client times out, nothing was sent).
    pub timeout_before_ratio: f64,
    /// Read receipts are answered 500 (and recorded as failed).
    pub mark_read_fails: bool,
    /// While false, the gateway answers every send 503 "session is not connected".
    pub wasender_connected: bool,
    /// Which id the gateway's status webhooks carry.
    pub wasender_status_key: StatusKeyId,
}

/// What does not change while the fake runs.
pub(super) struct Settings {
    pub latency: Duration,
    pub timeout_delay: Duration,
    pub max_mps: Option<u32>,
    pub webhook: Option<StatusWebhook>,
    pub gateway_webhook: Option<GatewayWebhook>,
    /// WASender API key → session id; empty = every key is welcome.
    pub sessions: HashMap<String, String>,
    pub default_session: String,
}

/// A fault drawn for one send that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Injected {
    None,
    ServerError {
        http_status: u16,
        code: i64,
    },
    RateLimited {
        code: i64,
    },
    /// Accept and record the send, then hold the answer back.
    Timeout,
    /// Hold the answer back without sending: nothing recorded, no status.
    TimeoutBeforeSend,
}

/// Server errors the real API answers: 500 with 131000, 503 with 131016 or 2.
const SERVER_ERRORS: [(u16, i64); 3] = [(500, 131_000), (503, 131_016), (503, 2)];
/// Rate-limit codes answered as 429: throughput and account (WABA) limits.
const RATE_LIMIT_CODES: [i64; 2] = [130_429, 80_007];

pub(super) struct Shared {
    pub latency: Duration,
    pub timeout_delay: Duration,
    pub max_mps: Option<u32>,
    pub webhook: Option<StatusWebhook>,
    pub gateway_webhook: Option<GatewayWebhook>,
    pub shutdown: CancellationToken,
    sessions: HashMap<String, String>,
    default_session: String,
    faults: Mutex<Faults>,
    rng: Mutex<StdRng>,
    sends: Mutex<Vec<RecordedSend>>,
    read_receipts: Mutex<Vec<ReadReceipt>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Distinguishes this run's message ids from an earlier run's, so a store that outlives the
    /// fake never sees the same outbound id twice.
    run_id: String,
    /// The same for the gateway's integer `msgId`s: this run's start in ms × 1000.
    msg_id_base: u64,
    next_message: AtomicU64,
    next_trace: AtomicU64,
    throughput_rejections: AtomicU64,
    stalled_before_send: AtomicU64,
}

/// A token bucket of `max_mps` tokens refilled at `max_mps` per second: one second of burst.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Shared {
    pub fn new(faults: Faults, settings: Settings, seed: u64, started_ms: u64) -> Self {
        let Settings {
            latency,
            timeout_delay,
            max_mps,
            webhook,
            gateway_webhook,
            sessions,
            default_session,
        } = settings;
        Self {
            latency,
            timeout_delay,
            max_mps,
            webhook,
            gateway_webhook,
            shutdown: CancellationToken::new(),
            sessions,
            default_session,
            faults: Mutex::new(faults),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            sends: Mutex::new(Vec::new()),
            read_receipts: Mutex::new(Vec::new()),
            buckets: Mutex::new(HashMap::new()),
            run_id: format!("{started_ms:x}"),
            msg_id_base: started_ms.saturating_mul(1000),
            next_message: AtomicU64::new(1),
            next_trace: AtomicU64::new(1),
            throughput_rejections: AtomicU64::new(0),
            stalled_before_send: AtomicU64::new(0),
        }
    }

    pub fn faults(&self) -> Faults {
        *lock(&self.faults)
    }

    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut lock(&self.faults));
    }

    /// One independent draw per configured ratio, in the order 5xx, 429, timeout before the
    /// send, timeout after it.
    pub fn draw(&self, faults: &Faults) -> Injected {
        let mut rng = lock(&self.rng);
        if rng.gen_bool(faults.error_5xx_ratio.clamp(0.0, 1.0)) {
            let (http_status, code) = SERVER_ERRORS[rng.gen_range(0..SERVER_ERRORS.len())];
            return Injected::ServerError { http_status, code };
        }
        if rng.gen_bool(faults.rate_limit_ratio.clamp(0.0, 1.0)) {
            let code = RATE_LIMIT_CODES[rng.gen_range(0..RATE_LIMIT_CODES.len())];
            return Injected::RateLimited { code };
        }
        if rng.gen_bool(faults.timeout_before_ratio.clamp(0.0, 1.0)) {
            return Injected::TimeoutBeforeSend;
        }
        if rng.gen_bool(faults.timeout_ratio.clamp(0.0, 1.0)) {
            return Injected::Timeout;
        }
        Injected::None
    }

    /// The session a WASender API key belongs to; `None` when sessions are configured and the
    /// key is not one of them.
    pub fn session_of(&self, api_key: &str) -> Option<String> {
        if self.sessions.is_empty() {
            return Some(self.default_session.clone());
        }
        self.sessions.get(api_key).cloned()
    }

    /// Takes one send from the number's throughput budget; `false` (and counted) when it is spent.
    pub fn take_throughput(&self, phone_number_id: &str) -> bool {
        let Some(max_mps) = self.max_mps else {
            return true;
        };
        let rate = f64::from(max_mps.max(1));
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(phone_number_id.to_owned()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            self.throughput_rejections.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    pub fn throughput_rejections(&self) -> u64 {
        self.throughput_rejections.load(Ordering::Relaxed)
    }

    pub fn count_stalled_before_send(&self) {
        self.stalled_before_send.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stalled_before_send(&self) -> u64 {
        self.stalled_before_send.load(Ordering::Relaxed)
    }

    pub fn next_message_id(&self) -> String {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        format!("wamid.FAKE.{}.{n}", self.run_id)
    }

    /// A gateway send's ids: the integer `msgId` its answer carries and the WhatsApp key
    /// (`3EB0…`, upper-case hex) its status webhooks carry.
    pub fn next_gateway_ids(&self) -> (u64, String) {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        let key = format!("3EB0{}{n:08X}", self.run_id.to_uppercase());
        (self.msg_id_base + n, key)
    }

    pub fn next_trace_id(&self) -> String {
        let n = self.next_trace.fetch_add(1, Ordering::Relaxed);
        format!("AFakeTrace{}x{n}", self.run_id)
    }

    pub fn record(&self, send: RecordedSend) {
        lock(&self.sends).push(send);
    }

    pub fn sends(&self, provider: Option<Provider>) -> Vec<RecordedSend> {
        let sends = lock(&self.sends);
        let wanted = |s: &&RecordedSend| provider.is_none_or(|p| s.provider == p);
        sends.iter().filter(wanted).cloned().collect()
    }

    pub fn send_count(&self, provider: Option<Provider>) -> usize {
        let sends = lock(&self.sends);
        sends
            .iter()
            .filter(|s| provider.is_none_or(|p| s.provider == p))
            .count()
    }

    /// A gateway send of `session` by its `msgId`.
    pub fn gateway_send(&self, session: &str, msg_id: &str) -> Option<RecordedSend> {
        let sends = lock(&self.sends);
        sends
            .iter()
            .find(|s| {
                s.provider == Provider::Wasender
                    && s.phone_number_id == session
                    && s.message_id == msg_id
            })
            .cloned()
    }

    pub fn clear_sends(&self) {
        lock(&self.sends).clear();
    }

    pub fn record_read_receipt(&self, receipt: ReadReceipt) {
        lock(&self.read_receipts).push(receipt);
    }

    pub fn read_receipts(&self) -> Vec<ReadReceipt> {
        lock(&self.read_receipts).clone()
    }

    pub fn clear_read_receipts(&self) {
        lock(&self.read_receipts).clear();
    }

    /// Sleeps unless the fake is shutting down, so a held-back answer never delays shutdown.
    pub async fn pause(&self, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = self.shutdown.cancelled() => {}
        }
    }
}

/// A panic elsewhere must not wedge the fake: the data behind these locks stays consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
