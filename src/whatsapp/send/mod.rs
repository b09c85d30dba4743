//! The Cloud API send client: one text reply per call, every failure a [`SendError`] that knows
//! its [`FailureClass`].
//!
//! The send API has no idempotency key, so the distinction that matters most is whether a failed
//! request could have gone out: [`SendError::NotSent`] (connect, DNS, TLS — safe to retry) versus
//! [`SendError::Unknown`] (timed out or cut off after the request was written — the message may
//! have been sent, and the caller must treat it as ambiguous). Redirects are never followed, so
//! the client itself never replays a POST. Bodies and recipients are never logged.

mod answer;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::RETRY_AFTER;
use reqwest::{RequestBuilder, Url};
use serde_json::{Value, json};
use tracing::field::Empty;

use super::errors::{FailureClass, RetryHint, classify_code, classify_http_status};
use answer::{parse_accepted, parse_error_body, parse_retry_after};

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

#[cfg(test)]
mod tests;
