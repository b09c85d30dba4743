//! `replyd fake-cloud-api`: a real HTTP server standing in for the Cloud API send endpoint and,
//! on the same port, the WASender gateway's — for tests, demos and benchmarks. It records every
//! accepted send and injects latency, 5xx, 429, held-back answers, permanent and halt errors, a
//! per-number throughput limit and, for the gateway, a disconnected session.
//!
//! Routes (see `routes.rs`, `gateway.rs` and `control.rs`):
//! - Cloud API: `POST /{version}/{phone_number_id}/messages` (a text send, or a read receipt
//!   when the body says `"status":"read"`), `GET /{version}/{phone_number_id}` (probe);
//! - WASender: `POST /api/send-message`, `GET /api/status`, `GET /api/messages/{msgId}/info`;
//! - control: `GET|DELETE /sent` (`?provider=cloud|wasender`, `?count=1`),
//!   `GET|DELETE /read-receipts`, `GET|PATCH /faults`.
//!
//! Invariant: a send is recorded exactly when the real API would have sent the message — never
//! for an error answer or a send stalled before it went out, always for a held-back ("timed
//! out after sending") one, whose status webhooks are posted right away. Read receipts are not
//! sends: they are listed apart. Faults can be changed while it runs, in-process through
//! [`FakeCloudApi`] or over HTTP with `PATCH /faults`.

mod args;
mod control;
mod gateway;
mod routes;
mod state;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::task::JoinHandle;

use crate::domain::Provider;
pub use args::{FakeCloudArgs, StatusKeyId};
use state::{Faults, Settings, Shared};
use webhook::{GatewayWebhook, StatusWebhook};

/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A send the fake accepted, as it arrived.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedSend {
    /// Which API took it: `cloud` or `wasender`.
    pub provider: Provider,
    /// The phone number id (Cloud API), or the session the API key belongs to (gateway).
    pub phone_number_id: String,
    pub to: String,
    pub body: String,
    pub context_message_id: Option<String>,
    pub callback_data: Option<String>,
    /// The outbound id the fake answered with: `wamid.FAKE.<run>.<n>` (Cloud API), or the
    /// gateway's integer `msgId` as a string.
    pub message_id: String,
    /// Gateway only: the WhatsApp message key (`3EB0…`) its status webhooks carry.
    pub key_id: Option<String>,
    /// The whole `Authorization` header value (`Bearer …`): tells which token or API key sent.
    pub authorization: Option<String>,
    pub received_at_ms: i64,
}

/// A read receipt (`"status":"read"`) posted to the Cloud API send route.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadReceipt {
    pub phone_number_id: String,
    /// The inbound wamid marked read.
    pub message_id: String,
    /// It asked for the typing indicator.
    pub typing: bool,
    /// It was answered 500 (`mark_read_fails`).
    pub failed: bool,
    pub received_at_ms: i64,
}

/// A running fake; `shutdown` stops it (dropping it stops it too, without waiting).
pub struct FakeCloudApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

