//! The HTTP responder against a real bot on 127.0.0.1.

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
        "escalate" => axum::Json(json!({"action": "escalate", "reason": "angry"})).into_response(),
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

#[test]
fn debug_shows_only_the_origin_of_the_url() {
    let responder = HttpResponder::new(
        "https://bot.example:8443/hooks/TOKEN123?key=abc",
        Secret::new(SECRET),
        Duration::from_secs(1),
    )
    .unwrap();
    let shown = format!("{responder:?}");
    assert!(shown.contains("https://bot.example:8443/"), "{shown}");
    for hidden in ["TOKEN123", "abc", SECRET] {
        assert!(!shown.contains(hidden), "{shown}");
    }
}

#[test]
fn only_remote_plain_http_is_worth_a_warning() {
    for (url, loopback) in [
        ("http://127.0.0.1:9/x", true),
        ("http://localhost/x", true),
        ("http://[::1]:8080/x", true),
        ("http://bot.example/x", false),
        ("http://10.0.0.1/x", false),
    ] {
        assert_eq!(is_loopback(&Url::parse(url).unwrap()), loopback, "{url}");
    }
}
