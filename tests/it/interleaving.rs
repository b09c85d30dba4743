//! A property test over random interleavings of ingests (including STOP/START keywords),
//! operator actions, worker steps and sweeps, against the real store and worker (sandbox
//! sends): never a send to an opted-out contact or to a conversation held by an operator or
//! escalated, never two sends for one message, and once everything settles, every message
//! inside the window has an outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use replyd::clock::Clock;
use replyd::config::Config;
use replyd::domain::ConversationMode;
use replyd::ingest::parse;
use replyd::metrics::Metrics;
use replyd::store::Store;
use replyd::sweep::{SweepSettings, Sweeper};
use replyd::worker::pipeline::JobResult;
use replyd::worker::sender::Sender;
use replyd::worker::{Responders, Worker, WorkerSettings};
use serde_json::json;
use tokio::sync::Notify;

use crate::fixtures::*;

#[derive(Debug, Clone, Copy)]
enum Step {
    Ingest(usize),
    IngestStop(usize),
    IngestStart(usize),
    OptOut(usize),
    OptIn(usize),
    Takeover(usize),
    Escalate(usize),
    Release(usize),
    Work,
    Sweep,
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0usize..3;
    prop_oneof![
        4 => user.clone().prop_map(Step::Ingest),
        1 => user.clone().prop_map(Step::IngestStop),
        1 => user.clone().prop_map(Step::IngestStart),
        1 => user.clone().prop_map(Step::OptOut),
        1 => user.clone().prop_map(Step::OptIn),
        1 => user.clone().prop_map(Step::Takeover),
        1 => user.clone().prop_map(Step::Escalate),
        2 => user.prop_map(Step::Release),
        5 => Just(Step::Work),
        1 => Just(Step::Sweep),
    ]
}

/// What the conversation of each user is, as the test's own model of the operator actions.
#[derive(Debug, Clone, Copy, Default)]
struct Model {
    opted_out: bool,
    held: bool,
}

fn wa(user: usize) -> String {
    format!("3460000000{user}")
}

struct Rig {
    store: Store,
    worker: Worker,
    sweeper: Sweeper,
    clock: Clock,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        database_url: format!("sqlite://{}/p.db", dir.path().display()).into(),
        pair_burst: 1000,
        ..Config::default()
    };
    config.sweep_grace = Duration::ZERO;
    let store = Store::connect(&config.database_url, &Default::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let clock = Clock::system();
    let notify = Arc::new(Notify::new());
    let worker = Worker::new(
        store.clone(),
        clock.clone(),
        Arc::new(Metrics::new()),
        WorkerSettings::from_config(&config).unwrap(),
        Sender::from_config(&config).unwrap(),
        Responders::from_config(&config).unwrap(),
        notify.clone(),
    );
    let sweeper = Sweeper::new(
        store.clone(),
        clock.clone(),
        SweepSettings::from_config(&config),
        notify,
    );
    Rig {
        store,
        worker,
        sweeper,
        clock,
        _dir: dir,
    }
}

async fn ingest(rig: &Rig, user: usize, n: usize, words: &str) {
    let mut m = text(&format!("wamid.P.{n}"), words);
    m["from"] = json!(wa(user));
    m["timestamp"] = json!((now_s() - 600 + n as i64).to_string());
    let body = notification(vec![messages_value(vec![m])]).to_string();
    let unit = parse(
        &replyd::domain::Origin::Cloud,
        body.as_bytes(),
        &Default::default(),
    );
    rig.store
        .ingest_batch(&[unit], rig.clock.now_ms())
        .await
        .unwrap();
}

/// One worker step: lease one job and run it to its end. Returns the user it answered, if any.
async fn work(rig: &Rig, sends: &mut HashMap<i64, usize>) -> Option<(usize, JobResult)> {
    let job = rig
        .store
        .lease_jobs(rig.clock.now_ms(), 60_000, 1)
        .await
        .unwrap()
        .into_iter()
        .next()?;
    let ctx = rig.store.reply_context(job.inbound_id).await.unwrap()?;
    let user = (0..3).find(|u| wa(*u) == ctx.message.wa_id)?;
    let result = rig.worker.run_job(job).await.unwrap();
    if result == JobResult::Replied {
        *sends.entry(job.inbound_id).or_default() += 1;
    }
    Some((user, result))
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rig = rig().await;
    let (phone, now) = (PHONE_NUMBER_ID, rig.clock.now_ms());
    let mut model = [Model::default(); 3];
    let mut sends: HashMap<i64, usize> = HashMap::new();
    for (n, step) in steps.into_iter().enumerate() {
        match step {
            Step::Ingest(u) => ingest(&rig, u, n, "hello").await,
            Step::IngestStop(u) => {
                ingest(&rig, u, n, "STOP").await;
                model[u].opted_out = true;
            }
            Step::IngestStart(u) => {
                ingest(&rig, u, n, "START").await;
                model[u].opted_out = false;
            }
            Step::OptOut(u) | Step::OptIn(u) => {
                let out = matches!(step, Step::OptOut(_));
                // The API path, which also moves the consent time: keep the model in step by
                // ingesting keywords with later payload times than any API action would lose to.
                rig.store
                    .set_opted_out(&crate::helpers::cloud_key(phone, &wa(u)), out, now)
                    .await
                    .unwrap();
                model[u].opted_out = out;
            }
            Step::Takeover(u) | Step::Escalate(u) | Step::Release(u) => {
                let mode = match step {
                    Step::Takeover(_) => ConversationMode::Operator,
                    Step::Escalate(_) => ConversationMode::Escalated,
                    _ => ConversationMode::Bot,
                };
                rig.store
                    .set_conversation_mode(
                        &crate::helpers::cloud_key(phone, &wa(u)),
                        mode,
                        Some("op"),
                        now,
                    )
                    .await
                    .unwrap();
                model[u].held = mode != ConversationMode::Bot;
            }
            Step::Work => {
                if let Some((u, JobResult::Replied)) = work(&rig, &mut sends).await {
                    prop_assert!(!model[u].opted_out, "sent to an opted-out contact");
                    prop_assert!(!model[u].held, "sent into a held conversation");
                }
            }
            Step::Sweep => {
                rig.sweeper.run_once(false).await.unwrap();
            }
        }
    }
    // Settle: the worker and the sweep run until nothing is left.
    for _ in 0..200 {
        let worked = work(&rig, &mut sends).await;
        if let Some((u, JobResult::Replied)) = worked {
            prop_assert!(!model[u].opted_out && !model[u].held);
        }
        if worked.is_none() {
            let report = rig.sweeper.run_once(false).await.unwrap();
            if report.requeued == 0 {
                break;
            }
        }
    }
    prop_assert!(
        sends.values().all(|&n| n == 1),
        "two sends for one message: {sends:?}"
    );
    let summary = rig.store.summary().await.unwrap();
    prop_assert_eq!(
        summary.pending,
        0,
        "a message inside the window has no outcome: {:?}",
        summary
    );
    prop_assert_eq!(summary.replied as usize, sends.len());
    Ok(())
}

#[test]
fn random_interleavings_keep_every_promise() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in prop::collection::vec(step(), 1..40))| {
        rt.block_on(run(steps))?;
    });
}
