//! WASender end to end over real HTTP: replyd, and the fake serving both the Cloud API and the
//! gateway, each on its own port. The test gateway's session id is `111`, the same as the Cloud
//! API number these tests write to, so every test also checks that the two stay apart.

use std::collections::HashMap;
use std::time::Duration;

use replyd::config::Config;
use replyd::domain::Provider;
use replyd::secret::Secret;
use replyd::tools::fake_cloud_api::{FakeCloudApi, FakeCloudArgs, RecordedSend};
use serde_json::{Value, json};

use crate::fixtures::gateway::{message_update, received_messages_object, session_status};
use crate::fixtures::*;
use crate::helpers::*;
use crate::replies::{free_port, sending_config};

const API_KEY: &str = "gateway-api-key";
const CLOUD_NUMBER: &str = "111";

/// A Cloud API text to the number `111` (the gateway's session id too).
fn cloud_text(id: &str, from: &str, words: &str) -> Vec<u8> {
    let mut value = messages_value(vec![{
        let mut m = text(id, words);
        m["from"] = json!(from);
        m
    }]);
    value["metadata"]["phone_number_id"] = json!(CLOUD_NUMBER);
    notification(vec![value]).to_string().into_bytes()
}

fn gateway_text(id: &str, from: &str, words: &str) -> String {
    received_messages_object(id, from, words).to_string()
}

/// replyd answering both providers, the fake behind both, status webhooks of both posted back.
async fn both_providers(
    args: FakeCloudArgs,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, FakeCloudApi) {
    let port = free_port();
    let args = FakeCloudArgs {
        status_webhook_url: Some(format!("http://127.0.0.1:{port}/webhook")),
        app_secret: Some(APP_SECRET.into()),
        wasender_webhook_url: Some(format!("http://127.0.0.1:{port}/webhook/wasender")),
        wasender_secret: Some(WASENDER_SECRET.into()),
        wasender_sessions: vec![(API_KEY.into(), WASENDER_SESSION.into())],
        ..args
    };
    let fake = FakeCloudApi::start(args).await.unwrap();
    let app = spawn_replying_app(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        sending_config(c, &fake);
        c.wasender_api_key = Secret::new(API_KEY);
        c.wasender_base_url = fake.gateway_base_url();
        adjust(c);
    })
    .await;
    (app, fake)
}

fn per_recipient(sends: &[RecordedSend]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in sends {
        *counts.entry(s.to.clone()).or_default() += 1;
    }
    counts
}

async fn conversation(app: &TestApp, provider: &str, wa_id: &str) -> (u16, Value) {
    app.admin_get(&format!(
        "/conversations/{CLOUD_NUMBER}/{wa_id}?provider={provider}"
    ))
    .await
}

/// Reproduced on an earlier release: a WASender `STOP` from session 111 opted out the Cloud API
/// contact 111/34600000055.
#[tokio::test]
async fn a_gateway_stop_leaves_the_cloud_contact_alone() {
    let app = spawn_replying_app(|_| {}).await;
    let user = "34600000055";
    assert_eq!(
        app.post_webhook(cloud_text("wamid.L1.1", user, "hola"))
            .await
            .status(),
        200
    );
    let stop = gateway_text("3EB0STOP", user, "STOP");
    assert_eq!(
        app.post_wasender(stop, Some(WASENDER_SECRET))
            .await
            .status(),
        200
    );
    app.settled().await;
    let (status, cloud) = conversation(&app, "cloud", user).await;
    assert_eq!(
        (status, cloud["opted_out"].as_bool()),
        (200, Some(false)),
        "{cloud}"
    );
    let (_, gateway) = conversation(&app, "wasender", user).await;
    assert_eq!(gateway["opted_out"], true, "{gateway}");
    // The Cloud contact is still answered.
    app.post_webhook(cloud_text("wamid.L1.2", user, "hours?"))
        .await;
    app.settled().await;
    assert_eq!(
        app.message("wamid.L1.2").await.unwrap()["outcome"],
        "replied"
    );
}

/// Reproduced on an earlier release: a WASender status put the Cloud conversation
/// 111/34600000066 into operator mode.
#[tokio::test]
async fn a_gateway_status_leaves_the_cloud_conversation_in_bot_mode() {
    let app = spawn_replying_app(|_| {}).await;
    let user = "34600000066";
    app.post_webhook(cloud_text("wamid.L2.1", user, "hola"))
        .await;
    app.settled().await;
    let status = message_update("3EB0FROMAHUMAN", user, 2).to_string();
    assert_eq!(
        app.post_wasender(status, Some(WASENDER_SECRET))
            .await
            .status(),
        200
    );
    let (_, cloud) = conversation(&app, "cloud", user).await;
    assert_eq!(cloud["mode"], "bot", "{cloud}");
    app.post_webhook(cloud_text("wamid.L2.2", user, "still there?"))
        .await;
    app.settled().await;
    assert_eq!(
        app.message("wamid.L2.2").await.unwrap()["outcome"],
        "replied"
    );
}

