//! `replyd fake-cloud-api`: a real HTTP server standing in for the Cloud API send endpoint, for
//! tests, demos and benchmarks. It records every accepted send and injects latency, 5xx, 429,
//! held-back answers, permanent and halt errors, and a per-number throughput limit.
//!
//! Invariant: a send is recorded exactly when the real API would have sent the message — never
//! for an error answer or a send stalled before it went out, always for a held-back ("timed
//! out after sending") one, whose status webhooks are posted right away. Faults can be changed while it runs, in-process through [`FakeCloudApi`]
//! or over HTTP with `PATCH /faults`.

mod routes;
mod state;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use tokio::task::JoinHandle;

use state::{Faults, Shared};
use webhook::StatusWebhook;

/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct FakeCloudArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9091")]
    pub listen: SocketAddr,
    /// Delay added before answering every send, e.g. `20ms`.
    #[arg(long, default_value = "0ms")]
    pub latency: humantime::Duration,
    /// Share of sends (0.0–1.0) answered 500 (code 131000) or 503 (code 131016 or 2).
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub error_5xx_ratio: f64,
    /// Share of sends (0.0–1.0) answered 429 (code 130429 or 80007) with `Retry-After: 1`.
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub rate_limit_ratio: f64,
    /// Share of sends (0.0–1.0) accepted and recorded whose answer is held back by
    /// --timeout-delay: the dangerous case, sent (with its status webhooks) but unanswered.
    #[arg(long, alias = "timeout-after-ratio", default_value_t = 0.0, value_parser = ratio)]
    pub timeout_ratio: f64,
    /// Share of sends (0.0–1.0) that stall for --timeout-delay before anything goes out: not
    /// recorded, no status webhook, then answered 503 (if the client still waits).
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    pub timeout_before_ratio: f64,
    /// How long a held-back or stalled answer is delayed.
    #[arg(long, default_value = "30s")]
    pub timeout_delay: humantime::Duration,
    /// Answer every send with this Cloud API error code (e.g. 131026); `PATCH /faults` changes it.
    #[arg(long)]
    pub permanent_error_code: Option<i64>,
    /// Sends per second allowed per phone number id; over it the answer is 400 with code 130429.
    #[arg(long)]
    pub max_mps: Option<u32>,
    /// After each accepted send, POST a signed `sent` status webhook to this URL.
    #[arg(long)]
    pub status_webhook_url: Option<String>,
    /// Follow each `sent` status webhook with a `delivered` one.
    #[arg(long)]
    pub delivered_status: bool,
    /// How long after an accepted send its status webhooks are posted (Meta's can lag).
    #[arg(long, default_value = "0ms")]
    pub status_delay: humantime::Duration,
    /// App secret that signs the status webhooks (X-Hub-Signature-256).
    #[arg(long, env = "REPLYD_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
    /// Seed for the fault draws; random when absent (logged at start).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Default for FakeCloudArgs {
    /// The CLI defaults, listening on a free port: what tests start from.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            latency: Duration::ZERO.into(),
            error_5xx_ratio: 0.0,
            rate_limit_ratio: 0.0,
            timeout_ratio: 0.0,
            timeout_before_ratio: 0.0,
            timeout_delay: Duration::from_secs(30).into(),
            permanent_error_code: None,
            max_mps: None,
            status_webhook_url: None,
            delivered_status: false,
            status_delay: Duration::ZERO.into(),
            app_secret: None,
            seed: None,
        }
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a number between 0.0 and 1.0")),
    }
}

/// A send the fake accepted, as it arrived.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordedSend {
    pub phone_number_id: String,
    pub to: String,
    pub body: String,
    pub context_message_id: Option<String>,
    pub callback_data: Option<String>,
    /// The outbound id the fake answered with: `wamid.FAKE.<run>.<n>`.
    pub message_id: String,
    /// The whole `Authorization` header value (`Bearer …`).
    pub authorization: Option<String>,
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
            .map_or(0, |d| d.as_millis());
        let faults = Faults {
            permanent_error_code: args.permanent_error_code,
            halt_code: None,
            error_5xx_ratio: args.error_5xx_ratio,
            rate_limit_ratio: args.rate_limit_ratio,
            timeout_ratio: args.timeout_ratio,
            timeout_before_ratio: args.timeout_before_ratio,
        };
        let webhook = args.status_webhook_url.map(|url| {
            let mut hook = StatusWebhook::new(url, args.app_secret, args.delivered_status);
            hook.delay = args.status_delay.into();
            hook
        });
        let shared = Arc::new(Shared::new(
            faults,
            args.latency.into(),
            args.timeout_delay.into(),
            args.max_mps,
            webhook,
            seed,
            format!("{started_ms:x}"),
        ));

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
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}/v25.0")
    }

    /// Every accepted send, in arrival order.
    pub fn sends(&self) -> Vec<RecordedSend> {
        self.shared.sends()
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

    /// Answers every send and every probe with this halt-class code (e.g. 190 → HTTP 401)
    /// until cleared with `None`.
    pub fn set_halt(&self, code: Option<i64>) {
        self.shared.update_faults(|f| f.halt_code = code);
    }

    /// How many sends were answered 130429 because of `--max-mps`.
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

/// The CLI: start, print the base URL on stdout, serve until Ctrl-C.
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
mod tests;
