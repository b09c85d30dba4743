//! The send clients: the Cloud API ([`CloudClient`]: text replies, read receipts) and the
//! WASender gateway ([`WasenderClient`]). One text reply per call, every failure a [`SendError`]
//! that knows its [`FailureClass`].
//!
//! Neither send API has an idempotency key, so the distinction that matters most is whether a
//! failed request could have gone out: [`SendError::NotSent`] (connect, DNS, TLS — safe to retry)
//! versus [`SendError::Unknown`] (timed out or cut off after the request was written — the
//! message may have been sent, and the caller must treat it as ambiguous). Redirects are never
//! followed, so a client itself never replays a POST. Bodies and recipients are never logged.

mod answer;
mod transport;
pub mod wasender;

use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};
use tracing::field::Empty;

use super::errors::{FailureClass, RetryHint, classify_code, classify_http_status};
use crate::domain::Provider;
use answer::{parse_accepted, parse_error_body, parse_mark_read};
pub use transport::upstream_name;
use transport::{Refusal, exchange, http_client};
pub use wasender::WasenderClient;

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
    /// The outbound id: the wamid (`messages[0].id`) that Cloud API status webhooks carry, or the
    /// WASender gateway's `data.msgId` (see [`wasender`] for how that ties to its statuses).
    pub message_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request never reached the server (connect failure, DNS): safe to retry.
    #[error("request not sent: {0}")]
    NotSent(String),
    /// Sent, but no answer came back (timeout, connection reset mid-response): the message MAY
    /// have been sent.
    #[error("no answer, the message may have been sent: {0}")]
    Unknown(String),
    /// The API answered with an error.
    #[error(
        "{} answered HTTP {http_status}{}",
        upstream_name(*.provider),
        api_suffix(.code, .title, .details)
    )]
    Api {
        /// Which service answered; only changes how the error reads.
        provider: Provider,
        http_status: u16,
        /// The Cloud API's `error.code`; the gateway has none.
        code: Option<i64>,
        title: Option<String>,
        details: Option<String>,
        retry_after: Option<Duration>,
    },
    /// 2xx but the body was not the documented success shape (no message id, `success:false`).
    #[error("the request was accepted but its answer was not understood: {0}")]
    BadResponse(String),
    /// Nothing is configured to send through this channel (a gateway session removed from the
    /// configuration): nothing was sent, and nothing may be sent anywhere else instead.
    #[error("no route: {0}")]
    NoRoute(String),
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
            // Held, not burnt: the channel's messages wait until it is configured again.
            Self::NoRoute(_) => FailureClass::HaltSender,
        }
    }

    /// The HTTP status the API answered with, when it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Api { http_status, .. } => Some(*http_status),
            _ => None,
        }
    }

    /// Short stable label for dead letters and metrics: `cloud_api_131026`, `http_503`,
    /// `transport` (not sent), `timeout` (sent, no answer), `bad_response`. Only the Cloud API
    /// answers with a code; the gateway's errors are labelled by HTTP status.
    pub fn code_label(&self) -> String {
        match self {
            Self::NotSent(_) => "transport".into(),
            Self::Unknown(_) => "timeout".into(),
            Self::Api {
                code: Some(code), ..
            } => format!("cloud_api_{code}"),
            Self::Api { http_status, .. } => format!("http_{http_status}"),
            Self::BadResponse(_) => "bad_response".into(),
            Self::NoRoute(_) => "no_route".into(),
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
        Self {
            http: http_client(timeout),
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
        let body = exchange(request, Provider::Cloud, cloud_error).await?;
        let accepted = parse_accepted(&body)?;
        tracing::debug!(outbound.id = %accepted.message_id, "reply accepted");
        Ok(accepted)
    }

    /// Marks an inbound message read (blue ticks), with the typing indicator when `typing`:
    /// POST `{base}/{phone_number_id}/messages` with `"status":"read"`. Meta shows the indicator
    /// until the reply arrives or for at most 25 seconds. Marking read is idempotent, so a
    /// timed-out call is harmless; the caller decides whether to try again.
    #[tracing::instrument(
        name = "cloud_api.mark_read",
        skip_all,
        fields(
            phone_number_id = %phone_number_id,
            message.id = %message_id,
            typing = typing,
            http_status = Empty,
            duration_ms = Empty,
            fbtrace_id = Empty,
        )
    )]
    pub async fn mark_read(
        &self,
        token: &str,
        phone_number_id: &str,
        message_id: &str,
        typing: bool,
    ) -> Result<(), SendError> {
        let url = self.url(&[phone_number_id, "messages"])?;
        let request = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&mark_read_body(message_id, typing));
        let body = exchange(request, Provider::Cloud, cloud_error).await?;
        parse_mark_read(&body)
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
        exchange(
            self.http.get(url).bearer_auth(token),
            Provider::Cloud,
            cloud_error,
        )
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
}

/// A Cloud API error answer: `{error:{code, message, error_data.details, fbtrace_id}}`.
fn cloud_error(refusal: Refusal<'_>) -> SendError {
    let parsed = parse_error_body(refusal.body);
    if let Some(trace) = &parsed.fbtrace_id {
        tracing::Span::current().record("fbtrace_id", trace.as_str());
    }
    SendError::Api {
        provider: Provider::Cloud,
        http_status: refusal.http_status,
        code: parsed.code,
        title: parsed.title,
        details: parsed.details,
        retry_after: refusal.retry_after,
    }
}

fn text_body(req: &TextReply<'_>) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "type": "text",
        "text": { "body": req.body, "preview_url": false },
    });
    // A phone number goes in `to`; a user known only by a business-scoped user id is addressed
    // with `recipient` (Meta's BSUID send form: `to` would take precedence over it).
    if req
        .to
        .trim_start_matches('+')
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        body["to"] = json!(req.to);
    } else {
        body["recipient"] = json!(req.to);
    }
    if !req.context_message_id.is_empty() {
        body["context"] = json!({ "message_id": req.context_message_id });
    }
    if !req.callback_data.is_empty() {
        body["biz_opaque_callback_data"] = json!(req.callback_data);
    }
    body
}

fn mark_read_body(message_id: &str, typing: bool) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message_id,
    });
    if typing {
        body["typing_indicator"] = json!({ "type": "text" });
    }
    body
}

#[cfg(test)]
mod tests;
