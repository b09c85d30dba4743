//! The Cloud API send client: one text reply per call, every failure a [`SendError`] that knows
//! its [`FailureClass`].
//!
//! The send API has no idempotency key, so the distinction that matters most is whether a failed
//! request could have gone out: [`SendError::NotSent`] (connect, DNS, TLS — safe to retry) versus
//! [`SendError::Unknown`] (timed out or cut off after the request was written — the message may
//! have been sent, and the caller must treat it as ambiguous). Redirects are never followed, so
//! the client itself never replays a POST. Bodies and recipients are never logged.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Url};
use serde_json::{Value, json};
use tracing::field::Empty;

use super::errors::{FailureClass, RetryHint, classify_code, classify_http_status};

/// A connect gets at most half the request budget (and never more than this), so a slow connect
/// is reported by the connector as `NotSent` rather than by the overall timeout as ambiguous.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct CloudClient {
    http: reqwest::Client,
    /// With the API version and without a trailing slash, e.g. `https://graph.facebook.com/v25.0`.
    base_url: String,
}

/// A free-form text reply quoting the inbound message it answers.
#[derive(Debug, Clone, Copy)]
pub struct TextReply<'a> {
    pub phone_number_id: &'a str,
    /// The user's number (E.164; Meta prepends the business number's country code without `+`).
    pub to: &'a str,
    pub body: &'a str,
    /// The inbound wamid being answered; empty = no quote.
    pub context_message_id: &'a str,
    /// Echoed on status webhooks as `biz_opaque_callback_data`; empty = none.
    pub callback_data: &'a str,
}

/// The API took the message: accepted, not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `messages[0].id`, the outbound wamid that status webhooks will carry.
    pub message_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request never reached the server (connect failure, DNS): safe to retry.
    #[error("request not sent: {0}")]
    NotSent(String),
    /// Sent, but no answer came back (timeout, connection reset mid-response): the message MAY
    /// have been sent.
    #[error("no answer from the Cloud API, the message may have been sent: {0}")]
    Unknown(String),
    /// The API answered with an error.
    #[error("Cloud API answered HTTP {http_status}{}", api_suffix(.code, .title, .details))]
    Api {
        http_status: u16,
        code: Option<i64>,
        title: Option<String>,
        details: Option<String>,
        retry_after: Option<Duration>,
    },
    /// 2xx but the body was not the documented success shape (no `messages[0].id`).
    #[error("Cloud API accepted the request but its answer was not understood: {0}")]
    BadResponse(String),
}

impl SendError {
    /// `Unknown` is retryable only in the sense that nothing says it failed for good: the caller
    /// must first settle whether it was sent (status webhook evidence) before sending again.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::NotSent(_) | Self::Unknown(_) => FailureClass::Retryable(RetryHint::Normal),
            Self::Api {
                code: Some(code), ..
            } => classify_code(*code),
            Self::Api { http_status, .. } => classify_http_status(*http_status),
            Self::BadResponse(_) => FailureClass::Retryable(RetryHint::Limited),
        }
    }

    /// Short stable label for dead letters and metrics: `cloud_api_131026`, `http_503`,
    /// `transport` (not sent), `timeout` (sent, no answer), `bad_response`.
    pub fn code_label(&self) -> String {
        match self {
            Self::NotSent(_) => "transport".into(),
            Self::Unknown(_) => "timeout".into(),
            Self::Api {
                code: Some(code), ..
            } => format!("cloud_api_{code}"),
            Self::Api { http_status, .. } => format!("http_{http_status}"),
            Self::BadResponse(_) => "bad_response".into(),
        }
    }

    /// How long the API asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn api_suffix(code: &Option<i64>, title: &Option<String>, details: &Option<String>) -> String {
    let mut out = String::new();
    if let Some(code) = code {
        out.push_str(&format!(", error {code}"));
    }
    if let Some(title) = title {
        out.push_str(&format!(": {title}"));
    }
    if let Some(details) = details.as_deref().filter(|d| Some(*d) != title.as_deref()) {
        out.push_str(&format!(" ({details})"));
    }
    out
}

