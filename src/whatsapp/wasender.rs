//! WASenderApi-style gateway events → [`Notification`]. Pure.
//!
//! The envelope is `{event, timestamp, data, sessionId?}`. Message events come in three shapes
//! (`data.messages` as an object, as an array, or `data` itself being the message); all are read.
//! Our own outgoing messages (`key.fromMe`) are skipped. A message without a stable id gets a
//! fallback key from sender + timestamp + body hash, so re-deliveries still deduplicate.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cloud::{PayloadError, id_string, unix_seconds};
use crate::domain::{
    DeliveryStatus, InboundMessage, MessageId, MessageKind, Notification, PhoneNumberId, Provider,
    RejectedItem, StatusUpdate, WaId,
};

/// Header carrying the shared secret itself (plain equality, compared in constant time).
pub const SECRET_HEADER: &str = "x-webhook-signature";

/// The business number id used when the gateway names no session.
pub const DEFAULT_SESSION: &str = "wasender";

const MESSAGE_EVENTS: &[&str] = &[
    "messages.received",
    "messages.recieved",
    "messages.upsert",
    "messages-personal.received",
    "messages-group.received",
    "messages-newsletter.received",
];

pub fn parse_event(body: &[u8]) -> Result<Notification, PayloadError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let event = root
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| PayloadError::Schema("`event` is missing".into()))?;
    let data = root.get("data").unwrap_or(&Value::Null);
    let session = root
        .get("sessionId")
        .and_then(id_string)
        .unwrap_or_else(|| DEFAULT_SESSION.to_owned());
    let session = PhoneNumberId::parse(session).map_err(|e| PayloadError::Schema(e.to_string()))?;
    let envelope_ts = root.get("timestamp").and_then(unix_seconds);

    let mut out = Notification::default();
    if MESSAGE_EVENTS.contains(&event) {
        for item in message_items(data) {
            if item.pointer("/key/fromMe").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            match parse_message(item, &session, envelope_ts) {
                Ok(m) => out.messages.push(m),
                Err(error) => out.rejected.push(RejectedItem {
                    error,
                    raw: item.to_string(),
                }),
            }
        }
    } else if event == "messages.update" {
        for item in message_items(data) {
            if let Some(status) = parse_status(item, &session, envelope_ts) {
                out.statuses.push(status);
            }
        }
    }
    // Session, chat, group, contact and call events carry no inbound message: acknowledged only.
    Ok(out)
}

fn message_items(data: &Value) -> Vec<&Value> {
    match data.get("messages") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ if data.get("key").is_some() => vec![data],
        _ => match data {
            Value::Array(items) => items.iter().collect(),
            _ => Vec::new(),
        },
    }
}

