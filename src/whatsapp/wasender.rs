//! WASenderApi-style gateway events → [`WasenderEvent`]. Pure: bytes in, domain values out.
//!
//! The envelope is `{event, timestamp, data, sessionId?}`; `timestamp` comes in seconds or in
//! milliseconds depending on the event, and both are read as seconds. What each event becomes:
//!
//! | event | becomes |
//! |---|---|
//! | `messages.received`, `messages.upsert`, `messages-personal.received`, `messages-group.received` | [`InboundMessage`]s (+ a [`ContactProfile`] from `pushName`) |
//! | `messages.update`, `message-receipt.update` | [`StatusUpdate`]s of our own outgoing messages |
//! | `session.status` | a [`SessionEvent`] |
//! | anything else (chats, groups, contacts, calls, newsletters, `message.sent`…) | acknowledged, nothing stored |
//!
//! Everything parsed is attributed to the configured gateway session given to [`parse_event`];
//! the session the envelope names is handed back beside it, so that the HTTP handler can refuse
//! an event that names another session. Nothing in the payload decides whose rows it touches.
//!
//! [`InboundMessage`]: crate::domain::InboundMessage
//! [`ContactProfile`]: crate::domain::ContactProfile
//! [`StatusUpdate`]: crate::domain::StatusUpdate
//! [`SessionEvent`]: crate::domain::SessionEvent

mod message;
mod receipt;
#[cfg(test)]
mod tests;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cloud::{PayloadError, id_string, unix_seconds};
use crate::domain::{Notification, PhoneNumberId};

/// Header carrying the shared secret itself (plain equality, compared in constant time).
pub const SECRET_HEADER: &str = "x-webhook-signature";

/// One gateway delivery, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WasenderEvent {
    /// The session the envelope names (`sessionId`, or `data.session_id` on session events),
    /// exactly as sent; `None` when it names none. Not validated beyond being a string or a
    /// number: comparing it with the configured session is the handler's decision.
    pub session_id: Option<String>,
    /// What the event carried, every row attributed to the configured session.
    pub notification: Notification,
}

/// Parses one gateway event for the configured gateway `session`.
///
/// A body that is not a JSON object with an `event` name is a [`PayloadError`] (kept whole as a
/// dead letter); one item that cannot be understood inside a good event becomes a
/// [`RejectedItem`](crate::domain::RejectedItem) with the reason, and the rest is kept.
pub fn parse_event(body: &[u8], session: &PhoneNumberId) -> Result<WasenderEvent, PayloadError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let root = root
        .as_object()
        .ok_or_else(|| PayloadError::Schema("top level is not an object".into()))?;
    let event = root
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| PayloadError::Schema("`event` is missing".into()))?;
    let data = root.get("data").unwrap_or(&Value::Null);
    let session_id = match root.get("sessionId") {
        None | Some(Value::Null) => data.get("session_id").and_then(id_string),
        Some(named) => Some(id_string(named).ok_or_else(|| {
            PayloadError::Schema(format!("`sessionId` is {named}, not a string"))
        })?),
    };
    let at = Received {
        session,
        timestamp: root.get("timestamp").and_then(gateway_seconds),
    };

    let mut out = Notification::default();
    match event {
        "messages.received"
        | "messages.recieved"
        | "messages.upsert"
        | "messages-personal.received" => message::collect(data, &at, false, &mut out),
        "messages-group.received" => message::collect(data, &at, true, &mut out),
        "messages.update" => receipt::collect_updates(data, &at, &mut out),
        "message-receipt.update" => receipt::collect_receipts(data, &at, &mut out),
        "session.status" => receipt::collect_session(data, &at, &mut out),
        // Newsletter posts have no sender to answer; chats, groups, contacts, calls and our own
        // `message.sent` carry no inbound message: acknowledged only.
        _ => {}
    }
    Ok(WasenderEvent {
        session_id,
        notification: out,
    })
}

/// Where and when an event was received: the configured session and the envelope's time.
struct Received<'a> {
    session: &'a PhoneNumberId,
    timestamp: Option<i64>,
}

/// The message-shaped items of an event's `data`, in the three shapes the gateway uses:
/// `data.messages` as an object or an array, `data` itself being one item (it has a `key`), or
/// `data` an array of items.
fn items(data: &Value) -> Vec<&Value> {
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

/// A stable key for a gateway message that has no id: sender + payload timestamp + body hash.
pub fn fallback_id(sender: &str, timestamp: i64, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    format!(
        "fallback:{sender}:{timestamp}:{}",
        &hex::encode(digest)[..24]
    )
}

/// `34600000001:3@s.whatsapp.net` → `34600000001`; a bare number passes through (without `+`).
fn jid_user(jid: &str) -> &str {
    let user = jid.split('@').next().unwrap_or(jid);
    let user = user.split(':').next().unwrap_or(user);
    user.strip_prefix('+').unwrap_or(user)
}

/// The JID domain, lower-cased comparisons left to the caller (`lid`, `g.us`, `s.whatsapp.net`…).
fn jid_domain(jid: &str) -> Option<&str> {
    jid.split_once('@').map(|(_, domain)| domain)
}

/// Seconds since the epoch from a gateway time: seconds or milliseconds (told apart by size:
/// 10¹¹ seconds is the year 5138, 10¹¹ milliseconds is 1973), as a number, a numeric string or
/// the `{low, high}` 64-bit integer some Baileys builds serialise.
fn gateway_seconds(v: &Value) -> Option<i64> {
    const MILLIS_FROM: i64 = 100_000_000_000;
    let n = match v {
        Value::Object(long) => {
            let low = long.get("low")?.as_i64()? & 0xffff_ffff;
            let high = long.get("high")?.as_i64()?;
            high.checked_mul(1 << 32)?.checked_add(low)?
        }
        other => unix_seconds(other)?,
    };
    Some(if n >= MILLIS_FROM { n / 1000 } else { n }).filter(|t| *t >= 0)
}
