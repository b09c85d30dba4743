//! The write path survives a full disk: while the database cannot grow, webhooks are spooled and
//! `/readyz` says why; once there is room again the same process stores, leases and replies,
//! without a restart. "The disk" is SQLite's page cap (`PRAGMA max_page_count`), applied to
//! every writer connection, so no root and no tiny filesystem are needed.

use std::time::Duration;

use serde_json::json;

use crate::fixtures::{messages_value, notification, now_s};
use crate::helpers::{TestApp, spawn_replying_app};

/// A text message from its own contact (so pacing per recipient never delays a reply), with a
/// body big enough to need new database pages.
fn big_text(id: &str, user: u32) -> Vec<u8> {
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
