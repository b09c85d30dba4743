//! Retention over the real server and store: a prune strips what is past retention in bounded
//! batches and keeps what the promise needs, so a re-delivery of a pruned message — two days
//! or eight days later under a one-hour retention — is a duplicate and is never answered twice.

use std::time::Duration;

use replyd::clock::Clock;
use replyd::retention::{PruneReport, Pruner, RetentionSettings};
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};

use crate::fixtures::*;
use crate::helpers::*;

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const U1: &str = "34600000101";
const U2: &str = "34600000102";

/// One text from `user`, payload time `ts`, with the contact's profile name.
pub fn text_from_at(user: &str, id: &str, words: &str, ts: i64) -> Vec<u8> {
    let mut value = messages_value(vec![text(id, words)]);
    value["contacts"][0]["wa_id"] = json!(user);
    value["contacts"][0]["profile"]["name"] = json!(format!("Name of {user}"));
    value["messages"][0]["from"] = json!(user);
    value["messages"][0]["timestamp"] = json!(ts.to_string());
    notification(vec![value]).to_string().into_bytes()
}

/// A status webhook for outbound message `out` to `user`.
pub fn status_for(out: &str, user: &str, status: &str) -> Vec<u8> {
    let s = json!({"id": out, "status": status, "timestamp": now_s().to_string(),
                   "recipient_id": user});
    notification(vec![statuses_value(vec![s])])
        .to_string()
        .into_bytes()
}

pub async fn db(app: &TestApp) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap()
}

/// (body, raw) of an inbound message.
pub async fn content(app: &TestApp, message_id: &str) -> (Option<String>, String) {
    sqlx::query_as("SELECT body, raw FROM inbound_messages WHERE message_id = ?")
        .bind(message_id)
        .fetch_one(&mut db(app).await)
        .await
        .unwrap()
}

pub async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&mut db(app).await)
        .await
        .unwrap()
}

/// A prune at `now_ms` with `retention`, in batches of `batch_size` rows.
async fn prune_at(
    app: &TestApp,
    now_ms: i64,
    retention: Duration,
    batch_size: u32,
    dry_run: bool,
) -> PruneReport {
    let settings = RetentionSettings {
        retention,
        batch_size,
        pause: Duration::ZERO,
    };
    Pruner::new(app.store.clone(), Clock::manual(now_ms), settings)
        .run_once(dry_run)
        .await
        .expect("prunes")
}

async fn outcome(app: &TestApp, id: &str) -> (Value, Value) {
    let m = app.message(id).await.expect("still known");
    (m["outcome"].clone(), m["reason"].clone())
}