#[tokio::test]
async fn an_event_naming_another_or_an_unknown_session_is_refused_and_stores_nothing() {
    let app = spawn_app().await;
    let mut event = received_messages_object("3EB0FOREIGN", "34600000077", "hi");
    for named in ["999", "112"] {
        event["sessionId"] = json!(named);
        let response = app
            .post_wasender(event.to_string(), Some(WASENDER_SECRET))
            .await;
        assert_eq!(response.status(), 401, "{named}");
    }
    assert_eq!(app.summary().await["inbound"], 0);
    assert_eq!(
        app.metric(r#"replyd_webhooks_rejected_total{reason="unknown_session"}"#)
            .await,
        2.0
    );
    // Named by the session's API key, as some of WASender's examples do, it is the session's.
    let app = spawn_app_with(|c| c.wasender_api_key = Secret::new(API_KEY)).await;
    event["sessionId"] = json!(API_KEY);
    assert_eq!(
        app.post_wasender(event.to_string(), Some(WASENDER_SECRET))
            .await
            .status(),
        200
    );
    let stored = app.message("3EB0FOREIGN").await.unwrap();
    assert_eq!(
        (
            stored["provider"].as_str(),
            stored["phone_number_id"].as_str()
        ),
        (Some("wasender"), Some(WASENDER_SESSION))
    );
}

#[tokio::test]
async fn gateway_messages_are_answered_once_through_the_gateway_under_faults() {
    let args = FakeCloudArgs {
        error_5xx_ratio: 0.2,
        rate_limit_ratio: 0.1,
        timeout_ratio: 0.1,
        timeout_before_ratio: 0.05,
        timeout_delay: Duration::from_secs(1).into(),
        delivered_status: true,
        seed: Some(11),
        ..FakeCloudArgs::default()
    };
    let (app, fake) = both_providers(args, |c| {
        c.ambiguous_quiet_period = Duration::from_millis(800);
        c.send_rate_per_second = 1000;
    })
    .await;
    let users: Vec<String> = (0..40).map(|i| format!("3460100{i:04}")).collect();
    for (i, user) in users.iter().enumerate() {
        let event = gateway_text(&format!("3EB0GW{i}"), user, "hello");
        assert_eq!(
            app.post_wasender(event, Some(WASENDER_SECRET))
                .await
                .status(),
            200
        );
    }
    // A trickle of sends that get their statuses: the evidence that settles sends of unknown fate.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut trickle = 0;
    loop {
        let summary = app.summary().await;
        if summary["outcomes"]["pending"] == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {summary}"
        );
        let event = gateway_text(
            &format!("3EB0TR{trickle}"),
            &format!("3460200{trickle:04}"),
            "hi",
        );
        app.post_wasender(event, Some(WASENDER_SECRET)).await;
        trickle += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let summary = app.settled().await;
    let sends = fake.sends_of(Provider::Wasender);
    assert!(
        fake.sends_of(Provider::Cloud).is_empty(),
        "nothing went through the Cloud API"
    );
    let counts = per_recipient(&sends);
    for user in &users {
        assert_eq!(
            counts.get(&format!("+{user}")),
            Some(&1),
            "{user}: {counts:?}"
        );
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "a send was doubled: {counts:?}"
    );
    assert_eq!(summary["outcomes"]["dead"], 0, "{summary}");
    for (i, _) in users.iter().enumerate() {
        let m = app.message(&format!("3EB0GW{i}")).await.unwrap();
        assert_eq!(m["outcome"], "replied", "{m}");
    }
    assert!(
        sends
            .iter()
            .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {API_KEY}")[..]))
    );
    assert!(
        app.metric(r#"replyd_send_failures_total{class="retryable"}"#)
            .await
            > 0.0
    );
    // The gateway's statuses move the ledger (matched by the WhatsApp key, or by recipient
    // for a send whose answer never came).
    let mut moved = 0;
    for i in 0..users.len() {
        let m = app.message(&format!("3EB0GW{i}")).await.unwrap();
        if m["reply"]["state"] == "delivered" {
            moved += 1;
        }
    }
    assert!(moved > 0, "no gateway status moved a ledger row");
}

#[tokio::test]
async fn a_disconnected_session_holds_its_sends_and_resumes_on_connected() {
    let (app, fake) = both_providers(FakeCloudArgs::default(), |c| {
        c.halt_probe_interval = Duration::from_secs(3600);
    })
    .await;
    fake.set_wasender_connected(false);
    let down = session_status("disconnected").to_string();
    assert_eq!(
        app.post_wasender(down, Some(WASENDER_SECRET))
            .await
            .status(),
        200
    );
    for i in 0..5 {
        let event = gateway_text(&format!("3EB0DC{i}"), &format!("3460300{i:04}"), "hello");
        assert_eq!(
            app.post_wasender(event, Some(WASENDER_SECRET))
                .await
                .status(),
            200
        );
    }
    // A Cloud API message of the number with the same id is not held.
    app.post_webhook(cloud_text("wamid.DC.cloud", "34600000088", "hola"))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.message("wamid.DC.cloud").await.unwrap()["outcome"] != "replied" {
        assert!(
            std::time::Instant::now() < deadline,
            "the Cloud message waits"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let summary = app.summary().await;
    assert_eq!(summary["outcomes"]["pending"], 5, "{summary}");
    assert!(fake.sends_of(Provider::Wasender).is_empty());
    fake.set_wasender_connected(true);
    let up = session_status("connected").to_string();
    assert_eq!(
        app.post_wasender(up, Some(WASENDER_SECRET)).await.status(),
        200
    );
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 6, "{summary}");
    let counts = per_recipient(&fake.sends_of(Provider::Wasender));
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[tokio::test]
async fn a_gateway_answering_503_holds_the_session_instead_of_burning_attempts() {
    let (app, fake) = both_providers(FakeCloudArgs::default(), |c| {
        c.halt_probe_interval = Duration::from_millis(300);
        c.max_attempts = 2;
    })
    .await;
    fake.set_wasender_connected(false);
    for i in 0..3 {
        let event = gateway_text(&format!("3EB0RC{i}"), &format!("3460400{i:04}"), "hello");
        app.post_wasender(event, Some(WASENDER_SECRET)).await;
    }
    // Well past two attempts' worth of backoff: nothing dead-lettered, all still waiting.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let summary = app.summary().await;
    assert_eq!(
        (
            summary["outcomes"]["dead"].as_u64(),
            summary["outcomes"]["pending"].as_u64()
        ),
        (Some(0), Some(3)),
        "{summary}"
    );
    // The probe finds the session connected again and resumes it (no event needed).
    fake.set_wasender_connected(true);
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 3, "{summary}");
}

#[tokio::test]
async fn group_messages_are_stored_with_their_group_and_silent_unless_the_gateway_answers_groups() {
    use crate::fixtures::gateway::{GROUP_ID, group_received};
    let (app, fake) = both_providers(FakeCloudArgs::default(), |_| {}).await;
    let event = group_received("3EB0GRP1", "34600000099").to_string();
    assert_eq!(
        app.post_wasender(event, Some(WASENDER_SECRET))
            .await
            .status(),
        200
    );
    app.settled().await;
    let m = app.message("3EB0GRP1").await.unwrap();
    assert_eq!(
        (m["outcome"].as_str(), m["reason"].as_str()),
        (Some("silent"), Some("group")),
        "{m}"
    );
    assert_eq!(m["from"], "34600000099", "the participant, not the group");
    assert!(fake.sends().is_empty());

    let (app, fake) = both_providers(FakeCloudArgs::default(), |c| {
        c.wasender_secret = Secret::default();
        c.wasender_session_id = None;
        c.gateways = vec![replyd::config::GatewayConfig {
            kind: replyd::config::GatewayKind::Wasender,
            session_id: WASENDER_SESSION.into(),
            webhook_secret: Secret::new(WASENDER_SECRET),
            api_key: Some(Secret::new(API_KEY)),
            base_url: c.wasender_base_url.clone(),
            send_rate_per_second: None,
            answer_groups: true,
            responder: None,
        }];
    })
    .await;
    let event = group_received("3EB0GRP2", "34600000099").to_string();
    app.post_wasender(event, Some(WASENDER_SECRET)).await;
    app.settled().await;
    assert_eq!(app.message("3EB0GRP2").await.unwrap()["outcome"], "replied");
    let sends = fake.sends_of(Provider::Wasender);
    assert_eq!(sends.len(), 1);
    assert_eq!(
        sends[0].to,
        format!("{GROUP_ID}@g.us"),
        "answered in the group"
    );
}
