//! Gateway status events → delivery statuses and session states.
//!
//! `messages.update` says how far one of our messages got (`update.status`, a Baileys code
//! 0–5 or its name); `message-receipt.update` says the same per recipient (in groups, per
//! member), as a `receipt` naming a status or carrying the time it was delivered, read or
//! played. Both only count for messages we sent (`key.fromMe` true, or absent as in the
//! gateway's own receipt examples): a receipt about a message someone sent us moves no ledger.
//! `session.status` reports the connection state of the session (`data.status`).

use serde_json::Value;

use super::{Received, gateway_seconds, id_string, items, jid_user};
use crate::domain::{
    DeliveryStatus, MessageId, Notification, Provider, RejectedItem, SessionEvent, SessionState,
    StatusUpdate,
};

/// `messages.update`: one status per item that reports one.
pub(super) fn collect_updates(data: &Value, at: &Received<'_>, out: &mut Notification) {
    for item in items(data).into_iter().filter(|i| ours(i)) {
        // Updates without a status (edits, stars, poll votes) are not delivery news.
        let Some(reported) = item.pointer("/update/status") else {
            continue;
        };
        let Some(status) = status_named(reported) else {
            continue;
        };
        let recipient = item
            .pointer("/key/remoteJid")
            .and_then(Value::as_str)
            .map(|j| jid_user(j).to_owned());
        push(out, item, at, status, at.timestamp, recipient);
    }
}

/// `message-receipt.update`: one status per receipt. The gateway documents `data.message`
/// holding `{key, receipt}`; its SDK types `data` as a list of them; both are read.
pub(super) fn collect_receipts(data: &Value, at: &Received<'_>, out: &mut Notification) {
    let receipts = match data.get("message") {
        Some(item) if item.get("key").is_some() => vec![item],
        _ => items(data),
    };
    for item in receipts.into_iter().filter(|i| ours(i)) {
        let receipt = item.get("receipt").unwrap_or(&Value::Null);
        let Some((status, when)) = receipt_status(receipt) else {
            out.rejected.push(RejectedItem {
                error: "receipt without a status or a delivered/read/played time".into(),
                raw: item.to_string(),
            });
            continue;
        };
        let Some(status) = status else {
            continue;
        };
        let recipient = [
            receipt.get("userJid"),
            item.pointer("/key/participant"),
            item.pointer("/key/remoteJid"),
        ]
        .into_iter()
        .flatten()
        .find_map(Value::as_str)
        .map(|j| jid_user(j).to_owned());
        push(out, item, at, status, when.or(at.timestamp), recipient);
    }
}

/// `session.status`: the session's new state. States we do not know are acknowledged only.
pub(super) fn collect_session(data: &Value, at: &Received<'_>, out: &mut Notification) {
    let Some(state) = data
        .get("status")
        .and_then(Value::as_str)
        .and_then(SessionState::parse)
    else {
        return;
    };
    let timestamp = at
        .timestamp
        .or_else(|| data.get("timestamp").and_then(gateway_seconds))
        .unwrap_or(0);
    out.session_events.push(SessionEvent {
        session: at.session.clone(),
        state,
        timestamp,
    });
}

/// Whether an item is about a message we sent.
fn ours(item: &Value) -> bool {
    item.pointer("/key/fromMe").and_then(Value::as_bool) != Some(false)
}

fn push(
    out: &mut Notification,
    item: &Value,
    at: &Received<'_>,
    status: DeliveryStatus,
    timestamp: Option<i64>,
    recipient_id: Option<String>,
) {
    let id = item.pointer("/key/id").and_then(id_string);
    let Some(message_id) = id.map(MessageId::parse).and_then(Result::ok) else {
        out.rejected.push(RejectedItem {
            error: "status without a valid message id (`key.id`)".into(),
            raw: item.to_string(),
        });
        return;
    };
    out.statuses.push(StatusUpdate {
        provider: Provider::Wasender,
        message_id,
        status,
        phone_number_id: at.session.clone(),
        recipient_id,
        // A status with no time at all sorts first; the ledger only moves forward anyway.
        timestamp: timestamp.unwrap_or(0),
        callback_data: None,
        error_code: None,
        raw: item.to_string(),
    });
}

/// A status as the gateway names it: Baileys' code (0 error … 5 played), its name, or ours.
/// `None` for "pending", which says nothing yet; unknown names are kept as they came.
fn status_named(reported: &Value) -> Option<DeliveryStatus> {
    match reported {
        Value::Number(n) => match n.as_i64()? {
            0 => Some(DeliveryStatus::Failed),
            1 => None,
            2 => Some(DeliveryStatus::Sent),
            3 => Some(DeliveryStatus::Delivered),
            4 => Some(DeliveryStatus::Read),
            5 => Some(DeliveryStatus::Played),
            other => Some(DeliveryStatus::Other(other.to_string())),
        },
        Value::String(name) => match name.to_ascii_lowercase().as_str() {
            "pending" | "" => None,
            "error" | "failed" => Some(DeliveryStatus::Failed),
            "server_ack" | "sent" => Some(DeliveryStatus::Sent),
            "delivery_ack" | "delivered" => Some(DeliveryStatus::Delivered),
            "read" => Some(DeliveryStatus::Read),
            "played" => Some(DeliveryStatus::Played),
            other => Some(DeliveryStatus::Other(other.to_owned())),
        },
        _ => None,
    }
}

/// What a receipt reports, and when: its `status` (with `t`), else the furthest of the times it
/// carries (played > read > delivered). `None` when it reports nothing at all; `Some((None, _))`
/// when it reports a status that says nothing yet (pending).
fn receipt_status(receipt: &Value) -> Option<(Option<DeliveryStatus>, Option<i64>)> {
    if let Some(named) = receipt.get("status") {
        let when = receipt.get("t").and_then(gateway_seconds);
        return Some((status_named(named), when));
    }
    [
        ("playedTimestamp", DeliveryStatus::Played),
        ("readTimestamp", DeliveryStatus::Read),
        ("receiptTimestamp", DeliveryStatus::Delivered),
    ]
    .into_iter()
    .find_map(|(field, status)| {
        let when = gateway_seconds(receipt.get(field)?)?;
        Some((Some(status), Some(when)))
    })
}