impl CloudClient {
    /// `base_url` includes the version, e.g. `https://graph.facebook.com/v25.0`; a trailing slash
    /// is tolerated. `timeout` bounds each call from connect to the last byte of the answer.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout((timeout / 2).min(MAX_CONNECT_TIMEOUT))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("replyd/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building a rustls HTTP client does not fail");
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// POST `{base}/{phone_number_id}/messages` with the reply as a `text` message.
    #[tracing::instrument(
        name = "cloud_api.send_text",
        skip_all,
        fields(
            phone_number_id = %req.phone_number_id,
            message.id = %req.context_message_id,
            http_status = Empty,
            duration_ms = Empty,
            fbtrace_id = Empty,
        )
    )]
    pub async fn send_text(&self, token: &str, req: &TextReply<'_>) -> Result<Accepted, SendError> {
        let url = self.url(&[req.phone_number_id, "messages"])?;
        let request = self.http.post(url).bearer_auth(token).json(&text_body(req));
        let body = self.exchange(request).await?;
        let accepted = parse_accepted(&body)?;
        tracing::debug!(outbound.id = %accepted.message_id, "reply accepted");
        Ok(accepted)
    }

    /// A cheap authenticated call used to probe whether a halted number can send again:
    /// GET `{base}/{phone_number_id}?fields=id` → `Ok(())` on 2xx.
    #[tracing::instrument(
        name = "cloud_api.probe",
        skip_all,
        fields(phone_number_id = %phone_number_id, http_status = Empty, duration_ms = Empty, fbtrace_id = Empty)
    )]
    pub async fn probe(&self, token: &str, phone_number_id: &str) -> Result<(), SendError> {
        let mut url = self.url(&[phone_number_id])?;
        url.query_pairs_mut().append_pair("fields", "id");
        self.exchange(self.http.get(url).bearer_auth(token))
            .await
            .map(drop)
    }

    fn url(&self, segments: &[&str]) -> Result<Url, SendError> {
        let invalid = || SendError::NotSent(format!("invalid Graph base URL {:?}", self.base_url));
        let mut url = Url::parse(&self.base_url).map_err(|_| invalid())?;
        url.path_segments_mut()
            .map_err(|()| invalid())?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends, reads the whole answer, and turns anything but a 2xx into [`SendError::Api`].
    async fn exchange(&self, request: RequestBuilder) -> Result<Bytes, SendError> {
        let span = tracing::Span::current();
        let started = Instant::now();
        let response = request.send().await.map_err(transport_error);
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        let response = response?;
        let status = response.status();
        span.record("http_status", status.as_u16());
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await;
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        if status.is_success() {
            // The API answered 2xx, so the message was accepted even if the rest was lost.
            return body.map_err(|e| SendError::Unknown(error_chain(&e)));
        }
        let parsed = body.map(|b| parse_error_body(&b)).unwrap_or_default();
        if let Some(trace) = &parsed.fbtrace_id {
            span.record("fbtrace_id", trace.as_str());
        }
        Err(SendError::Api {
            http_status: status.as_u16(),
            code: parsed.code,
            title: parsed.title,
            details: parsed.details,
            retry_after,
        })
    }
}

fn text_body(req: &TextReply<'_>) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": req.to,
        "type": "text",
        "text": { "body": req.body, "preview_url": false },
    });
    if !req.context_message_id.is_empty() {
        body["context"] = json!({ "message_id": req.context_message_id });
    }
    if !req.callback_data.is_empty() {
        body["biz_opaque_callback_data"] = json!(req.callback_data);
    }
    body
}

/// Connect-phase failures (including the connect timeout) never wrote the request; anything
/// later, the overall timeout included, may have.
fn transport_error(error: reqwest::Error) -> SendError {
    if error.is_connect() || error.is_builder() {
        SendError::NotSent(error_chain(&error))
    } else {
        SendError::Unknown(error_chain(&error))
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn parse_accepted(body: &[u8]) -> Result<Accepted, SendError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| SendError::BadResponse(format!("body is not JSON: {e}")))?;
    match value.pointer("/messages/0/id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(Accepted {
            message_id: id.to_owned(),
        }),
        // The body may list the recipient's number: describe it, never echo it.
        _ => Err(SendError::BadResponse(
            "no messages[0].id in the answer".into(),
        )),
    }
}

