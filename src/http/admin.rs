//! Admin API under `/api/v1`: bearer token (constant-time compare), JSON answers.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::store::{MessageRecord, Summary};

/// Refuses any request without `Authorization: Bearer <admin token>`.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(token) if state.config.admin_token.matches(token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

/// `GET /api/v1/messages/{message_id}`
pub async fn message(
    State(state): State<AppState>,
    Path(message_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state
        .store
        .message(&message_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(message_json(&record)))
}

fn message_json(m: &MessageRecord) -> Value {
    json!({
        "id": m.message_id,
        "provider": m.provider.as_str(),
        "phone_number_id": m.phone_number_id,
        "from": m.wa_id,
        "type": m.kind,
        "timestamp": m.timestamp,
        "outcome": m.outcome.as_ref().map_or("pending", |o| o.kind()),
        "reason": m.outcome.as_ref().and_then(|o| o.reason()),
        "reply": Value::Null,
    })
}

/// `GET /api/v1/summary`
pub async fn summary(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(summary_json(&state.store.summary().await?)))
}

fn summary_json(s: &Summary) -> Value {
    let silent: BTreeMap<&str, u64> = s
        .silent
        .iter()
        .map(|(reason, n)| (reason.as_str(), *n))
        .collect();
    let deliveries = s.inbound + s.duplicates;
    json!({
        "inbound": s.inbound,
        "duplicates": s.duplicates,
        "outcomes": {
            "pending": s.pending,
            "replied": s.replied,
            "silent": silent,
            "dead": s.dead,
        },
        "duplicate_ratio": if deliveries == 0 { 0.0 } else { s.duplicates as f64 / deliveries as f64 },
        // No sends are made yet: there is no first attempt to measure.
        "first_attempt_send_ratio": Value::Null,
        "dead_letters": s.dead_letters_open,
        "queue": { "available": s.jobs_available, "total": s.jobs_total },
    })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/dead-letters?limit=N` (newest first, open ones).
pub async fn dead_letters(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let items = state.store.dead_letters(limit).await?;
    Ok(Json(json!({ "dead_letters": items })))
}
