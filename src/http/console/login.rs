//! Logging in with the admin token, and out.
//!
//! The login form has no session to carry a CSRF token, so it uses a double submit: the form's
//! token is also set in its own short-lived `SameSite=Strict` cookie, and both must match. With
//! no admin token configured the form is not offered and every attempt is refused.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::layout::{csrf_field, page};
use super::session::{
    ConsoleForm, FormFields, LIFETIME, LOGIN_COOKIE, SESSION_COOKIE, cookie, over_https,
    random_token, set_cookie, tokens_match,
};
use super::{ConsoleState, LOGIN_PATH};

/// How long a login form stays usable.
const LOGIN_FORM_S: u64 = 600;

/// `GET /console/login`
pub async fn form(State(state): State<ConsoleState>, headers: HeaderMap) -> Response {
    login_page(&state, &headers, StatusCode::OK, None)
}

/// `POST /console/login`: the admin token, compared in constant time; an empty configured token
/// matches nothing.
pub async fn submit(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fields = FormFields::parse(&body);
    let form_token = fields.first("csrf").unwrap_or_default();
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !tokens_match(cookie_token, form_token) {
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The login form expired or was not sent from this console. Try again."),
        );
    }
    let presented = fields.first("token").unwrap_or_default().trim();
    if !state.app.config.admin_token.matches(presented.as_bytes()) {
        tracing::warn!("console login refused: wrong admin token");
        return login_page(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token."),
        );
    }
    let session = state.sessions.start();
    tracing::info!("console session started");
    let secure = over_https(&headers);
    let mut response = Redirect::to("/console").into_response();
    let cookies = [
        set_cookie(
            SESSION_COOKIE,
            &session.id,
            "/console",
            LIFETIME.as_secs(),
            secure,
        ),
        set_cookie(LOGIN_COOKIE, "", LOGIN_PATH, 0, secure),
    ];
    for value in cookies {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `POST /console/logout`: the session ends on the server, and its cookie is cleared.
pub async fn logout(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    form: ConsoleForm,
) -> Response {
    state.sessions.end(&form.session.id);
    let mut response = Redirect::to(LOGIN_PATH).into_response();
    let cleared = set_cookie(SESSION_COOKIE, "", "/console", 0, over_https(&headers));
    if let Ok(value) = cleared.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn login_page(
    state: &ConsoleState,
    headers: &HeaderMap,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    let enabled = !state.app.config.admin_token.expose().is_empty();
    if !enabled {
        return (StatusCode::SERVICE_UNAVAILABLE, disabled()).into_response();
    }
    let token = random_token();
    let set = set_cookie(
        LOGIN_COOKIE,
        &token,
        LOGIN_PATH,
        LOGIN_FORM_S,
        over_https(headers),
    );
    let mut response = (status, enabled_form(&token, problem)).into_response();
    if let Ok(value) = set.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn enabled_form(csrf: &str, problem: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        None,
        html! {
            div.login {
                @if let Some(problem) = problem {
                    p.notice.bad role="alert" { (problem) }
                }
                form method="post" action=(LOGIN_PATH) {
                    (csrf_field(csrf))
                    div.field {
                        label for="token" { "Admin token" }
                        input #token type="password" name="token" autocomplete="current-password"
                            required autofocus;
                    }
                    button type="submit" { "Log in" }
                }
                p.muted {
                    "The admin token is "
                    code { "REPLYD_ADMIN_TOKEN" }
                    " (or "
                    code { "admin_token" }
                    " in replyd.toml, or the one generated in the data directory's "
                    code { "secrets.toml" }
                    ")."
                }
            }
        },
    )
}

fn disabled() -> Markup {
    page(
        "Console disabled",
        None,
        None,
        html! {
            div.login {
                p.notice.bad role="alert" {
                    "Nobody can log in: no admin token is configured, and an empty token never \
                     authenticates anything."
                }
                p {
                    "Set " code { "REPLYD_ADMIN_TOKEN" } " (or " code { "admin_token" }
                    " in replyd.toml) to a long random value and restart replyd, then log in \
                     with it here."
                }
            }
        },
    )
}
