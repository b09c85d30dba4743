//! Small answer types the admin API's bodies share, each with its OpenAPI schema derived from
//! the type itself (`utoipa::ToSchema`), so the document describes exactly what is serialized.
//! Domain enums are mirrored here rather than given schema derives: the domain stays free of
//! HTTP concerns, and a `From` impl per enum is the one mapping.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{ConversationKey, ConversationMode, Outcome, Provider};
use crate::store::ErasureCounts;

/// Which provider a message, conversation or contact belongs to.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Provider)]
pub enum ProviderName {
    Cloud,
    Wasender,
}

impl From<Provider> for ProviderName {
    fn from(p: Provider) -> Self {
        match p {
            Provider::Cloud => Self::Cloud,
            Provider::Wasender => Self::Wasender,
        }
    }
}

/// Who is in charge of a conversation.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ConversationMode)]
pub enum ModeName {
    Bot,
    Operator,
    Escalated,
}

impl From<ConversationMode> for ModeName {
    fn from(m: ConversationMode) -> Self {
        match m {
            ConversationMode::Bot => Self::Bot,
            ConversationMode::Operator => Self::Operator,
            ConversationMode::Escalated => Self::Escalated,
        }
    }
}

/// What became of an inbound message; `pending` until it has its one outcome.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeKind {
    Pending,
    Replied,
    Silent,
    Dead,
}

impl OutcomeKind {
    /// The kind and the reason (a silence reason or a dead letter's error code).
    pub fn of(outcome: Option<&Outcome>) -> (Self, Option<String>) {
        let kind = match outcome.map(Outcome::kind) {
            None => Self::Pending,
            Some("replied") => Self::Replied,
            Some("silent") => Self::Silent,
            Some(_) => Self::Dead,
        };
        (kind, outcome.and_then(|o| o.reason()).map(str::to_owned))
    }
}

/// Every error answer: 400, 401, 404, 409, 422, 503.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorAnswer {
    pub error: String,
}

/// A conversation's mode after an operator action.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModeChange {
    pub provider: ProviderName,
    pub phone_number_id: String,
    pub wa_id: String,
    pub mode: ModeName,
}

impl ModeChange {
    pub fn new(key: &ConversationKey, mode: ConversationMode) -> Self {
        Self {
            provider: key.provider.into(),
            phone_number_id: key.phone_number_id.as_str().to_owned(),
            wa_id: key.wa_id.as_str().to_owned(),
            mode: mode.into(),
        }
    }
}

/// A contact's consent after an opt-out or opt-in.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Consent {
    pub provider: ProviderName,
    pub phone_number_id: String,
    pub wa_id: String,
    pub opted_out: bool,
}

impl Consent {
    pub fn new(key: &ConversationKey, opted_out: bool) -> Self {
        Self {
            provider: key.provider.into(),
            phone_number_id: key.phone_number_id.as_str().to_owned(),
            wa_id: key.wa_id.as_str().to_owned(),
            opted_out,
        }
    }
}

/// What a contact's erasure removed. Kept: message ids (dedup), outcomes and reasons, ledger
/// states, the opt-out flag and the conversation's mode.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Erasure {
    pub provider: ProviderName,
    pub phone_number_id: String,
    pub wa_id: String,
    pub erased: ErasureCounts,
}

impl Erasure {
    pub fn new(key: &ConversationKey, erased: ErasureCounts) -> Self {
        Self {
            provider: key.provider.into(),
            phone_number_id: key.phone_number_id.as_str().to_owned(),
            wa_id: key.wa_id.as_str().to_owned(),
            erased,
        }
    }
}
