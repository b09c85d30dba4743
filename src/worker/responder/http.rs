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
use crate::secret::Secret;

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

/// Asks a bot over HTTP; see the module documentation for the contract.
#[derive(Debug)]
pub struct HttpResponder {
    client: reqwest::Client,
    url: Url,
    secret: Secret,
    timeout: Duration,
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
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{Path, State};
    use axum::http::HeaderMap;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use serde_json::json;

    use super::super::{MAX_REPLY_CHARS, sample_input};
    use super::*;

    const SECRET: &str = "bot-secret";

    /// What the bot received, header values and raw body.
    #[derive(Debug, Clone)]
    struct Seen {
        signature: Option<String>,
        message_id: Option<String>,
        content_type: Option<String>,
        body: Bytes,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// A real bot on 127.0.0.1:0 that answers according to the last path segment.
    async fn start_bot() -> (String, Log) {
        let log = Log::default();
        let app = Router::new()
            .route("/{case}", post(answer))
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), log)
    }

    async fn answer(
        State(log): State<Log>,
        Path(case): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let header = |name: &str| Some(headers.get(name)?.to_str().ok()?.to_owned());
        log.lock().unwrap().push(Seen {
            signature: header(SIGNATURE_HEADER),
            message_id: header(MESSAGE_ID_HEADER),
            content_type: header("content-type"),
            body,
        });
        let long = "x".repeat(MAX_REPLY_CHARS + 1);
        match case.as_str() {
            "reply" => axum::Json(json!({"action": "reply", "text": " Hi Ana! "})).into_response(),
            "shorthand" => axum::Json(json!({"reply": "Short"})).into_response(),
            "no_reply" => axum::Json(json!({"action": "no_reply"})).into_response(),
            "no_content" => StatusCode::NO_CONTENT.into_response(),
            "escalate" => {
                axum::Json(json!({"action": "escalate", "reason": "angry"})).into_response()
            }
            "escalate_bare" => axum::Json(json!({"action": "escalate"})).into_response(),
            "server_error" => (StatusCode::INTERNAL_SERVER_ERROR, "db down").into_response(),
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
            "too_many" => StatusCode::TOO_MANY_REQUESTS.into_response(),
            "bad_request" => (StatusCode::BAD_REQUEST, "missing field").into_response(),
            "not_found" => StatusCode::NOT_FOUND.into_response(),
            "redirect" => (StatusCode::FOUND, [("location", "/reply")]).into_response(),
            "malformed" => (StatusCode::OK, "{\"action\": \"reply\", ").into_response(),
            "not_object" => axum::Json(json!(["reply"])).into_response(),
            "unknown_action" => axum::Json(json!({"action": "shout"})).into_response(),
            "no_action" => axum::Json(json!({"text": "hi"})).into_response(),
            "reply_without_text" => axum::Json(json!({"action": "reply"})).into_response(),
            "empty_text" => axum::Json(json!({"action": "reply", "text": "  "})).into_response(),
            "long_text" => axum::Json(json!({"action": "reply", "text": long})).into_response(),
            "huge" => (StatusCode::OK, " ".repeat(MAX_ANSWER_BYTES + 1)).into_response(),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                axum::Json(json!({"reply": "too late"})).into_response()
            }
            _ => StatusCode::IM_A_TEAPOT.into_response(),
        }
    }

    fn responder(base: &str, case: &str, timeout: Duration) -> HttpResponder {
        HttpResponder::new(&format!("{base}/{case}"), Secret::new(SECRET), timeout).unwrap()
    }

    async fn ask(base: &str, case: &str) -> Result<Decision, ResponderError> {
        let input = sample_input("text", Some("hola"));
        responder(base, case, Duration::from_secs(5))
            .decide(&input)
            .await
    }

    #[tokio::test]
    async fn bot_receives_the_input_as_signed_json() {
        let (base, log) = start_bot().await;
        let input = sample_input("text", Some("¿hola? ñ"));
        let r = responder(&base, "reply", Duration::from_secs(5));
        assert_eq!(
            r.decide(&input).await.unwrap(),
            Decision::Reply("Hi Ana!".into())
        );

        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(
            seen.signature.as_deref(),
            Some(sign(SECRET.as_bytes(), &seen.body).as_str())
        );
        assert_ne!(seen.signature, Some(sign(b"other", &seen.body)));
        assert_eq!(seen.message_id.as_deref(), Some("wamid.TEST1"));
        assert_eq!(seen.content_type.as_deref(), Some("application/json"));
        let received: ResponderInput = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(received, input);
        let raw: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(raw["history"][0]["direction"], "inbound");
        assert_eq!(raw["wa_id"], "5215512345678");
    }

    #[tokio::test]
    async fn each_answer_shape_maps_to_its_decision() {
        let (base, _) = start_bot().await;
        let escalate = |reason: &str| Decision::Escalate {
            reason: reason.into(),
        };
        let cases = [
            ("shorthand", Decision::Reply("Short".into())),
            ("no_reply", Decision::NoReply),
            ("no_content", Decision::NoReply),
            ("escalate", escalate("angry")),
            ("escalate_bare", escalate("escalated by the bot")),
        ];
        for (case, expected) in cases {
            assert_eq!(ask(&base, case).await.unwrap(), expected, "{case}");
        }
    }

    #[tokio::test]
    async fn server_errors_and_throttling_are_retryable() {
        let (base, _) = start_bot().await;
        for case in ["server_error", "unavailable", "too_many"] {
            let err = ask(&base, case).await.unwrap_err();
            assert!(matches!(err, ResponderError::Retryable(_)), "{case}: {err}");
        }
        let err = ask(&base, "server_error").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("500 Internal Server Error: db down"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn refusals_and_unreadable_answers_are_permanent() {
        let (base, _) = start_bot().await;
        let cases = [
            ("bad_request", "400 Bad Request: missing field"),
            ("not_found", "404"),
            ("redirect", "redirects are not followed"),
            ("malformed", "not the expected JSON"),
            ("not_object", "not the expected JSON"),
            ("unknown_action", "unknown action \"shout\""),
            ("no_action", "neither `action` nor `reply`"),
            ("reply_without_text", "no `text`"),
            ("empty_text", "is empty"),
            ("long_text", "4097 characters"),
            ("huge", "larger than 64 KiB"),
        ];
        for (case, expected) in cases {
            match ask(&base, case).await {
                Err(ResponderError::Permanent(why)) => {
                    assert!(why.contains(expected), "{case}: {why}")
                }
                other => panic!("{case}: expected a permanent error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_slow_bot_or_no_bot_at_all_is_retryable() {
        let (base, _) = start_bot().await;
        let input = sample_input("text", Some("hola"));
        let started = Instant::now();
        let err = (responder(&base, "slow", Duration::from_millis(200)).decide(&input))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(&err, ResponderError::Retryable(why) if why.contains("200ms")),
            "{err}"
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = ask(&closed, "reply").await.unwrap_err();
        assert!(matches!(&err, ResponderError::Retryable(_)), "{err}");
        assert!(
            !err.to_string().contains("127.0.0.1"),
            "no URL in errors: {err}"
        );
    }

    #[test]
    fn sign_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
