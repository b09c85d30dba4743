//! Spool round trips: while the store cannot be written, authentic payloads are spooled and
//! acknowledged; once it is back, replay stores every message exactly once.

use std::process::Command;

use sqlx::{Connection, Executor, SqliteConnection};

use crate::fixtures::*;
use crate::helpers::*;

/// Holds SQLite's write lock from another connection, as a stuck writer would.
async fn lock_database(app: &TestApp) -> SqliteConnection {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap();
    conn.execute("BEGIN EXCLUSIVE").await.unwrap();
    conn
}

#[tokio::test]
async fn locked_store_spools_then_replay_stores_every_message_once() {
    let app = spawn_app().await;
    // One message already stored before the outage: replaying its duplicate must add nothing.
    assert_eq!(
        app.post_webhook(text_notification("wamid.S.0", "before"))
            .await
            .status(),
        200
    );

    let mut lock = lock_database(&app).await;
    for i in 1..=5 {
        let r = app
            .post_webhook(text_notification(&format!("wamid.S.{i}"), "during"))
            .await;
        assert_eq!(r.status(), 200, "acknowledged once spooled");
    }
    app.post_webhook(text_notification("wamid.S.0", "before"))
        .await; // re-delivery during the outage
    app.post_webhook(text_notification("wamid.S.3", "during"))
        .await; // duplicate inside the spool
    let malformed = b"{\"object\":".to_vec();
    app.post_webhook(malformed).await;
    assert_eq!(app.metric("replyd_spooled_total").await, 8.0);
    assert!(app.metric("replyd_spool_pending_bytes").await > 0.0);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503, "the write path is failing");
    let why = ready.text().await.unwrap();
    assert!(why.contains("locked"), "{why}");

    // While locked, a replay fails and keeps the spool.
    assert!(app.ingestor().replay_spool().await.is_err());
    lock.execute("ROLLBACK").await.unwrap();
    drop(lock);

    let report = app.ingestor().replay_spool().await.unwrap();
    assert_eq!(report.records, 8);
    assert_eq!((report.new_messages, report.duplicate_messages), (5, 2));
    for i in 0..=5 {
        assert!(
            app.message(&format!("wamid.S.{i}")).await.is_some(),
            "wamid.S.{i}"
        );
    }
    let summary = app.summary().await;
    assert_eq!(summary["inbound"], 6);
    assert_eq!(
        summary["queue"]["total"], 6,
        "every replayed message got its job"
    );
    assert_eq!(summary["dead_letters"], 1, "the malformed payload was kept");
    assert_eq!(app.metric("replyd_spool_pending_bytes").await, 0.0);

    // A second replay finds nothing.
    assert_eq!(app.ingestor().replay_spool().await.unwrap().records, 0);
}

#[tokio::test]
async fn background_replayer_drains_the_spool_when_the_store_is_back() {
    let app =
        spawn_app_with(|c| c.spool_replay_interval = std::time::Duration::from_millis(100)).await;
    let mut lock = lock_database(&app).await;
    assert_eq!(
        app.post_webhook(text_notification("wamid.BG.1", "x"))
            .await
            .status(),
        200
    );
    assert_eq!(app.metric("replyd_spooled_total").await, 1.0);
    lock.execute("ROLLBACK").await.unwrap();
    drop(lock);
    // Event-driven wait with a generous bound: the replayer runs every 100 ms.
    for _ in 0..100 {
        if app.message("wamid.BG.1").await.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        app.message("wamid.BG.1").await.is_some(),
        "the background replayer stored it"
    );
    assert_eq!(app.metric("replyd_spool_replayed_total").await, 1.0);
}

#[tokio::test]
async fn spool_replay_command_replays_after_the_server_stopped() {
    let app = spawn_app().await;
    let mut lock = lock_database(&app).await;
    for i in 0..3 {
        app.post_webhook(text_notification(&format!("wamid.CLI.{i}"), "x"))
            .await;
    }
    lock.execute("ROLLBACK").await.unwrap();
    drop(lock);
    let config = app.config.clone();
    let dir = app.stop().await;

    // A torn record at the end (a crash mid-append) is skipped, not fatal.
    use std::io::Write;
    let active = config.spool_dir.join("active.spool");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap()
        .write_all(b"RSP1\x01\xff\xff")
        .unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_replyd"))
        .args(["spool", "replay"])
        .env("REPLYD_DATABASE_URL", config.database_url.expose())
        .env("REPLYD_SPOOL_DIR", &config.spool_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("replayed 3 record(s)") && stdout.contains("3 new message(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("7 torn byte(s)"), "{stdout}");

    let store = replyd::store::Store::connect(&config.database_url, &Default::default())
        .await
        .unwrap();
    assert_eq!(store.summary().await.unwrap().inbound, 3);
    drop(dir);
}
