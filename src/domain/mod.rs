//! Pure domain logic: identifiers, the parsed notification model, outcomes. No I/O here.

pub mod ids;
pub mod inbound;

pub use ids::{IdError, MessageId, PhoneNumberId, Provider, WaId};
pub use inbound::{
    ContactProfile, ConversationKey, DeliveryStatus, InboundMessage, MessageKind, Notification,
    PlatformError, RejectedItem, StatusUpdate,
};
pub mod outcome;

pub use outcome::{Outcome, SilenceReason};
