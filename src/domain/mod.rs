//! Pure domain logic: identifiers, the parsed notification model, outcomes. No I/O here.

pub mod ambiguous;
pub mod ids;
pub mod inbound;

pub use ids::{
    Channel, GroupId, IdError, MessageId, OperatorNote, Origin, PhoneNumberId, Provider, WaId,
};
pub use inbound::{
    ContactProfile, ConversationKey, DeliveryStatus, InboundMessage, MessageKind, Notification,
    PlatformError, RejectedItem, SessionEvent, SessionState, StatusUpdate,
};
pub mod outcome;

pub use outcome::{Outcome, SilenceReason};
pub mod gates;
pub mod keywords;
pub mod retry;

pub use ambiguous::{AmbiguousResolution, ResolvedBy, SendRef};
pub use gates::{ConversationMode, GateSnapshot, GroupPolicy, LedgerState, SweepFacts, Verdict};

/// Callback data naming a ledger row but no attempt (`replyd:<id>`), as replyd wrote it before
/// attempts were named: read as the row's current attempt. Sends name theirs ([`SendRef`]).
pub fn callback_for_ledger(ledger_id: i64) -> String {
    SendRef {
        ledger_id,
        attempt: None,
    }
    .callback_data()
}
