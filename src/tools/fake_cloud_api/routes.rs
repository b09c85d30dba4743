//! The fake's router, and the Cloud API routes: the send endpoint (which also takes read
//! receipts) and the number probe, in the Cloud API's shapes.
//!
//! A send is checked in the order the real API would reject it — authorization, halted
//! number, request body, configured permanent error, throughput — and only then may a random
//! fault be injected. Nothing is recorded unless the send was accepted (a held-back answer
//! counts as accepted: the message went out, only the answer is late; a stall before the send
//! does not: nothing went out). A read receipt is never a send: it is recorded apart, and only
//! `mark_read_fails` makes it fail.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Value, json};

use super::state::{Injected, Shared};
use super::{ReadReceipt, RecordedSend, control, gateway};
use crate::domain::Provider;

/// Meta's limit on `text.body`, in characters.
const MAX_TEXT_CHARS: usize = 4096;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/sent", get(control::list_sent).delete(control::clear_sent))
        .route(
            "/read-receipts",
            get(control::list_read_receipts).delete(control::clear_read_receipts),
        )
        .route(
            "/faults",
            get(control::get_faults).patch(control::patch_faults),
        )
        .route("/api/send-message", post(gateway::send))
        .route("/api/status", get(gateway::status))
        .route("/api/messages/{msg_id}/info", get(gateway::message_info))
        .route("/{version}/{phone_number_id}", get(probe))
        .route("/{version}/{phone_number_id}/messages", post(send))
        .with_state(shared)
}

async fn send(
    State(shared): State<Arc<Shared>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.pause(shared.latency).await;
    let Some(authorization) = bearer(&headers) else {
        return api_error(&shared, 190, "Authorization: Bearer <token> is required");
    };
    let faults = shared.faults();
    if let Some(code) = faults.halt_code {
        return api_error(&shared, code, "the number is halted (fake)");
    }
    let text = match parse_send(&body) {
        Ok(Outgoing::Text(text)) => text,
        Ok(Outgoing::MarkRead { message_id, typing }) => {
            return mark_read(&shared, phone_number_id, message_id, typing);
        }
        Err(details) => return api_error(&shared, 100, &details),
    };
    if let Some(code) = faults.permanent_error_code {
        return api_error(&shared, code, "permanent error injected by the fake");
    }
    if !shared.take_throughput(&phone_number_id) {
        // Documented as 429, observed as 400: answer 400 so callers must classify by code.
        let details = "throughput (--max-mps) exceeded for this phone number id";
        return api_error_with_status(&shared, StatusCode::BAD_REQUEST, 130_429, details);
    }
    let injected = shared.draw(&faults);
    match injected {
        Injected::ServerError { http_status, code } => {
            let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_GATEWAY);
            return api_error_with_status(&shared, status, code, "server error injected");
        }
        Injected::RateLimited { code } => {
            let mut answer = api_error_with_status(
                &shared,
                StatusCode::TOO_MANY_REQUESTS,
                code,
                "rate limit injected",
            );
            answer
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return answer;
        }
        Injected::TimeoutBeforeSend => {
            // The request never got as far as sending: the client's timeout fires first.
            shared.count_stalled_before_send();
            shared.pause(shared.timeout_delay).await;
            return api_error_with_status(
                &shared,
                StatusCode::SERVICE_UNAVAILABLE,
                131_016,
                "stalled before sending (injected)",
            );
        }
        Injected::Timeout | Injected::None => {}
    }

    let recorded = RecordedSend {
        provider: Provider::Cloud,
        phone_number_id,
        to: text.to,
        body: text.body,
        context_message_id: text.context_message_id,
        callback_data: text.callback_data,
        message_id: shared.next_message_id(),
        key_id: None,
        authorization: Some(authorization),
        received_at_ms: now_ms(),
    };
    shared.record(recorded.clone());
    if let Some(webhook) = &shared.webhook {
        webhook.spawn_post(&recorded);
    }
    if injected == Injected::Timeout {
        shared.pause(shared.timeout_delay).await;
    }
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": recorded.to, "wa_id": recorded.to.trim_start_matches('+') }],
        "messages": [{ "id": recorded.message_id }],
    }))
    .into_response()
}

/// Records the receipt and answers `{"success": true}`, or 500 (131000) when told to fail.
fn mark_read(
    shared: &Shared,
    phone_number_id: String,
    message_id: String,
    typing: bool,
) -> Response {
    let failed = shared.faults().mark_read_fails;
    shared.record_read_receipt(ReadReceipt {
        phone_number_id,
        message_id,
        typing,
        failed,
        received_at_ms: now_ms(),
    });
    if failed {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        return api_error_with_status(shared, status, 131_000, "mark-read failure injected");
    }
    Json(json!({ "success": true })).into_response()
}

async fn probe(
    State(shared): State<Arc<Shared>>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if bearer(&headers).is_none() {
        return api_error(&shared, 190, "Authorization: Bearer <token> is required");
    }
    if let Some(code) = shared.faults().halt_code {
        return api_error(&shared, code, "the number is halted (fake)");
    }
    Json(json!({ "id": phone_number_id })).into_response()
}

