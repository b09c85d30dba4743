//! Start-up as a library: `App::build` opens and migrates the store, wires ingest and binds the
//! listener (port 0 in tests); `App::run` serves until the shutdown token fires, then drains.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::ingest::{GroupCommitWriter, Ingestor, Spool};
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions};
use crate::sweep::{SweepSettings, Sweeper};
use crate::worker::sender::Sender;
use crate::worker::{Responders, Worker, WorkerSettings};

pub struct App {
    listener: TcpListener,
    state: AppState,
    writer_task: JoinHandle<()>,
    worker: Worker,
}

/// The store plus the ingest path, without an HTTP server: what `serve` and the offline
/// commands (`spool replay`) share.
pub struct Core {
    pub store: Store,
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    pub writer_task: JoinHandle<()>,
    /// Rung when reply jobs become due (new messages, replays, resumed numbers).
    pub jobs_ready: Arc<Notify>,
}

/// Whether a [`Core`] owns the spool directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpoolAccess {
    /// Takes the directory's lock (refused while another process holds it): the process may
    /// spool payloads and replay them. `serve` and `spool replay`.
    Own,
    /// Leaves the spool to its owner: a delivery the store cannot take fails instead of being
    /// spooled. The other offline commands, which may run next to a server.
    Leave,
}

impl Core {
    /// The core of a process that owns its spool (see [`SpoolAccess::Own`]).
    pub async fn open(config: &Config, clock: Clock) -> anyhow::Result<Self> {
        Self::open_with(config, clock, SpoolAccess::Own).await
    }

    /// The core of an offline command that runs alongside a server (see [`SpoolAccess::Leave`]).
    pub async fn open_offline(config: &Config, clock: Clock) -> anyhow::Result<Self> {
        Self::open_with(config, clock, SpoolAccess::Leave).await
    }

    async fn open_with(config: &Config, clock: Clock, spool: SpoolAccess) -> anyhow::Result<Self> {
        // First, so that a process refused the spool touches nothing else. The error names the
        // directory and says what to do; it stays downcastable to `SpoolError`.
        let spool = match spool {
            SpoolAccess::Own => Spool::open(&config.spool_dir)?,
            SpoolAccess::Leave => Spool::unowned(&config.spool_dir),
        };
        let options = StoreOptions {
            busy_timeout: config.store_busy_timeout,
            human_reply_takeover: config.human_reply_takeover,
        };
        let store = Store::connect(&config.database_url, &options)
            .await
            .with_context(|| format!("opening the store at {}", config.database_url))?;
        store.migrate().await.context("migrating the store")?;
        let metrics = Arc::new(Metrics::new());
        let jobs_ready = Arc::new(Notify::new());
        let (writer, writer_task) = GroupCommitWriter::spawn(
            store.clone(),
            clock,
            metrics.clone(),
            config.group_commit_max,
            jobs_ready.clone(),
        );
        let ingestor = Ingestor::new(
            writer,
            spool,
            metrics.clone(),
            config.ingest_timeout,
            config.keywords.clone(),
        );
        Ok(Self {
            store,
            ingestor,
            metrics,
            writer_task,
            jobs_ready,
        })
    }
}

impl App {
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let responders = Responders::from_config(&config).context("loading the responders")?;
        Self::build_with(config, clock, responders).await
    }

    /// Like [`App::build`], with the responders given (an embedded Rust responder, tests).
    pub async fn build_with(
        config: Config,
        clock: Clock,
        responders: Responders,
    ) -> anyhow::Result<Self> {
        let core = Core::open(&config, clock.clone()).await?;
        let worker = Worker::new(
            core.store.clone(),
            clock.clone(),
            core.metrics.clone(),
            WorkerSettings::from_config(&config),
            Sender::from_config(&config),
            responders,
            core.jobs_ready.clone(),
        )
        .with_keywords(config.keywords.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        announce(&config);
        let state = AppState {
            config: Arc::new(config),
            store: core.store,
            ingestor: core.ingestor,
            metrics: core.metrics,
            clock: clock.clone(),
            jobs_ready: core.jobs_ready,
        };
        Ok(Self {
            listener,
            state,
            writer_task: core.writer_task,
            worker,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn ingestor(&self) -> &Ingestor {
        &self.state.ingestor
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// Serves until `shutdown` fires, then finishes in-flight requests and pending writes.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            writer_task,
            worker,
        } = self;
        let serve_settings =
            http::serve::ServeSettings::from_config(&state.config).context("HTTP limits")?;
        let maintenance_every = maintenance_interval(&state.config);
        let maintenance = tokio::spawn(
            worker
                .clone()
                .run_maintenance(maintenance_every, shutdown.clone()),
        );
        let drain = state.config.job_lease.min(Duration::from_secs(10));
        let workers = if state.config.worker_enabled {
            tokio::spawn(worker.run(shutdown.clone(), drain))
        } else {
            tokio::spawn(async {})
        };
        let replayer = tokio::spawn(
            state
                .ingestor
                .clone()
                .run_spool_replayer(state.config.spool_replay_interval, shutdown.clone()),
        );
        let sweeper = Sweeper::new(
            state.store.clone(),
            state.clock.clone(),
            SweepSettings::from_config(&state.config),
            state.jobs_ready.clone(),
        );
        let sweeps = tokio::spawn(sweeper.run(state.config.sweep_interval, shutdown.clone()));
        tracing::info!(address = %listener.local_addr()?, "replyd listening");
        let router = http::router(state);
        http::serve::serve(listener, router, serve_settings, shutdown.clone())
            .await
            .context("serving HTTP")?;
        shutdown.cancel();
        replayer.await.ok();
        workers.await.ok();
        maintenance.await.ok();
        sweeps.await.ok();
        // The router (and with it every writer handle) is gone: the writer drains and stops.
        writer_task.await.ok();
        tracing::info!("replyd stopped");
        Ok(())
    }
}

/// Often enough to probe paused numbers and settle ambiguous sends on time, never busy.
fn maintenance_interval(config: &Config) -> Duration {
    let quarter_quiet = config.ambiguous_quiet_period / 4;
    let quarter_idle = config.operator_idle_release / 4;
    config
        .halt_probe_interval
        .min(quarter_quiet)
        .min(quarter_idle)
        .clamp(Duration::from_millis(100), Duration::from_secs(10))
}

fn announce(config: &Config) {
    if config.app_secret.expose().is_empty() {
        tracing::warn!("REPLYD_APP_SECRET is not set: every POST /webhook will be refused (401)");
    }
    if config.verify_token.expose().is_empty() {
        tracing::warn!(
            "REPLYD_VERIFY_TOKEN is not set: Meta's verification handshake will be refused"
        );
    }
    if config.admin_token.expose().is_empty() {
        tracing::warn!("REPLYD_ADMIN_TOKEN is not set: the admin API refuses every call");
    }
    if config.sandbox() {
        tracing::warn!("SANDBOX: no REPLYD_ACCESS_TOKEN, replies will be recorded, not sent");
    }
}
