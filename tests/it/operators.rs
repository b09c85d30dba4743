//! Operator reads over real HTTP: the conversation list filtered by mode, one conversation's
//! timeline (messages, outcomes, replies, statuses), the bearer token on every new route, the
//! OpenAPI document against the router's source, and the CLI command functions.

use std::collections::BTreeSet;

use replyd::clock::Clock;
use replyd::domain::{OperatorNote, PhoneNumberId, WaId, callback_for_ledger};
use replyd::operators::{self, ContactCommand, ConversationCommand, Target};
use serde_json::{Value, json};

use crate::fixtures::*;
use crate::helpers::*;

const U2: &str = "34600000002";
const U3: &str = "34600000003";
/// Never wrote: known only because an operator acted on it.
const U4: &str = "34600000004";

/// One text message from `user` (with their contact profile).
fn text_from(user: &str, id: &str, words: &str) -> String {
    let mut value = messages_value(vec![text(id, words)]);
    value["contacts"][0]["wa_id"] = json!(user);
    value["contacts"][0]["profile"]["name"] = json!(format!("User {user}"));
    value["messages"][0]["from"] = json!(user);
    notification(vec![value]).to_string()
}

async fn act(app: &TestApp, wa_id: &str, action: &str, body: Option<Value>) {
    let path = format!("/conversations/{PHONE_NUMBER_ID}/{wa_id}/{action}");
    let (status, answer) = app.admin_post(&path, body).await;
    assert_eq!(status, 200, "{action}: {answer}");
}

/// The wa_ids a list answers, in its order.
async fn listed(app: &TestApp, query: &str) -> Vec<String> {
    let (status, body) = app.admin_get(&format!("/conversations{query}")).await;
    assert_eq!(status, 200, "{body}");
    column(&body["conversations"], "wa_id")
        .into_iter()
        .map(String::from)
        .collect()
}

/// `key` of every item of a JSON array, as strings.
fn column<'a>(items: &'a Value, key: &str) -> Vec<&'a str> {
    let items = items.as_array().expect("an array");
    items.iter().map(|i| i[key].as_str().unwrap()).collect()
}

/// Operator actions arrive within one millisecond of each other otherwise.
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

