//! Admin API under `/api/v1`: the bearer token check (constant-time compare), messages, the
//! summary and the dead-letter queue. Each handler's `#[utoipa::path]` is its entry in the
//! OpenAPI document and in the router (`openapi::routes`), one table for both.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::answers::{OutcomeKind, ProviderName};
use super::error::ApiError;
use super::openapi::{BadRequest, Conflict, NotFound};
use crate::ingest::DeadLetterReplay;
use crate::store::{DeadLetter, DeadLetterAction, MessageRecord, Summary};

/// Refuses any request without `Authorization: Bearer <admin token>`. With no admin token
/// configured nothing matches, an empty presented token included.
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()));
    match presented {
        Some(token) if state.config.admin_token.matches(token) => Ok(next.run(request).await),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The token of a `Bearer` credential. The scheme is case-insensitive (RFC 7235 §2.1), one or
/// more spaces separate it from the token; an empty token is no token.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// `{message_id}` of `GET /api/v1/messages/{message_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessagePath {
    /// Provider message id (wamid…).
    message_id: String,
}

/// An inbound message and what became of it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageAnswer {
    id: String,
    provider: ProviderName,
    phone_number_id: String,
    from: String,
    #[serde(rename = "type")]
    kind: String,
    /// Payload time, unix seconds.
    timestamp: i64,
    outcome: OutcomeKind,
    /// Silence reason (opted_out, operator, escalated, answered, window_closed, in_flight,
    /// superseded, no_reply, group) or dead-letter error code.
    reason: Option<String>,
    reply: Option<ReplyAnswer>,
}

/// The reply ledger row of a message.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Reply)]
pub struct ReplyAnswer {
    ledger_id: i64,
    /// claimed, ambiguous, sent, delivered, read, played, failed or unsent.
    state: &'static str,
    outbound_id: Option<String>,
    attempts: u32,
    /// How a send whose fate was unknown was settled: `status` (a status webhook: it went
    /// out), `evidence` (later sends of the number were confirmed, it was not: sent once more)
    /// or `operator` (no evidence either way: the dead letter `ambiguous_send`). Null if it was
    /// never ambiguous.
    resolved_by: Option<&'static str>,
    /// Statuses that showed an earlier attempt went out although the reply was sent again.
    double_sends: u32,
}

impl From<&MessageRecord> for MessageAnswer {
    fn from(m: &MessageRecord) -> Self {
        let (outcome, reason) = OutcomeKind::of(m.outcome.as_ref());
        Self {
            id: m.message_id.clone(),
            provider: m.provider.into(),
            phone_number_id: m.phone_number_id.clone(),
            from: m.wa_id.clone(),
            kind: m.kind.clone(),
            timestamp: m.timestamp,
            outcome,
            reason,
            reply: m.reply.as_ref().map(|r| ReplyAnswer {
                ledger_id: r.ledger_id,
                state: r.state.as_str(),
                outbound_id: r.outbound_id.clone(),
                attempts: r.attempts,
                resolved_by: r.resolved_by.map(|b| b.as_str()),
                double_sends: r.double_sends,
            }),
        }
    }
}

/// `GET /api/v1/messages/{message_id}`
#[utoipa::path(get, path = "/messages/{message_id}", params(MessagePath),
    summary = "A message's outcome by provider message id",
    responses((status = 200, description = "OK", body = MessageAnswer), (status = 404, response = NotFound)))]
pub async fn message(
    State(state): State<AppState>,
    Path(path): Path<MessagePath>,
) -> Result<Json<MessageAnswer>, ApiError> {
    let record = state
        .store
        .message(&path.message_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json((&record).into()))
}

/// Counts over the whole store.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Summary)]
pub struct SummaryAnswer {
    inbound: u64,
    duplicates: u64,
    outcomes: OutcomeCounts,
    duplicate_ratio: f64,
    /// Null before the first send.
    first_attempt_send_ratio: Option<f64>,
    /// Open dead letters.
    dead_letters: u64,
    queue: QueueCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeCounts {
    pending: u64,
    replied: u64,
    /// Per silence reason.
    silent: BTreeMap<String, u64>,
    dead: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueCounts {
    available: u64,
    total: u64,
}

impl From<&Summary> for SummaryAnswer {
    fn from(s: &Summary) -> Self {
        let deliveries = s.inbound + s.duplicates;
        Self {
            inbound: s.inbound,
            duplicates: s.duplicates,
            outcomes: OutcomeCounts {
                pending: s.pending,
                replied: s.replied,
                silent: s.silent.iter().cloned().collect(),
                dead: s.dead,
            },
            duplicate_ratio: if deliveries == 0 {
                0.0
            } else {
                s.duplicates as f64 / deliveries as f64
            },
            first_attempt_send_ratio: (s.sends > 0)
                .then(|| s.first_attempt_sends as f64 / s.sends as f64),
            dead_letters: s.dead_letters_open,
            queue: QueueCounts {
                available: s.jobs_available,
                total: s.jobs_total,
            },
        }
    }
}

/// `GET /api/v1/summary`
#[utoipa::path(get, path = "/summary",
    summary = "Counts per outcome and reason, duplicate and first-attempt send ratios",
    responses((status = 200, description = "OK", body = SummaryAnswer)))]
