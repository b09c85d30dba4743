//! Cloud API webhook payloads → [`Notification`]. Pure: bytes in, domain values out.
//!
//! Every `entry[] × changes[] × messages[]/statuses[]/errors[]` is visited (one POST can carry up
//! to a thousand updates). A payload that is not a WhatsApp Business Account notification at all
//! is a [`PayloadError`]; a single item that cannot be understood inside an otherwise good payload
//! becomes a [`RejectedItem`], so the rest is still ingested and nothing is silently dropped.

use serde_json::{Map, Value};

use crate::domain::{
    ContactProfile, DeliveryStatus, GroupId, IdError, InboundMessage, MessageId, MessageKind,
    Notification, PhoneNumberId, PlatformError, Provider, RejectedItem, StatusUpdate, WaId,
};

/// Why a whole payload could not be parsed. The raw body is then kept as a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("payload does not have the expected shape: {0}")]
    Schema(String),
    /// It parsed, but the store refused its rows when it was replayed from the spool (our
    /// fault, not the sender's): kept with its bytes so that a fixed version can replay it.
    #[error("the store refused this payload when it was replayed from the spool: {0}")]
    Refused(String),
}

impl PayloadError {
    /// Short, stable code for dead letters and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Json(_) => "malformed_json",
            Self::Schema(_) => "malformed_schema",
            Self::Refused(_) => "store_refused",
        }
    }
}

pub fn parse_notification(body: &[u8]) -> Result<Notification, PayloadError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let root = root
        .as_object()
        .ok_or_else(|| PayloadError::Schema("top level is not an object".into()))?;
    match root.get("object").and_then(Value::as_str) {
        Some("whatsapp_business_account") => {}
        Some(other) => return Err(PayloadError::Schema(format!("object is {other:?}"))),
        None => return Err(PayloadError::Schema("`object` is missing".into())),
    }
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| PayloadError::Schema("`entry` is not an array".into()))?;

    let mut out = Notification::default();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            out.rejected
                .push(reject("entry without a `changes` array", entry));
            continue;
        };
        for change in changes {
            parse_change(change, &mut out);
        }
    }
    Ok(out)
}

fn parse_change(change: &Value, out: &mut Notification) {
    let field = change.get("field").and_then(Value::as_str);
    // Other subscribed fields (account_update, template status…) carry no conversation; they
    // are acknowledged and not stored.
    if field.is_some_and(|f| f != "messages") {
        return;
    }
    let Some(value) = change.get("value").and_then(Value::as_object) else {
        out.rejected
            .push(reject("change without a `value` object", change));
        return;
    };
    let phone_number_id = value
        .get("metadata")
        .and_then(|m| m.get("phone_number_id"))
        .and_then(id_string)
        .and_then(|raw| PhoneNumberId::parse(raw).ok());

    for error in array(value, "errors") {
        out.platform_errors.push(PlatformError {
            phone_number_id: phone_number_id.clone(),
            code: error.get("code").and_then(Value::as_i64),
            title: error
                .get("title")
                .and_then(Value::as_str)
                .map(str::to_owned),
            raw: error.to_string(),
        });
    }

    let has_items = !array(value, "messages").is_empty() || !array(value, "statuses").is_empty();
    let Some(phone_number_id) = phone_number_id else {
        if has_items {
            out.rejected.push(reject(
                "`metadata.phone_number_id` is missing or invalid",
                change,
            ));
        }
        return;
    };

    let contacts = array(value, "contacts");
    for contact in contacts {
        // Keyed as the contact's messages are: by phone number when the payload gives one, else
        // by the business-scoped user id (a user with a username may share no phone number).
        if let Some(wa_id) = contact_id(contact) {
            let name = contact
                .get("profile")
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            out.contacts.push(ContactProfile {
                provider: Provider::Cloud,
                phone_number_id: phone_number_id.clone(),
                wa_id,
                name,
            });
        }
    }

    for message in array(value, "messages") {
        match parse_message(message, &phone_number_id, contacts) {
            Ok(m) => out.messages.push(m),
            Err(why) => out.rejected.push(reject(&why, message)),
        }
    }
    for status in array(value, "statuses") {
        match parse_status(status, &phone_number_id) {
            Ok(s) => out.statuses.push(s),
            Err(why) => out.rejected.push(reject(&why, status)),
        }
    }
}

fn parse_message(
    message: &Value,
    phone_number_id: &PhoneNumberId,
    contacts: &[Value],
) -> Result<InboundMessage, String> {
    let id = message
        .get("id")
        .and_then(id_string)
        .ok_or("message without an `id`")?;
    let id = MessageId::parse(id).map_err(|e| e.to_string())?;
    let from = sender(message, contacts)?;
    let timestamp = message
        .get("timestamp")
        .and_then(unix_seconds)
        .ok_or("message without a valid `timestamp`")?;
    let kind = match message.get("type").and_then(Value::as_str) {
        Some(t) => MessageKind::parse(t),
        // A bare message with only `errors` (e.g. 131051) is stored as unsupported.
        None => MessageKind::Unsupported,
    };
    // Groups API: the message names its group; `from` is the participant who wrote it.
    let group = match message.get("group_id").and_then(id_string) {
        Some(raw) => Some(GroupId::parse(raw).map_err(|e| format!("invalid `group_id`: {e}"))?),
        None => None,
    };
    Ok(InboundMessage {
        provider: Provider::Cloud,
        id,
        phone_number_id: phone_number_id.clone(),
        from,
        group,
        text: message_text(&kind, message),
        kind,
        timestamp,
        raw: message.to_string(),
    })
}

