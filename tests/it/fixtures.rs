//! Cloud API and WASender payloads written from the facts in WHATSAPP.md.

use serde_json::{Value, json};

pub const PHONE_NUMBER_ID: &str = "106540352242922";
pub const USER: &str = "34600000001";

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A notification with one change per `values` entry, all in one entry.
pub fn notification(values: Vec<Value>) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": values.into_iter()
            .map(|value| json!({"field": "messages", "value": value})).collect::<Vec<_>>() }]
    })
}

/// The `value` of a change carrying `messages` from `USER` to `PHONE_NUMBER_ID`.
pub fn messages_value(messages: Vec<Value>) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Ana Pérez"}, "wa_id": USER}],
        "messages": messages
    })
}

pub fn statuses_value(statuses: Vec<Value>) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "statuses": statuses
    })
}

/// A message object of `type` with its type object, from `USER`.
pub fn message(id: &str, kind: &str, body: Value) -> Value {
    let mut m = json!({"from": USER, "id": id, "timestamp": now_s().to_string(), "type": kind});
    if !body.is_null() {
        m[kind] = body;
    }
    m
}

pub fn text(id: &str, words: &str) -> Value {
    message(id, "text", json!({"body": words}))
}

/// One signed-ready body holding a single text message.
pub fn text_notification(id: &str, words: &str) -> Vec<u8> {
    notification(vec![messages_value(vec![text(id, words)])])
        .to_string()
        .into_bytes()
}

/// Every message type WHATSAPP.md §3 lists, plus an unknown future type: (id, expected type).
pub fn every_message_type() -> Vec<(Value, &'static str)> {
    let media = |extra: Value| {
        let mut m = json!({"id": "1479537139650973", "mime_type": "image/jpeg",
                           "sha256": "HgYHs1J0bnCmJMvmVzHAiZnvR2vbwDvN2N6cBvbcSBs="});
        if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
            m.extend(extra.clone());
        }
        m
    };
    let mut all = vec![
        (text("wamid.T.text", "¿Tienen envío gratis? 😮"), "text"),
        (
            message(
                "wamid.T.image",
                "image",
                media(json!({"caption": "this one"})),
            ),
            "image",
        ),
        (
            message("wamid.T.video", "video", media(json!({"caption": "clip"}))),
            "video",
        ),
        (
            message(
                "wamid.T.document",
                "document",
                media(json!({"filename": "invoice.pdf", "caption": "invoice"})),
            ),
            "document",
        ),
        (
            message("wamid.T.audio", "audio", media(json!({"voice": true}))),
            "audio",
        ),
        (
            message(
                "wamid.T.sticker",
                "sticker",
                media(json!({"animated": false})),
            ),
            "sticker",
        ),
        (
            message(
                "wamid.T.location",
                "location",
                json!({"latitude": 40.4168, "longitude": -3.7038, "name": "Sol", "address": "Puerta del Sol", "url": "https://x"}),
            ),
            "location",
        ),
        (
            message(
                "wamid.T.contacts",
                "contacts",
                json!([{"name": {"formatted_name": "Bo", "first_name": "Bo"},
            "phones": [{"phone": "+34 600 000 002", "wa_id": "34600000002", "type": "CELL"}]}]),
            ),
            "contacts",
        ),
        (
            message(
                "wamid.T.button_reply",
                "interactive",
                json!({"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}),
            ),
            "interactive",
        ),
        (
            message(
                "wamid.T.list_reply",
                "interactive",
                json!({"type": "list_reply", "list_reply": {"id": "r1", "title": "Row 1", "description": "d"}}),
            ),
            "interactive",
        ),
        (
            message(
                "wamid.T.nfm_reply",
                "interactive",
                json!({"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": "{\"a\":1}"}}),
            ),
            "interactive",
        ),
        (
            message(
                "wamid.T.button",
                "button",
                json!({"payload": "STOP_PROMO", "text": "Stop promotions"}),
            ),
            "button",
        ),
        (
            message(
                "wamid.T.reaction",
                "reaction",
                json!({"message_id": "wamid.OUT.1", "emoji": "👍"}),
            ),
            "reaction",
        ),
        (
            message(
                "wamid.T.reaction_removed",
                "reaction",
                json!({"message_id": "wamid.OUT.1", "emoji": ""}),
            ),
            "reaction",
        ),
        (
            message(
                "wamid.T.order",
                "order",
                json!({"catalog_id": "c1", "text": "pls",
            "product_items": [{"product_retailer_id": "sku1", "quantity": 2, "item_price": 9.5, "currency": "EUR"}]}),
            ),
            "order",
        ),
        (
            message(
                "wamid.T.system_number",
                "system",
                json!({"body": "User A changed from 1 to 2", "type": "user_changed_number", "wa_id": "34600000009"}),
            ),
            "system",
        ),
        (
            message(
                "wamid.T.system_identity",
                "system",
                json!({"body": "identity changed", "type": "customer_identity_changed", "identity": "abc"}),
            ),
            "system",
        ),
        (
            message(
                "wamid.T.edit",
                "edit",
                json!({"original_message_id": "wamid.T.text", "message": {"type": "text", "text": {"body": "edited"}}}),
            ),
            "edit",
        ),
        (
            message(
                "wamid.T.revoke",
                "revoke",
                json!({"original_message_id": "wamid.T.image"}),
            ),
            "revoke",
        ),
        (
            message("wamid.T.request_welcome", "request_welcome", Value::Null),
            "request_welcome",
        ),
        (
            message("wamid.T.hologram", "hologram", json!({"beam": 3})),
            "hologram",
        ),
    ];
    // Unsupported: Meta sends `type: unsupported` with errors[], or a bare message with errors only.
    let mut unsupported = message(
        "wamid.T.unsupported",
        "unsupported",
        json!({"type": "poll"}),
    );
    unsupported["errors"] = json!([{"code": 131051, "title": "Message type unknown",
        "message": "Message type unknown", "error_data": {"details": "Message type is currently not supported."}}]);
    all.push((unsupported, "unsupported"));
    let bare = json!({"from": USER, "id": "wamid.T.bare", "timestamp": now_s().to_string(),
        "errors": [{"code": 131000, "title": "Something went wrong", "error_data": {"details": "Unsupported webhook payload"}}]});
    all.push((bare, "unsupported"));
    // A system message without `from` (user id change) is keyed by `from_user_id`.
    let no_from = json!({"from_user_id": "US.13491208655302741918", "id": "wamid.T.system_userid",
        "timestamp": now_s().to_string(), "type": "system",
        "system": {"body": "user id changed", "type": "user_changed_user_id"}});
    all.push((no_from, "system"));
    // Context and referral ride along on ordinary messages.
    let mut reply = text("wamid.T.reply", "replying");
    reply["context"] = json!({"from": "15550783881", "id": "wamid.OUT.1"});
    all.push((reply, "text"));
    let mut forwarded = text("wamid.T.forwarded", "fwd");
    forwarded["context"] = json!({"forwarded": true, "frequently_forwarded": true});
    all.push((forwarded, "text"));
    let mut ad = text("wamid.T.referral", "from the ad");
    ad["referral"] = json!({"source_url": "https://fb.me/x", "source_id": "ad1", "source_type": "ad",
        "headline": "Sale", "body": "50%", "media_type": "image", "image_url": "https://x", "ctwa_clid": "clid"});
    all.push((ad, "text"));
    all
}

