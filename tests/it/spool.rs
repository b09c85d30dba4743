//! Spool round trips: while the store cannot be written, authentic payloads are spooled and
//! acknowledged; once it is back, replay stores every message exactly once.

use std::process::Command;

use sqlx::{Connection, Executor, SqliteConnection};

use crate::fixtures::*;
use crate::helpers::*;

/// A connection of our own to the app's database (to lock it, or to plant triggers).
pub async fn connect_database(app: &TestApp) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap()
}

/// Holds SQLite's write lock from another connection, as a stuck writer would.
pub async fn lock_database(app: &TestApp) -> SqliteConnection {
    let mut conn = connect_database(app).await;
    conn.execute("BEGIN EXCLUSIVE").await.unwrap();
    conn
}

/// Spools deliveries: they are posted while the database is write-locked, then it is freed.
pub async fn spool_deliveries(app: &TestApp, ids: &[&str]) {
    let before = app.metric("replyd_spooled_total").await;
    let mut lock = lock_database(app).await;
    for id in ids {
        let r = app.post_webhook(text_notification(id, "spooled")).await;
        assert_eq!(r.status(), 200, "{id} acknowledged once spooled");
    }
    lock.execute("ROLLBACK").await.unwrap();
    drop(lock);
    assert_eq!(
        app.metric("replyd_spooled_total").await - before,
        ids.len() as f64
    );
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

#[tokio::test]
async fn admin_route_replays_the_running_servers_spool() {
    let app = spawn_app().await;
    spool_deliveries(&app, &["wamid.API.1", "wamid.API.2", "wamid.API.3"]).await;
    let url = format!("{}/api/v1/spool/replay", app.base);
    let anonymous = app.client.post(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(app.metric("replyd_spool_pending_bytes").await > 0.0);

    let (status, report) = app.admin_post("/spool/replay", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            &report["records"],
            &report["new_messages"],
            &report["files"]
        ),
        (&3.into(), &3.into(), &1.into()),
        "{report}"
    );
    assert_eq!(
        (&report["dead_lettered"], &report["retained"]),
        (&0.into(), &0.into())
    );
    for i in 1..=3 {
        assert!(app.message(&format!("wamid.API.{i}")).await.is_some());
    }
    assert_eq!(app.metric("replyd_spool_pending_bytes").await, 0.0);
    let (_, again) = app.admin_post("/spool/replay", None).await;
    assert_eq!(again["records"], 0, "{again}");
}

#[tokio::test]
async fn the_admin_replay_answers_503_and_keeps_the_spool_while_the_store_takes_no_writes() {
    let app = spawn_app().await;
    spool_deliveries(&app, &["wamid.DOWN.1", "wamid.DOWN.2"]).await;
    let pending = app.metric("replyd_spool_pending_bytes").await;
    let mut lock = lock_database(&app).await;
    let (status, body) = app.admin_post("/spool/replay", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(app.metric("replyd_spool_pending_bytes").await, pending);
    lock.execute("ROLLBACK").await.unwrap();
    drop(lock);
    let (status, report) = app.admin_post("/spool/replay", None).await;
    assert_eq!(
        (status, &report["new_messages"]),
        (200, &2.into()),
        "{report}"
    );
}

/// A record the store refuses (a schema bug, say; here a trigger) while it takes the others:
/// the records after it are stored, and it is kept — in the spool while not even its dead
/// letter can be written, then as a dead letter with its bytes, which replays once fixed.
#[tokio::test]
async fn a_refused_record_does_not_block_the_ones_after_it_and_is_not_lost() {
    let app = spawn_app().await;
    spool_deliveries(
        &app,
        &["wamid.R.1", "wamid.POISON", "wamid.R.2", "wamid.R.3"],
    )
    .await;
    let mut db = connect_database(&app).await;
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON inbound_messages
         WHEN NEW.message_id = 'wamid.POISON'
         BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END",
    )
    .await
    .unwrap();
    db.execute(
        "CREATE TRIGGER refuse_its_letter BEFORE INSERT ON dead_letters
         WHEN instr(CAST(NEW.raw AS TEXT), 'wamid.POISON') > 0
         BEGIN SELECT RAISE(ABORT, 'no dead letter either'); END",
    )
    .await
    .unwrap();

    let (status, report) = app.admin_post("/spool/replay", None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            &report["new_messages"],
            &report["retained"],
            &report["dead_lettered"]
        ),
        (&3.into(), &1.into(), &0.into()),
        "{report}"
    );
    for id in ["wamid.R.1", "wamid.R.2", "wamid.R.3"] {
        assert!(
            app.message(id).await.is_some(),
            "{id} after the refused one"
        );
    }
    assert!(app.message("wamid.POISON").await.is_none());
    assert!(
        app.metric("replyd_spool_pending_bytes").await > 0.0,
        "the refused record is still spooled"
    );

    db.execute("DROP TRIGGER refuse_its_letter").await.unwrap();
    let (_, report) = app.admin_post("/spool/replay", None).await;
    assert_eq!(
        (
            &report["records"],
            &report["retained"],
            &report["dead_lettered"]
        ),
        (&0.into(), &0.into(), &1.into()),
        "{report}"
    );
    assert_eq!(app.metric("replyd_spool_pending_bytes").await, 0.0);
    let letter = app
        .dead_letters()
        .await
        .into_iter()
        .find(|l| l["error"] == "store_refused")
        .expect("a store_refused dead letter");
    let id = letter["id"].as_i64().unwrap();
    let kept = app.store.dead_letter(id).await.unwrap().unwrap();
    assert!(
        kept.raw.unwrap().contains("wamid.POISON"),
        "its bytes are kept"
    );
    assert!(kept.detail.unwrap().contains("poisoned by the test"));

    db.execute("DROP TRIGGER refuse_poison").await.unwrap();
    let (status, body) = app
        .admin_post(&format!("/dead-letters/{id}/replay"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        app.message("wamid.POISON").await.is_some(),
        "replayed once fixed"
    );
}