/// Who wrote a message. `from` (the phone number) wins when present; v25 payloads may instead
/// carry only the business-scoped user id (`from_user_id`), and some carry neither, leaving the
/// change's contact (the one whose parent user id the message names, or the only one) or, for a
/// `user_changed_user_id` system message (which has no contacts), the user's new id in
/// `system.user_id`. The id found first is the sender: if it is malformed the message is refused
/// with the reason, never keyed by a later fallback.
fn sender(message: &Value, contacts: &[Value]) -> Result<WaId, String> {
    let raw = match present(message, "from")? {
        Some(from) => from,
        None => match present(message, "from_user_id")? {
            Some(user_id) => user_id,
            None => contact_of(message, contacts)
                .or_else(|| message.pointer("/system/user_id").and_then(id_string))
                .ok_or("message without a sender (no `from`, `from_user_id` or contact)")?,
        },
    };
    WaId::parse(raw.as_str()).map_err(|e| sender_error(&raw, &e))
}

/// A sender field: absent (or empty) is `None`; a value that is not an id is refused.
fn present(message: &Value, key: &str) -> Result<Option<String>, String> {
    match message.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match id_string(v) {
            Some(id) => Ok(Some(id)),
            None if v.as_str() == Some("") => Ok(None),
            None => Err(format!("invalid sender id: `{key}` is {v}, not a string")),
        },
    }
}

/// The raw id of the contact a message without a sender field belongs to.
fn contact_of(message: &Value, contacts: &[Value]) -> Option<String> {
    let raw_id = |c: &Value| {
        c.get("wa_id")
            .and_then(id_string)
            .or_else(|| c.get("user_id").and_then(id_string))
    };
    if let Some(parent) = message.get("from_parent_user_id").and_then(id_string) {
        let named = contacts
            .iter()
            .find(|c| c.get("parent_user_id").and_then(id_string).as_deref() == Some(&*parent));
        if let Some(contact) = named {
            return raw_id(contact);
        }
    }
    match contacts {
        [only] => raw_id(only),
        _ => None,
    }
}

/// The id a contact profile is kept under: its valid `wa_id`, else its valid `user_id`.
fn contact_id(contact: &Value) -> Option<WaId> {
    ["wa_id", "user_id"].into_iter().find_map(|key| {
        contact
            .get(key)
            .and_then(id_string)
            .and_then(|raw| WaId::parse(raw).ok())
    })
}

/// `invalid sender id "…": why`, with the offending id quoted (escaped, at most 64 characters)
/// so that an operator reading the dead letter sees what came in.
pub(crate) fn sender_error(raw: &str, error: &IdError) -> String {
    const SHOWN: usize = 64;
    let shown: String = raw.chars().take(SHOWN).collect();
    let more = if raw.chars().count() > SHOWN {
        "…"
    } else {
        ""
    };
    format!("invalid sender id {shown:?}{more}: {error}")
}

/// The words of a message that a responder can act on.
pub fn message_text(kind: &MessageKind, message: &Value) -> Option<String> {
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(message, |v, key| v.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    match kind {
        MessageKind::Text => at(&["text", "body"]),
        MessageKind::Image => at(&["image", "caption"]),
        MessageKind::Video => at(&["video", "caption"]),
        MessageKind::Document => at(&["document", "caption"]),
        MessageKind::Button => at(&["button", "text"]).or_else(|| at(&["button", "payload"])),
        MessageKind::Interactive => at(&["interactive", "button_reply", "title"])
            .or_else(|| at(&["interactive", "list_reply", "title"]))
            .or_else(|| at(&["interactive", "nfm_reply", "body"])),
        MessageKind::Edit => at(&["edit", "message", "text", "body"]),
        MessageKind::Location => at(&["location", "name"]),
        _ => None,
    }
}

fn parse_status(status: &Value, phone_number_id: &PhoneNumberId) -> Result<StatusUpdate, String> {
    let id = status
        .get("id")
        .and_then(id_string)
        .ok_or("status without an `id`")?;
    let message_id = MessageId::parse(id).map_err(|e| e.to_string())?;
    let state = status
        .get("status")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("status without a `status`")?;
    let timestamp = status
        .get("timestamp")
        .and_then(unix_seconds)
        .ok_or("status without a valid `timestamp`")?;
    let error_code = status
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64);
    Ok(StatusUpdate {
        provider: Provider::Cloud,
        message_id,
        status: DeliveryStatus::parse(state),
        phone_number_id: phone_number_id.clone(),
        recipient_id: status.get("recipient_id").and_then(id_string),
        timestamp,
        callback_data: status
            .get("biz_opaque_callback_data")
            .and_then(Value::as_str)
            .map(str::to_owned),
        error_code,
        raw: status.to_string(),
    })
}

fn array<'a>(value: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Ids are documented as strings; tolerate numbers from hand-written senders.
pub(crate) fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Timestamps are unix seconds as strings; numbers are tolerated.
pub(crate) fn unix_seconds(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .filter(|t| *t >= 0)
}

fn reject(error: &str, raw: &Value) -> RejectedItem {
    RejectedItem {
        error: error.to_owned(),
        raw: raw.to_string(),
    }
}

#[cfg(test)]
mod tests;
