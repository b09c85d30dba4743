//! Start-up as a library: `App::build` opens and migrates the store, wires ingest and binds the
//! listener (port 0 in tests); `App::run` serves until the shutdown token fires, then drains.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::{GroupPolicy, Provider};
use crate::http::{self, AppState};
use crate::ingest::{GroupCommitWriter, Ingestor, Spool};
use crate::metrics::Metrics;
use crate::retention::{Pruner, RetentionSettings};
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
        let gateways = config.gateway_sessions()?;
        let options = StoreOptions {
            busy_timeout: config.store_busy_timeout,
            human_reply_takeover: config.human_reply_takeover,
            group_policy: GroupPolicy::answering(
                gateways
                    .iter()
                    .filter(|g| g.answer_groups)
                    .map(|g| (Provider::Wasender, g.session_id.clone())),
            ),
            session_probe_interval: config.halt_probe_interval,
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
            WorkerSettings::from_config(&config)?,
            Sender::from_config(&config)?,
            responders,
            core.jobs_ready.clone(),
        )
        .with_keywords(config.keywords.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        announce(&config);
        let gateways = http::Gateways::from_config(&config)?;
        let state = AppState {
            gateways: Arc::new(gateways),
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
        // The loops that must keep running. Each returns only once `shutdown` fires; one that
        // ends earlier (a panic) takes the process down, non-zero, for its supervisor to
        // restart, instead of leaving it up without workers, sweep or spool replay.
        let mut loops: JoinSet<&'static str> = JoinSet::new();
        let looping = |name: &'static str, task: BoxFuture<'static, ()>| async move {
            task.await;
            name
        };
        loops.spawn(looping(
            "worker maintenance",
            worker
                .clone()
                .run_maintenance(maintenance_every, shutdown.clone())
                .boxed(),
        ));
        if state.config.worker_enabled {
            let drain = state.config.job_lease.min(Duration::from_secs(10));
            loops.spawn(looping(
                "reply workers",
                worker.run(shutdown.clone(), drain).boxed(),
            ));
        }
        loops.spawn(looping(
            "spool replayer",
            state
                .ingestor
                .clone()
                .run_spool_replayer(state.config.spool_replay_interval, shutdown.clone())
                .boxed(),
        ));
        let sweeper = Sweeper::new(
            state.store.clone(),
            state.clock.clone(),
            SweepSettings::from_config(&state.config),
            state.jobs_ready.clone(),
        )
        .with_metrics(state.metrics.clone());
        loops.spawn(looping(
            "reconcile sweep",
            sweeper
                .run(state.config.sweep_interval, shutdown.clone())
                .boxed(),
        ));
        let pruner = Pruner::new(
            state.store.clone(),
            state.clock.clone(),
            RetentionSettings::from_config(&state.config)?,
        );
        loops.spawn(looping(
            "retention prune",
            pruner
                .run(state.config.prune_interval, shutdown.clone())
                .boxed(),
        ));
        tracing::info!(address = %listener.local_addr()?, "replyd listening");
        let router = http::router(state);
        let serving = http::serve::serve(listener, router, serve_settings, shutdown.clone());
        let (served, died) = serve_while_loops_run(serving, &mut loops, &shutdown).await;
        let served = served.context("serving HTTP");
        shutdown.cancel();
        while let Some(ended) = loops.join_next().await {
            if let Err(e) = ended {
                tracing::error!(error = %e, "a background task failed while stopping");
            }
        }
        // The router (and with it every writer handle) is gone: the writer drains and stops.
        writer_task.await.ok();
        served?;
        if let Some(error) = died {
            return Err(error);
        }
        tracing::info!("replyd stopped");
        Ok(())
    }
}

/// Runs `serving` to its end. A loop that ends before `shutdown` fired (a panic, a return)
/// fires it: the server stops the orderly way (in-flight requests finish) and the loop's end
/// is returned as the error the process exits with.
async fn serve_while_loops_run<F>(
    serving: F,
    loops: &mut JoinSet<&'static str>,
    shutdown: &CancellationToken,
) -> (F::Output, Option<anyhow::Error>)
where
    F: std::future::Future,
{
    tokio::pin!(serving);
    let mut died = None;
    let served = loop {
        tokio::select! {
            served = &mut serving => break served,
            Some(ended) = loops.join_next() => {
                // A loop that returned because shutdown fired is done, not dead.
                if ended.is_err() || !shutdown.is_cancelled() {
                    died.get_or_insert(loop_ended(ended));
                    shutdown.cancel();
                }
            }
        }
    };
    (served, died)
}

/// Why the process stops when a background loop ended before shutdown.
fn loop_ended(ended: Result<&'static str, JoinError>) -> anyhow::Error {
    let error = match ended {
        Ok(name) => anyhow::anyhow!("the {name} stopped unexpectedly"),
        Err(e) if e.is_panic() => anyhow::anyhow!("a background loop panicked: {e}"),
        Err(e) => anyhow::anyhow!("a background loop was cancelled: {e}"),
    };
    tracing::error!(error = %error, "stopping: replyd cannot keep its promise without it");
    error
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
    for g in config.gateway_sessions().unwrap_or_default() {
        if g.sandbox() {
            tracing::warn!(session = %g.session_id, "SANDBOX: this WASender gateway has no api_key, its replies will be recorded, not sent");
        }
        if g.answer_groups {
            tracing::info!(session = %g.session_id, "this WASender gateway answers in group chats");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for the HTTP server: serves until shutdown fires.
    async fn server(shutdown: CancellationToken) -> &'static str {
        shutdown.cancelled().await;
        "served"
    }

    #[tokio::test]
    async fn a_loop_that_panics_stops_the_server_and_is_the_error() {
        let shutdown = CancellationToken::new();
        let mut loops = JoinSet::new();
        let token = shutdown.clone();
        loops.spawn(async move {
            token.cancelled().await;
            "healthy loop"
        });
        loops.spawn(async {
            tokio::task::yield_now().await;
            panic!("boom");
        });
        let (served, died) =
            serve_while_loops_run(server(shutdown.clone()), &mut loops, &shutdown).await;
        assert_eq!(served, "served");
        assert!(shutdown.is_cancelled());
        assert!(died.unwrap().to_string().contains("panicked"));
    }

    #[tokio::test]
    async fn a_loop_that_returns_early_is_an_error_but_not_after_shutdown() {
        let shutdown = CancellationToken::new();
        let mut loops = JoinSet::new();
        loops.spawn(async { "spool replayer" });
        let (_, died) =
            serve_while_loops_run(server(shutdown.clone()), &mut loops, &shutdown).await;
        assert!(died.unwrap().to_string().contains("spool replayer stopped"));

        let shutdown = CancellationToken::new();
        let mut loops = JoinSet::new();
        let token = shutdown.clone();
        loops.spawn(async move {
            token.cancelled().await;
            "reconcile sweep"
        });
        shutdown.cancel();
        let (_, died) =
            serve_while_loops_run(server(shutdown.clone()), &mut loops, &shutdown).await;
        assert!(died.is_none(), "stopping on shutdown is not dying");
    }
}
