//! Console sessions: who may read the console and post its forms.
//!
//! Invariants:
//! - a session id is 32 random bytes from the OS, given to the browser once in an `HttpOnly`,
//!   `SameSite=Strict` cookie; the server keeps only its SHA-256, so the table holds nothing a
//!   browser could present, and nothing of the admin token is derivable from the cookie;
//! - a session ends after [`IDLE`] without a request, [`LIFETIME`] after login, at logout, or
//!   when the process stops (the table is in memory);
//! - every POST is checked against the session's own CSRF token in constant time before its
//!   handler runs ([`ConsoleForm`]); a handler that changes anything takes that extractor, so
//!   a form without a valid token changes nothing;
//! - the table is bounded ([`MAX_SESSIONS`]): a login when full evicts the oldest session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ConsoleError, ConsoleState};
use crate::clock::Clock;

/// The session cookie.
pub const SESSION_COOKIE: &str = "replyd_console";
/// The login form's own CSRF cookie (double submit: there is no session yet).
pub const LOGIN_COOKIE: &str = "replyd_console_login";
pub const IDLE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);
pub const LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 3600);
pub const MAX_SESSIONS: usize = 1024;
/// Largest form body the console accepts (a dead-letter selection of a few hundred ids).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The server side of every live session, keyed by the SHA-256 of its id.
#[derive(Debug)]
pub struct Sessions {
    clock: Clock,
    table: Mutex<HashMap<[u8; 32], Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    csrf: String,
    created_ms: i64,
    seen_ms: i64,
}

/// A live session, as a handler sees it.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    /// The id its cookie carries (kept to end the session at logout).
    pub id: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

/// A new session: the id for the cookie (shown once, never stored) and its CSRF token.
#[derive(Debug)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
}

impl Sessions {
    pub fn new(clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            clock,
            table: Mutex::new(HashMap::new()),
        })
    }

    pub fn start(&self) -> NewSession {
        let now = self.clock.now_ms();
        let session = NewSession {
            id: random_token(),
            csrf: random_token(),
        };
        let mut table = self.lock();
        table.retain(|_, e| live(e, now));
        if table.len() >= MAX_SESSIONS {
            let oldest = table
                .iter()
                .min_by_key(|(_, e)| e.created_ms)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
        table.insert(
            digest(&session.id),
            Entry {
                csrf: session.csrf.clone(),
                created_ms: now,
                seen_ms: now,
            },
        );
        session
    }

    /// The live session with this id, its idle timer restarted.
    pub fn touch(&self, id: &str) -> Option<ConsoleSession> {
        let now = self.clock.now_ms();
        let key = digest(id);
        let mut table = self.lock();
        match table.get_mut(&key) {
            Some(e) if live(e, now) => {
                e.seen_ms = now;
                Some(ConsoleSession {
                    id: id.to_owned(),
                    csrf: e.csrf.clone(),
                })
            }
            Some(_) => {
                table.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        // A panic while holding the lock leaves the table consistent (every write is one call).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn live(e: &Entry, now: i64) -> bool {
    now - e.seen_ms < ms(IDLE) && now - e.created_ms < ms(LIFETIME)
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 bytes from the OS's generator, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Constant-time comparison of a presented token with the expected one; an empty expected token
/// never matches.
pub fn tokens_match(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// A `Set-Cookie` value for the console: `HttpOnly`, `SameSite=Strict`, scoped to `path`;
/// `Secure` when the request came over HTTPS through a proxy that says so.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{secure}")
}

/// Whether the browser reached us over HTTPS (a TLS-terminating proxy's `X-Forwarded-Proto`).
pub fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

impl FromRequestParts<ConsoleState> for ConsoleSession {
    type Rejection = Response;

    /// Without a live session a page is a redirect to the login form; any other request is
    /// refused (403) and does nothing.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let session =
            cookie(&parts.headers, SESSION_COOKIE).and_then(|id| state.sessions.touch(id));
        match session {
            Some(session) => Ok(session),
            None if parts.method == Method::GET || parts.method == Method::HEAD => {
                Err(Redirect::to(super::LOGIN_PATH).into_response())
            }
            None => Err(ConsoleError::Forbidden(
                "You are not logged in, or your session has expired. Log in again.",
            )
            .into_response()),
        }
    }
}

/// A form POSTed from a live session with that session's CSRF token. The only way a handler
/// gets at a console form's fields.
#[derive(Debug)]
pub struct ConsoleForm {
    pub session: ConsoleSession,
    pub fields: FormFields,
}

impl FromRequest<ConsoleState> for ConsoleForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let session = ConsoleSession::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                ConsoleError::BadRequest("the form is too large".into()).into_response()
            })?;
        let fields = FormFields::parse(&bytes);
        if !tokens_match(&session.csrf, fields.first("csrf").unwrap_or_default()) {
            return Err(ConsoleError::Forbidden(
                "The form's security token is missing or wrong. Reload the page and try again.",
            )
            .into_response());
        }
        Ok(Self { session, fields })
    }
}

/// The fields of an `application/x-www-form-urlencoded` body, repeated names kept (checkboxes).
#[derive(Debug, Default)]
pub struct FormFields(Vec<(String, String)>);

impl FormFields {
    pub fn parse(body: &Bytes) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old_and_end_at_logout() {
        let clock = Clock::manual(1_000_000);
        let sessions = Sessions::new(clock.clone());
        let s = sessions.start();
        assert_eq!(s.id.len(), 64);
        assert_ne!(s.id, s.csrf);
        assert_eq!(sessions.touch(&s.id).unwrap().csrf, s.csrf);
        assert!(sessions.touch("not-a-session").is_none());

        clock.advance(IDLE - std::time::Duration::from_secs(1));
        assert!(sessions.touch(&s.id).is_some(), "used within the idle time");
        clock.advance(IDLE);
        assert!(sessions.touch(&s.id).is_none(), "idle too long");

        let s = sessions.start();
        for _ in 0..=(LIFETIME.as_secs() / IDLE.as_secs()) {
            clock.advance(IDLE - std::time::Duration::from_secs(1));
            sessions.touch(&s.id);
        }
        assert!(sessions.touch(&s.id).is_none(), "past its lifetime");

        let s = sessions.start();
        sessions.end(&s.id);
        assert!(sessions.touch(&s.id).is_none(), "logged out");
    }

    #[test]
    fn the_table_is_bounded_by_evicting_the_oldest() {
        let clock = Clock::manual(0);
        let sessions = Sessions::new(clock.clone());
        let first = sessions.start();
        for _ in 1..MAX_SESSIONS {
            clock.advance(std::time::Duration::from_millis(1));
            sessions.start();
        }
        assert!(sessions.touch(&first.id).is_some());
        sessions.start();
        assert!(sessions.touch(&first.id).is_none(), "the oldest made room");
    }

    #[test]
    fn tokens_and_cookies() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", ""));
        assert!(!tokens_match("", ""), "an empty token never matches");
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; replyd_console=xyz".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "replyd"), None);
        let set = set_cookie(SESSION_COOKIE, "xyz", "/console", 60, false);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(!set.contains("Secure"));
        assert!(set_cookie(SESSION_COOKIE, "x", "/", 1, true).ends_with("; Secure"));
    }

    #[test]
    fn form_fields_keep_repeated_names() {
        let fields = FormFields::parse(&Bytes::from_static(b"id=1&id=2&csrf=t&by=Ana+P%C3%A9rez"));
        assert_eq!(fields.all("id").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(fields.first("by"), Some("Ana Pérez"));
        assert_eq!(fields.first("none"), None);
    }
}
