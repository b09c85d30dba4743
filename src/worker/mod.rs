//! The reply worker: leases reply jobs from the queue, runs each through the silence gates, asks
//! the number's responder, claims the ledger row and sends the reply.
//!
//! One conversation is answered in order, one message at a time (the lease only hands out the
//! head of each conversation's queue); different conversations run in parallel up to
//! `worker_concurrency`. A killed worker's jobs come back when their lease runs out.

mod failures;
pub mod limiter;
pub mod maintenance;
pub mod pipeline;
mod receipts;
pub mod responder;
pub mod sender;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::domain::keywords::Keywords;
use crate::domain::retry::RetryPolicy;
use crate::domain::{AmbiguousResolution, Channel, PhoneNumberId, Provider};
use crate::metrics::Metrics;
use crate::store::Store;
use limiter::{Limiter, Pace};
use responder::{Responder, ResponderBuildError, ResponderConfig};
use sender::Sender;

/// The worker's settings, derived once from the configuration.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease_ms: i64,
    pub retry: RetryPolicy,
    pub default_rate: u32,
    pub rates: HashMap<Channel, u32>,
    /// Cloud API numbers that mark messages read (with typing) before asking the responder.
    pub read_receipts: ReadReceipts,
    pub pair_pace: Pace,
    pub ambiguous_quiet_ms: i64,
    pub ambiguous_resolution: AmbiguousResolution,
    pub halt_probe_interval_ms: i64,
    pub operator_idle_release_ms: i64,
    /// How long the lease loop waits when idle before looking again (jobs that come due).
    pub idle_poll: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Which Cloud API numbers mark messages read: the default, and the numbers that differ.
#[derive(Debug, Clone, Default)]
pub struct ReadReceipts {
    pub default: bool,
    pub except: HashSet<String>,
}

impl ReadReceipts {
    pub fn enabled_for(&self, channel: &Channel) -> bool {
        channel.provider == Provider::Cloud
            && (self.default != self.except.contains(channel.id.as_str()))
    }
}

/// A configured channel id, parsed (the configuration was validated when it was loaded).
fn channel(provider: Provider, id: &str) -> Result<Channel, ConfigError> {
    PhoneNumberId::parse(id)
        .map(|id| Channel::new(provider, id))
        .map_err(|e| ConfigError::Invalid(format!("{provider} channel `{id}`: {e}")))
}

impl WorkerSettings {
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let mut rates = HashMap::new();
        for n in &config.numbers {
            if let Some(rate) = n.send_rate_per_second {
                rates.insert(channel(Provider::Cloud, &n.phone_number_id)?, rate);
            }
        }
        for g in config.gateway_sessions()? {
            if let Some(rate) = g.send_rate_per_second {
                rates.insert(channel(Provider::Wasender, &g.session_id)?, rate);
            }
        }
        Ok(Self {
            concurrency: config.worker_concurrency.max(1),
            lease_ms: ms(config.job_lease),
            retry: RetryPolicy {
                base: config.retry_base,
                cap: config.retry_cap,
                max_attempts: config.max_attempts.max(1),
                limited_attempts: config.max_attempts_unexplained.max(1),
                ..RetryPolicy::default()
            },
            default_rate: config.send_rate_per_second,
            rates,
            read_receipts: ReadReceipts {
                default: config.read_receipts,
                except: config
                    .numbers
                    .iter()
                    .filter(|n| n.read_receipts.is_some_and(|r| r != config.read_receipts))
                    .map(|n| n.phone_number_id.clone())
                    .collect(),
            },
            pair_pace: Pace {
                interval_ms: config.pair_interval.as_secs_f64() * 1000.0,
                burst: config.pair_burst.max(1),
            },
            ambiguous_quiet_ms: ms(config.ambiguous_quiet_period),
            ambiguous_resolution: config.ambiguous_resolution,
            halt_probe_interval_ms: ms(config.halt_probe_interval),
            operator_idle_release_ms: ms(config.operator_idle_release),
            idle_poll: Duration::from_millis(200),
        })
    }

    pub fn rate_for(&self, channel: &Channel) -> u32 {
        self.rates
            .get(channel)
            .copied()
            .unwrap_or(self.default_rate)
    }
}

/// One responder per channel (business number or gateway session), and the default for the rest.
#[derive(Debug, Clone)]
pub struct Responders {
    default: (Arc<dyn Responder>, usize),
    by_channel: HashMap<Channel, (Arc<dyn Responder>, usize)>,
}

impl Responders {
    pub fn from_config(config: &Config) -> Result<Self, ResponderBuildError> {
        let build =
            |c: &ResponderConfig| Ok::<_, ResponderBuildError>((c.build()?, c.history_len()));
        let configured = |e: ConfigError| ResponderBuildError::Config(e.to_string());
        let mut by_channel = HashMap::new();
        for n in &config.numbers {
            if let Some(c) = &n.responder {
                let key = channel(Provider::Cloud, &n.phone_number_id).map_err(configured)?;
                by_channel.insert(key, build(c)?);
            }
        }
        for g in config.gateway_sessions().map_err(configured)? {
            if let Some(c) = &g.responder {
                let key = channel(Provider::Wasender, &g.session_id).map_err(configured)?;
                by_channel.insert(key, build(c)?);
            }
        }
        Ok(Self {
            default: build(&config.responder)?,
            by_channel,
        })
    }

    /// A single responder for every number (embedding, tests).
    pub fn single(responder: Arc<dyn Responder>, history_len: usize) -> Self {
        Self {
            default: (responder, history_len),
            by_channel: HashMap::new(),
        }
    }

