//! Start-up as a library: `App::build` opens and migrates the store, wires ingest and binds the
//! listener (port 0 in tests); `App::run` serves until the shutdown token fires, then drains.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, AppState};
use crate::ingest::{GroupCommitWriter, Ingestor, Spool};
use crate::metrics::Metrics;
use crate::store::{Store, StoreOptions};

pub struct App {
    listener: TcpListener,
    state: AppState,
    writer_task: JoinHandle<()>,
}

/// The store plus the ingest path, without an HTTP server: what `serve` and the offline
/// commands (`spool replay`) share.
pub struct Core {
    pub store: Store,
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    pub writer_task: JoinHandle<()>,
}

impl Core {
    pub async fn open(config: &Config, clock: Clock) -> anyhow::Result<Self> {
        let options = StoreOptions {
            busy_timeout: config.store_busy_timeout,
        };
        let store = Store::connect(&config.database_url, &options)
            .await
            .with_context(|| format!("opening the store at {}", config.database_url))?;
        store.migrate().await.context("migrating the store")?;
        let metrics = Arc::new(Metrics::new());
        let (writer, writer_task) = GroupCommitWriter::spawn(
            store.clone(),
            clock,
            metrics.clone(),
            config.group_commit_max,
        );
        let spool = Spool::open(&config.spool_dir)
            .with_context(|| format!("opening the spool at {}", config.spool_dir.display()))?;
        let ingestor = Ingestor::new(writer, spool, metrics.clone(), config.ingest_timeout);
        Ok(Self {
            store,
            ingestor,
            metrics,
            writer_task,
        })
    }
}

impl App {
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<Self> {
        let core = Core::open(&config, clock).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        announce(&config);
        let state = AppState {
            config: Arc::new(config),
            store: core.store,
            ingestor: core.ingestor,
            metrics: core.metrics,
        };
        Ok(Self {
            listener,
            state,
            writer_task: core.writer_task,
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

    /// Serves until `shutdown` fires, then finishes in-flight requests and pending writes.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            writer_task,
        } = self;
        let replayer = tokio::spawn(
            state
                .ingestor
                .clone()
                .run_spool_replayer(state.config.spool_replay_interval, shutdown.clone()),
        );
        tracing::info!(address = %listener.local_addr()?, "replyd listening");
        let router = http::router(state);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("serving HTTP")?;
        shutdown.cancel();
        replayer.await.ok();
        // The router (and with it every writer handle) is gone: the writer drains and stops.
        writer_task.await.ok();
        tracing::info!("replyd stopped");
        Ok(())
    }
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
