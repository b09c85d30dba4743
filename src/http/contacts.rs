//! Admin routes that act on one conversation or contact: operator controls (takeover, release,
//! escalate, resolve), consent (opt-out, opt-in) and erasure. Each names its key as
//! `{phone_number_id}/{wa_id}` plus `?provider=cloud|wasender` (default `cloud`), so a gateway
//! session id and a phone number id that happen to be equal never name the same contact.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::answers::{Consent, Erasure, ModeChange};
use super::error::ApiError;
use super::openapi::{BadRequest, Unprocessable};
use crate::domain::{
    ConversationKey, ConversationMode, OperatorNote, PhoneNumberId, Provider, WaId,
};

/// `{phone_number_id}/{wa_id}` of a conversation or contact route.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ContactPath {
    /// The business phone number id (with `provider=wasender`: the gateway session id).
    phone_number_id: String,
    /// The user's WhatsApp id.
    wa_id: String,
}

/// `?provider=cloud|wasender` on routes that name a conversation or contact (default `cloud`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProviderQuery {
    /// Which provider the conversation is on: `cloud` (default) or `wasender`.
    #[param(value_type = Option<String>, pattern = "^(cloud|wasender)$")]
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

impl ContactPath {
    pub fn phone_number_id(&self) -> &str {
        &self.phone_number_id
    }

    pub fn wa_id(&self) -> &str {
        &self.wa_id
    }
}

fn key(path: &ContactPath, query: &ProviderQuery) -> Result<ConversationKey, ApiError> {
    parse_conversation(query.provider()?, &path.phone_number_id, &path.wa_id)
}

/// Who takes a conversation over (`takeover`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TakeoverBody {
    /// Shown in the console and the API (default `operator`); at most 256 characters.
    #[schema(max_length = 256)]
    by: Option<String>,
}

/// Why a conversation is escalated (`escalate`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EscalateBody {
    /// At most 256 characters (default `escalated by an operator`).
    #[schema(max_length = 256)]
    reason: Option<String>,
}

/// An operator's `by` or `reason`, or the default when none is given; 422 when out of bounds.
fn note(given: Option<String>, default: &str) -> Result<OperatorNote, ApiError> {
    OperatorNote::parse(given.unwrap_or_else(|| default.to_owned()))
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

async fn set_mode(
    state: &AppState,
    key: ConversationKey,
    mode: ConversationMode,
    note: Option<OperatorNote>,
) -> Result<Json<ModeChange>, ApiError> {
    state
        .store
        .set_conversation_mode(
            &key,
            mode,
            note.as_ref().map(OperatorNote::as_str),
            state.clock.now_ms(),
        )
        .await?;
    Ok(Json(ModeChange::new(&key, mode)))
}

/// `POST /api/v1/conversations/{phone_number_id}/{wa_id}/takeover` `{"by"}`
#[utoipa::path(post, path = "/conversations/{phone_number_id}/{wa_id}/takeover",
    params(ContactPath, ProviderQuery), request_body(content = Option<TakeoverBody>),
    summary = "An operator takes the conversation: the bot stays silent",
    responses((status = 200, description = "OK", body = ModeChange), (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable)))]
pub async fn takeover(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(query): Query<ProviderQuery>,
    body: Option<Json<TakeoverBody>>,
) -> Result<Json<ModeChange>, ApiError> {
    let by = note(body.and_then(|Json(b)| b.by), "operator")?;
    let key = key(&path, &query)?;
    set_mode(&state, key, ConversationMode::Operator, Some(by)).await
}

/// `POST /api/v1/conversations/{phone_number_id}/{wa_id}/release`
#[utoipa::path(post, path = "/conversations/{phone_number_id}/{wa_id}/release",
    params(ContactPath, ProviderQuery), summary = "Hand the conversation back to the bot",
    responses((status = 200, description = "OK", body = ModeChange), (status = 400, response = BadRequest)))]
pub async fn release(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(query): Query<ProviderQuery>,
) -> Result<Json<ModeChange>, ApiError> {
    set_mode(&state, key(&path, &query)?, ConversationMode::Bot, None).await
}

