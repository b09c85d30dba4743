//! Webhook ingest over real HTTP: handshake, every message type and status, batching, dedup,
//! bad input.

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::helpers::*;

#[tokio::test]
async fn handshake_echoes_the_challenge_only_for_the_right_token() {
    let app = spawn_app().await;
    let ok = app.handshake("subscribe", VERIFY_TOKEN, "1158201444").await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    assert_eq!(app.handshake("subscribe", "wrong", "x").await.status(), 403);
    assert_eq!(
        app.handshake("unsubscribe", VERIFY_TOKEN, "x")
            .await
            .status(),
        403
    );
    assert_eq!(app.get("/webhook").await.status(), 403);
}

#[tokio::test]
async fn every_message_type_is_stored_with_its_type() {
    let app = spawn_app().await;
    let all = every_message_type();
    let body = notification(vec![messages_value(
        all.iter().map(|(m, _)| m.clone()).collect(),
    )]);
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);

    for (m, kind) in &all {
        let id = m["id"].as_str().unwrap();
        let stored = app
            .message(id)
            .await
            .unwrap_or_else(|| panic!("{id} not stored"));
        assert_eq!(stored["type"], *kind, "{id}");
        assert_eq!(stored["outcome"], "pending");
        assert_eq!(stored["reason"], Value::Null);
        assert_eq!(stored["provider"], "cloud");
        assert_eq!(stored["phone_number_id"], PHONE_NUMBER_ID);
    }
    assert_eq!(
        app.message("wamid.T.system_userid").await.unwrap()["from"],
        "US.13491208655302741918"
    );
    let summary = app.summary().await;
    assert_eq!(summary["inbound"], all.len());
    assert_eq!(summary["outcomes"]["pending"], all.len());
    assert_eq!(
        summary["queue"]["total"],
        all.len(),
        "one reply job per inbound message"
    );
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn every_status_is_stored_once_per_id_and_status() {
    let app = spawn_app().await;
    let body = notification(vec![statuses_value(every_status("wamid.OUT.1"))]).to_string();
    assert_eq!(app.post_webhook(body.clone()).await.status(), 200);
    assert_eq!(app.metric("replyd_statuses_total").await, 7.0);
    // The same statuses again (Meta retries) add nothing; a new status for the id does.
    assert_eq!(app.post_webhook(body).await.status(), 200);
    assert_eq!(app.metric("replyd_statuses_total").await, 7.0);
    let more = notification(vec![statuses_value(vec![
        json!({"id": "wamid.OUT.2", "status": "sent",
        "timestamp": now_s().to_string(), "recipient_id": USER}),
    ])]);
    app.post_webhook(more.to_string()).await;
    assert_eq!(app.metric("replyd_statuses_total").await, 8.0);
    assert_eq!(
        app.summary().await["inbound"],
        0,
        "statuses are not inbound messages"
    );
}