impl FakeCloudApi {
    /// Binds `args.listen` (port 0 allowed) and serves in a background task.
    pub async fn start(args: FakeCloudArgs) -> anyhow::Result<FakeCloudApi> {
        for (name, r) in [
            ("error_5xx_ratio", args.error_5xx_ratio),
            ("rate_limit_ratio", args.rate_limit_ratio),
            ("timeout_ratio", args.timeout_ratio),
            ("timeout_before_ratio", args.timeout_before_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                bail!("{name} must be between 0.0 and 1.0, got {r}");
            }
        }
        let seed = args.seed.unwrap_or_else(rand::random);
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let faults = Faults {
            permanent_error_code: args.permanent_error_code,
            halt_code: None,
            error_5xx_ratio: args.error_5xx_ratio,
            rate_limit_ratio: args.rate_limit_ratio,
            timeout_ratio: args.timeout_ratio,
            timeout_before_ratio: args.timeout_before_ratio,
            mark_read_fails: args.mark_read_fails,
            wasender_connected: !args.wasender_disconnected,
            wasender_status_key: args.wasender_status_key,
        };
        let status_delay: Duration = args.status_delay.into();
        let webhook = args.status_webhook_url.map(|url| {
            let mut hook = StatusWebhook::new(url, args.app_secret, args.delivered_status);
            hook.delay = status_delay;
            hook
        });
        let gateway_webhook = args.wasender_webhook_url.map(|url| {
            let mut hook = GatewayWebhook::new(url, args.wasender_secret, args.delivered_status);
            hook.delay = status_delay;
            hook
        });
        let settings = Settings {
            latency: args.latency.into(),
            timeout_delay: args.timeout_delay.into(),
            max_mps: args.max_mps,
            webhook,
            gateway_webhook,
            sessions: args.wasender_sessions.into_iter().collect(),
            default_session: args.wasender_default_session,
        };
        let shared = Arc::new(Shared::new(faults, settings, seed, started_ms));

        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding the fake Cloud API to {}", args.listen))?;
        let addr = listener.local_addr()?;
        let router = routes::router(shared.clone());
        let stop = shared.shutdown.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "fake Cloud API server failed");
            }
        });
        tracing::info!(%addr, seed, "fake Cloud API listening");
        Ok(FakeCloudApi {
            addr,
            shared,
            server: Some(server),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure as `REPLYD_GRAPH_BASE_URL`; any version prefix is served.
    pub fn base_url(&self) -> String {
        format!("{}/v25.0", self.root_url())
    }

    /// The base URL to configure as a gateway's `base_url` (the WASender API sits under `/api`).
    pub fn gateway_base_url(&self) -> String {
        self.root_url()
    }

    fn root_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    /// Every accepted send of both APIs, in arrival order.
    pub fn sends(&self) -> Vec<RecordedSend> {
        self.shared.sends(None)
    }

    /// The accepted sends of one API, in arrival order.
    pub fn sends_of(&self, provider: Provider) -> Vec<RecordedSend> {
        self.shared.sends(Some(provider))
    }

    /// Every read receipt posted, failed ones included, in arrival order.
    pub fn read_receipts(&self) -> Vec<ReadReceipt> {
        self.shared.read_receipts()
    }

    /// Answer read receipts 500 (still recording them, flagged `failed`).
    pub fn set_mark_read_fails(&self, fails: bool) {
        self.shared.update_faults(|f| f.mark_read_fails = fails);
    }

    /// While false the gateway answers every send 503 and records nothing.
    pub fn set_wasender_connected(&self, connected: bool) {
        self.shared
            .update_faults(|f| f.wasender_connected = connected);
    }

    /// Which id the gateway's status webhooks carry in `data.key.id`.
    pub fn set_wasender_status_key(&self, key: StatusKeyId) {
        self.shared.update_faults(|f| f.wasender_status_key = key);
    }

    pub fn set_permanent_error(&self, code: Option<i64>) {
        self.shared.update_faults(|f| f.permanent_error_code = code);
    }

    pub fn set_error_5xx_ratio(&self, r: f64) {
        self.shared
            .update_faults(|f| f.error_5xx_ratio = r.clamp(0.0, 1.0));
    }

    pub fn set_rate_limit_ratio(&self, r: f64) {
        self.shared
            .update_faults(|f| f.rate_limit_ratio = r.clamp(0.0, 1.0));
    }

    /// Share of sends that go out but whose answer is held back past the client's timeout.
    pub fn set_timeout_ratio(&self, r: f64) {
        self.shared
            .update_faults(|f| f.timeout_ratio = r.clamp(0.0, 1.0));
    }

    /// Share of sends that stall before anything goes out (nothing recorded, no status).
    pub fn set_timeout_before_ratio(&self, r: f64) {
        self.shared
            .update_faults(|f| f.timeout_before_ratio = r.clamp(0.0, 1.0));
    }

    /// How many sends stalled before going out (`timeout_before_ratio`).
    pub fn stalled_before_send(&self) -> u64 {
        self.shared.stalled_before_send()
    }

    /// Answers every send and every probe with this halt-class code (e.g. 190 → HTTP 401; the
    /// gateway answers with the code's HTTP status) until cleared with `None`.
    pub fn set_halt(&self, code: Option<i64>) {
        self.shared.update_faults(|f| f.halt_code = code);
    }

    /// How many sends were refused because of `--max-mps` (both APIs).
    pub fn throughput_rejections(&self) -> u64 {
        self.shared.throughput_rejections()
    }

    /// Stops accepting, releases held-back answers, and waits (briefly) for open connections.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for FakeCloudApi {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// The CLI: start, print the Cloud API base URL on stdout, serve until Ctrl-C.
pub async fn run(args: FakeCloudArgs) -> anyhow::Result<()> {
    let fake = FakeCloudApi::start(args).await?;
    println!("{}", fake.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!(sends = fake.sends().len(), "fake Cloud API stopping");
    fake.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod gateway_tests;
#[cfg(test)]
mod tests;
