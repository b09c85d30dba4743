//! The reconcile sweep over real HTTP: each gap of the design reproduced, then one
//! `POST /api/v1/sweep?dry_run=true` (which must change nothing) and one real sweep, which must
//! decide exactly what the dry run showed.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};

use crate::fixtures::*;
use crate::helpers::*;

const HOUR_S: i64 = 3600;

/// One text message from `wa_id` with payload time `ts`, as the Cloud API posts it.
fn text_at(id: &str, wa_id: &str, ts: i64) -> Vec<u8> {
    notification(vec![json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Cliente"}, "wa_id": wa_id}],
        "messages": [{"from": wa_id, "id": id, "timestamp": ts.to_string(), "type": "text",
                      "text": {"body": "hola"}}],
    })])
    .to_string()
    .into_bytes()
}

async fn post(app: &TestApp, id: &str, wa_id: &str, ts: i64) {
    assert_eq!(app.post_webhook(text_at(id, wa_id, ts)).await.status(), 200);
}

async fn sweep(app: &TestApp, dry_run: bool) -> Value {
    let path = if dry_run {
        "/sweep?dry_run=true"
    } else {
        "/sweep"
    };
    let (status, body) = app.admin_post(path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], dry_run);
    body
}

/// (decision, reason) of `message_id` in a sweep report; `None` when it was not scanned.
fn decision(report: &Value, message_id: &str) -> Option<(String, Option<String>)> {
    report["decisions"]
        .as_array()?
        .iter()
        .find(|d| d["message_id"] == message_id)
        .map(|d| {
            let reason = d["reason"].as_str().map(str::to_owned);
            (d["decision"].as_str().unwrap().to_owned(), reason)
        })
}

/// (outcome, reason) as `GET /api/v1/messages/{id}` shows it.
async fn outcome(app: &TestApp, message_id: &str) -> (String, Option<String>) {
    let m = app.message(message_id).await.expect("message stored");
    let reason = m["reason"].as_str().map(str::to_owned);
    (m["outcome"].as_str().unwrap().to_owned(), reason)
}

/// The dry run shows `expected` and changes nothing; the real sweep then decides the same.
async fn dry_then_real(app: &TestApp, message_id: &str, expected: (&str, Option<&str>)) -> Value {
    let expected = Some((expected.0.to_owned(), expected.1.map(str::to_owned)));
    let before = (
        outcome(app, message_id).await,
        app.summary().await["queue"].clone(),
    );
    let dry = sweep(app, true).await;
    assert_eq!(decision(&dry, message_id), expected, "dry run: {dry}");
    assert_eq!(dry["run_id"], Value::Null, "a dry run is not recorded");
    let after_dry = (
        outcome(app, message_id).await,
        app.summary().await["queue"].clone(),
    );
    assert_eq!(after_dry, before, "a dry run changes nothing");
    let real = sweep(app, false).await;
    assert_eq!(decision(&real, message_id), expected, "sweep: {real}");
    assert_eq!(
        real["decisions"], dry["decisions"],
        "the dry run showed what the sweep did"
    );
    assert!(real["run_id"].as_i64().is_some());
    real
}

async fn db(app: &TestApp) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap()
}

/// Deletes the message's reply job after its commit, as a lost broker queue would.
async fn lose_job(app: &TestApp, message_id: &str) {
    let deleted = sqlx::query(
        "DELETE FROM jobs WHERE inbound_id = (SELECT id FROM inbound_messages WHERE message_id = ?)",
    )
    .bind(message_id)
    .execute(&mut db(app).await)
    .await
    .unwrap();
    assert_eq!(deleted.rows_affected(), 1, "{message_id} had a job");
}

async fn ingest_only(grace: Duration) -> TestApp {
    spawn_app_with(|c| c.sweep_grace = grace).await
}

