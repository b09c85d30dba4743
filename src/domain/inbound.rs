//! What an authentic webhook delivery says, once parsed: inbound messages, delivery statuses,
//! contact profiles, platform errors, and the items that could not be understood (kept, never
//! dropped). Provider-neutral: the Cloud API and WASender parsers both produce a [`Notification`].

use std::fmt;

use serde::Serialize;

use super::ids::{GroupId, MessageId, PhoneNumberId, Provider, WaId};

/// Everything one webhook delivery carried. One POST can carry many of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notification {
    pub messages: Vec<InboundMessage>,
    pub statuses: Vec<StatusUpdate>,
    pub contacts: Vec<ContactProfile>,
    pub platform_errors: Vec<PlatformError>,
    /// Gateway session state changes (WASender `session.status`); the Cloud API has none.
    pub session_events: Vec<SessionEvent>,
    /// Parts of an authentic payload that could not be parsed; each becomes a dead letter.
    pub rejected: Vec<RejectedItem>,
}

impl Notification {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.statuses.is_empty()
            && self.contacts.is_empty()
            && self.platform_errors.is_empty()
            && self.session_events.is_empty()
            && self.rejected.is_empty()
    }
}

/// One message a user sent to a business number.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    pub provider: Provider,
    pub id: MessageId,
    pub phone_number_id: PhoneNumberId,
    /// The person who wrote it (in a group: the participant, never the group's id).
    pub from: WaId,
    /// The group chat it was written in, if any (WASender `remoteJid` `…@g.us`).
    pub group: Option<GroupId>,
    pub kind: MessageKind,
    /// The words a responder can act on: text body, caption, button or list title…
    pub text: Option<String>,
    /// Unix seconds as stated by the payload (not our arrival time): the 24-hour window runs from it.
    pub timestamp: i64,
    /// The message object exactly as the provider sent it (JSON text), for operators and replays.
    pub raw: String,
}

impl InboundMessage {
    pub fn conversation(&self) -> ConversationKey {
        ConversationKey {
            provider: self.provider,
            phone_number_id: self.phone_number_id.clone(),
            wa_id: self.from.clone(),
        }
    }
}

/// A conversation is one user talking to one business number (or gateway session) of one
/// provider: a WASender session id and a Cloud API phone number id that happen to be equal
/// name two different conversations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationKey {
    pub provider: Provider,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
}

/// The message `type` field. Unknown future types are kept as [`MessageKind::Other`], stored, not rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Text,
    Image,
    Video,
    Document,
    Audio,
    Sticker,
    Location,
    Contacts,
    Interactive,
    Button,
    Reaction,
    Order,
    System,
    Edit,
    Revoke,
    Unsupported,
    Other(String),
}

impl MessageKind {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "text" => Self::Text,
            "image" => Self::Image,
            "video" => Self::Video,
            "document" => Self::Document,
            "audio" => Self::Audio,
            "sticker" => Self::Sticker,
            "location" => Self::Location,
            "contacts" => Self::Contacts,
            "interactive" => Self::Interactive,
            "button" => Self::Button,
            "reaction" => Self::Reaction,
            "order" => Self::Order,
            "system" => Self::System,
            "edit" => Self::Edit,
            "revoke" => Self::Revoke,
            "unsupported" | "unknown" => Self::Unsupported,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Text => "text",
            Self::Image => "image",
            Self::Video => "video",
            Self::Document => "document",
            Self::Audio => "audio",
            Self::Sticker => "sticker",
            Self::Location => "location",
            Self::Contacts => "contacts",
            Self::Interactive => "interactive",
            Self::Button => "button",
            Self::Reaction => "reaction",
            Self::Order => "order",
            Self::System => "system",
            Self::Edit => "edit",
            Self::Revoke => "revoke",
            Self::Unsupported => "unsupported",
            Self::Other(other) => other,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The delivery state of one of our outbound messages, as a status webhook reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
    /// Older or future status strings are stored as they came, never refused.
    Other(String),
}

