//! The WASender gateway's routes, in its shapes: `POST /api/send-message`, `GET /api/status`,
//! `GET /api/messages/{msgId}/info`. The API key (bearer) names the session.
//!
//! A send is checked in the order the gateway would reject it — API key, halted session,
//! disconnected session, request body, configured permanent error, throughput — and only then
//! may a random fault be injected; the same recording rule as the Cloud API's applies. Answers:
//! success `{"success":true,"data":{"msgId":<int>,"jid":<to>,"status":"in_progress"}}`; errors
//! `{"success":false,"message":…}` (422 with Laravel-style `errors` for a bad body, 429 with
//! `retry_after` and `Retry-After: 1`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::RecordedSend;
use super::routes::{bearer, http_status_for, now_ms, title_for};
use super::state::{Injected, Shared};
use super::webhook::jid;
use crate::domain::Provider;

/// The gateway's limit on `text` is not documented; the fake keeps WhatsApp's 4096.
const MAX_TEXT_CHARS: usize = 4096;

pub(super) async fn send(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.pause(shared.latency).await;
    let (authorization, session) = match session(&shared, &headers) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let faults = shared.faults();
    if let Some(code) = faults.halt_code {
        return failure(http_status_for(code), title_for(code));
    }
    if !faults.wasender_connected {
        return failure(StatusCode::SERVICE_UNAVAILABLE, "session is not connected");
    }
    let (to, text) = match parse_send(&body) {
        Ok(send) => send,
        Err((field, problem)) => {
            let answer =
                json!({ "success": false, "message": problem, "errors": { field: [problem] } });
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(answer)).into_response();
        }
    };
    if let Some(code) = faults.permanent_error_code {
        return failure(StatusCode::BAD_REQUEST, title_for(code));
    }
    if !shared.take_throughput(&format!("wasender/{session}")) {
        return rate_limited("throughput (--max-mps) exceeded for this session");
    }
    let injected = shared.draw(&faults);
    match injected {
        Injected::ServerError { http_status, .. } => {
            let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_GATEWAY);
            return failure(status, "server error injected");
        }
        Injected::RateLimited { .. } => return rate_limited("rate limit injected"),
        Injected::TimeoutBeforeSend => {
            shared.count_stalled_before_send();
            shared.pause(shared.timeout_delay).await;
            return failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "stalled before sending (injected)",
            );
        }
        Injected::Timeout | Injected::None => {}
    }

    let (msg_id, key_id) = shared.next_gateway_ids();
    let recorded = RecordedSend {
        provider: Provider::Wasender,
        phone_number_id: session,
        to,
        body: text,
        context_message_id: None,
        callback_data: None,
        message_id: msg_id.to_string(),
        key_id: Some(key_id),
        authorization: Some(authorization),
        received_at_ms: now_ms(),
    };
    shared.record(recorded.clone());
    if let Some(webhook) = &shared.gateway_webhook {
        webhook.spawn_post(&recorded, faults.wasender_status_key);
    }
    if injected == Injected::Timeout {
        shared.pause(shared.timeout_delay).await;
    }
    Json(json!({
        "success": true,
        "data": { "msgId": msg_id, "jid": recorded.to, "status": "in_progress" },
    }))
    .into_response()
}

/// `{"status": "connected"}`, or `"disconnected"` while `wasender_connected` is false.
pub(super) async fn status(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refused) = session(&shared, &headers) {
        return refused.into_response();
    }
    let faults = shared.faults();
    if let Some(code) = faults.halt_code {
        return failure(http_status_for(code), title_for(code));
    }
    let status = if faults.wasender_connected {
        "connected"
    } else {
        "disconnected"
    };
    Json(json!({ "status": status })).into_response()
}

/// The send's WhatsApp key and status (2, sent), as `GET /api/messages/{msgId}/info` answers.
pub(super) async fn message_info(
    State(shared): State<Arc<Shared>>,
    Path(msg_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let session = match session(&shared, &headers) {
        Ok((_, session)) => session,
        Err(refused) => return refused.into_response(),
    };
    let Some(send) = shared.gateway_send(&session, &msg_id) else {
        return failure(StatusCode::NOT_FOUND, "Message not found");
    };
    let remote_jid = jid(&send.to);
    let msg_id: Value = send
        .message_id
        .parse::<u64>()
        .map_or_else(|_| json!(send.message_id), |n| json!(n));
    Json(json!({
        "success": true,
        "data": {
            "remoteJid": remote_jid,
            "id": send.key_id,
            "msgId": msg_id,
            "key": { "id": send.key_id, "fromMe": true, "remoteJid": remote_jid },
            "message": { "conversation": send.body },
            "messageTimestamp": (send.received_at_ms / 1000).to_string(),
            "status": 2,
        },
    }))
    .into_response()
}

/// The `Authorization` value and the session its key belongs to, or the 401 to answer.
fn session(shared: &Shared, headers: &HeaderMap) -> Result<(String, String), Unauthorized> {
    let authorization = bearer(headers).ok_or(Unauthorized("Unauthenticated."))?;
    let key = authorization
        .split_once(' ')
        .map_or("", |(_, key)| key.trim());
    let session = shared
        .session_of(key)
        .ok_or(Unauthorized("Invalid API key"))?;
    Ok((authorization, session))
}

struct Unauthorized(&'static str);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        failure(StatusCode::UNAUTHORIZED, self.0)
    }
}

fn failure(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "success": false, "message": message })),
    )
        .into_response()
}

fn rate_limited(message: &str) -> Response {
    let body = json!({ "success": false, "message": message, "retry_after": 1 });
    let mut answer = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    answer
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    answer
}

/// `{"to", "text"}`; `Err((field, problem))` for the 422.
fn parse_send(body: &[u8]) -> Result<(String, String), (&'static str, String)> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| ("body", "The body must be JSON.".to_owned()))?;
    let field = |key: &'static str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or((key, format!("The {key} field is required.")))
    };
    let to = field("to")?;
    let text = field("text")?;
    if text.chars().count() > MAX_TEXT_CHARS {
        let problem = format!("The text may not be greater than {MAX_TEXT_CHARS} characters.");
        return Err(("text", problem));
    }
    Ok((to.to_owned(), text.to_owned()))
}
