//! The fake's WASender gateway driven by the real [`WasenderClient`], and the Cloud API read
//! receipts driven by the real [`CloudClient`], over real sockets.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::*;
use crate::domain::DeliveryStatus;
use crate::whatsapp::errors::RetryHint;
use crate::whatsapp::send::wasender::SessionStatus;
use crate::whatsapp::send::{CloudClient, SendError, WasenderClient};
use crate::whatsapp::{FailureClass, wasender};

const KEY_A: &str = "key-a";
const KEY_B: &str = "key-b";
const TO: &str = "+34600000001";

async fn start(args: FakeCloudArgs) -> (FakeCloudApi, WasenderClient) {
    let args = FakeCloudArgs {
        seed: Some(7),
        wasender_sessions: vec![(KEY_A.into(), "111".into()), (KEY_B.into(), "222".into())],
        ..args
    };
    let fake = FakeCloudApi::start(args).await.unwrap();
    let client = WasenderClient::new(&fake.gateway_base_url(), Duration::from_secs(5));
    (fake, client)
}

fn http_status(error: &SendError) -> u16 {
    match error {
        SendError::Api { http_status, .. } => *http_status,
        other => panic!("expected an answer from the gateway, got {other:?}"),
    }
}

#[tokio::test]
async fn a_gateway_send_is_recorded_with_its_session_and_answered_with_a_msg_id() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    let first = client.send_text(KEY_A, TO, "hola").await.unwrap();
    let second = client.send_text(KEY_B, TO, "adiós").await.unwrap();
    let (first_n, second_n): (u64, u64) = (
        first.message_id.parse().unwrap(),
        second.message_id.parse().unwrap(),
    );
    assert!(second_n > first_n, "msgIds are integers, unique per send");

    let sends = fake.sends_of(Provider::Wasender);
    assert_eq!(sends.len(), 2);
    let sent = &sends[0];
    assert_eq!(sent.provider, Provider::Wasender);
    assert_eq!(
        (
            sent.phone_number_id.as_str(),
            sent.to.as_str(),
            sent.body.as_str()
        ),
        ("111", TO, "hola")
    );
    assert_eq!(sent.authorization.as_deref(), Some("Bearer key-a"));
    assert_eq!(sent.message_id, first.message_id);
    assert_eq!(sends[1].phone_number_id, "222", "the key names the session");
    assert!(fake.sends_of(Provider::Cloud).is_empty());

    // The send's msgId leads to the WhatsApp key its status webhooks carry; another session's
    // key cannot read it.
    let info = client.message_info(KEY_A, &first.message_id).await.unwrap();
    assert_eq!(info.msg_id, first.message_id);
    assert_eq!(info.key_id, sent.key_id);
    assert!(info.key_id.as_deref().unwrap().starts_with("3EB0"));
    assert_eq!(info.status, Some(2));
    let error = client
        .message_info(KEY_B, &first.message_id)
        .await
        .unwrap_err();
    assert_eq!(http_status(&error), 404);

    let http = reqwest::Client::new();
    let root = fake.gateway_base_url();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let answer = http.get(path).send().await.unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        }
    };
    let (_, listed) = get(format!("{root}/sent?provider=wasender")).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["provider"], "wasender");
    let (_, cloud) = get(format!("{root}/sent?provider=cloud")).await;
    assert_eq!(cloud, json!([]));
    let (_, count) = get(format!("{root}/sent?provider=wasender&count=1")).await;
    assert_eq!(count["count"], 2);
    let (status, _) = get(format!("{root}/sent?provider=sms")).await;
    assert_eq!(status, 400);
    fake.shutdown().await;
}

