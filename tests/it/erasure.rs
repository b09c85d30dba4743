//! Erasure on request, over HTTP and from the command line: a contact's bodies, name, reply
//! texts and payloads go at once; what the promise needs stays (message ids for dedup,
//! outcomes, the opt-out flag), so an erased message delivered again is still a duplicate.

use serde_json::{Value, json};

use crate::fixtures::*;
use crate::helpers::*;
use crate::observability::replyd;
use crate::retention::{content, scalar, status_for, text_from_at};

const U1: &str = "34600000301";
const U2: &str = "34600000302";

fn erase_path(user: &str, provider: &str) -> String {
    format!("/contacts/{PHONE_NUMBER_ID}/{user}/erase?provider={provider}")
}

async fn erase(app: &TestApp, user: &str, provider: &str) -> Value {
    let (status, body) = app.admin_post(&erase_path(user, provider), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn reply_text(app: &TestApp, user: &str, message_id: &str) -> Value {
    let (_, c) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{user}"))
        .await;
    let entry = c["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == message_id)
        .cloned()
        .unwrap_or_else(|| panic!("{message_id} in {c}"));
    entry["reply"]["text"].clone()
}

#[tokio::test]
async fn erasing_a_contact_over_http_keeps_only_what_the_promise_needs() {
    let app = spawn_replying_app(|_| {}).await;
    let first = text_from_at(U1, "wamid.E.1", "my card is 4111", now_s());
    app.post_webhook(first.clone()).await;
    app.post_webhook(text_from_at(U1, "wamid.E.2", "my address", now_s()))
        .await;
    app.post_webhook(text_from_at(U2, "wamid.E.3", "keep me", now_s()))
        .await;
    app.settled().await;
    let out = app.message("wamid.E.1").await.unwrap()["reply"]["outbound_id"].clone();
    let out = out.as_str().expect("the sandbox records an outbound id");
    app.post_webhook(status_for(out, U1, "delivered")).await;
    let (status, _) = app
        .admin_post(&format!("/contacts/{PHONE_NUMBER_ID}/{U1}/opt-out"), None)
        .await;
    assert_eq!(status, 200);
    assert!(reply_text(&app, U1, "wamid.E.1").await.as_str().unwrap() != "");

    // Another provider's contact of the same ids is another contact: nothing of U1 goes.
    let other = erase(&app, U1, "wasender").await;
    assert_eq!(other["erased"]["messages"], 0, "{other}");
    assert_eq!(
        content(&app, "wamid.E.1").await.0.as_deref(),
        Some("my card is 4111")
    );

    let answer = erase(&app, U1, "cloud").await;
    assert_eq!(
        answer,
        json!({"provider": "cloud", "phone_number_id": PHONE_NUMBER_ID, "wa_id": U1,
               "erased": {"messages": 2, "display_name": true, "reply_texts": 2,
                          "statuses": 1, "dead_letters": 0, "replies_in_flight": 0}})
    );
    for id in ["wamid.E.1", "wamid.E.2"] {
        assert_eq!(content(&app, id).await, (None, String::new()), "{id}");
        assert_eq!(reply_text(&app, U1, id).await, "", "{id}");
        let m = app.message(id).await.expect("the message id stays");
        assert_eq!(m["outcome"], "replied", "the outcome stays");
    }
    let raw_statuses =
        format!("SELECT count(*) FROM statuses WHERE recipient_id = '{U1}' AND raw <> ''");
    assert_eq!(scalar(&app, &raw_statuses).await, 0);
    let contact = app
        .store
        .contact(&cloud_key(PHONE_NUMBER_ID, U1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.display_name, None);
    assert!(contact.opted_out, "the opt-out flag stays");
    assert_eq!(
        content(&app, "wamid.E.3").await.0.as_deref(),
        Some("keep me")
    );
    assert_ne!(reply_text(&app, U2, "wamid.E.3").await, "");

    // Delivered again: a duplicate, not answered a second time.
    let ledger = scalar(&app, "SELECT count(*) FROM ledger").await;
    let duplicates = app.summary().await["duplicates"].as_u64().unwrap();
    assert_eq!(app.post_webhook(first).await.status(), 200);
    let summary = app.settled().await;
    assert_eq!(summary["duplicates"], duplicates + 1);
    assert_eq!(scalar(&app, "SELECT count(*) FROM ledger").await, ledger);

    let again = erase(&app, U1, "cloud").await;
    // Nothing of theirs is left (the re-delivery's profile name aside: every delivery's
    // `contacts` block names them again).
    assert_eq!(again["erased"]["messages"], 0, "{again}");
    assert_eq!(again["erased"]["reply_texts"], 0, "{again}");
    assert_eq!(again["erased"]["statuses"], 0, "{again}");
    let (status, _) = app.admin_post(&erase_path(U1, "telegram"), None).await;
    assert_eq!(status, 400);
    let url = format!("{}/api/v1{}", app.base, erase_path(U1, "cloud"));
    assert_eq!(app.client.post(url).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn replyd_contact_erase_empties_dead_letters_of_their_messages() {
    let app = spawn_app().await;
    app.post_webhook(text_from_at(U1, "wamid.EC.1", "secret", now_s()))
        .await;
    let inbound = scalar(
        &app,
        "SELECT id FROM inbound_messages WHERE message_id = 'wamid.EC.1'",
    )
    .await;
    app.store
        .dead_letter_message(inbound, None, "cloud_api_131026", "undeliverable", 1, 1)
        .await
        .unwrap();
    let letter = app.dead_letters().await.pop().unwrap();
    assert!(letter["raw_bytes"].as_u64().unwrap() > 0);

    let run = replyd(
        &app,
        &[
            "contact",
            "erase",
            PHONE_NUMBER_ID,
            U1,
            "--provider",
            "cloud",
        ],
        &[],
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        out.contains("1 message(s)") && out.contains("1 dead-letter payload(s)"),
        "{out}"
    );
    assert!(out.contains("display name removed"), "{out}");
    let kept = app.dead_letter(letter["id"].as_i64().unwrap()).await;
    assert!(
        kept["raw"].is_null() && kept["raw_bytes"].is_null(),
        "{kept}"
    );
    assert_eq!(
        kept["state"], "open",
        "still replayable: the message row stays"
    );
    assert_eq!(content(&app, "wamid.EC.1").await, (None, String::new()));

    let bad = replyd(
        &app,
        &["contact", "erase", PHONE_NUMBER_ID, "not a number"],
        &[],
    )
    .output()
    .unwrap();
    assert!(!bad.status.success(), "an id the edge refuses is refused");
}
