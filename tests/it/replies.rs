//! The reply worker end to end over real HTTP: replyd and (where sends are made) the fake Cloud
//! API, each on its own random port.

use serde_json::json;

use crate::fixtures::*;
use crate::helpers::*;

#[tokio::test]
async fn sandbox_records_replies_without_sending() {
    let app = spawn_replying_app(|_| {}).await;
    let body = notification(vec![messages_value(vec![
        text("wamid.SB.1", "hola"),
        text("wamid.SB.2", "hours?"),
    ])]);
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 2, "{summary}");
    let m = app.message("wamid.SB.1").await.unwrap();
    assert_eq!(m["outcome"], "replied");
    assert_eq!(m["reply"]["state"], "sent");
    assert!(
        m["reply"]["outbound_id"]
            .as_str()
            .unwrap()
            .starts_with("sandbox.")
    );
    assert_eq!(summary["queue"]["total"], 0, "jobs are gone once answered");
}

#[tokio::test]
async fn reactions_and_system_messages_are_left_silent_by_the_default_rules() {
    let app = spawn_replying_app(|_| {}).await;
    let body = notification(vec![messages_value(vec![message(
        "wamid.SB.R",
        "reaction",
        json!({"message_id": "wamid.OUT.1", "emoji": "👍"}),
    )])]);
    app.post_webhook(body.to_string()).await;
    app.settled().await;
    let m = app.message("wamid.SB.R").await.unwrap();
    assert_eq!(
        (m["outcome"].as_str(), m["reason"].as_str()),
        (Some("silent"), Some("no_reply"))
    );
}