#[tokio::test]
async fn a_prune_strips_settled_content_in_batches_and_keeps_keys_outcomes_and_pending_work() {
    let app = spawn_app().await;
    let now = Clock::system().now_ms();
    let ts = now_s() - 600;
    // Opted out: the sweep settles their messages as silent; U2's stay pending (a job).
    let (status, _) = app
        .admin_post(&format!("/contacts/{PHONE_NUMBER_ID}/{U1}/opt-out"), None)
        .await;
    assert_eq!(status, 200);
    for i in 0..25 {
        let body = text_from_at(U1, &format!("wamid.P.{i}"), "private words", ts);
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let pending = text_from_at(U2, "wamid.P.pending", "still to answer", ts);
    assert_eq!(app.post_webhook(pending).await.status(), 200);
    app.post_webhook(status_for("wamid.OUT.1", U1, "delivered"))
        .await;
    // An authentic but malformed payload: an open dead letter, which a prune never touches.
    app.post_webhook(br#"{"object":"whatsapp_business_account","entry":7}"#.to_vec())
        .await;
    let (status, swept) = app.admin_post("/sweep", None).await;
    assert_eq!(status, 200, "{swept}");
    assert_eq!(
        outcome(&app, "wamid.P.0").await,
        (json!("silent"), json!("opted_out"))
    );

    // Dry: the counts of the real run, and nothing changes.
    let later = now + 2 * DAY_MS;
    let hour = Duration::from_secs(3600);
    let dry = prune_at(&app, later, hour, 10, true).await;
    assert_eq!(dry.counts.messages, 25, "{dry:?}");
    assert_eq!(
        content(&app, "wamid.P.0").await.0.as_deref(),
        Some("private words")
    );

    let report = prune_at(&app, later, hour, 10, false).await;
    assert_eq!(report.counts.messages, 25);
    assert_eq!(report.counts.statuses_stripped, 1);
    assert_eq!(
        report.counts.statuses_deleted, 0,
        "a status is a dedup key for 7 days"
    );
    assert_eq!(report.counts.sweep_runs_deleted, 1);
    assert!(report.counts.sweep_decisions_deleted >= 26, "{report:?}");
    assert_eq!(
        report.counts.dead_letters_deleted, 0,
        "the open dead letter stays"
    );
    assert!(
        report.batches >= 3 + 4,
        "25 messages in batches of 10: {report:?}"
    );
    let dry_counts = serde_json::to_value(dry.counts).unwrap();
    let real_counts = serde_json::to_value(report.counts).unwrap();
    assert_eq!(dry_counts["messages"], real_counts["messages"]);
    assert_eq!(
        dry_counts["statuses_stripped"],
        real_counts["statuses_stripped"]
    );

    assert_eq!(content(&app, "wamid.P.0").await, (None, String::new()));
    assert_eq!(
        outcome(&app, "wamid.P.24").await,
        (json!("silent"), json!("opted_out")),
        "the outcome and its reason outlive the content"
    );
    let (body, raw) = content(&app, "wamid.P.pending").await;
    assert_eq!(body.as_deref(), Some("still to answer"), "pending: kept");
    assert!(!raw.is_empty());
    assert_eq!(app.dead_letters().await.len(), 1, "the open dead letter");
    assert!(
        app.dead_letter(app.dead_letters().await[0]["id"].as_i64().unwrap())
            .await["raw"]
            .is_string()
    );
    let contact = app
        .store
        .contact(&cloud_key(PHONE_NUMBER_ID, U1))
        .await
        .unwrap()
        .unwrap();
    assert!(contact.opted_out, "consent is not content");

    // A second prune finds nothing more; eight days on, the status row itself goes.
    let again = prune_at(&app, later, hour, 10, false).await;
    assert_eq!(again.counts.total(), 0, "{again:?}");
    let week = prune_at(&app, now + 8 * DAY_MS, hour, 10, false).await;
    assert_eq!(week.counts.statuses_deleted, 1, "{week:?}");
    assert_eq!(week.counts.messages, 0);
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM inbound_messages").await,
        26
    );
}

#[tokio::test]
async fn a_pruned_message_delivered_again_is_a_duplicate_and_never_answered_twice() {
    let app = spawn_replying_app(|_| {}).await;
    let now = Clock::system().now_ms();
    let body = text_from_at(U1, "wamid.R.1", "my address is secret", now_s());
    assert_eq!(app.post_webhook(body.clone()).await.status(), 200);
    app.settled().await;
    assert_eq!(outcome(&app, "wamid.R.1").await.0, json!("replied"));
    let sends = "SELECT count(*) FROM ledger";
    assert_eq!(scalar(&app, sends).await, 1);

    // Retention one hour, two days later: content gone, the key and the outcome kept.
    let hour = Duration::from_secs(3600);
    let report = prune_at(&app, now + 2 * DAY_MS, hour, 1_000, false).await;
    assert_eq!((report.counts.messages, report.counts.reply_texts), (1, 1));
    assert_eq!(content(&app, "wamid.R.1").await, (None, String::new()));
    assert_eq!(
        scalar(&app, "SELECT count(*) FROM ledger WHERE reply_text <> ''").await,
        0
    );

    let duplicates = app.summary().await["duplicates"].as_u64().unwrap();
    assert_eq!(app.post_webhook(body.clone()).await.status(), 200);
    let summary = app.settled().await;
    assert_eq!(summary["duplicates"], duplicates + 1, "{summary}");
    assert_eq!(summary["inbound"], 1);
    assert_eq!(summary["outcomes"]["replied"], 1);

    // Eight days later — past Meta's 7 days of re-delivery and any dedup horizon — the message
    // id is still remembered: the slim row (key + outcome) is never deleted.
    let week = prune_at(&app, now + 8 * DAY_MS, hour, 1_000, false).await;
    assert_eq!(week.counts.messages, 0);
    assert_eq!(app.post_webhook(body).await.status(), 200);
    let summary = app.settled().await;
    assert_eq!(summary["duplicates"], duplicates + 2, "{summary}");
    assert_eq!(summary["inbound"], 1);
    assert_eq!(scalar(&app, sends).await, 1, "answered once");
    let m = app.message("wamid.R.1").await.unwrap();
    assert_eq!(
        (m["outcome"].as_str(), m["reply"]["attempts"].as_u64()),
        (Some("replied"), Some(1))
    );
}

#[tokio::test]
async fn serve_prunes_on_its_own_interval() {
    let app = spawn_replying_app(|c| {
        c.retention = Duration::from_millis(1);
        c.prune_interval = Duration::from_millis(50);
    })
    .await;
    let body = text_from_at(U2, "wamid.S.1", "short-lived", now_s());
    assert_eq!(app.post_webhook(body).await.status(), 200);
    app.settled().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while content(&app, "wamid.S.1").await.0.is_some() {
        assert!(std::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(outcome(&app, "wamid.S.1").await.0, json!("replied"));
}

#[tokio::test]
async fn a_long_prune_beside_ingest_never_makes_a_webhook_wait_for_the_spool() {
    let app = spawn_app_with(|c| c.ingest_timeout = Duration::from_secs(1)).await;
    let (status, _) = app
        .admin_post(&format!("/contacts/{PHONE_NUMBER_ID}/{U1}/opt-out"), None)
        .await;
    assert_eq!(status, 200);
    // 4,000 settled messages to prune (silenced by the sweep: U1 opted out).
    let ts = now_s() - 600;
    for batch in 0..40 {
        let messages = (0..100)
            .map(|i| {
                let mut m = text(&format!("wamid.L.{batch}.{i}"), "old words");
                m["from"] = json!(U1);
                m["timestamp"] = json!(ts.to_string());
                m
            })
            .collect();
        let mut value = messages_value(messages);
        value["contacts"][0]["wa_id"] = json!(U1);
        let body = notification(vec![value]).to_string().into_bytes();
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let (status, _) = app.admin_post("/sweep", None).await;
    assert_eq!(status, 200);

    let prune = {
        let store = app.store.clone();
        let settings = RetentionSettings {
            retention: Duration::from_secs(3600),
            batch_size: 100,
            pause: Duration::from_millis(1),
        };
        let now = Clock::system().now_ms() + 2 * DAY_MS;
        tokio::spawn(async move {
            Pruner::new(store, Clock::manual(now), settings)
                .run_once(false)
                .await
        })
    };
    let mut posted = 0;
    while !prune.is_finished() || posted < 20 {
        let body = text_from_at(U2, &format!("wamid.L.new.{posted}"), "hola", now_s());
        assert_eq!(app.post_webhook(body).await.status(), 200);
        posted += 1;
    }
    let report = prune.await.unwrap().unwrap();
    assert_eq!(report.counts.messages, 4_000);
    assert!(report.batches >= 40, "{report:?}");
    assert_eq!(
        app.metric("replyd_spooled_total").await,
        0.0,
        "every webhook beside the prune was committed within the ingest timeout"
    );
    let stored = "SELECT count(*) FROM inbound_messages WHERE message_id LIKE 'wamid.L.new.%'";
    assert_eq!(scalar(&app, stored).await, posted);
}
