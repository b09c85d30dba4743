//! Pure domain logic: identifiers, the parsed notification model, outcomes. No I/O here.

pub mod ids;
pub mod inbound;

pub use ids::{IdError, MessageId, OperatorNote, PhoneNumberId, Provider, WaId};
pub use inbound::{
    ContactProfile, ConversationKey, DeliveryStatus, InboundMessage, MessageKind, Notification,
    PlatformError, RejectedItem, StatusUpdate,
};
pub mod outcome;

pub use outcome::{Outcome, SilenceReason};
pub mod gates;
pub mod keywords;
pub mod retry;

pub use gates::{ConversationMode, GateSnapshot, LedgerState, SweepFacts, Verdict};

/// The `biz_opaque_callback_data` replyd puts on a send: it ties status webhooks to the ledger.
pub fn callback_for_ledger(ledger_id: i64) -> String {
    format!("replyd:{ledger_id}")
}

/// The ledger id in callback data replyd wrote; `None` for anyone else's.
pub fn ledger_id_from_callback(callback: &str) -> Option<i64> {
    callback.strip_prefix("replyd:")?.parse().ok()
}
