//! The fake driven by the real send client, over real sockets. (The status webhook tests live
//! in `webhook.rs`.)

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::whatsapp::FailureClass;
use crate::whatsapp::errors::RetryHint;
use crate::whatsapp::send::{CloudClient, SendError, TextReply};

pub(super) const TOKEN: &str = "token-1";

pub(super) fn reply(body: &str) -> TextReply<'_> {
    TextReply {
        phone_number_id: "1001",
        to: "+15550001111",
        body,
        context_message_id: "wamid.IN.1",
        callback_data: "ledger-1",
    }
}

pub(super) async fn start(args: FakeCloudArgs) -> (FakeCloudApi, CloudClient) {
    let args = FakeCloudArgs {
        seed: Some(7),
        ..args
    };
    let fake = FakeCloudApi::start(args).await.unwrap();
    let client = CloudClient::new(&fake.base_url(), Duration::from_secs(5));
    (fake, client)
}

fn api_parts(error: &SendError) -> (u16, Option<i64>) {
    match error {
        SendError::Api {
            http_status, code, ..
        } => (*http_status, *code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_accepted_send_is_recorded_and_listed() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    let accepted = client.send_text(TOKEN, &reply("hello")).await.unwrap();
    assert!(accepted.message_id.starts_with("wamid.FAKE."));

    let sends = fake.sends();
    assert_eq!(sends.len(), 1);
    let sent = &sends[0];
    assert_eq!(sent.message_id, accepted.message_id);
    assert_eq!(
        (sent.phone_number_id.as_str(), sent.to.as_str()),
        ("1001", "+15550001111")
    );
    assert_eq!(sent.body, "hello");
    assert_eq!(sent.context_message_id.as_deref(), Some("wamid.IN.1"));
    assert_eq!(sent.callback_data.as_deref(), Some("ledger-1"));
    assert_eq!(sent.authorization.as_deref(), Some("Bearer token-1"));
    assert!(sent.received_at_ms > 0);

    let second = client.send_text(TOKEN, &reply("again")).await.unwrap();
    assert_ne!(second.message_id, accepted.message_id);
    let http = reqwest::Client::new();
    let root = format!("http://{}", fake.addr());
    let listed: Value = http
        .get(format!("{root}/sent"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[1]["body"], "again");
    let count: Value = http
        .get(format!("{root}/sent?count=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count["count"], 2);
    let cleared = http.delete(format!("{root}/sent")).send().await.unwrap();
    assert_eq!(cleared.status(), 204);
    assert!(fake.sends().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn invalid_requests_are_refused_with_code_100_or_190_and_not_recorded() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    let longest = "é".repeat(4096);
    client.send_text(TOKEN, &reply(&longest)).await.unwrap();
    let too_long = "é".repeat(4097);
    let error = client
        .send_text(TOKEN, &reply(&too_long))
        .await
        .unwrap_err();
    assert_eq!(api_parts(&error), (400, Some(100)));
    assert_eq!(error.class(), FailureClass::Permanent);

    let http = reqwest::Client::new();
    let url = format!("{}/1001/messages", fake.base_url());
    let good =
        json!({"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {"body": "x"}});
    let unauthenticated = http.post(&url).json(&good).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let body: Value = unauthenticated.json().await.unwrap();
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["type"], "OAuthException");
    assert!(body["error"]["fbtrace_id"].is_string());

    let mut bad_bodies = Vec::new();
    for (key, value) in [
        ("messaging_product", json!("sms")),
        ("to", json!("")),
        ("type", json!("image")),
        ("text", json!({"body": ""})),
        ("context", json!({"id": "x"})),
        ("biz_opaque_callback_data", json!(7)),
    ] {
        let mut body = good.clone();
        body[key] = value;
        bad_bodies.push(body);
    }
    for body in bad_bodies {
        let answer = http
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{body}");
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["error"]["code"], 100, "{body}");
    }
    let read =
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN.1"});
    let answer: Value = http
        .post(&url)
        .bearer_auth(TOKEN)
        .json(&read)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, json!({"success": true}));
    assert_eq!(
        fake.sends().len(),
        1,
        "only the 4096-character send was accepted"
    );
    fake.shutdown().await;
}

#[tokio::test]
async fn a_permanent_error_is_answered_until_cleared() {
    let args = FakeCloudArgs {
        permanent_error_code: Some(131_026),
        ..FakeCloudArgs::default()
    };
    let (fake, client) = start(args).await;
    let error = client.send_text(TOKEN, &reply("hi")).await.unwrap_err();
    assert_eq!(api_parts(&error), (400, Some(131_026)));
    assert_eq!(error.class(), FailureClass::Permanent);
    assert_eq!(error.code_label(), "cloud_api_131026");
    assert!(
        error.to_string().contains("Message undeliverable"),
        "{error}"
    );
    fake.set_permanent_error(Some(131_047));
    let error = client.send_text(TOKEN, &reply("hi")).await.unwrap_err();
    assert_eq!(error.code_label(), "cloud_api_131047");
    assert!(fake.sends().is_empty());
    fake.set_permanent_error(None);
    client.send_text(TOKEN, &reply("hi")).await.unwrap();
    assert_eq!(fake.sends().len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retryable_and_record_nothing() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    fake.set_error_5xx_ratio(1.0);
    for _ in 0..8 {
        let error = client.send_text(TOKEN, &reply("hi")).await.unwrap_err();
        let (status, code) = api_parts(&error);
        match (status, code, error.class()) {
            (500, Some(131_000), FailureClass::Retryable(RetryHint::Limited)) => {}
            (503, Some(131_016 | 2), FailureClass::Retryable(RetryHint::ServiceUnavailable)) => {}
            other => panic!("unexpected server error {other:?}"),
        }
    }
    assert!(fake.sends().is_empty());
    fake.set_error_5xx_ratio(0.0);
    client.send_text(TOKEN, &reply("hi")).await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limits_are_429_with_retry_after() {
    let args = FakeCloudArgs {
        rate_limit_ratio: 1.0,
        ..FakeCloudArgs::default()
    };
    let (fake, client) = start(args).await;
    for _ in 0..6 {
        let error = client.send_text(TOKEN, &reply("hi")).await.unwrap_err();
        let (status, code) = api_parts(&error);
        assert_eq!(status, 429);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
        match (code, error.class()) {
            (Some(130_429), FailureClass::Retryable(RetryHint::Throughput)) => {}
            (Some(80_007), FailureClass::Retryable(RetryHint::RateLimited)) => {}
            other => panic!("unexpected rate limit {other:?}"),
        }
    }
    assert!(fake.sends().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_held_back_answer_is_recorded_but_reaches_the_client_as_unknown() {
    let (fake, _) = start(FakeCloudArgs::default()).await;
    fake.set_timeout_ratio(1.0);
    let impatient = CloudClient::new(&fake.base_url(), Duration::from_millis(300));
    let error = impatient.send_text(TOKEN, &reply("hi")).await.unwrap_err();
    assert!(matches!(error, SendError::Unknown(_)), "{error:?}");
    assert_eq!(error.code_label(), "timeout");
    assert_eq!(error.class(), FailureClass::Retryable(RetryHint::Normal));
    assert_eq!(
        fake.sends().len(),
        1,
        "the message went out even though no answer came"
    );

    // Shutdown releases the held-back answer instead of waiting out --timeout-delay.
    let started = Instant::now();
    fake.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_stall_before_sending_records_nothing_and_reaches_the_client_as_unknown() {
    let (fake, _) = start(FakeCloudArgs::default()).await;
    fake.set_timeout_before_ratio(1.0);
    let impatient = CloudClient::new(&fake.base_url(), Duration::from_millis(300));
    let error = impatient.send_text(TOKEN, &reply("hi")).await.unwrap_err();
    assert!(matches!(error, SendError::Unknown(_)), "{error:?}");
    assert!(fake.sends().is_empty(), "nothing went out");
    assert_eq!(fake.stalled_before_send(), 1);

    // A client patient enough to wait it out learns that nothing was sent (retryable 503).
    let fake = {
        fake.shutdown().await;
        let (fake, _) = start(FakeCloudArgs {
            timeout_before_ratio: 1.0,
            timeout_delay: Duration::from_millis(50).into(),
            ..FakeCloudArgs::default()
        })
        .await;
        fake
    };
    let patient = CloudClient::new(&fake.base_url(), Duration::from_secs(5));
    let error = patient.send_text(TOKEN, &reply("hi")).await.unwrap_err();
    assert_eq!(api_parts(&error), (503, Some(131_016)));
    assert!(fake.sends().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_halted_number_fails_sends_and_probes_until_cleared() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    client.probe(TOKEN, "1001").await.unwrap();
    fake.set_halt(Some(190));
    let error = client.send_text(TOKEN, &reply("hi")).await.unwrap_err();
    assert_eq!(api_parts(&error), (401, Some(190)));
    assert_eq!(error.class(), FailureClass::HaltSender);
    let error = client.probe(TOKEN, "1001").await.unwrap_err();
    assert_eq!(api_parts(&error), (401, Some(190)));
    fake.set_halt(Some(131_031));
    let error = client.probe(TOKEN, "1001").await.unwrap_err();
    assert_eq!(
        (api_parts(&error), error.class()),
        ((403, Some(131_031)), FailureClass::HaltSender)
    );
    assert!(fake.sends().is_empty());
    fake.set_halt(None);
    client.probe(TOKEN, "1001").await.unwrap();
    client.send_text(TOKEN, &reply("hi")).await.unwrap();
    fake.shutdown().await;
}

#[tokio::test]
async fn the_throughput_limit_is_per_number_and_counted() {
    let args = FakeCloudArgs {
        max_mps: Some(1),
        ..FakeCloudArgs::default()
    };
    let (fake, client) = start(args).await;
    client.send_text(TOKEN, &reply("1")).await.unwrap();
    let error = client.send_text(TOKEN, &reply("2")).await.unwrap_err();
    assert_eq!(api_parts(&error), (400, Some(130_429)));
    assert_eq!(
        error.class(),
        FailureClass::Retryable(RetryHint::Throughput)
    );
    let other_number = TextReply {
        phone_number_id: "2002",
        ..reply("3")
    };
    client.send_text(TOKEN, &other_number).await.unwrap();
    assert_eq!(fake.throughput_rejections(), 1);
    assert_eq!(fake.sends().len(), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn latency_is_added_before_answering() {
    let args = FakeCloudArgs {
        latency: Duration::from_millis(150).into(),
        ..FakeCloudArgs::default()
    };
    let (fake, client) = start(args).await;
    let started = Instant::now();
    client.send_text(TOKEN, &reply("hi")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));
    fake.shutdown().await;
}

#[tokio::test]
async fn faults_can_be_changed_over_http() {
    let (fake, client) = start(FakeCloudArgs::default()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/faults", fake.addr());
    let patched = http
        .patch(&url)
        .json(&json!({"permanent_error_code": 131_051}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let error = client.send_text(TOKEN, &reply("hi")).await.unwrap_err();
    assert_eq!(error.code_label(), "cloud_api_131051");
    http.patch(&url)
        .json(&json!({"permanent_error_code": null}))
        .send()
        .await
        .unwrap();
    client.send_text(TOKEN, &reply("hi")).await.unwrap();
    for bad in [
        json!({"timeout_ratio": 2.0}),
        json!({"nonsense": 1}),
        json!([1]),
        json!({"wasender_connected": "no"}),
        json!({"mark_read_fails": 1}),
        json!({"wasender_status_key": "wamid"}),
    ] {
        assert_eq!(
            http.patch(&url).json(&bad).send().await.unwrap().status(),
            400,
            "{bad}"
        );
    }
    let faults: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(faults["permanent_error_code"], Value::Null);
    assert_eq!(faults["timeout_ratio"], 0.0);
    let patched: Value = http
        .patch(&url)
        .json(&json!({"timeout_before_ratio": 0.25}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["timeout_before_ratio"], 0.25);
    assert_eq!(patched["wasender_connected"], true);
    let patched: Value = http
        .patch(&url)
        .json(
            &json!({"wasender_connected": false, "mark_read_fails": true,
                      "wasender_status_key": "msg_id"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &patched["wasender_connected"],
            &patched["mark_read_fails"],
            &patched["wasender_status_key"]
        ),
        (&json!(false), &json!(true), &json!("msg_id"))
    );
    fake.shutdown().await;
}

#[test]
fn halt_and_throttle_codes_use_the_documented_http_statuses() {
    use axum::http::StatusCode;
    assert_eq!(routes::http_status_for(190), StatusCode::UNAUTHORIZED);
    assert_eq!(routes::http_status_for(131_031), StatusCode::FORBIDDEN);
    assert_eq!(
        routes::http_status_for(131_056),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        routes::http_status_for(131_000),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        routes::http_status_for(131_016),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(routes::http_status_for(131_026), StatusCode::BAD_REQUEST);
}
