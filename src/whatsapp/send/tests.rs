//! The send client against tiny local servers: request shape, URLs, errors per answer.

use super::*;
use crate::whatsapp::errors::RetryHint::*;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

fn reply() -> TextReply<'static> {
    TextReply {
        phone_number_id: "1001",
        to: "+15550001111",
        body: "hello",
        context_message_id: "wamid.IN",
        callback_data: "ledger-1",
    }
}

#[test]
fn text_body_has_the_documented_shape_and_omits_empty_optionals() {
    let expected = json!({
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+15550001111",
        "type": "text", "text": { "body": "hello", "preview_url": false },
        "context": { "message_id": "wamid.IN" }, "biz_opaque_callback_data": "ledger-1",
    });
    assert_eq!(text_body(&reply()), expected);
    let bare = TextReply {
        context_message_id: "",
        callback_data: "",
        ..reply()
    };
    let body = text_body(&bare);
    assert!(body.get("context").is_none() && body.get("biz_opaque_callback_data").is_none());
    // A user known only by a business-scoped user id is addressed with `recipient`.
    let by_user_id = TextReply {
        to: "US.13491208655302741918",
        ..reply()
    };
    let body = text_body(&by_user_id);
    assert_eq!(body["recipient"], "US.13491208655302741918");
    assert!(body.get("to").is_none());
}

#[test]
fn urls_tolerate_a_trailing_slash_and_escape_segments() {
    for base in ["http://h/v25.0", "http://h/v25.0/"] {
        let client = CloudClient::new(base, Duration::from_secs(1));
        let url = client.url(&["1001", "messages"]).unwrap();
        assert_eq!(url.as_str(), "http://h/v25.0/1001/messages");
    }
    let client = CloudClient::new("http://h/v25.0", Duration::from_secs(1));
    assert_eq!(
        client.url(&["a/b?c"]).unwrap().as_str(),
        "http://h/v25.0/a%2Fb%3Fc"
    );
    let broken = CloudClient::new("not a url", Duration::from_secs(1));
    assert!(matches!(broken.url(&["1"]), Err(SendError::NotSent(_))));
}

#[test]
fn classes_and_labels_per_variant() {
    let api = |http_status, code| SendError::Api {
        provider: Provider::Cloud,
        http_status,
        code,
        title: None,
        details: None,
        retry_after: None,
    };
    let cases = [
        (
            SendError::NotSent("x".into()),
            FailureClass::Retryable(Normal),
            "transport",
        ),
        (
            SendError::Unknown("x".into()),
            FailureClass::Retryable(Normal),
            "timeout",
        ),
        (
            SendError::BadResponse("x".into()),
            FailureClass::Retryable(Limited),
            "bad_response",
        ),
        (
            api(400, Some(131026)),
            FailureClass::Permanent,
            "cloud_api_131026",
        ),
        // The code wins over the HTTP status: throttling often arrives as 400.
        (
            api(400, Some(130429)),
            FailureClass::Retryable(Throughput),
            "cloud_api_130429",
        ),
        (
            api(503, None),
            FailureClass::Retryable(ServiceUnavailable),
            "http_503",
        ),
        (api(401, None), FailureClass::HaltSender, "http_401"),
    ];
    for (error, class, label) in cases {
        assert_eq!(
            (error.class(), error.code_label().as_str()),
            (class, label),
            "{error}"
        );
    }
    let shown = SendError::Api {
        provider: Provider::Cloud,
        http_status: 400,
        code: Some(100),
        title: Some("Invalid parameter".into()),
        details: Some("text.body too long".into()),
        retry_after: None,
    };
    assert_eq!(
        shown.to_string(),
        "Cloud API answered HTTP 400, error 100: Invalid parameter (text.body too long)"
    );
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/v25.0/")
}

#[tokio::test]
async fn a_refused_connection_is_not_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = CloudClient::new(&format!("http://{addr}/v25.0"), Duration::from_secs(2));
    let error = client.send_text("t", &reply()).await.unwrap_err();
    assert!(matches!(error, SendError::NotSent(_)), "{error:?}");
    assert!(matches!(
        client.probe("t", "1").await,
        Err(SendError::NotSent(_))
    ));
}

#[tokio::test]
async fn answers_map_to_errors() {
    let router = Router::new()
        .route(
            "/v25.0/shape/messages",
            post(|| async { r#"{"messaging_product":"whatsapp"}"# }),
        )
        .route(
            "/v25.0/slow/messages",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route(
            "/v25.0/pair/messages",
            post(|| async {
                let mut headers = HeaderMap::new();
                headers.insert(
                    "retry-after",
                    "Fri, 01 Jan 2100 00:00:00 GMT".parse().unwrap(),
                );
                let body = r#"{"error":{"message":"(#131056) Pair rate limit hit","code":131056}}"#;
                (StatusCode::TOO_MANY_REQUESTS, headers, body)
            }),
        )
        .route(
            "/v25.0/proxy/messages",
            post(|| async { (StatusCode::BAD_GATEWAY, "<html/>") }),
        );
    let client = CloudClient::new(&serve(router).await, Duration::from_millis(300));
    let to = |phone_number_id| TextReply {
        phone_number_id,
        ..reply()
    };

    let error = client.send_text("t", &to("shape")).await.unwrap_err();
    assert!(matches!(error, SendError::BadResponse(_)), "{error:?}");
    let error = client.send_text("t", &to("slow")).await.unwrap_err();
    assert!(matches!(error, SendError::Unknown(_)), "{error:?}");
    let error = client.send_text("t", &to("pair")).await.unwrap_err();
    assert_eq!(error.class(), FailureClass::Retryable(PairRateLimit));
    assert!(error.retry_after().unwrap() > Duration::from_secs(365 * 86_400));
    let error = client.send_text("t", &to("proxy")).await.unwrap_err();
    assert_eq!(
        (error.code_label().as_str(), error.class()),
        ("http_502", FailureClass::Retryable(Normal))
    );
}

#[test]
fn mark_read_body_adds_the_typing_indicator_only_when_asked() {
    assert_eq!(
        mark_read_body("wamid.IN", false),
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN"})
    );
    assert_eq!(
        mark_read_body("wamid.IN", true),
        json!({"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN",
               "typing_indicator": {"type": "text"}})
    );
}

#[tokio::test]
async fn gateway_transport_failures_and_odd_successes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let refused = WasenderClient::new(&format!("http://{addr}"), Duration::from_secs(2));
    let error = refused.send_text("k", "+1", "hi").await.unwrap_err();
    assert!(matches!(error, SendError::NotSent(_)), "{error:?}");
    assert!(error.to_string().contains("WASender gateway"), "{error}");
    assert!(matches!(
        refused.probe("k").await,
        Err(SendError::NotSent(_))
    ));

    let router = Router::new()
        .route(
            "/a/api/send-message",
            post(|| async { r#"{"success":false,"message":"queued nothing"}"# }),
        )
        .route(
            "/b/api/send-message",
            post(|| async { r#"{"success":true,"data":{"status":"in_progress"}}"# }),
        );
    let root = serve(router).await.replace("/v25.0/", "");
    for prefix in ["a", "b"] {
        let client = WasenderClient::new(&format!("{root}/{prefix}"), Duration::from_secs(2));
        let error = client.send_text("k", "+1", "hi").await.unwrap_err();
        assert!(matches!(error, SendError::BadResponse(_)), "{error:?}");
        assert_eq!(error.class(), FailureClass::Retryable(Limited));
    }
}
