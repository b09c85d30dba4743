//! Ambiguous sends over real HTTP, against the fake Cloud API: a send that stalled before it
//! went out is sent once more when later sends of the number were confirmed; one that went out
//! is settled by its status; with no status traffic at all it is left to an operator; its
//! conversation waits meanwhile; a late status for a resent attempt is counted as a double.
//!
//! The quiet period and the send timeout are shrunk through the configuration; the worker's
//! maintenance runs on its own every ~quiet/4, so the tests poll (bounded) instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use replyd::config::Config;
use replyd::domain::AmbiguousResolution;
use replyd::tools::fake_cloud_api::{FakeCloudApi, FakeCloudArgs, RecordedSend};
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::helpers::*;
use crate::replies::{replying_with_fake, sends_per_message, traffic};

const OTHER_USER: &str = "34600000002";

/// The fake with its status webhooks pointed at replyd (unless `statuses` is false) and a stall
/// far longer than replyd's send timeout.
fn fake_args(statuses: bool) -> FakeCloudArgs {
    FakeCloudArgs {
        timeout_delay: Duration::from_secs(5).into(),
        status_webhook_url: statuses.then(String::new),
        ..FakeCloudArgs::default()
    }
}

fn quiet(c: &mut Config, quiet: Duration) {
    c.ambiguous_quiet_period = quiet;
    c.send_rate_per_second = 1000;
}

fn text_from(id: &str, from: &str) -> Vec<u8> {
    let mut m = text(id, "hello");
    m["from"] = json!(from);
    notification(vec![messages_value(vec![m])])
        .to_string()
        .into_bytes()
}

