//! Admin routes for reading conversations: the list (filterable by who is in charge) and one
//! conversation's timeline — messages, outcomes, the replies sent and their delivery statuses.
//! The operator actions that change a conversation live in `admin` (`conversation_action`).

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::answers::{ModeName, OutcomeKind, ProviderName};
use super::contacts::{ContactPath, parse_conversation, parse_provider};
use super::error::ApiError;
use super::openapi::{BadRequest, NotFound};
use crate::domain::ConversationMode;
use crate::store::{self, ConversationSummary, DeliveryRecord};

const LIST_DEFAULT: i64 = 100;
const LIST_MAX: i64 = 1000;
const TIMELINE_DEFAULT: i64 = 50;
const TIMELINE_MAX: i64 = 500;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only conversations in this mode (no conversations row means `bot`).
    #[param(value_type = Option<ModeName>)]
    mode: Option<String>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// Conversations, newest activity first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    conversations: Vec<ConversationAnswer>,
}

/// `GET /api/v1/conversations[?mode=bot|operator|escalated][&limit=N]`: newest activity first.
#[utoipa::path(get, path = "/conversations", params(ListQuery),
    summary = "Conversations, newest activity first",
    responses((status = 200, description = "OK", body = ConversationList), (status = 400, response = BadRequest)))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ConversationList>, ApiError> {
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
    Ok(Json(ConversationList {
        conversations: items.iter().map(ConversationAnswer::from).collect(),
    }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// The newest N messages, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// `cloud` (default) or `wasender`.
    #[param(pattern = "^(cloud|wasender)$")]
    provider: Option<String>,
}

/// `GET /api/v1/conversations/{phone_number_id}/{wa_id}[?limit=N]`: the conversation with its
/// newest N messages, oldest first; 404 when neither a contact nor an operator knows it.
#[utoipa::path(get, path = "/conversations/{phone_number_id}/{wa_id}",
    params(ContactPath, TimelineQuery),
    summary = "One conversation with its timeline: messages, outcomes, replies, statuses",
    responses((status = 200, description = "OK", body = ConversationDetail), (status = 400, response = BadRequest),
        (status = 404, response = NotFound)))]
pub async fn detail(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(q): Query<TimelineQuery>,
) -> Result<Json<ConversationDetail>, ApiError> {
    let key = parse_conversation(
        parse_provider(q.provider.as_deref())?,
        path.phone_number_id(),
        path.wa_id(),
    )?;
    let limit = bounded(q.limit, TIMELINE_DEFAULT, TIMELINE_MAX)?;
    let detail = state
        .store
        .conversation(&key, limit)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json((&detail).into()))
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

/// One conversation: the list item, and the head of the detail.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConversationSummary)]
pub struct ConversationAnswer {
    provider: ProviderName,
    phone_number_id: String,
    wa_id: String,
    display_name: Option<String>,
    mode: ModeName,
    taken_by: Option<String>,
    escalation_reason: Option<String>,
    opted_out: bool,
    /// Newest inbound payload time, unix seconds.
    last_inbound_ts: Option<i64>,
    /// Latest change to the contact or the conversation.
    updated_at_ms: i64,
}

impl From<&ConversationSummary> for ConversationAnswer {
    fn from(c: &ConversationSummary) -> Self {
        Self {
            provider: c.provider.into(),
            phone_number_id: c.phone_number_id.clone(),
            wa_id: c.wa_id.clone(),
            display_name: c.display_name.clone(),
            mode: c.mode.into(),
            taken_by: c.taken_by.clone(),
            escalation_reason: c.escalation_reason.clone(),
            opted_out: c.opted_out,
            last_inbound_ts: c.last_inbound_ts,
            updated_at_ms: c.updated_at_ms,
        }
    }
}

/// A conversation with its timeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetail {
    #[serde(flatten)]
    summary: ConversationAnswer,
    /// The newest `limit` messages, oldest first.
    timeline: Vec<TimelineEntry>,
    /// false when old silent or dead messages (beyond the recent-scan horizon) may be missing.
    timeline_complete: bool,
}

/// One inbound message of the timeline and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    /// Null once erased or past retention.
    text: Option<String>,
    timestamp: i64,
    outcome: OutcomeKind,
    /// Silence reason or dead-letter error code.
    reason: Option<String>,
    reply: Option<TimelineReply>,
}

/// The reply to a timeline message, with its delivery statuses.
#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineReply {
    ledger_id: i64,
    /// claimed, ambiguous, sent, delivered, read, played, failed or unsent.
    state: &'static str,
    outbound_id: Option<String>,
    /// Empty once erased or past retention.
    text: String,
    attempts: u32,
    statuses: Vec<DeliveryAnswer>,
}

/// One status webhook of a reply.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryAnswer {
    /// sent, delivered, read, played, failed, or as Meta sent it.
    status: String,
    timestamp: i64,
    error_code: Option<i64>,
}

impl From<&store::ConversationDetail> for ConversationDetail {
    fn from(d: &store::ConversationDetail) -> Self {
        Self {
            summary: (&d.summary).into(),
            timeline: d.timeline.iter().map(entry).collect(),
            timeline_complete: d.complete,
        }
    }
}

fn entry(e: &store::TimelineEntry) -> TimelineEntry {
    let (outcome, reason) = OutcomeKind::of(e.outcome.as_ref());
    TimelineEntry {
        id: e.message_id.clone(),
        kind: e.kind.clone(),
        text: e.text.clone(),
        timestamp: e.timestamp,
        outcome,
        reason,
        reply: e.reply.as_ref().map(|r| TimelineReply {
            ledger_id: r.ledger_id,
            state: r.state.as_str(),
            outbound_id: r.outbound_id.clone(),
            text: r.text.clone(),
            attempts: r.attempts,
            statuses: r.statuses.iter().map(delivery).collect(),
        }),
    }
}

fn delivery(s: &DeliveryRecord) -> DeliveryAnswer {
    DeliveryAnswer {
        status: s.status.as_str().to_owned(),
        timestamp: s.timestamp,
        error_code: s.error_code,
    }
}
