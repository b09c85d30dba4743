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
use crate::domain::{
    ConversationKey, ConversationMode, OperatorNote, PhoneNumberId, Provider, WaId,
};
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
        "reply": m.reply.as_ref().map(|r| json!({
            "ledger_id": r.ledger_id,
            "state": r.state.as_str(),
            "outbound_id": r.outbound_id,
            "attempts": r.attempts,
            "resolved_by": r.resolved_by.map(|b| b.as_str()),
            "double_sends": r.double_sends,
        })),
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
        "first_attempt_send_ratio": if s.sends == 0 { Value::Null } else { json!(s.first_attempt_sends as f64 / s.sends as f64) },
        "dead_letters": s.dead_letters_open,
        "queue": { "available": s.jobs_available, "total": s.jobs_total },
    })
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/dead-letters?limit=N` (newest first, open ones, without their kept bytes).
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

/// `GET /api/v1/dead-letters/{id}`: one dead letter, whatever its state, with its kept bytes.
pub async fn dead_letter(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<DeadLetter>, ApiError> {
    let letter = state
        .store
        .dead_letter(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(letter))
}

/// `POST /api/v1/dead-letters/{id}/replay`: a message goes back through the gates with a new
/// job; a payload is parsed and ingested again.
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    let now = state.clock.now_ms();
    match state
        .ingestor
        .replay_dead_letter(&state.store, id, now)
        .await?
    {
        DeadLetterReplay::MessageQueued | DeadLetterReplay::PayloadIngested => {
            state.jobs_ready.notify_one();
            Ok(Json(json!({"id": id, "state": "replayed"})))
        }
        DeadLetterReplay::StillMalformed(why) => {
            Err(ApiError::Conflict(format!("still fails: {why}")))
        }
        DeadLetterReplay::NotFound => Err(ApiError::NotFound),
        DeadLetterReplay::NotOpen => Err(ApiError::Conflict("the dead letter is not open".into())),
    }
}

/// `POST /api/v1/dead-letters/{id}/discard`
pub async fn discard_dead_letter(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    match state.store.discard_dead_letter(id).await? {
        DeadLetterAction::Discarded => Ok(Json(json!({"id": id, "state": "discarded"}))),
        DeadLetterAction::NotFound => Err(ApiError::NotFound),
        _ => Err(ApiError::Conflict("the dead letter is not open".into())),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct OperatorBody {
    by: Option<String>,
    reason: Option<String>,
}

/// `?provider=cloud|wasender` on routes that name a conversation or contact (default `cloud`),
/// so a gateway session id and a phone number id that happen to be equal never collide.
#[derive(Debug, Default, Deserialize)]
pub struct ProviderQuery {
    provider: Option<String>,
}

impl ProviderQuery {
    pub fn provider(&self) -> Result<Provider, ApiError> {
        parse_provider(self.provider.as_deref())
    }
}

pub fn parse_provider(raw: Option<&str>) -> Result<Provider, ApiError> {
    match raw {
        None => Ok(Provider::Cloud),
        Some(raw) => Provider::parse(raw)
            .ok_or_else(|| ApiError::BadRequest("provider must be one of cloud, wasender".into())),
    }
}

/// `POST /api/v1/conversations/{phone_number_id}/{wa_id}/{takeover|release|escalate|resolve}`
pub async fn conversation_action(
    State(state): State<AppState>,
    Path((phone_number_id, wa_id, action)): Path<(String, String, String)>,
    Query(provider): Query<ProviderQuery>,
    body: Option<Json<OperatorBody>>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let (mode, note) = match action.as_str() {
        "takeover" => (ConversationMode::Operator, Some(note(body.by, "operator")?)),
        "escalate" => (
            ConversationMode::Escalated,
            Some(note(body.reason, "escalated by an operator")?),
        ),
        "release" | "resolve" => (ConversationMode::Bot, None),
        _ => return Err(ApiError::NotFound),
    };
    let key = parse_conversation(provider.provider()?, &phone_number_id, &wa_id)?;
    state
        .store
        .set_conversation_mode(
            &key,
            mode,
            note.as_ref().map(OperatorNote::as_str),
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(json!({
        "provider": key.provider,
        "phone_number_id": key.phone_number_id,
        "wa_id": key.wa_id,
        "mode": mode.as_str(),
    })))
}

/// An operator's `by` or `reason`, or the default when none is given; 422 when out of bounds.
fn note(given: Option<String>, default: &str) -> Result<OperatorNote, ApiError> {
    OperatorNote::parse(given.unwrap_or_else(|| default.to_owned()))
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// `POST /api/v1/contacts/{phone_number_id}/{wa_id}/{opt-out|opt-in}`
pub async fn contact_consent(
    State(state): State<AppState>,
    Path((phone_number_id, wa_id, action)): Path<(String, String, String)>,
    Query(provider): Query<ProviderQuery>,
) -> Result<Json<Value>, ApiError> {
    let opted_out = match action.as_str() {
        "opt-out" => true,
        "opt-in" => false,
        _ => return Err(ApiError::NotFound),
    };
    let key = parse_conversation(provider.provider()?, &phone_number_id, &wa_id)?;
    state
        .store
        .set_opted_out(&key, opted_out, state.clock.now_ms())
        .await?;
    Ok(Json(json!({
        "provider": key.provider,
        "phone_number_id": key.phone_number_id,
        "wa_id": key.wa_id,
        "opted_out": opted_out,
    })))
}

pub fn parse_conversation(
    provider: Provider,
    phone_number_id: &str,
    wa_id: &str,
) -> Result<ConversationKey, ApiError> {
    Ok(ConversationKey {
        provider,
        phone_number_id: PhoneNumberId::parse(phone_number_id)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        wa_id: WaId::parse(wa_id).map_err(|e| ApiError::BadRequest(e.to_string()))?,
    })
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
