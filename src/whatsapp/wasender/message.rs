//! Gateway message events → inbound messages. Who wrote a message is decided here:
//!
//! * in a personal chat, the chat (`key.remoteJid`), or the phone number the gateway adds beside
//!   it (`cleanedSenderPn` / `senderPn`, preferred: under LID addressing the chat is a `…@lid`);
//! * in a group (`remoteJid` `…@g.us`, or a `messages-group.received` event), the participant
//!   (`cleanedParticipantPn` / `participantPn` / `participant`), never the group, whose id goes
//!   to [`InboundMessage::group`].
//!
//! A LID (`…@lid`) is a hidden-number alias, not a phone number: a message whose sender is known
//! only by its LID is refused with the reason rather than keyed, and later answered, as if the
//! LID's digits were someone's number.

use serde_json::Value;

use super::{Received, fallback_id, gateway_seconds, id_string, items, jid_domain, jid_user};
use crate::domain::{
    ContactProfile, GroupId, InboundMessage, MessageId, MessageKind, Notification, Provider,
    RejectedItem, WaId,
};
use crate::whatsapp::cloud::sender_error;

/// Where the phone number of a personal chat's sender may be, best first.
const PERSONAL_SENDER: &[&str] = &[
    "cleanedSenderPn",
    "cleanSenderPn",
    "senderPn",
    "remoteJidAlt",
    "remoteJid",
];
/// Where the phone number of a group message's participant may be, best first.
const GROUP_SENDER: &[&str] = &[
    "cleanedParticipantPn",
    "cleanParticipantPn",
    "participantPn",
    "participantAlt",
    "participant",
];

/// Reads every message item of a message event; `group_event` is `messages-group.received`.
pub(super) fn collect(data: &Value, at: &Received<'_>, group_event: bool, out: &mut Notification) {
    for item in items(data) {
        // Our own outgoing messages (`messages.upsert` carries both directions).
        if item.pointer("/key/fromMe").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let chat = item.pointer("/key/remoteJid").and_then(Value::as_str);
        // Status stories and channel posts: nobody wrote to the business, nobody to answer.
        if chat
            .and_then(jid_domain)
            .is_some_and(|d| d == "broadcast" || d == "newsletter")
        {
            continue;
        }
        match parse_message(item, at, group_event) {
            Ok((message, name)) => {
                if let Some(name) = name {
                    out.contacts.push(ContactProfile {
                        provider: Provider::Wasender,
                        phone_number_id: at.session.clone(),
                        wa_id: message.from.clone(),
                        name: Some(name),
                    });
                }
                out.messages.push(message);
            }
            Err(error) => out.rejected.push(RejectedItem {
                error,
                raw: item.to_string(),
            }),
        }
    }
}

/// One message item, and the sender's push name when it has one.
fn parse_message(
    item: &Value,
    at: &Received<'_>,
    group_event: bool,
) -> Result<(InboundMessage, Option<String>), String> {
    let key = item.get("key").ok_or("message without a `key`")?;
    let chat = key.get("remoteJid").and_then(Value::as_str);
    let in_group = group_event || chat.and_then(jid_domain) == Some("g.us");
    let group = if in_group {
        let chat = chat
            .filter(|c| !jid_user(c).is_empty())
            .ok_or("group message without its group (`key.remoteJid`)")?;
        Some(GroupId::parse(jid_user(chat)).map_err(|e| format!("invalid group id: {e}"))?)
    } else {
        None
    };
    let from = sender(key, in_group)?;
    let timestamp = item
        .get("messageTimestamp")
        .and_then(gateway_seconds)
        .or(at.timestamp)
        .ok_or("message without a timestamp")?;
    let content = item.get("message");
    let text = text_of(item, content);
    let id = match key.get("id").and_then(id_string) {
        Some(id) => id,
        None => fallback_id(
            from.as_str(),
            timestamp,
            text.as_deref().unwrap_or(&item.to_string()),
        ),
    };
    let name = item
        .get("pushName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let message = InboundMessage {
        provider: Provider::Wasender,
        id: MessageId::parse(id).map_err(|e| e.to_string())?,
        phone_number_id: at.session.clone(),
        from,
        group,
        kind: content.map_or(MessageKind::Text, kind_of),
        text,
        timestamp,
        raw: item.to_string(),
    };
    Ok((message, name))
}

/// Who wrote the message; see the module docs for the order and for LIDs.
fn sender(key: &Value, in_group: bool) -> Result<WaId, String> {
    let fields = if in_group {
        GROUP_SENDER
    } else {
        PERSONAL_SENDER
    };
    let mut lid = None;
    for field in fields {
        let Some(raw) = key.get(*field).and_then(id_string) else {
            continue;
        };
        if jid_domain(&raw) == Some("lid") {
            lid.get_or_insert(raw);
            continue;
        }
        let user = jid_user(&raw);
        return WaId::parse(user).map_err(|e| sender_error(user, &e));
    }
    Err(match (lid, in_group) {
        (Some(lid), _) => format!(
            "sender {lid:?} is a LID (a hidden number) and the event gives no phone number for it"
        ),
        (None, true) => "group message without a participant (`key.participant`)".to_owned(),
        (None, false) => "message without a sender (`key.remoteJid`)".to_owned(),
    })
}

/// The words a responder can act on: the flattened `messageBody`, else the text or caption.
fn text_of(item: &Value, content: Option<&Value>) -> Option<String> {
    let at = |path: &str| {
        content
            .and_then(|c| c.pointer(path))
            .and_then(Value::as_str)
    };
    item.get("messageBody")
        .and_then(Value::as_str)
        .or_else(|| at("/conversation"))
        .or_else(|| at("/extendedTextMessage/text"))
        .or_else(|| at("/imageMessage/caption"))
        .or_else(|| at("/videoMessage/caption"))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn kind_of(content: &Value) -> MessageKind {
    let Some(obj) = content.as_object() else {
        return MessageKind::Text;
    };
    let known = [
        ("conversation", MessageKind::Text),
        ("extendedTextMessage", MessageKind::Text),
        ("imageMessage", MessageKind::Image),
        ("videoMessage", MessageKind::Video),
        ("documentMessage", MessageKind::Document),
        ("audioMessage", MessageKind::Audio),
        ("stickerMessage", MessageKind::Sticker),
        ("locationMessage", MessageKind::Location),
        ("contactMessage", MessageKind::Contacts),
        ("reactionMessage", MessageKind::Reaction),
    ];
    known
        .into_iter()
        .find(|(k, _)| obj.contains_key(*k))
        .map(|(_, kind)| kind)
        .or_else(|| obj.keys().next().map(|k| MessageKind::Other(k.clone())))
        .unwrap_or(MessageKind::Text)
}
