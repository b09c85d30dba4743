//! Admin routes for reading conversations: the list (filterable by who is in charge) and one
//! conversation's timeline — messages, outcomes, the replies sent and their delivery statuses.
//! The operator actions that change a conversation live in `admin` (`conversation_action`).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::admin::{parse_conversation, parse_provider};
use super::error::ApiError;
use crate::domain::ConversationMode;
use crate::store::{ConversationDetail, ConversationSummary, DeliveryRecord, TimelineEntry};

const LIST_DEFAULT: i64 = 100;
const LIST_MAX: i64 = 1000;
const TIMELINE_DEFAULT: i64 = 50;
const TIMELINE_MAX: i64 = 500;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    mode: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/conversations[?mode=bot|operator|escalated][&limit=N]`: newest activity first.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let mode = q
        .mode
        .as_deref()
        .map(|raw| {
            ConversationMode::parse(raw).ok_or_else(|| {
                ApiError::BadRequest("mode must be one of bot, operator, escalated".into())
            })
        })
        .transpose()?;
    let limit = bounded(q.limit, LIST_DEFAULT, LIST_MAX)?;
    let items = state.store.conversations(mode, limit).await?;
    Ok(Json(json!({
        "conversations": items.iter().map(summary_json).collect::<Vec<_>>(),
    })))
}

#[derive(Debug, Default, Deserialize)]
pub struct TimelineQuery {
    limit: Option<i64>,
    provider: Option<String>,
}

/// `GET /api/v1/conversations/{phone_number_id}/{wa_id}[?limit=N]`: the conversation with its
/// newest N messages, oldest first; 404 when neither a contact nor an operator knows it.
pub async fn detail(
    State(state): State<AppState>,
    Path((phone_number_id, wa_id)): Path<(String, String)>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<Value>, ApiError> {
    let key = parse_conversation(
        parse_provider(q.provider.as_deref())?,
        &phone_number_id,
        &wa_id,
    )?;
    let limit = bounded(q.limit, TIMELINE_DEFAULT, TIMELINE_MAX)?;
    let detail = state
        .store
        .conversation(&key, limit)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(detail_json(&detail)))
}

fn bounded(limit: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {max}"
        )))
    }
}

/// The list item; also the head of the detail.
pub fn summary_json(c: &ConversationSummary) -> Value {
    json!({
        "provider": c.provider,
        "phone_number_id": c.phone_number_id,
        "wa_id": c.wa_id,
        "display_name": c.display_name,
        "mode": c.mode.as_str(),
        "taken_by": c.taken_by,
        "escalation_reason": c.escalation_reason,
        "opted_out": c.opted_out,
        "last_inbound_ts": c.last_inbound_ts,
        "updated_at_ms": c.updated_at_ms,
    })
}

pub fn detail_json(d: &ConversationDetail) -> Value {
    let mut body = summary_json(&d.summary);
    body["timeline"] = d.timeline.iter().map(entry_json).collect();
    body["timeline_complete"] = json!(d.complete);
    body
}

fn entry_json(e: &TimelineEntry) -> Value {
    json!({
        "id": e.message_id,
        "type": e.kind,
        "text": e.text,
        "timestamp": e.timestamp,
        "outcome": e.outcome.as_ref().map_or("pending", |o| o.kind()),
        "reason": e.outcome.as_ref().and_then(|o| o.reason()),
        "reply": e.reply.as_ref().map(|r| json!({
            "ledger_id": r.ledger_id,
            "state": r.state.as_str(),
            "outbound_id": r.outbound_id,
            "text": r.text,
            "attempts": r.attempts,
            "statuses": r.statuses.iter().map(status_json).collect::<Vec<_>>(),
        })),
    })
}

fn status_json(s: &DeliveryRecord) -> Value {
    json!({
        "status": s.status.as_str(),
        "timestamp": s.timestamp,
        "error_code": s.error_code,
    })
}