fn parse_message(
    item: &Value,
    session: &PhoneNumberId,
    envelope_ts: Option<i64>,
) -> Result<InboundMessage, String> {
    let key = item.get("key").ok_or("message without a `key`")?;
    let sender = ["cleanedSenderPn", "senderPn", "remoteJid"]
        .iter()
        .find_map(|k| {
            key.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .ok_or("message without a sender (`key.remoteJid`)")?;
    let from = WaId::parse(jid_user(sender)).map_err(|e| e.to_string())?;
    let timestamp = item
        .get("messageTimestamp")
        .and_then(unix_seconds)
        .or(envelope_ts)
        .ok_or("message without a timestamp")?;
    let content = item.get("message");
    let text = item
        .get("messageBody")
        .and_then(Value::as_str)
        .or_else(|| {
            content
                .and_then(|c| c.get("conversation"))
                .and_then(Value::as_str)
        })
        .or_else(|| {
            content
                .and_then(|c| c.pointer("/extendedTextMessage/text"))
                .and_then(Value::as_str)
        })
        .or_else(|| {
            content
                .and_then(|c| c.pointer("/imageMessage/caption"))
                .and_then(Value::as_str)
        })
        .or_else(|| {
            content
                .and_then(|c| c.pointer("/videoMessage/caption"))
                .and_then(Value::as_str)
        })
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let id = match key.get("id").and_then(id_string) {
        Some(id) => id,
        None => fallback_id(
            from.as_str(),
            timestamp,
            text.as_deref().unwrap_or(&item.to_string()),
        ),
    };
    Ok(InboundMessage {
        provider: Provider::Wasender,
        id: MessageId::parse(id).map_err(|e| e.to_string())?,
        phone_number_id: session.clone(),
        from,
        group: None,
        kind: content.map_or(MessageKind::Text, kind_of),
        text,
        timestamp,
        raw: item.to_string(),
    })
}

/// A stable key for a gateway message that has no id: sender + payload timestamp + body hash.
pub fn fallback_id(sender: &str, timestamp: i64, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!(
        "fallback:{sender}:{timestamp}:{}",
        &hex::encode(digest)[..24]
    )
}

/// `34600000001@s.whatsapp.net` → `34600000001`; a bare number passes through.
fn jid_user(jid: &str) -> &str {
    let user = jid.split('@').next().unwrap_or(jid);
    let user = user.split(':').next().unwrap_or(user);
    user.strip_prefix('+').unwrap_or(user)
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

fn parse_status(
    item: &Value,
    session: &PhoneNumberId,
    envelope_ts: Option<i64>,
) -> Option<StatusUpdate> {
    let id = item.pointer("/key/id").and_then(id_string)?;
    let status = item.pointer("/update/status").and_then(|s| match s {
        Value::String(s) => Some(s.to_lowercase()),
        // Baileys' numeric receipt codes.
        Value::Number(n) => match n.as_i64()? {
            0 => Some("failed".into()),
            2 => Some("sent".into()),
            3 => Some("delivered".into()),
            4 => Some("read".into()),
            5 => Some("played".into()),
            _ => None,
        },
        _ => None,
    })?;
    let status = if status == "error" {
        "failed".to_owned()
    } else {
        status
    };
    Some(StatusUpdate {
        provider: Provider::Wasender,
        message_id: MessageId::parse(id).ok()?,
        status: DeliveryStatus::parse(&status),
        phone_number_id: session.clone(),
        recipient_id: item
            .pointer("/key/remoteJid")
            .and_then(Value::as_str)
            .map(|j| jid_user(j).to_owned()),
        timestamp: envelope_ts.unwrap_or(0),
        callback_data: None,
        error_code: None,
        raw: item.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn all_three_message_shapes_are_read() {
        let msg = json!({"key": {"id": "K1", "remoteJid": "34600000001@s.whatsapp.net", "fromMe": false},
                         "messageBody": "hi", "messageTimestamp": 1700000000});
        for data in [
            json!({"messages": msg.clone()}),
            json!({"messages": [msg.clone()]}),
            msg.clone(),
        ] {
            let n = parse_event(&body(
                json!({"event": "messages.received", "timestamp": 1, "data": data}),
            ))
            .unwrap();
            assert_eq!(n.messages.len(), 1, "{n:?}");
            assert_eq!(n.messages[0].from.as_str(), "34600000001");
            assert_eq!(n.messages[0].text.as_deref(), Some("hi"));
        }
    }

    #[test]
    fn own_messages_are_skipped_and_lid_uses_sender_pn() {
        let data = json!({"messages": [
            {"key": {"id": "A", "remoteJid": "1@s.whatsapp.net", "fromMe": true}, "messageBody": "x"},
            {"key": {"id": "B", "remoteJid": "99@lid", "senderPn": "34600000002@s.whatsapp.net"},
             "message": {"conversation": "yo"}, "messageTimestamp": "5"}
        ]});
        let n = parse_event(&body(
            json!({"event": "messages.upsert", "data": data, "sessionId": "s1"}),
        ))
        .unwrap();
        assert_eq!(n.messages.len(), 1);
        assert_eq!(n.messages[0].from.as_str(), "34600000002");
        assert_eq!(n.messages[0].phone_number_id.as_str(), "s1");
    }

    #[test]
    fn missing_id_falls_back_to_a_stable_key() {
        let ev = json!({"event": "messages.received", "timestamp": 7,
                        "data": {"key": {"remoteJid": "5@s.whatsapp.net"}, "messageBody": "same"}});
        let a = parse_event(&body(ev.clone())).unwrap().messages[0]
            .id
            .clone();
        let b = parse_event(&body(ev)).unwrap().messages[0].id.clone();
        assert_eq!(a, b);
        assert!(a.as_str().starts_with("fallback:5:7:"));
    }

    #[test]
    fn other_events_are_acknowledged_empty() {
        let n = parse_event(&body(
            json!({"event": "session.status", "data": {"status": "CONNECTED"}}),
        ))
        .unwrap();
        assert!(n.is_empty());
        assert!(parse_event(b"{}").is_err());
    }
}