    pub fn get(&self, channel: &Channel) -> &Arc<dyn Responder> {
        &self.by_channel.get(channel).unwrap_or(&self.default).0
    }

    pub fn history_len(&self, channel: &Channel) -> usize {
        self.by_channel.get(channel).unwrap_or(&self.default).1
    }
}

/// Everything a job needs; cheap to clone into each job's task.
#[derive(Debug, Clone)]
pub struct Worker {
    store: Store,
    clock: Clock,
    metrics: Arc<Metrics>,
    settings: Arc<WorkerSettings>,
    sender: Sender,
    responders: Responders,
    limiter: Arc<Limiter>,
    /// Channels whose sends are paused, with the time of their next probe (a local cache of the
    /// store's holds, which the worker re-reads before trusting a hold it has cached).
    holds: Arc<Mutex<HashMap<Channel, i64>>>,
    /// Rung by ingest and by operator actions when jobs become due.
    jobs_ready: Arc<Notify>,
    /// Consent keywords and their confirmations.
    keywords: Arc<Keywords>,
}

impl Worker {
    pub fn new(
        store: Store,
        clock: Clock,
        metrics: Arc<Metrics>,
        settings: WorkerSettings,
        sender: Sender,
        responders: Responders,
        jobs_ready: Arc<Notify>,
    ) -> Self {
        Self {
            store,
            clock,
            metrics,
            settings: Arc::new(settings),
            sender,
            responders,
            limiter: Arc::new(Limiter::default()),
            holds: Arc::new(Mutex::new(HashMap::new())),
            jobs_ready,
            keywords: Arc::new(Keywords::default()),
        }
    }

    /// Confirms consent keywords with these words (`[keywords]` in the configuration).
    pub fn with_keywords(mut self, keywords: Keywords) -> Self {
        self.keywords = Arc::new(keywords);
        self
    }

    /// Leases and processes jobs until `shutdown`, then stops leasing and lets in-flight jobs
    /// finish for up to `drain`; a job still running after that is left to its lease.
    pub async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut tasks = JoinSet::new();
        if let Err(e) = self.refresh_holds().await {
            tracing::warn!(error = %e, "could not read send holds");
        }
        while !shutdown.is_cancelled() {
            // Armed before the query, so a notification that lands during it is not lost.
            let notified = self.jobs_ready.notified();
            let leased = self.lease_into(&permits, &mut tasks).await;
            if leased > 0 && permits.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = notified => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = tokio::time::sleep(self.settings.idle_poll) => {}
            }
        }
        let deadline = tokio::time::sleep(drain);
        tokio::pin!(deadline);
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                () = &mut deadline => {
                    tracing::warn!(jobs = tasks.len(), "shutdown: leaving unfinished jobs to their leases");
                    tasks.abort_all();
                    break;
                }
            }
        }
    }

    /// Leases as many jobs as there are free permits and starts them; returns how many.
    async fn lease_into(&self, permits: &Arc<Semaphore>, tasks: &mut JoinSet<()>) -> usize {
        let free = permits.available_permits();
        if free == 0 {
            return 0;
        }
        let jobs = match self
            .store
            .lease_jobs(self.clock.now_ms(), self.settings.lease_ms, free as u32)
            .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "leasing jobs failed");
                return 0;
            }
        };
        for job in &jobs {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let worker = self.clone();
            let job = *job;
            tasks.spawn(async move {
                let _permit = permit;
                match worker.process(job).await {
                    // The job keeps its lease and comes back when it runs out.
                    Err(e) if e.is_corrupt() => {
                        tracing::error!(inbound_id = job.inbound_id, error = %e, "unreadable row: nothing is sent until it is corrected; the job will be retried");
                    }
                    Err(e) => {
                        tracing::warn!(inbound_id = job.inbound_id, error = %e, "job failed on the store; it will be retried");
                    }
                    Ok(_) => {}
                }
            });
        }
        while tasks.try_join_next().is_some() {}
        jobs.len()
    }

    /// Processes one leased job to its end (tests and tools drive this directly).
    pub async fn run_job(
        &self,
        job: crate::store::LeasedJob,
    ) -> Result<pipeline::JobResult, crate::store::StoreError> {
        self.process(job).await
    }

    /// When a held channel is next probed, or `None` when it may send. A hold found in the
    /// cache is confirmed against the store first: a hold lifted elsewhere (a probe, a gateway
    /// session that reconnected) must not keep this worker's jobs waiting.
    /// A gateway session's holds come and go with its `session.status` events, which ingest
    /// records: for gateways the store is always asked.
    async fn held_until(&self, channel: &Channel) -> Result<Option<i64>, crate::store::StoreError> {
        if channel.provider == Provider::Cloud && self.cached_hold(channel).is_none() {
            return Ok(None);
        }
        self.refresh_holds().await?;
        Ok(self.cached_hold(channel))
    }

    fn cached_hold(&self, channel: &Channel) -> Option<i64> {
        let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.get(channel).copied()
    }

    fn hold_locally(&self, channel: &Channel, next_probe_ms: i64) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.insert(channel.clone(), next_probe_ms);
        self.metrics.held_numbers.set(holds.len() as i64);
    }

    async fn refresh_holds(&self) -> Result<(), crate::store::StoreError> {
        let stored = self.store.send_holds().await?;
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        *holds = stored
            .into_iter()
            .map(|h| (h.channel, h.next_probe_ms))
            .collect();
        self.metrics.held_numbers.set(holds.len() as i64);
        Ok(())
    }
}
