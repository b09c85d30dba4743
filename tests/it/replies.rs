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

// ---- against the fake Cloud API ----

use std::collections::HashMap;
use std::time::Duration;

use replyd::config::Config;
use replyd::secret::Secret;
use replyd::tools::fake_cloud_api::{FakeCloudApi, FakeCloudArgs, RecordedSend};

pub(crate) const TOKEN: &str = "test-access-token";

/// A free loopback port (so the fake can be told where replyd's webhook will listen).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fast retries and probes so faults resolve within a test.
pub(crate) fn sending_config(c: &mut Config, fake: &FakeCloudApi) {
    c.access_token = Secret::new(TOKEN);
    c.graph_base_url = fake.base_url();
    c.retry_base = Duration::from_millis(20);
    c.retry_cap = Duration::from_millis(200);
    c.send_timeout = Duration::from_millis(400);
    c.halt_probe_interval = Duration::from_millis(200);
    c.pair_burst = 1000;
    c.max_attempts = 20;
    c.max_attempts_unexplained = 20;
}

pub(crate) async fn replying_with_fake(
    args: FakeCloudArgs,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, FakeCloudApi) {
    let port = free_port();
    let args = FakeCloudArgs {
        status_webhook_url: args
            .status_webhook_url
            .map(|_| format!("http://127.0.0.1:{port}/webhook")),
        app_secret: Some(APP_SECRET.into()),
        ..args
    };
    let fake = FakeCloudApi::start(args).await.unwrap();
    let app = spawn_replying_app(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        sending_config(c, &fake);
        adjust(c);
    })
    .await;
    (app, fake)
}

pub(crate) fn sends_per_message(sends: &[RecordedSend]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for s in sends {
        *counts
            .entry(s.context_message_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    counts
}

/// `n` text messages from `senders` different users, `per_payload` to a notification.
pub(crate) fn traffic(prefix: &str, n: usize, senders: usize, per_payload: usize) -> Vec<Vec<u8>> {
    let messages: Vec<_> = (0..n)
        .map(|i| {
            let mut m = text(&format!("wamid.{prefix}.{i}"), "hello");
            m["from"] = json!(format!("3460000{:04}", i % senders));
            m
        })
        .collect();
    messages
        .chunks(per_payload)
        .map(|chunk| {
            notification(vec![messages_value(chunk.to_vec())])
                .to_string()
                .into_bytes()
        })
        .collect()
}

#[tokio::test]
async fn every_message_is_answered_exactly_once_through_the_cloud_api() {
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |_| {}).await;
    let payloads = traffic("E", 30, 10, 3);
    for body in &payloads {
        assert_eq!(app.post_webhook(body.clone()).await.status(), 200);
    }
    app.post_webhook(payloads[0].clone()).await; // Meta re-delivers one
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 30, "{summary}");
    let sends = fake.sends();
    let counts = sends_per_message(&sends);
    assert_eq!(counts.len(), 30);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    let first = sends
        .iter()
        .find(|s| s.context_message_id.as_deref() == Some("wamid.E.0"))
        .unwrap();
    assert_eq!(first.to, "+34600000000");
    assert_eq!(
        first.authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        first
            .callback_data
            .as_deref()
            .unwrap()
            .starts_with("replyd:")
    );
    let m = app.message("wamid.E.0").await.unwrap();
    assert_eq!(
        m["reply"]["outbound_id"].as_str(),
        Some(first.message_id.as_str())
    );
    assert_eq!(m["reply"]["attempts"], 1);
    assert_eq!(summary["first_attempt_send_ratio"], 1.0);
}

