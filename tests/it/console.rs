//! The web console over plain HTTP: sessions, CSRF and fail-closed login, checked request by
//! request (the operator's day in a real browser is in `console_browser`).

use replyd::domain::ConversationMode;
use replyd::secret::Secret;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::fixtures::*;
use crate::helpers::*;

/// A client that shows redirects instead of following them, and keeps no cookies.
pub(crate) fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the first `name="csrf"` field of a page.
pub(crate) fn csrf_of(html: &str) -> String {
    let start = html
        .find(r#"name="csrf" value=""#)
        .expect("the page has a form")
        + 19;
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

/// `name=value` of a `Set-Cookie` header named `name`, with its attributes.
pub(crate) fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

pub(crate) fn cookie_value(set_cookie: &str) -> &str {
    set_cookie.split(';').next().unwrap()
}

/// Logs in over plain HTTP; returns the `replyd_console=…` cookie.
pub(crate) async fn log_in(app: &TestApp, http: &reqwest::Client) -> String {
    log_in_to(&app.base, ADMIN_TOKEN, http).await
}

/// Logs in to the console at `base` with `token`; returns the session cookie.
pub(crate) async fn log_in_to(base: &str, token: &str, http: &reqwest::Client) -> String {
    let form = http
        .get(format!("{base}/console/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200);
    let login_cookie = cookie_value(&set_cookie(&form, "replyd_console_login").unwrap()).to_owned();
    let csrf = csrf_of(&form.text().await.unwrap());
    let answer = http
        .post(format!("{base}/console/login"))
        .header(COOKIE, &login_cookie)
        .form(&[("csrf", csrf.as_str()), ("token", token)])
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

pub(crate) async fn mode_of(app: &TestApp, wa_id: &str) -> ConversationMode {
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
    assert!(
        html.contains("(wamid.CS.1)"),
        "the oldest pending message: {html}"
    );
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

#[tokio::test]
async fn a_gateway_conversation_and_a_cloud_one_with_the_same_ids_stay_apart() {
    use crate::fixtures::gateway::received_messages_object;
    let app = spawn_app().await;
    let same = WASENDER_SESSION; // also used as a Cloud API number here
    let answer = app
        .post_wasender(
            received_messages_object("WA.CS.1", USER, "hola").to_string(),
            Some(WASENDER_SECRET),
        )
        .await;
    assert_eq!(answer.status(), 200);
    let mut cloud = messages_value(vec![text("wamid.CS.G", "hola")]);
    cloud["metadata"]["phone_number_id"] = json!(same);
    app.post_webhook(notification(vec![cloud]).to_string())
        .await;

    let http = plain_client();
    let session = log_in(&app, &http).await;
    let list = http
        .get(format!("{}/console/conversations?q={USER}", app.base))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gateway_page = format!("/console/conversations/wasender/{same}/{USER}");
    let cloud_page = format!("/console/conversations/cloud/{same}/{USER}");
    assert!(
        list.contains(&gateway_page) && list.contains(&cloud_page),
        "{list}"
    );

    let page = http
        .get(format!("{}{gateway_page}", app.base))
        .header(COOKIE, &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("WA.CS.1") && !page.contains("wamid.CS.G"),
        "{page}"
    );
    let done = http
        .post(format!("{}{gateway_page}", app.base))
        .header(COOKIE, &session)
        .form(&[("action", "takeover"), ("csrf", &csrf_of(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        done.headers()[LOCATION].to_str().unwrap(),
        format!("{gateway_page}?done=takeover")
    );
    let mode = |provider| {
        let store = app.store.clone();
        async move {
            let key = crate::helpers::key(provider, same, USER);
            store
                .conversation(&key, 1)
                .await
                .unwrap()
                .unwrap()
                .summary
                .mode
        }
    };
    use replyd::domain::Provider;
    assert_eq!(mode(Provider::Wasender).await, ConversationMode::Operator);
    assert_eq!(mode(Provider::Cloud).await, ConversationMode::Bot);
}