#[tokio::test]
async fn the_list_filters_by_mode_through_takeover_escalate_release_and_resolve() {
    let app = spawn_replying_app(|_| {}).await;
    for (user, id) in [(USER, "wamid.L.1"), (U2, "wamid.L.2"), (U3, "wamid.L.3")] {
        assert_eq!(
            app.post_webhook(text_from(user, id, "hola")).await.status(),
            200
        );
    }
    app.settled().await;
    assert_eq!(
        listed(&app, "?mode=bot").await.len(),
        3,
        "no conversations row means bot"
    );
    assert!(listed(&app, "?mode=operator").await.is_empty());

    tick().await;
    act(&app, USER, "takeover", Some(json!({"by": "maria"}))).await;
    tick().await;
    act(
        &app,
        U2,
        "escalate",
        Some(json!({"reason": "wants a refund"})),
    )
    .await;
    tick().await;
    act(&app, U4, "takeover", None).await;
    assert_eq!(
        listed(&app, "?mode=operator").await,
        [U4, USER],
        "newest activity first"
    );
    assert_eq!(listed(&app, "?mode=escalated").await, [U2]);
    assert_eq!(listed(&app, "?mode=bot").await, [U3]);
    assert_eq!(listed(&app, "").await, [U4, U2, USER, U3]);
    assert_eq!(listed(&app, "?limit=2").await, [U4, U2]);

    let (_, body) = app.admin_get("/conversations?mode=operator").await;
    let maria = &body["conversations"][1];
    assert_eq!(maria["taken_by"], "maria");
    assert_eq!(maria["display_name"], format!("User {USER}"));
    assert_eq!(maria["escalation_reason"], Value::Null);
    assert!(maria["last_inbound_ts"].as_i64().unwrap() > 0);
    assert_eq!(
        body["conversations"][0]["display_name"],
        Value::Null,
        "U4 never wrote"
    );
    let (_, body) = app.admin_get("/conversations?mode=escalated").await;
    assert_eq!(
        body["conversations"][0]["escalation_reason"],
        "wants a refund"
    );

    tick().await;
    act(&app, USER, "release", None).await;
    act(&app, U2, "resolve", None).await;
    assert_eq!(listed(&app, "?mode=operator").await, [U4]);
    assert!(listed(&app, "?mode=escalated").await.is_empty());
    let bot: BTreeSet<String> = listed(&app, "?mode=bot").await.into_iter().collect();
    assert_eq!(bot, BTreeSet::from([USER, U2, U3].map(String::from)));

    for bad in ["?mode=robot", "?limit=0", "?limit=1001"] {
        let (status, _) = app.admin_get(&format!("/conversations{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn the_timeline_shows_messages_outcomes_replies_and_statuses_in_order() {
    let app = spawn_replying_app(|_| {}).await;
    app.post_webhook(text_from(USER, "wamid.TL.1", "hola"))
        .await;
    app.settled().await;
    app.post_webhook(text_from(USER, "wamid.TL.2", "hours?"))
        .await;
    app.settled().await;
    act(&app, USER, "takeover", Some(json!({"by": "maria"}))).await;
    app.post_webhook(text_from(USER, "wamid.TL.3", "are you there?"))
        .await;
    app.settled().await;

    // Statuses for the first reply, out of order: read arrives before delivered.
    let first = app.message("wamid.TL.1").await.unwrap();
    let out = first["reply"]["outbound_id"].as_str().unwrap().to_owned();
    let callback = callback_for_ledger(first["reply"]["ledger_id"].as_i64().unwrap());
    let status = |status: &str, ts: i64| {
        json!({"id": out, "status": status, "timestamp": ts.to_string(), "recipient_id": USER,
               "biz_opaque_callback_data": callback})
    };
    for s in [
        status("read", now_s() + 5),
        status("delivered", now_s() + 2),
    ] {
        let body = notification(vec![statuses_value(vec![s])]).to_string();
        assert_eq!(app.post_webhook(body).await.status(), 200);
    }

    let (code, c) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{USER}"))
        .await;
    assert_eq!(code, 200, "{c}");
    assert_eq!(
        (c["mode"].as_str(), c["taken_by"].as_str()),
        (Some("operator"), Some("maria"))
    );
    assert_eq!(c["display_name"], format!("User {USER}"));
    assert_eq!(c["opted_out"], false);
    assert_eq!(c["timeline_complete"], true);
    let timeline = c["timeline"].as_array().unwrap();
    let ids = column(&c["timeline"], "id");
    assert_eq!(
        ids,
        ["wamid.TL.1", "wamid.TL.2", "wamid.TL.3"],
        "oldest first"
    );
    let outcomes: Vec<(&str, Option<&str>)> = timeline
        .iter()
        .map(|e| (e["outcome"].as_str().unwrap(), e["reason"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("replied", None),
            ("replied", None),
            ("silent", Some("operator"))
        ]
    );
    assert_eq!(
        (timeline[0]["type"].as_str(), timeline[0]["text"].as_str()),
        (Some("text"), Some("hola"))
    );

    let reply = &timeline[0]["reply"];
    assert_eq!(reply["outbound_id"], out.as_str());
    assert_eq!(reply["state"], "read", "statuses move the ledger forward");
    assert_eq!(reply["attempts"], 1);
    assert!(!reply["text"].as_str().unwrap().is_empty());
    let statuses = column(&reply["statuses"], "status");
    assert_eq!(
        statuses,
        ["delivered", "read"],
        "in the order they happened"
    );
    assert_eq!(timeline[1]["reply"]["state"], "sent");
    assert_eq!(timeline[1]["reply"]["statuses"], json!([]));
    assert_eq!(
        timeline[2]["reply"],
        Value::Null,
        "nothing was sent while an operator held it"
    );

    let (_, newest) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{USER}?limit=2"))
        .await;
    let ids = column(&newest["timeline"], "id");
    assert_eq!(
        ids,
        ["wamid.TL.2", "wamid.TL.3"],
        "the newest N, still oldest first"
    );
}

#[tokio::test]
async fn an_unknown_conversation_is_404_and_a_bad_limit_400() {
    let app = spawn_replying_app(|_| {}).await;
    let (status, _) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{U2}"))
        .await;
    assert_eq!(status, 404);
    app.post_webhook(text_from(U2, "wamid.U.1", "hola")).await;
    app.settled().await;
    let (status, _) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{U2}"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = app.admin_get(&format!("/conversations/999/{U2}")).await;
    assert_eq!(
        status, 404,
        "the same user on another business number is another conversation"
    );
    let (status, _) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{U2}?limit=501"))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn every_new_route_refuses_a_missing_or_wrong_token() {
    let app = spawn_app().await;
    let paths = [
        "/api/v1/conversations".to_owned(),
        "/api/v1/conversations?mode=operator".to_owned(),
        format!("/api/v1/conversations/{PHONE_NUMBER_ID}/{USER}"),
        "/api/v1/openapi.json".to_owned(),
    ];
    for path in &paths {
        let url = format!("{}{path}", app.base);
        let none = app.client.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path} without a token");
        let wrong = app
            .client
            .get(&url)
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
}

#[tokio::test]
async fn the_cli_command_functions_act_on_the_store() {
    let app = spawn_replying_app(|_| {}).await;
    app.post_webhook(text_from(U3, "wamid.CLI.1", "hola")).await;
    app.settled().await;
    let clock = Clock::system();
    let target = || Target {
        phone_number_id: PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
        wa_id: WaId::parse(U3).unwrap(),
        provider: replyd::domain::Provider::Cloud,
    };
    let takeover = ConversationCommand::Takeover {
        target: target(),
        by: OperatorNote::parse("luis").unwrap(),
    };
    let said = operators::conversation(&app.store, &clock, takeover)
        .await
        .unwrap();
    assert!(said.contains("operator"), "{said}");
    let table = operators::conversation(
        &app.store,
        &clock,
        ConversationCommand::List {
            mode: Some(replyd::domain::ConversationMode::Operator),
            limit: 10,
        },
    )
    .await
    .unwrap();
    assert!(table.contains(U3) && table.contains("luis"), "{table}");
    assert!(table.ends_with("1 conversation(s)\n"), "{table}");

    operators::contact(&app.store, &clock, ContactCommand::OptOut(target()))
        .await
        .unwrap();
    let (_, c) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{U3}"))
        .await;
    assert_eq!(
        (c["mode"].as_str(), c["opted_out"].as_bool()),
        (Some("operator"), Some(true))
    );

    operators::conversation(
        &app.store,
        &clock,
        ConversationCommand::Release { target: target() },
    )
    .await
    .unwrap();
    operators::contact(&app.store, &clock, ContactCommand::OptIn(target()))
        .await
        .unwrap();
    let (_, c) = app
        .admin_get(&format!("/conversations/{PHONE_NUMBER_ID}/{U3}"))
        .await;
    assert_eq!(
        (c["mode"].as_str(), c["opted_out"].as_bool()),
        (Some("bot"), Some(false))
    );
}

/// `--provider wasender` names the gateway conversation, never the Cloud API one with the same
/// number; without it the Cloud API one.
#[tokio::test]
async fn the_cli_takes_the_provider_of_the_contact() {
    use clap::Parser;
    use replyd::domain::Provider;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ContactCommand,
    }
    let app = spawn_app().await;
    let clock = Clock::system();
    let parse = |args: &[&str]| {
        Cli::try_parse_from([&["contact"], args].concat())
            .unwrap()
            .command
    };
    let gateway = parse(&["opt-out", WASENDER_SESSION, U2, "--provider", "wasender"]);
    let printed = operators::contact(&app.store, &clock, gateway)
        .await
        .unwrap();
    assert!(printed.contains("(wasender)"), "{printed}");
    let gateway_contact = key(Provider::Wasender, WASENDER_SESSION, U2);
    let cloud_contact = key(Provider::Cloud, WASENDER_SESSION, U2);
    assert!(
        app.store
            .contact(&gateway_contact)
            .await
            .unwrap()
            .unwrap()
            .opted_out
    );
    assert!(app.store.contact(&cloud_contact).await.unwrap().is_none());
    let cloud = parse(&["opt-out", WASENDER_SESSION, U3]);
    operators::contact(&app.store, &clock, cloud).await.unwrap();
    assert!(
        app.store
            .contact(&cloud_key(WASENDER_SESSION, U3))
            .await
            .unwrap()
            .unwrap()
            .opted_out
    );
    assert!(Cli::try_parse_from(["contact", "opt-in", "1", U2, "--provider", "sms"]).is_err());
}
