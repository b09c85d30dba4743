//! Prometheus metrics, one registry per running app (no global recorder, so tests that start
//! several apps in one process each see their own numbers). Names are prefixed `replyd_`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

pub struct Metrics {
    registry: Registry,
    /// Webhook deliveries accepted (authentic), by provider.
    pub webhooks: Family<Labels, Counter>,
    pub inbound_messages: Counter,
    pub duplicate_messages: Counter,
    pub statuses: Counter,
    /// Deliveries refused, by reason (signature_missing, signature_mismatch, body_too_large…).
    pub rejected: Family<Labels, Counter>,
    pub dead_letters: Counter,
    pub spooled: Counter,
    pub spool_replayed: Counter,
    /// Seconds from a webhook's arrival to its answer (after commit or spool).
    pub ingest_latency: Histogram,
    /// Deliveries per group-commit transaction.
    pub group_commit_size: Histogram,
    pub replies_sent: Counter,
    /// Messages deliberately left unanswered, by reason.
    pub replies_silenced: Family<Labels, Counter>,
    /// Failed sends, by class (retryable, permanent, halt, ambiguous).
    pub send_failures: Family<Labels, Counter>,
    /// Numbers whose sends were paused by a halt-class error (each pause counts once).
    pub sends_halted: Counter,
    /// Ambiguous sends settled, by how (`by`: status, evidence, operator).
    pub ambiguous_resolved: Family<Labels, Counter>,
    /// Statuses showing an earlier attempt of a resent reply went out too.
    pub double_sends: Counter,
    /// Seconds from a message's arrival to its reply being accepted by the Cloud API.
    pub reply_latency: Histogram,
    /// Read receipts (mark read with typing), by result (`marked`, `failed`).
    pub read_receipts: Family<Labels, Counter>,
    /// Set at scrape time.
    pub queue_depth: Gauge,
    pub held_numbers: Gauge,
    pub spool_pending_bytes: Gauge,
    /// Set at scrape time: inbound messages without an outcome, the oldest one's age (payload
    /// time), open dead letters.
    pub pending_messages: Gauge,
    pub oldest_pending_age_seconds: Gauge,
    pub dead_letters_open: Gauge,
    /// Dead letters written, by origin (payload, store_refused, send, ambiguous_send); each also
    /// counts in `dead_letters`.
    pub dead_letters_by_origin: Family<Labels, Counter>,
    /// Sweep runs that acted (dry runs are not counted), and their decisions.
    pub sweep_runs: Counter,
    pub sweep_decisions: Family<[(&'static str, &'static str); 2], Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("replyd");
        let m = Self {
            webhooks: Family::default(),
            inbound_messages: Counter::default(),
            duplicate_messages: Counter::default(),
            statuses: Counter::default(),
            rejected: Family::default(),
            dead_letters: Counter::default(),
            spooled: Counter::default(),
            spool_replayed: Counter::default(),
            ingest_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            group_commit_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            replies_sent: Counter::default(),
            replies_silenced: Family::default(),
            send_failures: Family::default(),
            sends_halted: Counter::default(),
            ambiguous_resolved: Family::default(),
            double_sends: Counter::default(),
            reply_latency: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            read_receipts: Family::default(),
            queue_depth: Gauge::default(),
            held_numbers: Gauge::default(),
            spool_pending_bytes: Gauge::default(),
            pending_messages: Gauge::default(),
            oldest_pending_age_seconds: Gauge::default(),
            dead_letters_open: Gauge::default(),
            dead_letters_by_origin: Family::default(),
            sweep_runs: Counter::default(),
            sweep_decisions: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "webhooks_received",
            "Authentic webhook deliveries",
            m.webhooks.clone(),
        );
        registry.register(
            "inbound_messages",
            "New inbound messages stored",
            m.inbound_messages.clone(),
        );
        registry.register(
            "inbound_duplicates",
            "Inbound messages delivered again",
            m.duplicate_messages.clone(),
        );
        registry.register(
            "statuses",
            "New delivery statuses stored",
            m.statuses.clone(),
        );
        registry.register(
            "webhooks_rejected",
            "Webhook deliveries refused, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "dead_letters",
            "Dead letters written",
            m.dead_letters.clone(),
        );
        registry.register(
            "spooled",
            "Payloads written to the local spool",
            m.spooled.clone(),
        );
        registry.register(
            "spool_replayed",
            "Spooled payloads replayed into the store",
            m.spool_replayed.clone(),
        );
        registry.register(
            "ingest_duration_seconds",
            "Webhook arrival to answer",
            m.ingest_latency.clone(),
        );
        registry.register(
            "group_commit_size",
            "Deliveries per ingest transaction",
            m.group_commit_size.clone(),
        );
        registry.register("queue_depth", "Reply jobs waiting", m.queue_depth.clone());
        registry.register(
            "replies_sent",
            "Replies accepted by the Cloud API (or recorded in sandbox)",
            m.replies_sent.clone(),
        );
        registry.register(
            "replies_silenced",
            "Messages left unanswered on purpose, by reason",
            m.replies_silenced.clone(),
        );
        registry.register(
            "send_failures",
            "Failed sends, by class",
            m.send_failures.clone(),
        );
        registry.register(
            "sends_halted",
            "Pauses of a number's sends after a halt-class error",
            m.sends_halted.clone(),
        );
        registry.register(
            "ambiguous_resolved",
            "Ambiguous sends settled, by how (status, evidence, operator)",
            m.ambiguous_resolved.clone(),
        );
        registry.register(
            "double_sends",
            "Earlier attempts of resent replies shown by a status to have gone out too",
            m.double_sends.clone(),
        );
        registry.register(
            "reply_latency_seconds",
            "Message arrival to reply accepted",
            m.reply_latency.clone(),
        );
        registry.register(
            "read_receipts",
            "Messages marked read (with the typing indicator) before their reply, by result",
            m.read_receipts.clone(),
        );
        registry.register(
            "held_numbers",
            "Business numbers whose sends are paused",
            m.held_numbers.clone(),
        );
        registry.register(
            "spool_pending_bytes",
            "Bytes waiting in the spool",
            m.spool_pending_bytes.clone(),
        );
        registry.register(
            "pending_messages",
            "Inbound messages without an outcome yet",
            m.pending_messages.clone(),
        );
        registry.register(
            "oldest_pending_age_seconds",
            "Age of the oldest message without an outcome, by its payload time (0 when none)",
            m.oldest_pending_age_seconds.clone(),
        );
        registry.register(
            "dead_letters_open",
            "Dead letters waiting for an operator",
            m.dead_letters_open.clone(),
        );
        registry.register(
            "dead_letters_by_origin",
            "Dead letters written, by origin (payload, store_refused, send, ambiguous_send)",
            m.dead_letters_by_origin.clone(),
        );
        registry.register(
            "sweep_runs",
            "Reconcile sweep runs (dry runs excluded)",
            m.sweep_runs.clone(),
        );
        registry.register(
            "sweep_decisions",
            "Reconcile sweep decisions, by decision (requeue, silent, skip) and reason",
            m.sweep_decisions.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts `n` new dead letters of one origin, in the total and by origin.
    pub fn dead_lettered(&self, origin: &'static str, n: u64) {
        if n > 0 {
            self.dead_letters.inc_by(n);
            self.dead_letters_by_origin
                .get_or_create(&[("origin", origin)])
                .inc_by(n);
        }
    }

    pub fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&[("reason", reason)]).inc();
    }

    pub fn ambiguous_resolved(&self, by: crate::domain::ResolvedBy, n: u64) {
        if n > 0 {
            self.ambiguous_resolved
                .get_or_create(&[("by", by.as_str())])
                .inc_by(n);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}