#[tokio::test]
async fn a_message_whose_job_was_lost_is_answered_by_the_next_sweep_once() {
    let first = ingest_only(Duration::ZERO).await;
    post(&first, "wamid.SW.lost", USER, now_s() - 5).await;
    lose_job(&first, "wamid.SW.lost").await;
    let dry = sweep(&first, true).await;
    assert_eq!(
        decision(&dry, "wamid.SW.lost"),
        Some(("requeue".into(), None))
    );
    let dir = first.stop().await;

    // Restarted with its workers: nothing would ever answer the message without the sweep.
    let url = format!("sqlite://{}", dir.path().join("replyd.db").display());
    let app = spawn_replying_app(|c| {
        c.database_url = url.into();
        c.sweep_grace = Duration::ZERO;
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outcome(&app, "wamid.SW.lost").await.0, "pending");
    let report = sweep(&app, false).await;
    assert_eq!(
        (report["scanned"].as_u64(), report["requeued"].as_u64()),
        (Some(1), Some(1))
    );
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 1, "{summary}");
    let m = app.message("wamid.SW.lost").await.unwrap();
    assert_eq!(
        (
            m["reply"]["state"].as_str(),
            m["reply"]["attempts"].as_u64()
        ),
        (Some("sent"), Some(1))
    );

    let again = sweep(&app, false).await;
    assert_eq!(
        (again["scanned"].as_u64(), again["requeued"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        app.settled().await["outcomes"]["replied"],
        1,
        "answered once"
    );

    let (status, history) = app.admin_get("/sweeps").await;
    assert_eq!(status, 200, "{history}");
    let runs = history["sweeps"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{history}");
    assert_eq!(
        (runs[0]["scanned"].as_u64(), runs[1]["requeued"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(runs[1]["finished_at_ms"].as_i64() >= runs[1]["started_at_ms"].as_i64());
    let (_, run) = app
        .admin_get(&format!("/sweeps?run_id={}", report["run_id"]))
        .await;
    assert_eq!(
        run["decisions"], report["decisions"],
        "every decision is recorded"
    );
}

#[tokio::test]
async fn an_opted_out_contact_is_left_silent() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.opt", USER, now_s() - 5).await;
    let (status, _) = app
        .admin_post(&format!("/contacts/{PHONE_NUMBER_ID}/{USER}/opt-out"), None)
        .await;
    assert_eq!(status, 200);
    let report = dry_then_real(&app, "wamid.SW.opt", ("silent", Some("opted_out"))).await;
    assert_eq!(report["counts"]["opted_out"], 1);
    assert_eq!(
        outcome(&app, "wamid.SW.opt").await,
        ("silent".into(), Some("opted_out".into()))
    );
    assert_eq!(
        app.summary().await["queue"]["total"],
        0,
        "the job goes with the outcome"
    );
    let (_, history) = app.admin_get("/sweeps").await;
    assert_eq!(history["sweeps"][0]["counts"], json!({"opted_out": 1}));
}

#[tokio::test]
async fn a_conversation_held_by_an_operator_is_left_silent() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.op", USER, now_s() - 5).await;
    let path = format!("/conversations/{PHONE_NUMBER_ID}/{USER}/takeover");
    assert_eq!(
        app.admin_post(&path, Some(json!({"by": "ana"}))).await.0,
        200
    );
    lose_job(&app, "wamid.SW.op").await;
    dry_then_real(&app, "wamid.SW.op", ("silent", Some("operator"))).await;
    assert_eq!(
        outcome(&app, "wamid.SW.op").await,
        ("silent".into(), Some("operator".into()))
    );
}

#[tokio::test]
async fn an_escalated_conversation_is_left_silent() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.esc", USER, now_s() - 5).await;
    let path = format!("/conversations/{PHONE_NUMBER_ID}/{USER}/escalate");
    assert_eq!(
        app.admin_post(&path, Some(json!({"reason": "angry"})))
            .await
            .0,
        200
    );
    lose_job(&app, "wamid.SW.esc").await;
    dry_then_real(&app, "wamid.SW.esc", ("silent", Some("escalated"))).await;
    assert_eq!(
        outcome(&app, "wamid.SW.esc").await,
        ("silent".into(), Some("escalated".into()))
    );
}

#[tokio::test]
async fn a_message_already_claimed_is_never_enqueued_again() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.claimed", USER, now_s() - 5).await;
    // A worker leased the job and claimed the ledger row; its send is in flight.
    let now = replyd::clock::Clock::system().now_ms();
    let job = app.store.lease_jobs(now, 60_000, 10).await.unwrap()[0];
    let claim = app
        .store
        .claim_reply(job.inbound_id, "hola", now)
        .await
        .unwrap();
    let replyd::store::Claim::Claimed { ledger_id, .. } = claim else {
        panic!("claimed: {claim:?}")
    };
    dry_then_real(&app, "wamid.SW.claimed", ("skip", Some("answered"))).await;
    assert_eq!(
        outcome(&app, "wamid.SW.claimed").await.0,
        "pending",
        "the ledger row owns it"
    );
    // The send's fate becomes unknown and its job is gone: still never resent blindly.
    app.store
        .mark_ambiguous(job.inbound_id, ledger_id, "timeout", now)
        .await
        .unwrap();
    assert_eq!(app.summary().await["queue"]["total"], 0);
    let report = dry_then_real(&app, "wamid.SW.claimed", ("skip", Some("answered"))).await;
    assert_eq!(report["requeued"], 0);
    assert_eq!(app.summary().await["queue"]["total"], 0);
}

#[tokio::test]
async fn a_message_older_than_24_hours_is_closed_not_left_pending() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.old", USER, now_s() - 25 * HOUR_S).await;
    lose_job(&app, "wamid.SW.old").await;
    dry_then_real(&app, "wamid.SW.old", ("silent", Some("window_closed"))).await;
    assert_eq!(
        outcome(&app, "wamid.SW.old").await,
        ("silent".into(), Some("window_closed".into()))
    );
    assert_eq!(
        app.summary().await["outcomes"]["pending"],
        0,
        "nothing stays pending forever"
    );
}

#[tokio::test]
async fn a_message_still_in_flight_is_left_to_its_job() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.queued", USER, now_s() - 5).await;
    dry_then_real(&app, "wamid.SW.queued", ("skip", Some("in_flight"))).await;
    assert_eq!(outcome(&app, "wamid.SW.queued").await.0, "pending");
    assert_eq!(
        app.summary().await["queue"]["total"],
        1,
        "its job stays, alone"
    );
}

