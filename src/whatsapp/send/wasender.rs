//! The WASender gateway send client: `POST {base}/api/send-message` with the session's API key,
//! JSON `{"to", "text"}`; errors are the same [`SendError`]s as the Cloud API's, so the worker's
//! retry, halt and ambiguity rules apply unchanged.
//!
//! What WASender documents (api-docs "Send text message", "Get message info", "Get WhatsApp
//! session status", "Understanding rate limits"):
//! - success: `{"success": true, "data": {"msgId": 100000, "jid": "+123…", "status": "in_progress"}}`
//!   — `msgId` is an integer, the gateway's own record of the send (queued, not yet on WhatsApp);
//! - errors: `{"success": false, "message": "…", "errors"?: {field: [text…]}}`; a 429 carries
//!   `"retry_after": <seconds>` in the body (the official SDK reads it there) and perhaps a
//!   `Retry-After` header — the header wins when both are present;
//! - status webhooks (`messages.update`) identify the message by its WhatsApp key
//!   (`data.key.id`, e.g. `3EB0…`), which is **not** the `msgId`: `GET /api/messages/{msgId}/info`
//!   returns both (`data.msgId` and `data.key.id`), so [`WasenderClient::message_info`] is what
//!   ties a status to a send once the gateway has sent it.
//!
//! The API key identifies the session, so no session id travels in the request.

use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};
use tracing::field::Empty;

use super::transport::{Refusal, exchange, http_client};
use super::{Accepted, SendError};
use crate::domain::Provider;
use crate::whatsapp::cloud::id_string;

#[derive(Debug, Clone)]
pub struct WasenderClient {
    http: reqwest::Client,
    /// Without a trailing slash, e.g. `https://www.wasenderapi.com`.
    base_url: String,
}

/// A session's state as `GET /api/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatus {
    /// Authenticated and connected to WhatsApp: sends go out.
    Connected,
    /// Anything else (`connecting`, `disconnected`, `need_scan`, `logged_out`, `expired`, …),
    /// lower-cased as reported.
    NotConnected(String),
}

/// What `GET /api/messages/{msgId}/info` says about a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessageInfo {
    pub msg_id: String,
    /// The WhatsApp message key that `messages.update` webhooks carry as `data.key.id`; absent
    /// while the gateway has not sent the message yet.
    pub key_id: Option<String>,
    /// WASender's numeric status: 0 error, 1 pending, 2 sent, 3 delivered, 4 read, 5 played.
    pub status: Option<i64>,
}

impl WasenderClient {
    /// `base_url` is the gateway's root, e.g. `https://www.wasenderapi.com` (a trailing slash, or
    /// a trailing `/api` as the official SDKs write it, is tolerated). `timeout` bounds each call
    /// from connect to the last byte of the answer.
    pub fn new(base_url: &str, timeout: Duration) -> Self {
        let base = base_url.trim_end_matches('/');
        let base = base.strip_suffix("/api").unwrap_or(base);
        Self {
            http: http_client(timeout),
            base_url: base.to_owned(),
        }
    }

    /// POST `{base}/api/send-message` with `{"to": to, "text": text}`. `to` is E.164 (`+…`) or a
    /// group JID. The answer's `msgId` becomes [`Accepted::message_id`].
    #[tracing::instrument(
        name = "wasender.send_text",
        skip_all,
        fields(http_status = Empty, duration_ms = Empty)
    )]
    pub async fn send_text(
        &self,
        api_key: &str,
        to: &str,
        text: &str,
    ) -> Result<Accepted, SendError> {
        let url = self.url(&["send-message"])?;
        let body = json!({ "to": to, "text": text });
        let request = self.http.post(url).bearer_auth(api_key).json(&body);
        let answer = exchange(request, Provider::Wasender, gateway_error).await?;
        let accepted = parse_accepted(&answer)?;
        tracing::debug!(outbound.id = %accepted.message_id, "reply accepted by the gateway");
        Ok(accepted)
    }

    /// Can this session send again? `GET {base}/api/status` — authenticated, cheap, sends
    /// nothing. `Ok(())` only when the session is connected; a session that is not is answered
    /// like the send endpoint answers it, as a retryable 503.
    #[tracing::instrument(
        name = "wasender.probe",
        skip_all,
        fields(http_status = Empty, duration_ms = Empty)
    )]
    pub async fn probe(&self, api_key: &str) -> Result<(), SendError> {
        match self.session_status(api_key).await? {
            SessionStatus::Connected => Ok(()),
            SessionStatus::NotConnected(status) => Err(SendError::Api {
                provider: Provider::Wasender,
                http_status: 503,
                code: None,
                title: Some(format!("session is {status}")),
                details: None,
                retry_after: None,
            }),
        }
    }

    /// `GET {base}/api/status` → `{"status": "connected"}`.
    pub async fn session_status(&self, api_key: &str) -> Result<SessionStatus, SendError> {
        let url = self.url(&["status"])?;
        let request = self.http.get(url).bearer_auth(api_key);
        let answer = exchange(request, Provider::Wasender, gateway_error).await?;
        parse_session_status(&answer)
    }

    /// `GET {base}/api/messages/{msg_id}/info`: the WhatsApp key a send got, once it went out.
    #[tracing::instrument(
        name = "wasender.message_info",
        skip_all,
        fields(outbound.id = %msg_id, http_status = Empty, duration_ms = Empty)
    )]
    pub async fn message_info(
        &self,
        api_key: &str,
        msg_id: &str,
    ) -> Result<SentMessageInfo, SendError> {
        let url = self.url(&["messages", msg_id, "info"])?;
        let request = self.http.get(url).bearer_auth(api_key);
        let answer = exchange(request, Provider::Wasender, gateway_error).await?;
        parse_message_info(&answer)
    }

    fn url(&self, segments: &[&str]) -> Result<Url, SendError> {
        let invalid =
            || SendError::NotSent(format!("invalid WASender base URL {:?}", self.base_url));
        let mut url = Url::parse(&self.base_url).map_err(|_| invalid())?;
        url.path_segments_mut()
            .map_err(|()| invalid())?
            .pop_if_empty()
            .push("api")
            .extend(segments);
        Ok(url)
    }
}

