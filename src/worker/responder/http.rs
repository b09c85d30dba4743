//! The HTTP responder: asks the business's own bot what to answer.
//!
//! Contract with the bot. replyd sends `POST {url}` with the [`ResponderInput`] as JSON and
//! two headers: `X-Replyd-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>` (check it over
//! the raw body, see [`sign`]) and `X-Replyd-Message-Id: <wamid>`. The same message may be asked
//! about again after a retry or a crash, so a bot with side effects keys them on that id.
//!
//! | the bot answers | decision |
//! |---|---|
//! | 200 `{"action":"reply","text":"…"}` or `{"reply":"…"}` | reply with the text (1–4096 characters) |
//! | 200 `{"action":"no_reply"}`, or 204 | stay silent |
//! | 200 `{"action":"escalate","reason":"…"}` | hand the conversation to a person |
//! | 408, 429, 5xx, no answer within `timeout`, connection failure | [`ResponderError::Retryable`]: asked again later |
//! | another status, a redirect (never followed), malformed JSON, an unknown action, an empty or too long text | [`ResponderError::Permanent`]: dead letter |
//!
//! Errors never carry the URL (it may hold a token) and quote at most a short excerpt of what
//! the bot said.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use reqwest::{StatusCode, Url, header};
use serde::Deserialize;
use sha2::Sha256;
use tracing::Instrument;

use super::{Decision, Responder, ResponderError, ResponderInput, check_reply_text};
use crate::secret::{Secret, redact_to_origin};

pub const SIGNATURE_HEADER: &str = "x-replyd-signature-256";
pub const MESSAGE_ID_HEADER: &str = "x-replyd-message-id";

/// A bot's answer is a few hundred bytes; anything past this is refused unread.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const MAX_REASON_CHARS: usize = 500;
const EXCERPT_CHARS: usize = 200;

type UrlError = <Url as std::str::FromStr>::Err;

/// The `X-Replyd-Signature-256` value for `body`: `sha256=<lowercase hex HMAC-SHA256>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why an HTTP responder cannot be set up from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupProblem {
    #[error("`url` is not a valid URL: {0}")]
    BadUrl(#[source] UrlError),
    #[error("`url` must use http or https, not {0:?}")]
    UnsupportedScheme(String),
    #[error("`secret` is empty: the bot could not tell replyd's calls from anyone else's")]
    EmptySecret,
    #[error("`timeout` must be longer than zero")]
    ZeroTimeout,
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Asks a bot over HTTP; see the module documentation for the contract. `Debug` shows only
/// the URL's origin.
pub struct HttpResponder {
    client: reqwest::Client,
    url: Url,
    secret: Secret,
    timeout: Duration,
}

impl std::fmt::Debug for HttpResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpResponder")
            .field("url", &redact_to_origin(&self.url))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A bot on this machine is reached without crossing a network.
fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some(host) => {
            host.eq_ignore_ascii_case("localhost")
                || host == "[::1]"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

impl HttpResponder {
    pub fn new(url: &str, secret: Secret, timeout: Duration) -> Result<Self, HttpSetupProblem> {
        let url = Url::parse(url).map_err(HttpSetupProblem::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpSetupProblem::UnsupportedScheme(url.scheme().to_owned()));
        }
        if secret.expose().is_empty() {
            return Err(HttpSetupProblem::EmptySecret);
        }
        if timeout.is_zero() {
            return Err(HttpSetupProblem::ZeroTimeout);
        }
        if url.scheme() == "http" && !is_loopback(&url) {
            tracing::warn!(
                url = %redact_to_origin(&url),
                "the http responder's URL is plain http: messages and the signature travel unencrypted; use https"
            );
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A redirected POST may turn into a GET or reach another host; the bot's URL is
            // configured, so a redirect is a configuration mistake to surface, not to follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("replyd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpSetupProblem::Client)?;
        Ok(Self {
            client,
            url,
            secret,
            timeout,
        })
    }

    async fn ask(&self, input: &ResponderInput) -> Result<Decision, ResponderError> {
        let body = serde_json::to_vec(input)
            .map_err(|e| ResponderError::Permanent(format!("cannot encode the request: {e}")))?;
        let started = Instant::now();
        let response = self
            .client
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                sign(self.secret.expose().as_bytes(), &body),
            )
            .header(MESSAGE_ID_HEADER, &input.message_id)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let (answer, truncated) = read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| self.transport_error(e))?;
        tracing::debug!(
            http.status = status.as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "bot answered"
        );
        decision_from(status, &answer, truncated)
    }

    fn transport_error(&self, err: reqwest::Error) -> ResponderError {
        if err.is_timeout() {
            let timeout = humantime::format_duration(self.timeout);
            return ResponderError::Retryable(format!("the bot did not answer within {timeout}"));
        }
        let permanent = err.is_builder();
        let err = err.without_url();
        let mut detail = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            detail = format!("{detail}: {cause}");
            source = cause.source();
        }
        if permanent {
            ResponderError::Permanent(format!("cannot build the request: {detail}"))
        } else {
            ResponderError::Retryable(format!("cannot reach the bot: {detail}"))
        }
    }
}