/// `POST /api/v1/conversations/{phone_number_id}/{wa_id}/escalate` `{"reason"}`
#[utoipa::path(post, path = "/conversations/{phone_number_id}/{wa_id}/escalate",
    params(ContactPath, ProviderQuery), request_body(content = Option<EscalateBody>),
    summary = "Escalate the conversation: the bot stays silent",
    responses((status = 200, description = "OK", body = ModeChange), (status = 400, response = BadRequest),
        (status = 422, response = Unprocessable)))]
pub async fn escalate(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(query): Query<ProviderQuery>,
    body: Option<Json<EscalateBody>>,
) -> Result<Json<ModeChange>, ApiError> {
    let reason = note(
        body.and_then(|Json(b)| b.reason),
        "escalated by an operator",
    )?;
    let key = key(&path, &query)?;
    set_mode(&state, key, ConversationMode::Escalated, Some(reason)).await
}

/// `POST /api/v1/conversations/{phone_number_id}/{wa_id}/resolve`
#[utoipa::path(post, path = "/conversations/{phone_number_id}/{wa_id}/resolve",
    params(ContactPath, ProviderQuery), summary = "Close an escalation: back to the bot",
    responses((status = 200, description = "OK", body = ModeChange), (status = 400, response = BadRequest)))]
pub async fn resolve(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(query): Query<ProviderQuery>,
) -> Result<Json<ModeChange>, ApiError> {
    set_mode(&state, key(&path, &query)?, ConversationMode::Bot, None).await
}

async fn set_consent(
    state: &AppState,
    key: ConversationKey,
    opted_out: bool,
) -> Result<Json<Consent>, ApiError> {
    state
        .store
        .set_opted_out(&key, opted_out, state.clock.now_ms())
        .await?;
    Ok(Json(Consent::new(&key, opted_out)))
}

/// `POST /api/v1/contacts/{phone_number_id}/{wa_id}/opt-out`
#[utoipa::path(post, path = "/contacts/{phone_number_id}/{wa_id}/opt-out",
    params(ContactPath, ProviderQuery), summary = "The contact opts out: never replied to",
    responses((status = 200, description = "OK", body = Consent), (status = 400, response = BadRequest)))]
pub async fn opt_out(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(query): Query<ProviderQuery>,
) -> Result<Json<Consent>, ApiError> {
    set_consent(&state, key(&path, &query)?, true).await
}

/// `POST /api/v1/contacts/{phone_number_id}/{wa_id}/opt-in`
#[utoipa::path(post, path = "/contacts/{phone_number_id}/{wa_id}/opt-in",
    params(ContactPath, ProviderQuery), summary = "The contact opts back in",
    responses((status = 200, description = "OK", body = Consent), (status = 400, response = BadRequest)))]
pub async fn opt_in(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(query): Query<ProviderQuery>,
) -> Result<Json<Consent>, ApiError> {
    set_consent(&state, key(&path, &query)?, false).await
}

/// `POST /api/v1/contacts/{phone_number_id}/{wa_id}/erase`: the contact's message bodies,
/// name and payloads go at once; message ids, outcomes and the opt-out flag stay. Idempotent:
/// erasing again, or an unknown contact, answers zeros.
#[utoipa::path(post, path = "/contacts/{phone_number_id}/{wa_id}/erase",
    params(ContactPath, ProviderQuery),
    summary = "Erase the contact's message bodies, name and payloads (keeps ids, outcomes, opt-out)",
    responses((status = 200, description = "OK", body = Erasure), (status = 400, response = BadRequest)))]
pub async fn erase(
    State(state): State<AppState>,
    Path(path): Path<ContactPath>,
    Query(query): Query<ProviderQuery>,
) -> Result<Json<Erasure>, ApiError> {
    let key = key(&path, &query)?;
    let erased = state
        .store
        .erase_contact(&key, state.clock.now_ms())
        .await?;
    tracing::info!(provider = %key.provider, phone_number_id = %key.phone_number_id,
        messages = erased.messages, "contact erased on request");
    Ok(Json(Erasure::new(&key, erased)))
}
