//! The write path survives a full disk: while the database cannot grow, webhooks are spooled and
//! `/readyz` says why; once there is room again the same process stores, leases and replies,
//! without a restart. "The disk" is SQLite's page cap (`PRAGMA max_page_count`), applied to
//! every writer connection, so no root and no tiny filesystem are needed. Logging to a full
//! disk panics nothing, and the database files are private to their owner.

use std::time::Duration;

use serde_json::json;

use crate::fixtures::{messages_value, notification, now_s};
use crate::helpers::{ADMIN_TOKEN, APP_SECRET, TestApp, spawn_app_with, spawn_replying_app};
use replyd::whatsapp::signature::sign;

/// A text message from its own contact (so pacing per recipient never delays a reply), with a
/// body big enough to need new database pages.
pub fn big_text(id: &str, user: u32) -> Vec<u8> {
    let mut value = messages_value(vec![json!({
        "from": format!("3460{user:07}"), "id": id, "timestamp": now_s().to_string(),
        "type": "text", "text": {"body": "x".repeat(6000)}
    })]);
    value["contacts"][0]["wa_id"] = json!(format!("3460{user:07}"));
    notification(vec![value]).to_string().into_bytes()
}

async fn readyz(app: &TestApp) -> (u16, String) {
    let r = app.get("/readyz").await;
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_full_disk_wedges_nothing_once_space_is_freed() {
    let app = spawn_replying_app(|c| {
        c.retry_base = Duration::from_millis(20);
        c.retry_cap = Duration::from_millis(200);
    })
    .await;
    assert_eq!(
        app.post_webhook(big_text("wamid.before", 0)).await.status(),
        200
    );
    assert!(app.message("wamid.before").await.is_some(), "stored");
    app.settled().await;
    assert_eq!(readyz(&app).await.0, 200);

    // Fill the disk: the database is held at its current size.
    app.store.limit_pages(Some(1)).await.unwrap();
    for i in 1..=4 {
        let id = format!("wamid.full{i}");
        assert_eq!(app.post_webhook(big_text(&id, i)).await.status(), 200);
        assert!(
            app.message(&id).await.is_none(),
            "{id} is spooled, not stored"
        );
    }
    assert_eq!(app.metric("replyd_spooled_total").await, 4.0);
    let (status, why) = readyz(&app).await;
    assert_eq!(status, 503, "{why}");
    assert!(why.contains("full"), "says why: {why}");

    // Free the disk: the same process writes again.
    app.store.limit_pages(None).await.unwrap();
    let (status, why) = readyz(&app).await;
    assert_eq!(status, 200, "{why}");
    assert_eq!(
        app.post_webhook(big_text("wamid.after", 9)).await.status(),
        200
    );
    assert!(
        app.message("wamid.after").await.is_some(),
        "stored, not merely spooled"
    );
    assert_eq!(app.metric("replyd_spooled_total").await, 4.0);
    let replay = app.ingestor().replay_spool().await.unwrap();
    assert_eq!(replay.new_messages, 4);
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 6, "{summary}");
    assert_eq!(app.summary().await["dead_letters"], 0);
}

/// Kills the child process however the test ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn logging_to_a_full_disk_panics_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    // Every write to /dev/full fails with ENOSPC, as a log file on a full disk would.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut serve = Serve(
        std::process::Command::new(env!("CARGO_BIN_EXE_replyd"))
            .arg("serve")
            .env("REPLYD_LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "REPLYD_DATABASE_URL",
                format!("sqlite://{}/replyd.db", dir.path().display()),
            )
            .env("REPLYD_SPOOL_DIR", dir.path().join("spool"))
            .env("REPLYD_DATA_DIR", dir.path())
            .env("REPLYD_APP_SECRET", APP_SECRET)
            .env("REPLYD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("REPLYD_WORKER_ENABLED", "false")
            .env("RUST_LOG", "debug")
            .stdout(full.try_clone().unwrap())
            .stderr(full)
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = serve.0.try_wait().unwrap() {
            panic!("replyd exited while logging to a full disk: {exit}");
        }
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replyd did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A refused request and a stored one: both log, from request tasks.
    let body = big_text("wamid.logged", 1);
    let r = client
        .post(format!("{base}/webhook"))
        .header("X-Hub-Signature-256", "sha256=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(format!("{base}/webhook"))
        .header("X-Hub-Signature-256", sign(APP_SECRET.as_bytes(), &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!("{base}/api/v1/messages/wamid.logged"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "stored");
    assert!(serve.0.try_wait().unwrap().is_none(), "still serving");
}

#[tokio::test]
async fn the_database_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let app = spawn_app_with(|c| {
        let db = c.spool_dir.parent().unwrap().join("data/replyd.db");
        c.database_url = format!("sqlite://{}", db.display()).into();
    })
    .await;
    assert_eq!(
        app.post_webhook(big_text("wamid.private", 1))
            .await
            .status(),
        200
    );
    let data = app.dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "the directory replyd created");
    for file in ["replyd.db", "replyd.db-wal", "replyd.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
}
