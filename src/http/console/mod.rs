//! The operator console at `/console`: server-rendered HTML (maud templates, checked at compile
//! time), one stylesheet embedded in the binary, no JavaScript.
//!
//! Invariants:
//! - nothing under `/console` but the login form and the stylesheet answers without a live
//!   session (see `session`): a page redirects to the login form, anything else is refused;
//! - every form POST carries the session's CSRF token and is checked before its handler runs;
//! - with no admin token configured nobody can log in (the login page says how to set one);
//! - the console changes state only through the operations the admin API uses, so an action
//!   taken here and the same action over the API have one meaning;
//! - every answer forbids framing, caching and any script (`Content-Security-Policy`).

mod chart;
mod conversations;
mod dead_letters;
mod layout;
mod login;
mod overview;
mod session;
mod sweeps;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::AppState;
use crate::store::StoreError;
pub use session::Sessions;

pub const LOGIN_PATH: &str = "/console/login";

/// What console handlers reach: the app, and the live sessions.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    pub app: AppState,
    pub sessions: Arc<Sessions>,
}

/// The console's routes, ready to merge into the app's router.
pub fn router<S>(app: AppState) -> Router<S> {
    let state = ConsoleState {
        sessions: Sessions::new(app.clock.clone()),
        app,
    };
    Router::new()
        .route("/console", get(overview::show))
        .route(LOGIN_PATH, get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/assets/console.css", get(layout::stylesheet))
        .route("/console/conversations", get(conversations::list))
        .route(
            "/console/conversations/{provider}/{phone_number_id}/{wa_id}",
            get(conversations::detail).post(conversations::act),
        )
        .route(
            "/console/dead-letters",
            get(dead_letters::list).post(dead_letters::act),
        )
        .route("/console/sweeps", get(sweeps::show))
        .route("/console/sweeps/dry-run", post(sweeps::dry_run))
        .route("/console/sweeps/run", post(sweeps::run_now))
        .layer(middleware::map_response(protect))
        .with_state(state)
}

/// Headers on every console answer: no framing, no caching of operator data, no scripts.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Why a console request failed, as a page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    BadRequest(String),
    #[error("the store is unavailable")]
    Store(#[from] StoreError),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Store(e) => {
                tracing::error!(error = %e, "console request failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        (status, layout::error_page(status, &self.to_string())).into_response()
    }
}