#[tokio::test]
async fn a_message_that_arrived_within_the_grace_period_is_in_flight() {
    let app = ingest_only(Duration::from_secs(HOUR_S as u64)).await;
    // Written two hours ago, delivered just now (a late webhook), and its job lost already.
    post(&app, "wamid.SW.late", USER, now_s() - 2 * HOUR_S).await;
    lose_job(&app, "wamid.SW.late").await;
    // Written just now: younger than the grace period, not even a candidate.
    post(&app, "wamid.SW.young", "34600000002", now_s()).await;
    let report = dry_then_real(&app, "wamid.SW.late", ("skip", Some("in_flight"))).await;
    assert_eq!(decision(&report, "wamid.SW.young"), None, "{report}");
    assert_eq!(report["scanned"], 1);
    assert_eq!(outcome(&app, "wamid.SW.late").await.0, "pending");
}

#[tokio::test]
async fn a_message_superseded_by_an_answered_newer_one_is_left_silent() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.first", USER, now_s() - 60).await;
    post(&app, "wamid.SW.second", USER, now_s() - 30).await;
    lose_job(&app, "wamid.SW.first").await;
    // The newer message is answered (its job is now the head of the conversation).
    let now = replyd::clock::Clock::system().now_ms();
    let jobs = app.store.lease_jobs(now, 60_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let claim = app
        .store
        .claim_reply(jobs[0].inbound_id, "hola", now)
        .await
        .unwrap();
    let replyd::store::Claim::Claimed { ledger_id, .. } = claim else {
        panic!("claimed: {claim:?}")
    };
    app.store
        .mark_sent(jobs[0].inbound_id, ledger_id, "wamid.OUT.2", now)
        .await
        .unwrap();
    let report = dry_then_real(&app, "wamid.SW.first", ("silent", Some("superseded"))).await;
    assert_eq!(
        decision(&report, "wamid.SW.second"),
        None,
        "answered: not pending"
    );
    assert_eq!(
        outcome(&app, "wamid.SW.first").await,
        ("silent".into(), Some("superseded".into()))
    );
}

#[tokio::test]
async fn only_one_sweep_acts_at_a_time() {
    let app = ingest_only(Duration::ZERO).await;
    post(&app, "wamid.SW.lock", USER, now_s() - 5).await;
    let now = replyd::clock::Clock::system().now_ms();
    // Another process holds the lock.
    assert!(
        app.store
            .try_lock("sweep", "elsewhere", 60_000, now)
            .await
            .unwrap()
    );
    let (status, body) = app.admin_post("/sweep", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        sweep(&app, true).await["scanned"],
        1,
        "a dry run needs no lock"
    );
    app.store.unlock("sweep", "elsewhere").await.unwrap();
    assert_eq!(sweep(&app, false).await["scanned"], 1);
    // A holder that died leaves a lock that expires.
    assert!(
        app.store
            .try_lock("sweep", "crashed", 1, now - 10)
            .await
            .unwrap()
    );
    assert_eq!(app.admin_post("/sweep", None).await.0, 200);
}

#[tokio::test]
async fn the_sweep_routes_need_the_admin_token() {
    let app = ingest_only(Duration::ZERO).await;
    let url = format!("{}/api/v1/sweep", app.base);
    assert_eq!(app.client.post(url).send().await.unwrap().status(), 401);
    assert_eq!(app.get("/api/v1/sweeps").await.status(), 401);
    assert_eq!(app.admin_get("/sweeps?run_id=999").await.0, 404);
    assert_eq!(app.admin_get("/sweeps?limit=0").await.0, 400);
}