/// `{"success": false, "message": …, "errors"?: {…}, "retry_after"?: n}` → [`SendError::Api`]
/// without a code, so the class follows the HTTP status (429 and 5xx retried, 401/403 halt the
/// session, other 4xx permanent).
fn gateway_error(refusal: Refusal<'_>) -> SendError {
    let value = serde_json::from_slice::<Value>(refusal.body).unwrap_or(Value::Null);
    let title = value
        .get("message")
        .or_else(|| value.get("error"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let retry_after = refusal
        .retry_after
        .or_else(|| value.get("retry_after").and_then(seconds));
    SendError::Api {
        provider: Provider::Wasender,
        http_status: refusal.http_status,
        code: None,
        title,
        details: value.get("errors").and_then(field_errors),
        retry_after,
    }
}

/// `retry_after` as whole or fractional seconds, or a numeric string.
fn seconds(value: &Value) -> Option<Duration> {
    let secs = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Laravel-style `{"to": ["The to field is required."]}` → `to: The to field is required.`
fn field_errors(errors: &Value) -> Option<String> {
    let Value::Object(fields) = errors else {
        return errors.as_str().map(str::to_owned);
    };
    let mut parts = Vec::new();
    for (field, messages) in fields {
        match messages {
            Value::Array(list) => parts.extend(
                list.iter()
                    .filter_map(Value::as_str)
                    .map(|m| format!("{field}: {m}")),
            ),
            Value::String(m) => parts.push(format!("{field}: {m}")),
            _ => {}
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn json_answer(body: &[u8]) -> Result<Value, SendError> {
    serde_json::from_slice(body).map_err(|e| {
        SendError::BadResponse(format!("the WASender gateway's answer is not JSON: {e}"))
    })
}

/// 2xx needs `success: true` and a `data.msgId`; anything else is not understood.
fn parse_accepted(body: &[u8]) -> Result<Accepted, SendError> {
    let value = json_answer(body)?;
    if value.get("success").and_then(Value::as_bool) != Some(true) {
        let message = value.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(SendError::BadResponse(format!(
            "the WASender gateway answered 2xx without \"success\": true ({message:?})"
        )));
    }
    match value.pointer("/data/msgId").and_then(id_string) {
        Some(id) => Ok(Accepted { message_id: id }),
        // The body may echo the recipient: describe it, never log it.
        None => Err(SendError::BadResponse(
            "no data.msgId in the WASender gateway's answer".into(),
        )),
    }
}

fn parse_session_status(body: &[u8]) -> Result<SessionStatus, SendError> {
    let value = json_answer(body)?;
    let status = value
        .get("status")
        .or_else(|| value.pointer("/data/status"))
        .and_then(Value::as_str)
        .ok_or_else(|| SendError::BadResponse("no status in the session status answer".into()))?;
    Ok(match status.to_ascii_lowercase().as_str() {
        "connected" => SessionStatus::Connected,
        other => SessionStatus::NotConnected(other.to_owned()),
    })
}

fn parse_message_info(body: &[u8]) -> Result<SentMessageInfo, SendError> {
    let value = json_answer(body)?;
    let data = value
        .get("data")
        .filter(|_| value.get("success").and_then(Value::as_bool) == Some(true))
        .ok_or_else(|| SendError::BadResponse("no data in the message info answer".into()))?;
    let msg_id = data
        .get("msgId")
        .and_then(id_string)
        .ok_or_else(|| SendError::BadResponse("no data.msgId in the message info answer".into()))?;
    Ok(SentMessageInfo {
        msg_id,
        key_id: data
            .pointer("/key/id")
            .or_else(|| data.get("id"))
            .and_then(id_string),
        status: data.get("status").and_then(Value::as_i64),
    })
}

#[cfg(test)]
#[path = "wasender_tests.rs"]
mod tests;