impl DeliveryStatus {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "played" => Self::Played,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Played => "played",
            Self::Failed => "failed",
            Self::Other(other) => other,
        }
    }

    /// Position on the forward-only ladder sent < delivered < read ≤ played; failed is final.
    /// `None` for statuses that never move a ledger row.
    pub fn rank(&self) -> Option<u8> {
        match self {
            Self::Sent => Some(1),
            Self::Delivered => Some(2),
            Self::Read => Some(3),
            Self::Played => Some(4),
            Self::Failed => Some(u8::MAX),
            Self::Other(_) => None,
        }
    }
}

/// A status webhook for one of our outbound messages. Deduplicated per (message id, status).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub provider: Provider,
    pub message_id: MessageId,
    pub status: DeliveryStatus,
    pub phone_number_id: PhoneNumberId,
    pub recipient_id: Option<String>,
    pub timestamp: i64,
    /// Echo of the `biz_opaque_callback_data` we sent: our ledger id.
    pub callback_data: Option<String>,
    /// First error code on a `failed` status, if any.
    pub error_code: Option<i64>,
    pub raw: String,
}

/// A gateway session's connection state, as its `session.status` event reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    Connected,
    Connecting,
    Disconnected,
    LoggedOut,
    NeedScan,
    Expired,
}

impl SessionState {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_uppercase().as_str() {
            "CONNECTED" => Some(Self::Connected),
            "CONNECTING" => Some(Self::Connecting),
            "DISCONNECTED" => Some(Self::Disconnected),
            "LOGGED_OUT" => Some(Self::LoggedOut),
            "NEED_SCAN" => Some(Self::NeedScan),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }

    /// Whether sends through the session can go out. Only `CONNECTED` resumes them; every state
    /// that says the session is gone pauses them (the gateway would answer 503 meanwhile).
    /// `CONNECTING` changes nothing: it is on its way to one or the other.
    pub fn sends_allowed(self) -> Option<bool> {
        match self {
            Self::Connected => Some(true),
            Self::Disconnected | Self::LoggedOut | Self::NeedScan | Self::Expired => Some(false),
            Self::Connecting => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "CONNECTED",
            Self::Connecting => "CONNECTING",
            Self::Disconnected => "DISCONNECTED",
            Self::LoggedOut => "LOGGED_OUT",
            Self::NeedScan => "NEED_SCAN",
            Self::Expired => "EXPIRED",
        }
    }
}

/// One `session.status` event of a gateway session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub session: PhoneNumberId,
    pub state: SessionState,
    /// Unix seconds of the event (envelope timestamp); later events win.
    pub timestamp: i64,
}

/// A contact's display name as the payload gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactProfile {
    pub provider: Provider,
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
    pub name: Option<String>,
}

/// An error Meta reports at the notification level (`value.errors`), not tied to a message we hold.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformError {
    pub phone_number_id: Option<PhoneNumberId>,
    pub code: Option<i64>,
    pub title: Option<String>,
    pub raw: String,
}

/// A part of an authentic payload that could not be understood, kept with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedItem {
    pub error: String,
    pub raw: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_is_kept() {
        for raw in [
            "text", "image", "reaction", "order", "system", "edit", "revoke",
        ] {
            assert_eq!(MessageKind::parse(raw).as_str(), raw);
        }
        assert_eq!(
            MessageKind::parse("hologram"),
            MessageKind::Other("hologram".into())
        );
    }

    #[test]
    fn status_ranks_only_move_forward() {
        let order =
            ["sent", "delivered", "read", "played"].map(|s| DeliveryStatus::parse(s).rank());
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        assert!(DeliveryStatus::Failed.rank() > DeliveryStatus::Played.rank());
        assert_eq!(DeliveryStatus::parse("deleted").rank(), None);
    }
}
