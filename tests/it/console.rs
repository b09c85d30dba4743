//! The web console over real HTTP: sessions, CSRF and fail-closed login checked request by
//! request, then an operator's day in headless Chromium (screenshots under
//! `$CARGO_TARGET_DIR/console-screenshots/`).

use std::path::PathBuf;

use replyd::domain::ConversationMode;
use replyd::secret::Secret;
use replyd::tools::fake_cloud_api::FakeCloudArgs;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::fixtures::*;
use crate::helpers::*;
use crate::replies::replying_with_fake;
use crate::webdriver::Browser;

/// A client that shows redirects instead of following them, and keeps no cookies.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf" value=""#)
        .expect("the page has a form")
        + 19;
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// `name=value` of a `Set-Cookie` header named `name`, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

/// Logs in over plain HTTP; returns the `replyd_console=…` cookie.
async fn log_in(app: &TestApp, http: &reqwest::Client) -> String {
    let form = http
        .get(format!("{}/console/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let login_cookie = cookie_value(&set_cookie(&form, "replyd_console_login").unwrap()).to_owned();
    let csrf = csrf_of(&form.text().await.unwrap());
    let answer = http
        .post(format!("{}/console/login", app.base))
        .header(COOKIE, &login_cookie)
        .form(&[("csrf", csrf.as_str()), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()[LOCATION], "/console");
    let session = set_cookie(&answer, "replyd_console").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attribute), "{session}");
    }
    cookie_value(&session).to_owned()
}

async fn mode_of(app: &TestApp, wa_id: &str) -> ConversationMode {
    let key = cloud_key(PHONE_NUMBER_ID, wa_id);
    app.store
        .conversation(&key, 1)
        .await
        .unwrap()
        .unwrap()
        .summary
        .mode
}

#[tokio::test]
async fn the_console_needs_a_session_and_its_csrf_token() {
    let app = spawn_app().await;
    app.post_webhook(text_notification("wamid.CS.1", "hola"))
        .await;
    let http = plain_client();
    let page = format!("/console/conversations/cloud/{PHONE_NUMBER_ID}/{USER}");

    // Without a session every page sends the browser to the login form, and no data leaks.
    for path in [
        "/console",
        "/console/conversations",
        &page,
        "/console/dead-letters",
        "/console/sweeps",
    ] {
        let answer = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.headers()[LOCATION], "/console/login", "{path}");
        assert!(!answer.text().await.unwrap().contains(USER), "{path}");
    }

    // A wrong token, or a login form not sent from the console, gives no session.
    let form = http
        .get(format!("{}/console/login", app.base))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie_value(&set_cookie(&form, "replyd_console_login").unwrap()).to_owned();
    let csrf = csrf_of(&form.text().await.unwrap());
    let wrong = http
        .post(format!("{}/console/login", app.base))
        .header(COOKIE, &login_cookie)
        .form(&[("csrf", csrf.as_str()), ("token", "not-the-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "replyd_console").is_none());
    let forged = http
        .post(format!("{}/console/login", app.base))
        .form(&[("csrf", csrf.as_str()), ("token", ADMIN_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no login cookie");
    assert!(set_cookie(&forged, "replyd_console").is_none());

    let session = log_in(&app, &http).await;
    let overview = http
        .get(format!("{}/console", app.base))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(overview.status(), 200);
    let csp = overview.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(overview.headers()["cache-control"], "no-store");
    let html = overview.text().await.unwrap();
    assert!(html.contains("Inbound messages per minute"), "{html}");
    let csrf = csrf_of(&html);

    // A POST without the session, with a wrong token or none, changes nothing.
    let take_over = |cookie: Option<&str>, token: Option<&str>| {
        let mut request = http.post(format!("{}{page}", app.base));
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        let mut fields = vec![("action", "takeover"), ("by", "mallory")];
        if let Some(token) = token {
            fields.push(("csrf", token));
        }
        request.form(&fields).send()
    };
    let refused = [
        take_over(None, Some(&csrf)).await.unwrap(),
        take_over(Some(&session), Some("0".repeat(64).as_str()))
            .await
            .unwrap(),
        take_over(Some(&session), Some("")).await.unwrap(),
        take_over(Some(&session), None).await.unwrap(),
    ];
    for answer in refused {
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(mode_of(&app, USER).await, ConversationMode::Bot);

    let done = take_over(Some(&session), Some(&csrf)).await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(mode_of(&app, USER).await, ConversationMode::Operator);

    // Logging out ends the session on the server: the old cookie opens nothing any more.
    let out = http
        .post(format!("{}/console/logout", app.base))
        .header(COOKIE, &session)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(
        set_cookie(&out, "replyd_console")
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = http
        .get(format!("{}/console", app.base))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(after.headers()[LOCATION], "/console/login");
    assert_eq!(
        take_over(Some(&session), Some(&csrf))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn nobody_can_log_in_when_no_admin_token_is_configured() {
    let app = spawn_app_with(|c| c.admin_token = Secret::default()).await;
    let http = plain_client();
    let form = http
        .get(format!("{}/console/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = form.text().await.unwrap();
    assert!(html.contains("no admin token is configured"), "{html}");
    assert!(html.contains("REPLYD_ADMIN_TOKEN"), "says how to fix it");
    assert!(!html.contains("name=\"token\""), "no login form is offered");
    let attempt = http
        .post(format!("{}/console/login", app.base))
        .header(COOKIE, "replyd_console_login=x")
        .form(&[("csrf", "x"), ("token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(attempt.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(set_cookie(&attempt, "replyd_console").is_none());
}

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
    assert_eq!(
        browser.count("figure.chart rect.bar").await,
        1,
        "both arrived this minute"
    );
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

    // On a phone-sized screen nothing runs off the side.
    browser.resize(390, 844).await;
    for (path, shot) in [
        ("/console", "07-phone-overview.png"),
        (page.as_str(), "08-phone-conversation.png"),
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