/// The useful parts of `{error:{message, type, code, error_subcode?, error_data:{details}, fbtrace_id}}`.
#[derive(Debug, Default, PartialEq, Eq)]
struct ApiErrorBody {
    code: Option<i64>,
    title: Option<String>,
    details: Option<String>,
    fbtrace_id: Option<String>,
}

fn parse_error_body(body: &[u8]) -> ApiErrorBody {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return ApiErrorBody::default();
    };
    let Some(error) = value.get("error") else {
        return ApiErrorBody::default();
    };
    let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
    let code = match error.get("code") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    // `message` reads "(#131026) Message undeliverable"; keep the title after the code.
    let title = text("message").or_else(|| text("title")).map(|message| {
        match message.strip_prefix("(#").and_then(|m| m.split_once(") ")) {
            Some((_, rest)) if !rest.is_empty() => rest.to_owned(),
            _ => message,
        }
    });
    let details = match error.get("error_data") {
        Some(Value::Object(data)) => data.get("details").and_then(Value::as_str),
        Some(Value::String(details)) => Some(details.as_str()),
        _ => None,
    };
    ApiErrorBody {
        code,
        title,
        details: details.map(str::to_owned),
        fbtrace_id: text("fbtrace_id"),
    }
}

/// `Retry-After` as delay-seconds or an IMF-fixdate; `None` when it is neither.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7). The obsolete forms are ignored.
fn parse_imf_fixdate(value: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = value.split_once(", ")?;
    let [day, month, year, time, "GMT"] = rest.split(' ').collect::<Vec<_>>()[..] else {
        return None;
    };
    let day: i64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let year: i64 = year.parse().ok().filter(|_| year.len() == 4)?;
    let [h, m, s] = time.split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    let field = |f: &str, max: i64| f.parse::<i64>().ok().filter(|v| (0..=max).contains(v));
    let (h, m, s) = (field(h, 23)?, field(m, 59)?, field(s, 60)?);
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
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
    fn error_bodies_are_read_for_code_title_details_and_trace() {
        let body = br#"{"error":{"message":"(#131026) Message undeliverable","type":"OAuthException",
            "code":131026,"error_data":{"messaging_product":"whatsapp","details":"Recipient cannot be reached"},
            "fbtrace_id":"AbC"}}"#;
        let parsed = parse_error_body(body);
        assert_eq!(parsed.code, Some(131026));
        assert_eq!(parsed.title.as_deref(), Some("Message undeliverable"));
        assert_eq!(
            parsed.details.as_deref(),
            Some("Recipient cannot be reached")
        );
        assert_eq!(parsed.fbtrace_id.as_deref(), Some("AbC"));
        let parsed = parse_error_body(br#"{"error":{"code":"190","message":"Token expired"}}"#);
        assert_eq!(
            (parsed.code, parsed.title.as_deref()),
            (Some(190), Some("Token expired"))
        );
        assert_eq!(
            parse_error_body(b"<html>bad gateway</html>"),
            ApiErrorBody::default()
        );
        assert_eq!(parse_error_body(br#"{"ok":true}"#), ApiErrorBody::default());
    }

    #[test]
    fn success_bodies_need_a_message_id() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.X"}]}"#;
        assert_eq!(parse_accepted(ok).unwrap().message_id, "wamid.X");
        for bad in [
            &br#"{"messages":[]}"#[..],
            br#"{"messages":[{"id":""}]}"#,
            b"nope",
        ] {
            assert!(matches!(
                parse_accepted(bad),
                Err(SendError::BadResponse(_))
            ));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let epoch_date = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(epoch_date)
        );
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let now = epoch_date - Duration::from_secs(30);
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(date, now), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after(date, now + Duration::from_secs(99)),
            Some(Duration::ZERO)
        );
        for junk in [
            "soon",
            "-1",
            "1.5",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "",
        ] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn classes_and_labels_per_variant() {
        let api = |http_status, code| SendError::Api {
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
                    let body =
                        r#"{"error":{"message":"(#131056) Pair rate limit hit","code":131056}}"#;
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
}
