//! An operator's day in headless Chromium: log in, find a conversation, take it over, see the
//! next message silent with reason `operator`, release it, replay a dead letter, dry-run the
//! sweep, on a desktop and a phone-sized screen. Screenshots are kept as test artefacts under
//! `$CARGO_TARGET_DIR/console-screenshots/` (or `target/console-screenshots/`).

use std::path::PathBuf;

use replyd::domain::ConversationMode;
use replyd::tools::fake_cloud_api::FakeCloudArgs;
use reqwest::StatusCode;
use reqwest::header::COOKIE;
use serde_json::json;

use crate::console::{mode_of, plain_client};
use crate::fixtures::*;
use crate::helpers::*;
use crate::replies::replying_with_fake;
use crate::webdriver::Browser;

fn screenshots() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("console-screenshots")
}

#[tokio::test]
async fn an_operator_takes_over_releases_and_replays_in_the_browser() {
    // The Cloud API refuses the first sends permanently: a dead letter to replay later.
    let args = FakeCloudArgs {
        permanent_error_code: Some(131026),
        ..FakeCloudArgs::default()
    };
    let (app, fake) = replying_with_fake(args, |_| {}).await;
    let other = "34600000077";
    let mut first = text("wamid.CB.DL", "¿abren mañana?");
    first["from"] = json!(other);
    app.post_webhook(notification(vec![messages_value(vec![first])]).to_string())
        .await;
    app.settled().await;
    fake.set_permanent_error(None);
    app.post_webhook(text_notification("wamid.CB.1", "hola"))
        .await;
    app.settled().await;
    assert_eq!(
        app.message("wamid.CB.1").await.unwrap()["outcome"],
        "replied"
    );

    let Some(browser) = Browser::launch(1280, 900).await else {
        return;
    };
    let shots = screenshots();
    let base = &app.base;

    // Not logged in: the console is the login form.
    browser.goto(&format!("{base}/console")).await;
    browser.wait_url("/console/login").await;
    browser.find("#token").await.type_text("wrong").await;
    browser.find("form button[type=submit]").await.click().await;
    browser.wait_text("That is not the admin token.").await;
    browser
        .screenshot(&shots.join("01-login-refused.png"))
        .await;
    browser.find("#token").await.type_text(ADMIN_TOKEN).await;
    browser.find("form button[type=submit]").await.click().await;
    browser.wait_url("/console").await;
    let cookie = browser.cookie("replyd_console").await;
    assert_eq!(
        (cookie["httpOnly"].as_bool(), cookie["sameSite"].as_str()),
        (Some(true), Some("Strict"))
    );
    let overview = browser.wait_text("Inbound messages per minute").await;
    for shown in [
        "Inbound messages per minute",
        "Open dead letters",
        "cloud_api_131026",
        "Spool backlog",
    ] {
        assert!(overview.contains(shown), "{shown} in {overview}");
    }
    let bars = browser.count("figure.chart rect.bar").await;
    assert!((1..=2).contains(&bars), "one bar per busy minute: {bars}");
    browser.screenshot(&shots.join("02-overview.png")).await;

    // Find the conversation by its number, as typed by a person.
    browser
        .find("nav a[href='/console/conversations']")
        .await
        .click()
        .await;
    browser.find("#q").await.type_text("+34 600 000 001").await;
    browser.find("form.filters button").await.click().await;
    browser.wait_url("q=%2B34+600+000+001").await;
    assert_eq!(
        browser.count("table tbody tr").await,
        1,
        "only that number matches"
    );
    browser
        .screenshot(&shots.join("03-conversations.png"))
        .await;
    let page = format!("/console/conversations/cloud/{PHONE_NUMBER_ID}/{USER}");
    browser
        .find(&format!("a[href='{page}']"))
        .await
        .click()
        .await;
    browser.find("#by").await;
    browser.wait_text("Ana Pérez (34600000001)").await;

    // Take it over: the next message is silent with reason `operator`.
    let name = browser.find("#by").await;
    name.clear().await;
    name.type_text("Dana").await;
    browser.find("button[value=takeover]").await.click().await;
    browser.wait_text("taken over by Dana").await;
    assert_eq!(mode_of(&app, USER).await, ConversationMode::Operator);
    app.post_webhook(text_notification("wamid.CB.2", "¿hay alguien?"))
        .await;
    app.settled().await;
    browser.goto(&format!("{base}{page}")).await;
    let entry = browser.find("li[id='m-wamid.CB.2']").await.text().await;
    assert!(entry.contains("silent · operator"), "{entry}");
    assert!(
        browser
            .find("li[id='m-wamid.CB.1']")
            .await
            .text()
            .await
            .contains("replied")
    );
    browser.screenshot(&shots.join("04-taken-over.png")).await;

    // The session cookie alone is not enough to post: a wrong CSRF token is refused.
    let session = format!("replyd_console={}", cookie["value"].as_str().unwrap());
    let http = plain_client();
    let forged = http
        .post(format!("{base}{page}"))
        .header(COOKIE, &session)
        .form(&[("action", "release"), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let anonymous = http
        .post(format!("{base}{page}"))
        .form(&[("action", "release")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        mode_of(&app, USER).await,
        ConversationMode::Operator,
        "still taken over"
    );

    browser.find("button[value=release]").await.click().await;
    browser
        .wait_text("Released: the bot answers new messages again.")
        .await;
    assert_eq!(mode_of(&app, USER).await, ConversationMode::Bot);

    // Replay the dead letter (checkbox, then the bulk button): it is answered once.
    browser
        .find("nav a[href='/console/dead-letters']")
        .await
        .click()
        .await;
    browser.wait_url("/console/dead-letters").await;
    browser.wait_text("cloud_api_131026").await;
    browser.screenshot(&shots.join("05-dead-letters.png")).await;
    browser.find("input[name=id]").await.click().await;
    browser
        .find("button[name=action][value=replay]")
        .await
        .click()
        .await;
    browser.wait_text("Replayed 1 dead letter(s).").await;
    app.settled().await;
    assert_eq!(
        app.message("wamid.CB.DL").await.unwrap()["outcome"],
        "replied"
    );
    let sends = fake.sends();
    assert_eq!(
        sends
            .iter()
            .filter(|s| s.context_message_id.as_deref() == Some("wamid.CB.DL"))
            .count(),
        1,
        "{sends:?}"
    );
    assert!(app.dead_letters().await.is_empty());

    // A dry run of the sweep changes nothing and says so.
    browser
        .find("nav a[href='/console/sweeps']")
        .await
        .click()
        .await;
    browser
        .find("form[action='/console/sweeps/dry-run'] button")
        .await
        .click()
        .await;
    browser.wait_text("Nothing was changed.").await;
    browser
        .screenshot(&shots.join("06-sweep-dry-run.png"))
        .await;
    // A real one is recorded, and shows on the overview with everything else (a tall window
    // for a whole-page picture).
    browser
        .find("a[href='/console/sweeps']:not(nav a)")
        .await
        .click()
        .await;
    browser
        .find("form[action='/console/sweeps/run'] button")
        .await
        .click()
        .await;
    browser.wait_text("Run 1").await;
    browser.resize(1280, 1500).await;
    browser.goto(&format!("{base}/console")).await;
    let overview = browser.wait_text("Last sweeps").await;
    for shown in ["operator", "#1", "No channel's sends are paused."] {
        assert!(overview.contains(shown), "{shown} in {overview}");
    }
    browser
        .screenshot(&shots.join("07-overview-after.png"))
        .await;

    // On a phone-sized screen nothing runs off the side.
    browser.resize(390, 844).await;
    for (path, shot) in [
        ("/console", "08-phone-overview.png"),
        (page.as_str(), "09-phone-conversation.png"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        let fits = browser
            .execute("return document.documentElement.scrollWidth <= window.innerWidth")
            .await;
        assert_eq!(fits, true, "{path} overflows a phone screen");
        browser.screenshot(&shots.join(shot)).await;
    }

    browser.find("form.logout button").await.click().await;
    browser.wait_url("/console/login").await;
    browser.goto(&format!("{base}/console/dead-letters")).await;
    browser.wait_url("/console/login").await;
    browser.quit().await;
}