pub async fn summary(State(state): State<AppState>) -> Result<Json<SummaryAnswer>, ApiError> {
    Ok(Json((&state.store.summary().await?).into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeadLetters)]
pub struct DeadLettersAnswer {
    dead_letters: Vec<DeadLetter>,
}

/// `GET /api/v1/dead-letters?limit=N` (newest first, open ones, without their kept bytes).
#[utoipa::path(get, path = "/dead-letters", params(ListQuery),
    summary = "Open dead letters, newest first, without their kept bytes",
    responses((status = 200, description = "OK", body = DeadLettersAnswer), (status = 400, response = BadRequest)))]
pub async fn dead_letters(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<DeadLettersAnswer>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest(
            "limit must be between 1 and 1000".into(),
        ));
    }
    let dead_letters = state.store.dead_letters(limit).await?;
    Ok(Json(DeadLettersAnswer { dead_letters }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeadLetterPath {
    /// Dead letter id.
    id: i64,
}

/// `GET /api/v1/dead-letters/{id}`: one dead letter, whatever its state, with its kept bytes.
#[utoipa::path(get, path = "/dead-letters/{id}", params(DeadLetterPath),
    summary = "One dead letter, whatever its state, with its kept bytes",
    responses((status = 200, description = "OK", body = DeadLetter), (status = 404, response = NotFound)))]
pub async fn dead_letter(
    State(state): State<AppState>,
    Path(path): Path<DeadLetterPath>,
) -> Result<Json<DeadLetter>, ApiError> {
    let letter = state
        .store
        .dead_letter(path.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(letter))
}

/// A dead letter after an operator action.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterState {
    id: i64,
    /// `replayed` or `discarded`.
    state: &'static str,
}

/// `POST /api/v1/dead-letters/{id}/replay`: a message goes back through the gates with a new
/// job; a payload is parsed and ingested again.
#[utoipa::path(post, path = "/dead-letters/{id}/replay", params(DeadLetterPath),
    summary = "Send a dead-lettered message back through the gates, or re-ingest a payload",
    responses((status = 200, description = "OK", body = DeadLetterState), (status = 404, response = NotFound),
        (status = 409, response = Conflict)))]
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    Path(DeadLetterPath { id }): Path<DeadLetterPath>,
) -> Result<Json<DeadLetterState>, ApiError> {
    let now = state.clock.now_ms();
    match state
        .ingestor
        .replay_dead_letter(&state.store, id, now)
        .await?
    {
        DeadLetterReplay::MessageQueued | DeadLetterReplay::PayloadIngested => {
            state.jobs_ready.notify_one();
            Ok(Json(DeadLetterState {
                id,
                state: "replayed",
            }))
        }
        DeadLetterReplay::StillMalformed(why) => {
            Err(ApiError::Conflict(format!("still fails: {why}")))
        }
        DeadLetterReplay::NotFound => Err(ApiError::NotFound),
        DeadLetterReplay::NotOpen => Err(ApiError::Conflict("the dead letter is not open".into())),
    }
}

/// `POST /api/v1/dead-letters/{id}/discard`
#[utoipa::path(post, path = "/dead-letters/{id}/discard", params(DeadLetterPath),
    summary = "Close a dead letter without replaying it",
    responses((status = 200, description = "OK", body = DeadLetterState), (status = 404, response = NotFound),
        (status = 409, response = Conflict)))]
pub async fn discard_dead_letter(
    State(state): State<AppState>,
    Path(DeadLetterPath { id }): Path<DeadLetterPath>,
) -> Result<Json<DeadLetterState>, ApiError> {
    match state.store.discard_dead_letter(id).await? {
        DeadLetterAction::Discarded => Ok(Json(DeadLetterState {
            id,
            state: "discarded",
        })),
        DeadLetterAction::NotFound => Err(ApiError::NotFound),
        _ => Err(ApiError::Conflict("the dead letter is not open".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_matched_case_insensitively() {
        for value in ["Bearer tok", "bearer tok", "BEARER tok", "bEaReR   tok "] {
            assert_eq!(bearer_token(value.as_bytes()), Some(&b"tok"[..]), "{value}");
        }
        for value in ["Basic tok", "Bearertok", "Bearer ", "Bearer", "", "tok"] {
            assert_eq!(bearer_token(value.as_bytes()), None, "{value:?}");
        }
    }
}