#[tokio::test]
async fn multi_entry_multi_change_payload_is_read_whole() {
    let app = spawn_app().await;
    let other_number = json!({"messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550000002", "phone_number_id": "222"},
        "contacts": [{"profile": {"name": "Zoe"}, "wa_id": "447700900001"}],
        "messages": [{"from": "447700900001", "id": "wamid.M.3", "timestamp": now_s().to_string(),
                      "type": "text", "text": {"body": "hi"}}]});
    let body = json!({"object": "whatsapp_business_account", "entry": [
        {"id": "waba1", "changes": [
            {"field": "messages", "value": messages_value(vec![text("wamid.M.1", "a"), text("wamid.M.2", "b")])},
            {"field": "messages", "value": statuses_value(vec![json!({"id": "wamid.OUT.9", "status": "delivered",
                "timestamp": now_s().to_string(), "recipient_id": USER})])},
            {"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}
        ]},
        {"id": "waba2", "changes": [{"field": "messages", "value": other_number}]}
    ]});
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);
    for id in ["wamid.M.1", "wamid.M.2", "wamid.M.3"] {
        assert!(app.message(id).await.is_some(), "{id}");
    }
    assert_eq!(
        app.message("wamid.M.3").await.unwrap()["phone_number_id"],
        "222"
    );
    assert_eq!(app.summary().await["inbound"], 3);
    assert_eq!(app.metric("replyd_statuses_total").await, 1.0);
    let zoe = app
        .store
        .contact(&crate::helpers::cloud_key("222", "447700900001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(zoe.display_name.as_deref(), Some("Zoe"));
}

#[tokio::test]
async fn sequential_redelivery_stores_nothing_new() {
    let app = spawn_app().await;
    let body = text_notification("wamid.D.1", "hello");
    for _ in 0..3 {
        assert_eq!(app.post_webhook(body.clone()).await.status(), 200);
    }
    let summary = app.summary().await;
    assert_eq!(summary["inbound"], 1);
    assert_eq!(summary["duplicates"], 2);
    assert_eq!(summary["queue"]["total"], 1);
    assert_eq!(app.metric("replyd_inbound_duplicates_total").await, 2.0);
}

#[tokio::test]
async fn fifty_concurrent_redeliveries_make_one_row_and_one_job() {
    let app = spawn_app().await;
    let body = text_notification("wamid.C.1", "at once");
    let answers = join_all((0..50).map(|_| app.post_webhook(body.clone()))).await;
    assert!(answers.iter().all(|r| r.status() == 200));
    let summary = app.summary().await;
    assert_eq!(summary["inbound"], 1);
    assert_eq!(summary["duplicates"], 49);
    assert_eq!(summary["queue"]["total"], 1);
    let ratio = summary["duplicate_ratio"].as_f64().unwrap();
    assert!((ratio - 49.0 / 50.0).abs() < 1e-9, "{ratio}");
}

#[tokio::test]
async fn a_retry_with_a_different_batch_composition_still_dedups() {
    let app = spawn_app().await;
    app.post_webhook(notification(vec![messages_value(vec![text("wamid.B.1", "x")])]).to_string())
        .await;
    let regrouped = notification(vec![messages_value(vec![
        text("wamid.B.2", "y"),
        text("wamid.B.1", "x"),
    ])]);
    app.post_webhook(regrouped.to_string()).await;
    let summary = app.summary().await;
    assert_eq!(
        (summary["inbound"].as_u64(), summary["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
}

#[tokio::test]
async fn window_anchor_keeps_the_newest_payload_timestamp_whatever_the_arrival_order() {
    let app = spawn_app().await;
    let at = |id: &str, ts: i64| {
        let mut m = text(id, "x");
        m["timestamp"] = json!(ts.to_string());
        notification(vec![messages_value(vec![m])]).to_string()
    };
    app.post_webhook(at("wamid.W.new", 1_700_000_500)).await;
    app.post_webhook(at("wamid.W.old", 1_700_000_100)).await;
    let contact = app
        .store
        .contact(&crate::helpers::cloud_key(PHONE_NUMBER_ID, USER))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.last_inbound_ts, Some(1_700_000_500));
    assert_eq!(contact.display_name.as_deref(), Some("Ana Pérez"));
}

#[tokio::test]
async fn forged_missing_or_tampered_signatures_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let body = text_notification("wamid.F.1", "forged");
    let forged = replyd::whatsapp::signature::sign(b"not-the-secret", &body);
    assert_eq!(
        app.post_webhook_with(body.clone(), Some(&forged))
            .await
            .status(),
        401
    );
    assert_eq!(
        app.post_webhook_with(body.clone(), None).await.status(),
        401
    );
    assert_eq!(
        app.post_webhook_with(body.clone(), Some("sha256=nothex"))
            .await
            .status(),
        401
    );

    // Signed with the right secret, then one byte changed in transit.
    let good = replyd::whatsapp::signature::sign(APP_SECRET.as_bytes(), &body);
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'f').unwrap();
    tampered[pos] = b'g';
    assert_eq!(
        app.post_webhook_with(tampered, Some(&good)).await.status(),
        401
    );

    let summary = app.summary().await;
    assert_eq!(summary["inbound"], 0);
    assert_eq!(summary["dead_letters"], 0);
    assert_eq!(
        app.metric(r#"replyd_webhooks_rejected_total{reason="signature_mismatch"}"#)
            .await,
        2.0
    );
    assert_eq!(
        app.metric(r#"replyd_webhooks_rejected_total{reason="signature_missing"}"#)
            .await,
        1.0
    );
    assert_eq!(
        app.metric(r#"replyd_webhooks_rejected_total{reason="signature_malformed"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn body_signed_over_metas_escaped_unicode_form_is_accepted() {
    let app = spawn_app().await;
    let body = text_notification("wamid.U.1", "äöå 😮");
    let escaped = replyd::whatsapp::signature::escape_unicode(&body).unwrap();
    let sig = replyd::whatsapp::signature::sign(APP_SECRET.as_bytes(), &escaped);
    assert_eq!(app.post_webhook_with(body, Some(&sig)).await.status(), 200);
    assert!(app.message("wamid.U.1").await.is_some());
}

#[tokio::test]
async fn authentic_malformed_payloads_become_dead_letters_with_the_raw_body() {
    let app = spawn_app().await;
    let not_json = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
    assert_eq!(app.post_webhook(not_json.clone()).await.status(), 200);
    let wrong_shape = json!({"object": "whatsapp_business_account", "entry": "nope"}).to_string();
    assert_eq!(app.post_webhook(wrong_shape.clone()).await.status(), 200);
    // A good message next to one without an id: the good one is stored, the other kept.
    let mixed = notification(vec![messages_value(vec![
        text("wamid.X.ok", "fine"),
        json!({"from": USER, "timestamp": "1", "type": "text", "text": {"body": "no id"}}),
    ])]);
    assert_eq!(app.post_webhook(mixed.to_string()).await.status(), 200);
    // Re-delivery of the same malformed payload keeps one dead letter, not two.
    assert_eq!(app.post_webhook(not_json.clone()).await.status(), 200);

    let letters = app.dead_letters().await;
    assert_eq!(letters.len(), 3, "{letters:#?}");
    // Listings say how much is kept but never carry it; one dead letter by id does.
    for letter in &letters {
        assert!(letter.get("raw").is_none(), "{letter}");
        assert!(letter["raw_bytes"].as_u64().unwrap() > 0, "{letter}");
    }
    let mut by_error = std::collections::HashMap::new();
    for letter in &letters {
        let whole = app.dead_letter(letter["id"].as_i64().unwrap()).await;
        assert_eq!(whole["raw_bytes"], letter["raw_bytes"]);
        by_error.insert(letter["error"].as_str().unwrap().to_owned(), whole);
    }
    assert_eq!(
        by_error["malformed_json"]["raw"],
        String::from_utf8(not_json).unwrap()
    );
    assert_eq!(by_error["malformed_schema"]["raw"], wrong_shape);
    assert!(
        by_error["malformed_item"]["raw"]
            .as_str()
            .unwrap()
            .contains("no id")
    );
    assert_eq!(app.admin_get("/dead-letters/999999").await.0, 404);
    assert!(app.message("wamid.X.ok").await.is_some());
    let summary = app.summary().await;
    assert_eq!(
        (
            summary["inbound"].as_u64(),
            summary["dead_letters"].as_u64()
        ),
        (Some(1), Some(3))
    );
}

#[tokio::test]
async fn oversized_body_gets_413_and_stores_nothing() {
    let app = spawn_app_with(|c| c.max_body_bytes = 64 * 1024).await;
    let mut big = text_notification("wamid.BIG.1", "x");
    big.extend(std::iter::repeat_n(b' ', 70 * 1024));
    let response = app.post_webhook(big).await;
    assert_eq!(response.status(), 413);
    assert_eq!(app.summary().await["inbound"], 0);
    assert_eq!(
        app.metric(r#"replyd_webhooks_rejected_total{reason="body_too_large"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn default_limit_takes_a_3_mb_payload() {
    let app = spawn_app().await;
    let messages: Vec<Value> = (0..1000)
        .map(|i| text(&format!("wamid.L.{i}"), &"y".repeat(2900)))
        .collect();
    let body = notification(vec![messages_value(messages)]).to_string();
    assert!(
        body.len() > 2_900_000 && body.len() < 4 * 1024 * 1024,
        "{}",
        body.len()
    );
    assert_eq!(app.post_webhook(body).await.status(), 200);
    assert_eq!(app.summary().await["inbound"], 1000);
}

#[tokio::test]
async fn wasender_events_map_onto_the_same_inbound_model() {
    let app = spawn_app().await;
    let event = json!({"event": "messages.received", "timestamp": now_s(), "sessionId": WASENDER_SESSION,
        "data": {"messages": {"key": {"id": "3EB0A1", "remoteJid": "34600000003@s.whatsapp.net", "fromMe": false},
                              "messageBody": "hola", "pushName": "Eva", "messageTimestamp": now_s()}}});
    assert_eq!(
        app.post_wasender(event.to_string(), Some(WASENDER_SECRET))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_wasender(event.to_string(), Some(WASENDER_SECRET))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_wasender(event.to_string(), Some("wrong"))
            .await
            .status(),
        401
    );
    assert_eq!(
        app.post_wasender(event.to_string(), None).await.status(),
        401
    );
    let stored = app.message("3EB0A1").await.unwrap();
    assert_eq!(stored["provider"], "wasender");
    assert_eq!(stored["from"], "34600000003");
    assert_eq!(stored["phone_number_id"], WASENDER_SESSION);
    // No stable id: sender + timestamp + body hash, still deduplicated.
    let no_id = json!({"event": "messages.upsert", "timestamp": 1_700_000_000,
        "data": {"messages": [{"key": {"remoteJid": "34600000004@s.whatsapp.net"}, "messageBody": "sin id"},
                              {"key": {"id": "MINE", "remoteJid": "34600000004@s.whatsapp.net", "fromMe": true},
                               "messageBody": "our own"}]}});
    app.post_wasender(no_id.to_string(), Some(WASENDER_SECRET))
        .await;
    app.post_wasender(no_id.to_string(), Some(WASENDER_SECRET))
        .await;
    assert!(
        app.message("MINE").await.is_none(),
        "our own messages are not inbound"
    );
    let summary = app.summary().await;
    assert_eq!(
        (summary["inbound"].as_u64(), summary["duplicates"].as_u64()),
        (Some(2), Some(2))
    );
}

#[tokio::test]
async fn wasender_endpoint_is_off_without_a_secret() {
    let app = spawn_app_with(|c| {
        c.wasender_secret = Default::default();
        c.wasender_session_id = None;
    })
    .await;
    let r = app.post_wasender(b"{}".to_vec(), Some("")).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.post_webhook(text_notification("wamid.H.1", "x")).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    for series in [
        "replyd_inbound_messages_total 1",
        "replyd_webhooks_received_total{provider=\"cloud\"} 1",
        "replyd_queue_depth 1",
        "replyd_ingest_duration_seconds_count 1",
        "replyd_spooled_total 0",
        "replyd_dead_letters_total 0",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}

#[tokio::test]
async fn admin_routes_need_the_bearer_token() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/summary",
        "/api/v1/dead-letters",
        "/api/v1/messages/wamid.x",
    ] {
        assert_eq!(app.get(path).await.status(), 401, "{path}");
        let wrong = app
            .client
            .get(format!("{}{path}", app.base))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    assert_eq!(app.admin_get("/messages/wamid.unknown").await.0, 404);
    assert_eq!(app.admin_get("/dead-letters?limit=0").await.0, 400);
}

#[tokio::test]
async fn replaying_a_payload_that_still_does_not_parse_keeps_it_open() {
    let app = spawn_app().await;
    app.post_webhook(b"{\"object\": ".to_vec()).await;
    let letter = app.dead_letters().await.pop().unwrap();
    let (status, body) = app
        .admin_post(&format!("/dead-letters/{}/replay", letter["id"]), None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(app.dead_letters().await.len(), 1, "still open");
    assert_eq!(
        app.admin_post(&format!("/dead-letters/{}/discard", letter["id"]), None)
            .await
            .0,
        200
    );
    assert!(app.dead_letters().await.is_empty());
    assert_eq!(
        app.admin_post("/dead-letters/999/replay", None).await.0,
        404
    );
}