/// The whole `Authorization` value when it is `Bearer <something>`.
pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| value.to_owned())
}

enum Outgoing {
    Text(TextSend),
    /// `{"status":"read","message_id":…, "typing_indicator"?: {"type":"text"}}`: not a send.
    MarkRead {
        message_id: String,
        typing: bool,
    },
}

struct TextSend {
    to: String,
    body: String,
    context_message_id: Option<String>,
    callback_data: Option<String>,
}

/// Validates a send body as WHATSAPP.md §5 describes; `Err` carries the `error_data.details`.
fn parse_send(body: &[u8]) -> Result<Outgoing, String> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "body is not JSON".to_owned())?;
    let message = value.as_object().ok_or("body is not a JSON object")?;
    let text = |key: &str| message.get(key).and_then(Value::as_str);
    if text("messaging_product") != Some("whatsapp") {
        return Err("messaging_product must be \"whatsapp\"".into());
    }
    if text("status") == Some("read") {
        let typing = match message.get("typing_indicator") {
            None => false,
            Some(indicator) if indicator.get("type").and_then(Value::as_str) == Some("text") => {
                true
            }
            Some(_) => return Err("typing_indicator.type must be \"text\"".into()),
        };
        return match text("message_id") {
            Some(id) if !id.is_empty() => Ok(Outgoing::MarkRead {
                message_id: id.to_owned(),
                typing,
            }),
            _ => Err("message_id is required to mark a message as read".into()),
        };
    }
    if !matches!(text("recipient_type"), None | Some("individual" | "group")) {
        return Err("recipient_type must be \"individual\" or \"group\"".into());
    }
    // A phone number in `to`, or a business-scoped user id in `recipient` (`to` wins).
    let to = text("to")
        .or_else(|| text("recipient"))
        .filter(|to| !to.trim().is_empty());
    let to = to.ok_or("to (or recipient) is required")?.to_owned();
    match text("type") {
        None | Some("text") => {}
        Some(other) => return Err(format!("type {other:?} is not supported by the fake")),
    }
    let body = message.get("text").and_then(|t| t.get("body"));
    let body = body.and_then(Value::as_str).filter(|b| !b.is_empty());
    let body = body.ok_or("text.body is required")?;
    if body.chars().count() > MAX_TEXT_CHARS {
        return Err(format!(
            "text.body must be at most {MAX_TEXT_CHARS} characters"
        ));
    }
    let context_message_id = match message.get("context") {
        None => None,
        Some(context) => Some(
            context
                .get("message_id")
                .and_then(Value::as_str)
                .ok_or("context.message_id must be a string")?
                .to_owned(),
        ),
    };
    let callback_data = match message.get("biz_opaque_callback_data") {
        None => None,
        Some(Value::String(data)) => Some(data.clone()),
        Some(_) => return Err("biz_opaque_callback_data must be a string".into()),
    };
    Ok(Outgoing::Text(TextSend {
        to,
        body: body.to_owned(),
        context_message_id,
        callback_data,
    }))
}

/// An error answer with the HTTP status the real API uses for `code`.
fn api_error(shared: &Shared, code: i64, details: &str) -> Response {
    api_error_with_status(shared, http_status_for(code), code, details)
}

fn api_error_with_status(
    shared: &Shared,
    status: StatusCode,
    code: i64,
    details: &str,
) -> Response {
    let body = json!({
        "error": {
            "message": format!("(#{code}) {}", title_for(code)),
            "type": "OAuthException",
            "code": code,
            "error_data": { "messaging_product": "whatsapp", "details": details },
            "fbtrace_id": shared.next_trace_id(),
        }
    });
    (status, Json(body)).into_response()
}

/// HTTP statuses per WHATSAPP.md §5; everything else is 400.
pub(super) fn http_status_for(code: i64) -> StatusCode {
    match code {
        0 | 190 => StatusCode::UNAUTHORIZED,
        10 | 200..=299 | 368 | 131_005 | 131_031 => StatusCode::FORBIDDEN,
        4 | 80_007 | 130_429 | 131_048 | 131_056 => StatusCode::TOO_MANY_REQUESTS,
        3 | 131_000 => StatusCode::INTERNAL_SERVER_ERROR,
        2 | 131_016 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub(super) fn title_for(code: i64) -> &'static str {
    match code {
        0 => "AuthException",
        190 => "Access token has expired",
        1 => "API Unknown",
        2 => "API Service",
        4 => "API Too Many Calls",
        10 | 200..=299 => "Permission denied",
        100 => "Invalid parameter",
        368 => "Temporarily blocked for policies violations",
        80_007 => "Rate limit issues",
        130_429 => "Rate limit hit",
        131_000 => "Something went wrong",
        131_005 => "Access denied",
        131_016 => "Service unavailable",
        131_026 => "Message undeliverable",
        131_031 => "Account has been locked",
        131_047 => "Re-engagement message",
        131_048 => "Spam rate limit hit",
        131_049 => "Meta chose not to deliver",
        131_056 => "(Business Account, Consumer Account) pair rate limit hit",
        133_010 => "Phone number not registered",
        _ => "Error",
    }
}

pub(super) fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH);
    since_epoch.map_or(0, |d| d.as_millis() as i64)
}