#[tokio::test]
async fn keys_and_bodies_are_checked_before_anything_is_sent() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    let error = client.send_text("stranger", TO, "hi").await.unwrap_err();
    assert_eq!(
        (http_status(&error), error.class()),
        (401, FailureClass::HaltSender)
    );
    assert!(
        error
            .to_string()
            .starts_with("WASender gateway answered HTTP 401")
    );
    assert!(!error.to_string().contains("Cloud API"), "{error}");

    let error = client.send_text(KEY_A, TO, "  ").await.unwrap_err();
    assert_eq!(
        (http_status(&error), error.class()),
        (422, FailureClass::Permanent)
    );
    assert!(
        error
            .to_string()
            .contains("text: The text field is required.")
    );
    let error = client
        .send_text(KEY_A, TO, &"é".repeat(4097))
        .await
        .unwrap_err();
    assert_eq!(http_status(&error), 422);

    fake.set_permanent_error(Some(131_026));
    let error = client.send_text(KEY_A, TO, "hi").await.unwrap_err();
    assert_eq!(
        (http_status(&error), error.class(), error.code_label()),
        (400, FailureClass::Permanent, "http_400".to_owned())
    );
    assert!(
        error.to_string().contains("Message undeliverable"),
        "{error}"
    );
    fake.set_permanent_error(None);

    fake.set_halt(Some(190));
    let error = client.send_text(KEY_A, TO, "hi").await.unwrap_err();
    assert_eq!(
        (http_status(&error), error.class()),
        (401, FailureClass::HaltSender)
    );
    assert_eq!(http_status(&client.probe(KEY_A).await.unwrap_err()), 401);
    fake.set_halt(None);
    client.probe(KEY_A).await.unwrap();
    assert!(fake.sends().is_empty());
    client.send_text(KEY_A, TO, "hi").await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_retryable_with_the_delay_the_gateway_asked_for() {
    let (fake, client) = start(FakeCloudArgs {
        rate_limit_ratio: 1.0,
        ..FakeCloudArgs::default()
    })
    .await;
    let error = client.send_text(KEY_A, TO, "hi").await.unwrap_err();
    assert_eq!(http_status(&error), 429);
    assert_eq!(
        error.class(),
        FailureClass::Retryable(RetryHint::RateLimited)
    );
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    assert!(fake.sends().is_empty());
    fake.shutdown().await;

    // The session's --max-mps budget is answered the same way.
    let (fake, client) = start(FakeCloudArgs {
        max_mps: Some(1),
        ..FakeCloudArgs::default()
    })
    .await;
    client.send_text(KEY_A, TO, "1").await.unwrap();
    let error = client.send_text(KEY_A, TO, "2").await.unwrap_err();
    assert_eq!(
        (http_status(&error), error.retry_after()),
        (429, Some(Duration::from_secs(1)))
    );
    client
        .send_text(KEY_B, TO, "another session")
        .await
        .unwrap();
    assert_eq!(fake.throughput_rejections(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retryable_and_record_nothing() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    fake.set_error_5xx_ratio(1.0);
    let mut seen = Vec::new();
    for _ in 0..12 {
        let error = client.send_text(KEY_A, TO, "hi").await.unwrap_err();
        match (http_status(&error), error.class()) {
            (500, FailureClass::Retryable(RetryHint::Normal)) => seen.push(500),
            (503, FailureClass::Retryable(RetryHint::ServiceUnavailable)) => seen.push(503),
            other => panic!("unexpected server error {other:?}"),
        }
    }
    assert!(seen.contains(&500) && seen.contains(&503), "{seen:?}");
    assert!(fake.sends().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_held_back_answer_is_ambiguous_and_recorded_a_stall_is_neither() {
    let (fake, _) = start(FakeCloudArgs::default()).await;
    let impatient = WasenderClient::new(&fake.gateway_base_url(), Duration::from_millis(300));
    fake.set_timeout_ratio(1.0);
    let error = impatient.send_text(KEY_A, TO, "hi").await.unwrap_err();
    assert!(matches!(error, SendError::Unknown(_)), "{error:?}");
    assert_eq!(error.code_label(), "timeout");
    assert!(error.to_string().contains("WASender gateway"), "{error}");
    assert_eq!(fake.sends_of(Provider::Wasender).len(), 1, "it went out");

    fake.set_timeout_ratio(0.0);
    fake.set_timeout_before_ratio(1.0);
    let error = impatient.send_text(KEY_A, TO, "hi").await.unwrap_err();
    assert!(matches!(error, SendError::Unknown(_)), "{error:?}");
    assert_eq!(fake.sends().len(), 1, "nothing more went out");
    assert_eq!(fake.stalled_before_send(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn a_disconnected_session_is_answered_503_and_sends_nothing_until_it_reconnects() {
    let (fake, client) = start(FakeCloudArgs {
        wasender_disconnected: true,
        ..FakeCloudArgs::default()
    })
    .await;
    for _ in 0..3 {
        let error = client.send_text(KEY_A, TO, "hi").await.unwrap_err();
        assert_eq!(http_status(&error), 503);
        assert_eq!(
            error.class(),
            FailureClass::Retryable(RetryHint::ServiceUnavailable)
        );
        assert!(
            error.to_string().contains("session is not connected"),
            "{error}"
        );
    }
    assert!(fake.sends().is_empty());
    assert_eq!(
        client.session_status(KEY_A).await.unwrap(),
        SessionStatus::NotConnected("disconnected".into())
    );
    assert_eq!(http_status(&client.probe(KEY_A).await.unwrap_err()), 503);

    let http = reqwest::Client::new();
    let patched = http
        .patch(format!("{}/faults", fake.gateway_base_url()))
        .json(&json!({"wasender_connected": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    client.probe(KEY_A).await.unwrap();
    client.send_text(KEY_A, TO, "hi").await.unwrap();
    assert_eq!(fake.sends().len(), 1);
    fake.set_wasender_connected(false);
    assert!(client.send_text(KEY_A, TO, "hi").await.is_err());
    assert_eq!(fake.sends().len(), 1);
    fake.shutdown().await;
}

/// A webhook receiver that forwards every (`X-Webhook-Signature`, body) it gets.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(Option<String>, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new().route(
        "/webhook/wasender",
        post(move |headers: HeaderMap, body: Bytes| async move {
            let secret = headers
                .get(wasender::SECRET_HEADER)
                .map(|v| v.to_str().unwrap().to_owned());
            tx.send((secret, body)).unwrap();
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}/webhook/wasender"), rx)
}

async fn next_status(
    webhooks: &mut mpsc::UnboundedReceiver<(Option<String>, Bytes)>,
) -> (Option<String>, Value, crate::domain::StatusUpdate) {
    let (secret, body) = tokio::time::timeout(Duration::from_secs(5), webhooks.recv())
        .await
        .expect("a gateway webhook within 5 s")
        .unwrap();
    let raw: Value = serde_json::from_slice(&body).unwrap();
    let session = crate::domain::PhoneNumberId::parse("111").unwrap();
    let mut parsed = wasender::parse_event(&body, &session).unwrap().notification;
    assert_eq!(parsed.statuses.len(), 1, "{raw}");
    (secret, raw, parsed.statuses.remove(0))
}

#[tokio::test]
async fn accepted_gateway_sends_post_messages_update_webhooks_with_the_secret() {
    let (url, mut webhooks) = receiver().await;
    let (fake, client) = start(FakeCloudArgs {
        wasender_webhook_url: Some(url),
        wasender_secret: Some("gateway-secret".into()),
        delivered_status: true,
        ..FakeCloudArgs::default()
    })
    .await;
    let accepted = client.send_text(KEY_A, TO, "hola").await.unwrap();
    let key = client
        .message_info(KEY_A, &accepted.message_id)
        .await
        .unwrap()
        .key_id
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (secret, raw, status) = next_status(&mut webhooks).await;
        assert_eq!(secret.as_deref(), Some("gateway-secret"));
        assert_eq!(raw["event"], "messages.update");
        assert_eq!(raw["sessionId"], "111");
        assert_eq!(raw["data"]["key"]["fromMe"], true);
        assert_eq!(
            raw["data"]["key"]["remoteJid"],
            "34600000001@s.whatsapp.net"
        );
        assert!(raw["timestamp"].as_u64().unwrap() > 1_000_000_000_000, "ms");
        assert_eq!(
            status.message_id.as_str(),
            key,
            "the WhatsApp key, not the msgId"
        );
        assert_eq!(status.phone_number_id.as_str(), "111");
        assert_eq!(status.provider, Provider::Wasender);
        seen.push(status.status);
    }
    assert_eq!(seen, [DeliveryStatus::Sent, DeliveryStatus::Delivered]);

    // Told to, the webhooks carry the msgId instead; a held-back send still gets its webhook.
    fake.set_wasender_status_key(StatusKeyId::MsgId);
    fake.set_timeout_ratio(1.0);
    let impatient = WasenderClient::new(&fake.gateway_base_url(), Duration::from_millis(300));
    let error = impatient.send_text(KEY_B, TO, "hi").await.unwrap_err();
    assert!(matches!(error, SendError::Unknown(_)), "{error:?}");
    let held = fake.sends_of(Provider::Wasender)[1].clone();
    let (_, raw, status) = next_status(&mut webhooks).await;
    assert_eq!(raw["sessionId"], "222");
    assert_eq!(status.message_id.as_str(), held.message_id);
    fake.shutdown().await;
}

#[tokio::test]
async fn read_receipts_are_recorded_apart_from_sends_and_can_be_made_to_fail() {
    let fake = FakeCloudApi::start(FakeCloudArgs::default()).await.unwrap();
    let cloud = CloudClient::new(&fake.base_url(), Duration::from_secs(5));
    cloud
        .mark_read("token-1", "1001", "wamid.IN.1", true)
        .await
        .unwrap();
    cloud
        .mark_read("token-1", "1001", "wamid.IN.2", false)
        .await
        .unwrap();
    let receipts = fake.read_receipts();
    assert_eq!(receipts.len(), 2);
    let first = &receipts[0];
    assert_eq!(
        (first.phone_number_id.as_str(), first.message_id.as_str()),
        ("1001", "wamid.IN.1")
    );
    assert!(first.typing && !first.failed && first.received_at_ms > 0);
    assert!(!receipts[1].typing);
    assert!(fake.sends().is_empty(), "a read receipt is not a send");

    let http = reqwest::Client::new();
    let root = fake.gateway_base_url();
    http.patch(format!("{root}/faults"))
        .json(&json!({"mark_read_fails": true}))
        .send()
        .await
        .unwrap();
    let error = cloud
        .mark_read("token-1", "1001", "wamid.IN.3", true)
        .await
        .unwrap_err();
    assert_eq!(http_status(&error), 500);
    assert_eq!(error.code_label(), "cloud_api_131000");
    let listed: Value = http
        .get(format!("{root}/read-receipts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[2]["message_id"], "wamid.IN.3");
    assert_eq!(listed[2]["failed"], true);
    assert_eq!(listed[2]["typing"], true);
    fake.set_mark_read_fails(false);
    cloud
        .mark_read("token-1", "1001", "wamid.IN.4", false)
        .await
        .unwrap();
    let cleared = http
        .delete(format!("{root}/read-receipts"))
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(fake.read_receipts().is_empty());
    assert!(fake.sends().is_empty());
    fake.shutdown().await;
}
