//! Keywords applied in the ingest transaction (STOP / START / "agent") and the takeover when a
//! human answers from another tool.

use serde_json::json;

use crate::fixtures::*;
use crate::helpers::*;

fn at(id: &str, words: &str, ts: i64) -> Vec<u8> {
    let mut m = text(id, words);
    m["timestamp"] = json!(ts.to_string());
    notification(vec![messages_value(vec![m])])
        .to_string()
        .into_bytes()
}

async fn outcome(app: &TestApp, id: &str) -> (String, Option<String>) {
    let m = app.message(id).await.unwrap();
    (
        m["outcome"].as_str().unwrap().to_owned(),
        m["reason"].as_str().map(str::to_owned),
    )
}

#[tokio::test]
async fn stop_opts_out_and_start_opts_back_in_whatever_the_delivery_order() {
    let app = spawn_replying_app(|_| {}).await;
    let t = now_s() - 600;
    app.post_webhook(at("wamid.K.stop", "STOP", t)).await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.stop").await,
        ("silent".into(), Some("opted_out".into()))
    );
    app.post_webhook(at("wamid.K.after", "hello?", t + 10))
        .await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.after").await,
        ("silent".into(), Some("opted_out".into()))
    );
    assert!(
        app.store
            .contact(&crate::helpers::cloud_key(PHONE_NUMBER_ID, USER))
            .await
            .unwrap()
            .unwrap()
            .opted_out
    );

    app.post_webhook(at("wamid.K.start", "Start", t + 20)).await;
    app.settled().await;
    assert!(
        !app.store
            .contact(&crate::helpers::cloud_key(PHONE_NUMBER_ID, USER))
            .await
            .unwrap()
            .unwrap()
            .opted_out
    );
    // Meta re-delivers the old STOP, and an even older "baja" arrives late: neither wins over START.
    app.post_webhook(at("wamid.K.stop", "STOP", t)).await;
    app.post_webhook(at("wamid.K.late", "baja", t + 5)).await;
    app.settled().await;
    assert!(
        !app.store
            .contact(&crate::helpers::cloud_key(PHONE_NUMBER_ID, USER))
            .await
            .unwrap()
            .unwrap()
            .opted_out
    );
    app.post_webhook(at("wamid.K.again", "hello again", t + 30))
        .await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.again").await,
        ("replied".into(), None)
    );
}

#[tokio::test]
async fn asking_for_a_person_escalates_the_conversation() {
    let app = spawn_replying_app(|_| {}).await;
    app.post_webhook(at("wamid.K.agent", "Agent", now_s() - 60))
        .await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.agent").await,
        ("silent".into(), Some("escalated".into()))
    );
    app.post_webhook(at("wamid.K.next", "hello", now_s() - 30))
        .await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.next").await,
        ("silent".into(), Some("escalated".into()))
    );
    // Resolved by an operator, the bot answers again.
    app.admin_post(
        &format!("/conversations/{PHONE_NUMBER_ID}/{USER}/resolve"),
        None,
    )
    .await;
    app.post_webhook(at("wamid.K.later", "hello", now_s() - 10))
        .await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.later").await,
        ("replied".into(), None)
    );
}

fn status_for(out: &str, callback: Option<&str>) -> Vec<u8> {
    let mut s = json!({"id": out, "status": "sent", "timestamp": now_s().to_string(), "recipient_id": USER});
    if let Some(cb) = callback {
        s["biz_opaque_callback_data"] = json!(cb);
    }
    notification(vec![statuses_value(vec![s])])
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_human_replying_from_another_tool_takes_the_conversation_over() {
    let app = spawn_replying_app(|_| {}).await;
    app.post_webhook(at("wamid.K.q", "hello", now_s() - 60))
        .await;
    app.settled().await;
    // The status of our own reply does not count as a human.
    let ours = app.message("wamid.K.q").await.unwrap()["reply"]["outbound_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post_webhook(status_for(&ours, None)).await;
    app.post_webhook(at("wamid.K.q2", "hello", now_s() - 50))
        .await;
    app.settled().await;
    assert_eq!(outcome(&app, "wamid.K.q2").await, ("replied".into(), None));

    // A message sent from the WhatsApp Business app (another tool's callback data, unknown id).
    app.post_webhook(status_for("wamid.FROM.PHONE", Some("crm-42")))
        .await;
    app.post_webhook(at("wamid.K.q3", "are you there?", now_s() - 40))
        .await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.q3").await,
        ("silent".into(), Some("operator".into()))
    );
}

#[tokio::test]
async fn the_takeover_on_human_replies_can_be_turned_off() {
    let app = spawn_replying_app(|c| c.human_reply_takeover = false).await;
    app.post_webhook(status_for("wamid.FROM.PHONE", None)).await;
    app.post_webhook(at("wamid.K.q", "hello", now_s() - 40))
        .await;
    app.settled().await;
    assert_eq!(outcome(&app, "wamid.K.q").await, ("replied".into(), None));
}

#[tokio::test]
async fn an_idle_takeover_returns_to_the_bot() {
    let app = spawn_replying_app(|c| {
        c.operator_idle_release = std::time::Duration::from_millis(300);
        c.halt_probe_interval = std::time::Duration::from_millis(50);
    })
    .await;
    app.admin_post(
        &format!("/conversations/{PHONE_NUMBER_ID}/{USER}/takeover"),
        Some(json!({"by": "ana"})),
    )
    .await;
    app.post_webhook(at("wamid.K.held", "hello", now_s() - 60))
        .await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.K.held").await,
        ("silent".into(), Some("operator".into()))
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        app.post_webhook(at(
            &format!("wamid.K.try.{}", now_s()),
            "hello",
            now_s() - 1,
        ))
        .await;
        let summary = app.settled().await;
        if summary["outcomes"]["replied"].as_u64() > Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the takeover was never released: {summary}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_opt_out_is_confirmed_once_and_then_nothing_more_is_sent() {
    let app = spawn_replying_app(|c| {
        c.keywords.opt_out_reply =
            Some("You will not hear from us again. Send START to undo.".into());
        c.keywords.opt_in_reply = Some("Welcome back!".into());
    })
    .await;
    let t = now_s() - 600;
    app.post_webhook(at("wamid.C.stop", "STOP", t)).await;
    app.settled().await;
    app.post_webhook(at("wamid.C.stop2", "stop", t + 1)).await;
    app.post_webhook(at("wamid.C.hello", "hello?", t + 2)).await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.C.stop").await,
        ("replied".into(), None),
        "the confirmation"
    );
    assert_eq!(
        outcome(&app, "wamid.C.stop2").await,
        ("silent".into(), Some("opted_out".into())),
        "only once"
    );
    assert_eq!(
        outcome(&app, "wamid.C.hello").await,
        ("silent".into(), Some("opted_out".into()))
    );
    app.post_webhook(at("wamid.C.start", "START", t + 3)).await;
    app.settled().await;
    assert_eq!(
        outcome(&app, "wamid.C.start").await,
        ("replied".into(), None)
    );

    let (status, conversation) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{USER}"))
        .await;
    assert_eq!(status, 200, "{conversation}");
    let replies: Vec<&str> = conversation["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reply"]["text"].as_str())
        .collect();
    assert_eq!(
        replies,
        [
            "You will not hear from us again. Send START to undo.",
            "Welcome back!"
        ]
    );
}