#[tokio::test]
async fn with_5xx_and_timeouts_every_message_is_still_answered_exactly_once() {
    let args = FakeCloudArgs {
        error_5xx_ratio: 0.3,
        timeout_ratio: 0.1,
        timeout_delay: Duration::from_secs(2).into(),
        status_webhook_url: Some(String::new()),
        seed: Some(7),
        ..FakeCloudArgs::default()
    };
    let (app, fake) = replying_with_fake(args, |_| {}).await;
    for body in traffic("F", 60, 20, 2) {
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 60, "{summary}");
    let counts = sends_per_message(&fake.sends());
    assert_eq!(counts.len(), 60);
    assert!(
        counts.values().all(|&n| n == 1),
        "a message was sent twice: {counts:?}"
    );
    assert!(
        app.metric(r#"replyd_send_failures_total{class="retryable"}"#)
            .await
            > 0.0,
        "5xx were injected"
    );
    assert!(
        app.metric(r#"replyd_send_failures_total{class="ambiguous"}"#)
            .await
            > 0.0,
        "timeouts were injected"
    );
    assert!(summary["first_attempt_send_ratio"].as_f64().unwrap() < 1.0);
}

#[tokio::test]
async fn a_permanent_error_goes_to_the_dead_letter_queue_and_replay_sends_once() {
    let args = FakeCloudArgs {
        permanent_error_code: Some(131026),
        ..FakeCloudArgs::default()
    };
    let (app, fake) = replying_with_fake(args, |_| {}).await;
    app.post_webhook(text_notification("wamid.P.1", "hello"))
        .await;
    app.settled().await;
    let m = app.message("wamid.P.1").await.unwrap();
    assert_eq!(
        (m["outcome"].as_str(), m["reason"].as_str()),
        (Some("dead"), Some("cloud_api_131026"))
    );
    assert!(fake.sends().is_empty());
    let letter = app
        .dead_letters()
        .await
        .into_iter()
        .find(|l| l["message_id"] == "wamid.P.1")
        .unwrap();
    assert_eq!(letter["error"], "cloud_api_131026");
    assert_eq!(letter["attempts"], 1, "permanent errors are not retried");
    assert_eq!(
        app.metric(r#"replyd_dead_letters_by_origin_total{origin="send"}"#)
            .await,
        1.0
    );

    fake.set_permanent_error(None); // the cause is fixed (e.g. the user installed WhatsApp)
    let (status, _) = app
        .admin_post(&format!("/dead-letters/{}/replay", letter["id"]), None)
        .await;
    assert_eq!(status, 200);
    app.settled().await;
    assert_eq!(
        app.message("wamid.P.1").await.unwrap()["outcome"],
        "replied"
    );
    assert_eq!(fake.sends().len(), 1);
    assert_eq!(
        app.admin_post(&format!("/dead-letters/{}/replay", letter["id"]), None)
            .await
            .0,
        409
    );
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn opted_out_operator_and_escalated_conversations_get_no_send() {
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |_| {}).await;
    let from = |id: &str, user: &str| {
        let mut m = text(id, "hello");
        m["from"] = json!(user);
        m
    };
    assert_eq!(
        app.admin_post(
            &format!("/contacts/{PHONE_NUMBER_ID}/34611111111/opt-out"),
            None
        )
        .await
        .0,
        200
    );
    let takeover = Some(json!({"by": "ana"}));
    assert_eq!(
        app.admin_post(
            &format!("/conversations/{PHONE_NUMBER_ID}/34622222222/takeover"),
            takeover
        )
        .await
        .0,
        200
    );
    let reason = Some(json!({"reason": "refund"}));
    assert_eq!(
        app.admin_post(
            &format!("/conversations/{PHONE_NUMBER_ID}/34633333333/escalate"),
            reason
        )
        .await
        .0,
        200
    );
    let mut old = from("wamid.G.old", "34644444444");
    old["timestamp"] = json!((now_s() - 25 * 3600).to_string());
    let body = notification(vec![messages_value(vec![
        from("wamid.G.opted", "34611111111"),
        from("wamid.G.operator", "34622222222"),
        from("wamid.G.escalated", "34633333333"),
        old,
        from("wamid.G.open", "34655555555"),
    ])]);
    app.post_webhook(body.to_string()).await;
    app.settled().await;
    for (id, reason) in [
        ("wamid.G.opted", "opted_out"),
        ("wamid.G.operator", "operator"),
        ("wamid.G.escalated", "escalated"),
        ("wamid.G.old", "window_closed"),
    ] {
        let m = app.message(id).await.unwrap();
        assert_eq!(
            (m["outcome"].as_str(), m["reason"].as_str()),
            (Some("silent"), Some(reason)),
            "{id}"
        );
        assert_eq!(m["reply"], serde_json::Value::Null, "{id}: no ledger row");
    }
    let sends = fake.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].context_message_id.as_deref(), Some("wamid.G.open"));
    // Released and opted back in, the next messages are answered.
    app.admin_post(
        &format!("/conversations/{PHONE_NUMBER_ID}/34622222222/release"),
        None,
    )
    .await;
    app.admin_post(
        &format!("/contacts/{PHONE_NUMBER_ID}/34611111111/opt-in"),
        None,
    )
    .await;
    let body = notification(vec![messages_value(vec![
        from("wamid.G.opted2", "34611111111"),
        from("wamid.G.operator2", "34622222222"),
    ])]);
    app.post_webhook(body.to_string()).await;
    app.settled().await;
    assert_eq!(fake.sends().len(), 3);
}

#[tokio::test]
async fn messages_of_one_conversation_are_answered_in_order() {
    let args = FakeCloudArgs {
        latency: Duration::from_millis(30).into(),
        ..FakeCloudArgs::default()
    };
    let (app, fake) = replying_with_fake(args, |c| c.worker_concurrency = 8).await;
    let ts = now_s() - 60;
    let messages: Vec<_> = (0..6)
        .map(|i| {
            let mut m = text(&format!("wamid.O.{i}"), "hello");
            m["timestamp"] = json!((ts + i).to_string());
            m
        })
        .rev() // delivered newest first: order follows the payload timestamps
        .collect();
    app.post_webhook(notification(vec![messages_value(messages)]).to_string())
        .await;
    app.settled().await;
    let order: Vec<String> = fake
        .sends()
        .iter()
        .filter_map(|s| s.context_message_id.clone())
        .collect();
    assert_eq!(
        order,
        (0..6).map(|i| format!("wamid.O.{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_halt_class_error_pauses_the_number_until_a_probe_succeeds() {
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |_| {}).await;
    fake.set_halt(Some(190)); // access token expired
    app.post_webhook(text_notification("wamid.H.1", "hello"))
        .await;
    app.post_webhook(text_notification("wamid.H.2", "hello again"))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.metric("replyd_sends_halted_total").await < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the halt was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.message("wamid.H.1").await.unwrap()["outcome"],
        "pending",
        "held, not dead-lettered"
    );
    assert!(app.dead_letters().await.is_empty());
    fake.set_halt(None); // the token is renewed
    let summary = app.settled().await;
    assert_eq!(summary["outcomes"]["replied"], 2);
    assert_eq!(fake.sends().len(), 2);
    assert_eq!(
        app.metric("replyd_sends_halted_total").await,
        1.0,
        "one pause, not one per message"
    );
}

/// `replyd serve` as a child process, so it can be killed without a goodbye.
struct Child {
    process: std::process::Child,
    base: String,
}

impl Child {
    async fn start(env: &[(&str, String)], base: &str) -> Self {
        let process = std::process::Command::new(env!("CARGO_BIN_EXE_replyd"))
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{base}/readyz"))
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(std::time::Instant::now() < deadline, "replyd did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            process,
            base: base.to_owned(),
        }
    }

    fn kill(mut self) {
        self.process.kill().unwrap(); // SIGKILL: no shutdown, no draining
        self.process.wait().unwrap();
    }

    async fn summary(&self) -> serde_json::Value {
        let client = reqwest::Client::new();
        let r = client
            .get(format!("{}/api/v1/summary", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn a_worker_killed_mid_batch_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let fake = FakeCloudApi::start(FakeCloudArgs {
        latency: Duration::from_millis(300).into(),
        status_webhook_url: Some(format!("{base}/webhook")),
        app_secret: Some(APP_SECRET.into()),
        ..FakeCloudArgs::default()
    })
    .await
    .unwrap();
    let env = [
        ("REPLYD_LISTEN", format!("127.0.0.1:{port}")),
        (
            "REPLYD_DATABASE_URL",
            format!("sqlite://{}/replyd.db", dir.path().display()),
        ),
        (
            "REPLYD_SPOOL_DIR",
            dir.path().join("spool").display().to_string(),
        ),
        ("REPLYD_DATA_DIR", dir.path().display().to_string()),
        ("REPLYD_APP_SECRET", APP_SECRET.into()),
        ("REPLYD_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("REPLYD_ACCESS_TOKEN", TOKEN.into()),
        ("REPLYD_GRAPH_BASE_URL", fake.base_url()),
        ("REPLYD_JOB_LEASE", "1s".into()),
        ("REPLYD_AMBIGUOUS_QUIET_PERIOD", "1s".into()),
        ("REPLYD_PAIR_BURST", "1000".into()),
    ];
    let child = Child::start(&env, &base).await;
    let client = reqwest::Client::new();
    for body in traffic("K", 20, 20, 4) {
        let sig = replyd::whatsapp::signature::sign(APP_SECRET.as_bytes(), &body);
        let r = client
            .post(format!("{base}/webhook"))
            .header("X-Hub-Signature-256", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Sends are now in flight at the (slow) fake: kill the process in the middle of them.
    tokio::time::sleep(Duration::from_millis(150)).await;
    child.kill();

    let child = Child::start(&env, &base).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let summary = loop {
        let summary = child.summary().await;
        if summary["outcomes"]["pending"] == 0 {
            break summary;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending after restart: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(summary["inbound"], 20, "nothing lost: {summary}");
    let replied = summary["outcomes"]["replied"].as_u64().unwrap();
    let dead = summary["outcomes"]["dead"].as_u64().unwrap();
    assert_eq!(
        replied + dead,
        20,
        "every message has exactly one outcome: {summary}"
    );
    let counts = sends_per_message(&fake.sends());
    assert!(
        counts.values().all(|&n| n == 1),
        "nothing doubled: {counts:?}"
    );
    assert_eq!(
        counts.len() as u64,
        replied,
        "replied means sent once; the rest are ambiguous_send dead letters (no evidence either way)"
    );

    // What no evidence could settle was never resent on its own; an operator replays it.
    let letters: serde_json::Value = client
        .get(format!("{base}/api/v1/dead-letters"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let letters = letters["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len() as u64, dead);
    for letter in &letters {
        assert_eq!(letter["error"], "ambiguous_send");
        let url = format!("{base}/api/v1/dead-letters/{}/replay", letter["id"]);
        assert_eq!(
            client
                .post(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.summary().await["outcomes"]["replied"] != 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "replays not answered: {}",
            child.summary().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill();
    let counts = sends_per_message(&fake.sends());
    assert_eq!(counts.len(), 20);
    assert!(
        counts.values().all(|&n| n == 1),
        "nothing doubled after the replays: {counts:?}"
    );
}

#[tokio::test]
async fn a_replayed_dead_letter_still_goes_through_the_gates() {
    let args = FakeCloudArgs {
        permanent_error_code: Some(131026),
        ..FakeCloudArgs::default()
    };
    let (app, fake) = replying_with_fake(args, |_| {}).await;
    app.post_webhook(text_notification("wamid.RG.1", "hello"))
        .await;
    app.settled().await;
    let letter = app.dead_letters().await.pop().unwrap();
    fake.set_permanent_error(None);
    // Meanwhile the contact opted out: the replay must not send.
    app.admin_post(&format!("/contacts/{PHONE_NUMBER_ID}/{USER}/opt-out"), None)
        .await;
    assert_eq!(
        app.admin_post(&format!("/dead-letters/{}/replay", letter["id"]), None)
            .await
            .0,
        200
    );
    app.settled().await;
    let m = app.message("wamid.RG.1").await.unwrap();
    assert_eq!(
        (m["outcome"].as_str(), m["reason"].as_str()),
        (Some("silent"), Some("opted_out"))
    );
    assert!(fake.sends().is_empty());
}

/// A business bot on a random port: fails its first `fail_first` calls with 500, then answers;
/// `/refuse` always answers 400.
async fn bot(fail_first: usize) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = axum::Router::new()
        .route(
            "/bot",
            axum::routing::post(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < fail_first {
                        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new())
                    } else {
                        (
                            axum::http::StatusCode::OK,
                            json!({"action": "reply", "text": "from the bot"}).to_string(),
                        )
                    }
                }
            }),
        )
        .route(
            "/refuse",
            axum::routing::post(|| async { axum::http::StatusCode::BAD_REQUEST }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, calls)
}

use std::sync::Arc;

fn http_responder(url: String) -> replyd::worker::responder::ResponderConfig {
    replyd::worker::responder::ResponderConfig::Http {
        url,
        secret: Secret::new("bot-secret"),
        timeout: Duration::from_secs(2),
        history: 5,
    }
}

#[tokio::test]
async fn responder_failures_are_retried_then_dead_lettered_like_sends() {
    let (base, calls) = bot(2).await;
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |c| {
        c.responder = http_responder(format!("{base}/bot"))
    })
    .await;
    app.post_webhook(text_notification("wamid.BOT.1", "hello"))
        .await;
    app.settled().await;
    assert_eq!(
        app.message("wamid.BOT.1").await.unwrap()["outcome"],
        "replied"
    );
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "two 500s retried, then answered"
    );
    assert_eq!(fake.sends()[0].body, "from the bot");

    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |c| {
        c.responder = http_responder(format!("{base}/refuse"))
    })
    .await;
    app.post_webhook(text_notification("wamid.BOT.2", "hello"))
        .await;
    app.settled().await;
    let m = app.message("wamid.BOT.2").await.unwrap();
    assert_eq!(
        (m["outcome"].as_str(), m["reason"].as_str()),
        (Some("dead"), Some("responder_refused"))
    );
    assert!(fake.sends().is_empty());
}
