//! Read receipts over real HTTP: a Cloud API message is marked read, with the typing indicator,
//! once and before its reply; never a message the gates silence because the contact opted out
//! or an operator holds the conversation; a failing mark-read never holds the reply back.

use replyd::domain::Provider;
use replyd::tools::fake_cloud_api::{FakeCloudApi, FakeCloudArgs};

use crate::fixtures::*;
use crate::helpers::*;
use crate::replies::replying_with_fake;

async fn answered(app: &TestApp, id: &str, words: &str) {
    assert_eq!(
        app.post_webhook(text_notification(id, words))
            .await
            .status(),
        200
    );
    app.settled().await;
}

fn receipts_for(fake: &FakeCloudApi, id: &str) -> Vec<replyd::tools::fake_cloud_api::ReadReceipt> {
    fake.read_receipts()
        .into_iter()
        .filter(|r| r.message_id == id)
        .collect()
}

#[tokio::test]
async fn a_message_is_marked_read_once_with_typing_before_its_reply() {
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |_| {}).await;
    answered(&app, "wamid.RR.1", "hola").await;
    assert_eq!(
        app.message("wamid.RR.1").await.unwrap()["outcome"],
        "replied"
    );
    let receipts = receipts_for(&fake, "wamid.RR.1");
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert!(receipts[0].typing && !receipts[0].failed);
    assert_eq!(receipts[0].phone_number_id, PHONE_NUMBER_ID);
    let sends = fake.sends_of(Provider::Cloud);
    assert_eq!(sends.len(), 1, "a read receipt is not a send");
    assert!(
        receipts[0].received_at_ms <= sends[0].received_at_ms,
        "marked read before the reply"
    );
    assert_eq!(
        app.metric(r#"replyd_read_receipts_total{result="marked"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn opted_out_and_operator_held_messages_are_never_marked_read() {
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |_| {}).await;
    let contact = format!("/contacts/{PHONE_NUMBER_ID}/{USER}/opt-out");
    assert_eq!(app.admin_post(&contact, None).await.0, 200);
    answered(&app, "wamid.RR.OUT", "hola").await;
    let m = app.message("wamid.RR.OUT").await.unwrap();
    assert_eq!(m["reason"], "opted_out");
    app.admin_post(&format!("/contacts/{PHONE_NUMBER_ID}/{USER}/opt-in"), None)
        .await;
    let takeover = format!("/conversations/{PHONE_NUMBER_ID}/{USER}/takeover");
    assert_eq!(app.admin_post(&takeover, None).await.0, 200);
    answered(&app, "wamid.RR.OP", "hola").await;
    assert_eq!(
        app.message("wamid.RR.OP").await.unwrap()["reason"],
        "operator"
    );
    assert!(
        fake.read_receipts().is_empty(),
        "{:?}",
        fake.read_receipts()
    );
    assert!(fake.sends().is_empty());
}

#[tokio::test]
async fn a_failing_mark_read_is_tried_once_more_and_the_reply_still_goes_out() {
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |_| {}).await;
    fake.set_mark_read_fails(true);
    answered(&app, "wamid.RR.F", "hola").await;
    assert_eq!(
        app.message("wamid.RR.F").await.unwrap()["outcome"],
        "replied"
    );
    assert_eq!(fake.sends_of(Provider::Cloud).len(), 1);
    // The retry may land after the reply; wait for it without polling forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while receipts_for(&fake, "wamid.RR.F").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            fake.read_receipts()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let receipts = receipts_for(&fake, "wamid.RR.F");
    assert_eq!(
        receipts.len(),
        2,
        "one try and one retry, no more: {receipts:?}"
    );
    assert!(receipts.iter().all(|r| r.failed));
}

#[tokio::test]
async fn read_receipts_can_be_turned_off_per_number() {
    let (app, fake) = replying_with_fake(FakeCloudArgs::default(), |c| {
        c.numbers = vec![replyd::config::NumberConfig {
            phone_number_id: PHONE_NUMBER_ID.into(),
            access_token: None,
            responder: None,
            send_rate_per_second: None,
            read_receipts: Some(false),
        }];
    })
    .await;
    answered(&app, "wamid.RR.OFF", "hola").await;
    assert_eq!(
        app.message("wamid.RR.OFF").await.unwrap()["outcome"],
        "replied"
    );
    assert!(fake.read_receipts().is_empty());
}
