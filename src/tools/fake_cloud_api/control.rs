//! The routes that drive the fake from outside — tests, demos, benchmarks: what was sent
//! (`/sent`), which read receipts arrived (`/read-receipts`), and the faults (`/faults`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::args::StatusKeyId;
use super::state::{Faults, Shared};
use crate::domain::Provider;

#[derive(Debug, serde::Deserialize)]
pub(super) struct SentQuery {
    count: Option<String>,
    /// `cloud` or `wasender`; both when absent.
    provider: Option<String>,
}

/// `GET /sent[?provider=cloud|wasender][&count=1]`: the sends, or how many there were.
pub(super) async fn list_sent(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<SentQuery>,
) -> Response {
    let provider = match query.provider.as_deref().map(Provider::parse) {
        None => None,
        Some(Some(provider)) => Some(provider),
        Some(None) => {
            let problem = json!({ "error": "provider must be \"cloud\" or \"wasender\"" });
            return (StatusCode::BAD_REQUEST, Json(problem)).into_response();
        }
    };
    match query.count.as_deref() {
        None | Some("0" | "false") => Json(shared.sends(provider)).into_response(),
        Some(_) => Json(json!({
            "count": shared.send_count(provider),
            "throughput_rejections": shared.throughput_rejections(),
            "stalled_before_send": shared.stalled_before_send(),
        }))
        .into_response(),
    }
}

pub(super) async fn clear_sent(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_sends();
    StatusCode::NO_CONTENT
}

pub(super) async fn list_read_receipts(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.read_receipts()).into_response()
}

pub(super) async fn clear_read_receipts(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.clear_read_receipts();
    StatusCode::NO_CONTENT
}

pub(super) async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.faults())
}

/// Partial update: only the keys present change; `null` clears an error code.
pub(super) async fn patch_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let mut faults = shared.faults();
    if let Err(problem) = apply_patch(&mut faults, &body) {
        let answer = json!({ "error": problem });
        return (StatusCode::BAD_REQUEST, Json(answer)).into_response();
    }
    shared.update_faults(|current| *current = faults);
    Json(faults).into_response()
}

fn apply_patch(faults: &mut Faults, body: &[u8]) -> Result<(), String> {
    let patch: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("expected a JSON object: {e}"))?;
    for (key, value) in patch {
        let code = || match &value {
            Value::Null => Ok(None),
            v => v
                .as_i64()
                .map(Some)
                .ok_or(format!("{key} must be an integer or null")),
        };
        let ratio = || match value.as_f64() {
            Some(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(format!("{key} must be a number between 0 and 1")),
        };
        let flag = || {
            value
                .as_bool()
                .ok_or(format!("{key} must be true or false"))
        };
        match key.as_str() {
            "permanent_error_code" => faults.permanent_error_code = code()?,
            "halt_code" => faults.halt_code = code()?,
            "error_5xx_ratio" => faults.error_5xx_ratio = ratio()?,
            "rate_limit_ratio" => faults.rate_limit_ratio = ratio()?,
            "timeout_ratio" => faults.timeout_ratio = ratio()?,
            "timeout_before_ratio" => faults.timeout_before_ratio = ratio()?,
            "mark_read_fails" => faults.mark_read_fails = flag()?,
            "wasender_connected" => faults.wasender_connected = flag()?,
            "wasender_status_key" => {
                faults.wasender_status_key = match value.as_str() {
                    Some("key") => StatusKeyId::Key,
                    Some("msg_id") => StatusKeyId::MsgId,
                    _ => return Err(format!("{key} must be \"key\" or \"msg_id\"")),
                }
            }
            other => return Err(format!("unknown fault {other:?}")),
        }
    }
    Ok(())
}