/// Every status WHATSAPP.md §3 lists, for outbound id `out`.
pub fn every_status(out: &str) -> Vec<Value> {
    let ts = now_s().to_string();
    vec![
        json!({"id": out, "status": "sent", "timestamp": ts, "recipient_id": USER,
               "biz_opaque_callback_data": "ledger-1",
               "conversation": {"id": "c1", "expiration_timestamp": ts, "origin": {"type": "service"}},
               "pricing": {"billable": false, "pricing_model": "PMP", "category": "service", "type": "free_customer_service"}}),
        json!({"id": out, "status": "delivered", "timestamp": ts, "recipient_id": USER}),
        json!({"id": out, "status": "read", "timestamp": ts, "recipient_id": USER}),
        json!({"id": out, "status": "played", "timestamp": ts, "recipient_id": USER}),
        json!({"id": out, "status": "failed", "timestamp": ts, "recipient_id": USER,
               "errors": [{"code": 131049, "title": "not delivered", "message": "not delivered",
                           "error_data": {"details": "ecosystem"}, "href": "https://x"}]}),
        json!({"id": out, "status": "deleted", "timestamp": ts, "recipient_id": USER}),
        json!({"id": out, "status": "warning", "timestamp": ts, "recipient_id": "120363@g.us",
               "recipient_type": "group", "recipient_participant_id": USER}),
    ]
}

/// WASender gateway events: personal and group messages, statuses, receipts, session states.
pub mod gateway;
/// The fixtures above posted over real HTTP and checked as stored.
mod over_http;
/// Cloud API v25 payloads whose senders are business-scoped user ids, and a malformed sender.
pub mod v25;