impl Responder for HttpResponder {
    fn decide<'a>(
        &'a self,
        input: &'a ResponderInput,
    ) -> BoxFuture<'a, Result<Decision, ResponderError>> {
        let span = tracing::debug_span!("responder.http", message.id = %input.message_id);
        self.ask(input).instrument(span).boxed()
    }
}

/// Reads at most `limit` bytes of the body; `true` when there was more.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

fn decision_from(
    status: StatusCode,
    body: &[u8],
    truncated: bool,
) -> Result<Decision, ResponderError> {
    if status == StatusCode::NO_CONTENT {
        return Ok(Decision::NoReply);
    }
    if status.is_success() {
        if truncated {
            let kib = MAX_ANSWER_BYTES / 1024;
            return Err(ResponderError::Permanent(format!(
                "the bot's answer is larger than {kib} KiB"
            )));
        }
        return parse_answer(body);
    }
    let said = excerpt(&String::from_utf8_lossy(body));
    let said = if said.is_empty() {
        String::new()
    } else {
        format!(": {said}")
    };
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(ResponderError::Retryable(format!(
            "the bot answered {status}{said}"
        )))
    } else if status.is_redirection() {
        Err(ResponderError::Permanent(format!(
            "the bot answered {status}; redirects are not followed, configure the final URL"
        )))
    } else {
        Err(ResponderError::Permanent(format!(
            "the bot answered {status}{said}"
        )))
    }
}

/// The answer's fields, all optional, so that each mistake gets its own message.
#[derive(Deserialize)]
struct Answer {
    action: Option<String>,
    text: Option<String>,
    reply: Option<String>,
    reason: Option<String>,
}

fn parse_answer(body: &[u8]) -> Result<Decision, ResponderError> {
    let permanent = |what: String| ResponderError::Permanent(format!("the bot's answer {what}"));
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| permanent(format!("is not the expected JSON object: {e}")))?;
    let reply = |text: Option<String>| {
        let text = text.ok_or_else(|| permanent("has action \"reply\" but no `text`".into()))?;
        match check_reply_text(&text) {
            Ok(text) => Ok(Decision::Reply(text.to_owned())),
            Err(problem) => Err(permanent(format!("has a reply text that {problem}"))),
        }
    };
    match answer.action.as_deref() {
        Some("reply") => reply(answer.text.or(answer.reply)),
        Some("no_reply") => Ok(Decision::NoReply),
        Some("escalate") => {
            let reason = answer.reason.as_deref().map(str::trim).unwrap_or_default();
            let reason = match reason {
                "" => "escalated by the bot".to_owned(),
                reason => reason.chars().take(MAX_REASON_CHARS).collect(),
            };
            Ok(Decision::Escalate { reason })
        }
        Some(other) => Err(permanent(format!(
            "has an unknown action {:?}",
            excerpt(other)
        ))),
        None if answer.reply.is_some() => reply(answer.reply),
        None => Err(permanent("has neither `action` nor `reply`".into())),
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