/// Polls `GET /api/v1/messages/{id}` until `done` holds (bounded).
async fn wait_for(app: &TestApp, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = app.message(id).await {
            if done(&m) {
                return m;
            }
            assert!(Instant::now() < deadline, "{id}: not {what}: {m}");
        }
        assert!(Instant::now() < deadline, "{id}: unknown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_ambiguous(m: &Value) -> bool {
    m["reply"]["state"] == "ambiguous"
}

fn is_settled(m: &Value) -> bool {
    m["outcome"] != "pending"
}

fn sends_for(fake: &FakeCloudApi, id: &str) -> Vec<RecordedSend> {
    fake.sends()
        .into_iter()
        .filter(|s| s.context_message_id.as_deref() == Some(id))
        .collect()
}

/// Posts, signed, the `sent` status Meta would post for `send`.
async fn post_sent_status(app: &TestApp, send: &RecordedSend) {
    let status = json!({
        "id": send.message_id, "status": "sent", "timestamp": now_s().to_string(),
        "recipient_id": send.to.trim_start_matches('+'),
        "biz_opaque_callback_data": send.callback_data,
    });
    let body = notification(vec![statuses_value(vec![status])]).to_string();
    assert_eq!(app.post_webhook(body).await.status(), 200);
}

/// A message from `USER` whose send stalls before it goes out, left ambiguous.
async fn stalled_before_sending(app: &TestApp, fake: &FakeCloudApi, id: &str) {
    fake.set_timeout_before_ratio(1.0);
    assert_eq!(app.post_webhook(text_from(id, USER)).await.status(), 200);
    wait_for(app, id, "ambiguous", is_ambiguous).await;
    fake.set_timeout_before_ratio(0.0);
    assert!(sends_for(fake, id).is_empty(), "nothing went out");
}

#[tokio::test]
async fn a_send_stalled_before_it_went_out_is_sent_once_more_after_later_sends_are_confirmed() {
    let (app, fake) =
        replying_with_fake(fake_args(true), |c| quiet(c, Duration::from_millis(1500))).await;
    stalled_before_sending(&app, &fake, "wamid.AB.stalled").await;
    // Another conversation of the same number gets its reply and its `sent` status.
    assert_eq!(
        app.post_webhook(text_from("wamid.AB.later", OTHER_USER))
            .await
            .status(),
        200
    );
    let later = wait_for(&app, "wamid.AB.later", "replied", is_settled).await;
    assert_eq!(later["outcome"], "replied");

    let m = wait_for(&app, "wamid.AB.stalled", "settled", is_settled).await;
    assert_eq!(m["outcome"], "replied", "{m}");
    assert_eq!(m["reply"]["resolved_by"], "evidence");
    assert_eq!(m["reply"]["attempts"], 2);
    let sends = sends_for(&fake, "wamid.AB.stalled");
    assert_eq!(sends.len(), 1, "sent exactly once");
    let ledger_id = m["reply"]["ledger_id"].as_i64().unwrap();
    assert_eq!(
        sends[0].callback_data.as_deref(),
        Some(format!("replyd:{ledger_id}.2").as_str()),
        "the callback data names the attempt"
    );
    assert_eq!(
        app.metric(r#"replyd_ambiguous_resolved_total{by="evidence"}"#)
            .await,
        1.0
    );
    assert_eq!(app.metric("replyd_double_sends_total").await, 0.0);
    assert!(app.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_send_that_timed_out_after_it_went_out_is_settled_replied_by_its_status() {
    let args = FakeCloudArgs {
        timeout_ratio: 1.0,
        // Later than replyd's send timeout (400 ms): the send is ambiguous when it arrives.
        status_delay: Duration::from_millis(1000).into(),
        ..fake_args(true)
    };
    let (app, fake) = replying_with_fake(args, |c| quiet(c, Duration::from_secs(5))).await;
    assert_eq!(
        app.post_webhook(text_from("wamid.AA.out", USER))
            .await
            .status(),
        200
    );
    wait_for(&app, "wamid.AA.out", "ambiguous", is_ambiguous).await;
    let m = wait_for(&app, "wamid.AA.out", "settled", is_settled).await;
    assert_eq!(m["outcome"], "replied", "{m}");
    assert_eq!(m["reply"]["resolved_by"], "status");
    assert_eq!(m["reply"]["attempts"], 1);
    assert_eq!(
        m["reply"]["outbound_id"].as_str(),
        Some(sends_for(&fake, "wamid.AA.out")[0].message_id.as_str())
    );
    assert_eq!(sends_for(&fake, "wamid.AA.out").len(), 1);
    assert_eq!(
        app.metric(r#"replyd_ambiguous_resolved_total{by="status"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn with_no_status_traffic_at_all_an_ambiguous_send_is_left_to_an_operator() {
    let (app, fake) =
        replying_with_fake(fake_args(true), |c| quiet(c, Duration::from_millis(300))).await;
    stalled_before_sending(&app, &fake, "wamid.AN.alone").await;
    let m = wait_for(&app, "wamid.AN.alone", "settled", is_settled).await;
    assert_eq!(
        (&m["outcome"], &m["reason"]),
        (&json!("dead"), &json!("ambiguous_send"))
    );
    assert_eq!(m["reply"]["resolved_by"], "operator");
    let letters = app.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["error"], "ambiguous_send");
    assert!(
        sends_for(&fake, "wamid.AN.alone").is_empty(),
        "never resent blindly"
    );
    assert_eq!(
        app.metric(r#"replyd_ambiguous_resolved_total{by="operator"}"#)
            .await,
        1.0
    );
    assert_eq!(
        app.metric(r#"replyd_dead_letters_by_origin_total{origin="ambiguous_send"}"#)
            .await,
        1.0,
        "a dead letter of the maintenance pass is counted"
    );
    assert_eq!(app.metric("replyd_dead_letters_total").await, 1.0);
    assert_eq!(app.metric("replyd_dead_letters_open").await, 1.0);
}

#[tokio::test]
async fn the_operator_setting_leaves_ambiguous_sends_to_an_operator_whatever_the_evidence() {
    let (app, fake) = replying_with_fake(fake_args(true), |c| {
        quiet(c, Duration::from_millis(1500));
        c.ambiguous_resolution = AmbiguousResolution::Operator;
    })
    .await;
    stalled_before_sending(&app, &fake, "wamid.AO.stalled").await;
    app.post_webhook(text_from("wamid.AO.later", OTHER_USER))
        .await;
    let later = wait_for(&app, "wamid.AO.later", "replied", is_settled).await;
    assert_eq!(later["outcome"], "replied");
    let m = wait_for(&app, "wamid.AO.stalled", "settled", is_settled).await;
    assert_eq!(
        (&m["outcome"], &m["reason"]),
        (&json!("dead"), &json!("ambiguous_send"))
    );
    assert_eq!(m["reply"]["resolved_by"], "operator");
    assert!(sends_for(&fake, "wamid.AO.stalled").is_empty());
}

#[tokio::test]
async fn a_conversation_waits_while_its_message_in_progress_is_ambiguous() {
    let (app, fake) =
        replying_with_fake(fake_args(true), |c| quiet(c, Duration::from_millis(1500))).await;
    stalled_before_sending(&app, &fake, "wamid.AW.first").await;
    app.post_webhook(text_from("wamid.AW.second", USER)).await;
    app.post_webhook(text_from("wamid.AW.other", OTHER_USER))
        .await;
    // The other conversation goes on…
    wait_for(&app, "wamid.AW.other", "replied", is_settled).await;
    // …while this one's next message waits for the first to be settled.
    let second = app.message("wamid.AW.second").await.unwrap();
    assert_eq!(second["outcome"], "pending", "{second}");
    assert!(second["reply"].is_null(), "not even claimed: {second}");
    assert!(sends_for(&fake, "wamid.AW.second").is_empty());

    let first = wait_for(&app, "wamid.AW.first", "settled", is_settled).await;
    let second = wait_for(&app, "wamid.AW.second", "settled", is_settled).await;
    assert_eq!(
        (&first["outcome"], &second["outcome"]),
        (&json!("replied"), &json!("replied"))
    );
    let (first, second) = (
        sends_for(&fake, "wamid.AW.first"),
        sends_for(&fake, "wamid.AW.second"),
    );
    assert_eq!((first.len(), second.len()), (1, 1));
    assert!(
        first[0].received_at_ms <= second[0].received_at_ms,
        "answered in order"
    );
}

#[tokio::test]
async fn a_late_status_for_the_first_attempt_after_the_resend_is_counted_as_a_double_send() {
    // No status webhooks from the fake: the test posts them, in the order it needs.
    let args = FakeCloudArgs {
        timeout_ratio: 1.0,
        ..fake_args(false)
    };
    let (app, fake) = replying_with_fake(args, |c| quiet(c, Duration::from_millis(800))).await;
    app.post_webhook(text_from("wamid.AD.first", USER)).await;
    wait_for(&app, "wamid.AD.first", "ambiguous", is_ambiguous).await;
    fake.set_timeout_ratio(0.0);
    // It did go out, but its status is late; a later send of the number is confirmed.
    let first_attempt = sends_for(&fake, "wamid.AD.first").remove(0);
    app.post_webhook(text_from("wamid.AD.later", OTHER_USER))
        .await;
    wait_for(&app, "wamid.AD.later", "replied", is_settled).await;
    post_sent_status(&app, &sends_for(&fake, "wamid.AD.later")[0]).await;

    // The evidence says the first did not go out: it is sent again (the double happens here).
    let m = wait_for(&app, "wamid.AD.first", "settled", is_settled).await;
    assert_eq!(
        (&m["outcome"], &m["reply"]["attempts"]),
        (&json!("replied"), &json!(2))
    );
    assert_eq!(app.metric("replyd_double_sends_total").await, 0.0);

    // The first attempt's status arrives: recognised, counted and recorded, not passed over.
    post_sent_status(&app, &first_attempt).await;
    let m = wait_for(&app, "wamid.AD.first", "counted", |m| {
        m["reply"]["double_sends"] == 1
    })
    .await;
    assert_eq!(m["reply"]["state"], "sent", "{m}");
    assert_eq!(app.metric("replyd_double_sends_total").await, 1.0);
    assert_eq!(sends_for(&fake, "wamid.AD.first").len(), 2);
}

/// The issue's end-to-end case: 4 % of send attempts stall before the message goes out and
/// 4 % after it went out (statuses `sent` and `delivered` posted either way); 300 messages
/// from 50 contacts are each answered exactly once, none dead, none doubled.
///
/// Evidence needs later sends of the number: a real number has traffic after its last
/// ambiguous send, so a trickle from five more contacts keeps going until the 300 are
/// settled (with no traffic at all the rule is the dead letter, shown above).
#[tokio::test]
async fn with_timeouts_before_and_after_sending_300_messages_are_each_replied_exactly_once() {
    let args = FakeCloudArgs {
        timeout_before_ratio: 0.04,
        timeout_ratio: 0.04,
        timeout_delay: Duration::from_secs(2).into(),
        delivered_status: true,
        seed: Some(11),
        ..fake_args(true)
    };
    let (app, fake) = replying_with_fake(args, |c| quiet(c, Duration::from_secs(1))).await;
    let app = Arc::new(app);
    let trickling = Arc::new(AtomicBool::new(true));
    let trickle = tokio::spawn({
        let (app, trickling) = (app.clone(), trickling.clone());
        async move {
            let mut k = 0;
            while trickling.load(Ordering::Relaxed) {
                let from = format!("3470000{:04}", k % 5);
                app.post_webhook(text_from(&format!("wamid.BG.{k}"), &from))
                    .await;
                k += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    for body in traffic("AMB", 300, 50, 5) {
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }
    let ids: Vec<String> = (0..300).map(|i| format!("wamid.AMB.{i}")).collect();
    for id in &ids {
        let m = wait_for(&app, id, "settled", is_settled).await;
        assert_eq!(m["outcome"], "replied", "{m}");
    }
    // Long enough for a wrong resend to show (a quiet period and a maintenance pass).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    trickling.store(false, Ordering::Relaxed);
    trickle.await.unwrap();

    let counts = sends_per_message(&fake.sends());
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "{id} sent once");
    }
    assert!(
        counts.values().all(|&n| n == 1),
        "nothing doubled: {counts:?}"
    );
    assert_eq!(app.metric("replyd_double_sends_total").await, 0.0);
    let dead: Vec<Value> = app
        .dead_letters()
        .await
        .into_iter()
        .filter(|l| {
            l["message_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("wamid.AMB."))
        })
        .collect();
    assert!(dead.is_empty(), "none of the 300 dead: {dead:?}");
    // Both faults really happened, and the stalled ones were settled by the evidence.
    assert!(fake.stalled_before_send() > 0);
    assert!(
        app.metric(r#"replyd_send_failures_total{class="ambiguous"}"#)
            .await
            > fake.stalled_before_send() as f64,
        "timeouts after sending too"
    );
    assert!(
        app.metric(r#"replyd_ambiguous_resolved_total{by="evidence"}"#)
            .await
            > 0.0
    );
}
