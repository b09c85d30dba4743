//! Synthetic Cloud API webhook notifications, built the way Meta puts them on the wire.
//!
//! A payload is a pure function of `(spec, n, timestamp)`: the same inputs give the same bytes, so
//! a duplicate can be rebuilt instead of stored. Message ids are `wamid.SIM.<seed>.<n>.<k>`, unique
//! per unique payload. Non-ASCII characters are written as lowercase `\uXXXX` (UTF-16 units), as
//! Meta encodes them, so the body is plain ASCII and is signed exactly as sent.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use serde_json::{Value, json};

use super::mix::{Kind, KindCounts, Mix};

const WABA_ID: &str = "200000000000001";
const DISPLAY_PHONE_NUMBER: &str = "15550001234";

const TEXTS: &[&str] = &[
    "Hola, ¿cuál es el horario de hoy?",
    "¿Tienen envío gratis? 😮",
    "Hi! Is the blue one still in stock?",
    "I want to cancel my order",
    "Thanks, that helps 👍",
    "Merci beaucoup ! À demain.",
    "Quanto custa a entrega para São Paulo?",
    "Can you send me the invoice? my email is ana@example.com",
    "こんにちは、予約できますか？",
    "ok",
    "Danke schön, bis später 🙏🏽",
];
/// Whole-message opt-out keywords, as people type them (see `Keywords::default`).
pub(super) const KEYWORDS: &[&str] = &["STOP", "Stop", "stop", "BAJA", "Parar", "unsubscribe"];
const CAPTIONS: &[&str] = &["This one arrived broken", "¿Este modelo?", "Receipt", ""];
const BUTTONS: &[(&str, &str)] = &[
    ("btn_yes", "Sí, confirmar"),
    ("btn_no", "No"),
    ("btn_later", "Más tarde"),
];
const EMOJIS: &[&str] = &["👍", "❤️", "😂", "🙏", ""];
const PLACES: &[(f64, f64, &str, &str)] = &[
    (
        19.432608,
        -99.133209,
        "Zócalo",
        "Plaza de la Constitución, CDMX",
    ),
    (-23.55052, -46.633308, "Sé", "Praça da Sé, São Paulo"),
    (40.416775, -3.70379, "Puerta del Sol", "Madrid"),
];
const NAMES: &[&str] = &[
    "Ana García",
    "José Álvarez",
    "Zoë Martin",
    "Li Wei",
    "Đorđe Petrović",
    "Priya Nair",
    "Mohammed Ali",
    "Søren Kjær",
];

/// What a run's payloads look like; everything but the index and the timestamp.
#[derive(Debug, Clone)]
pub struct PayloadSpec {
    pub seed: u64,
    pub phone_number_id: String,
    pub senders: u32,
    pub messages_per_payload: u32,
    /// Fraction of payloads that also carry status updates for outbound messages.
    pub status_ratio: f64,
    /// What kinds of message the payloads carry.
    pub mix: Mix,
}

/// One encoded notification and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub body: Vec<u8>,
    pub messages: u32,
    pub statuses: u32,
    pub kinds: KindCounts,
}

/// Builds unique payload number `n`, stamped with `timestamp` (unix seconds).
pub fn build(spec: &PayloadSpec, n: u64, timestamp: u64) -> Payload {
    let mut rng = StdRng::seed_from_u64(mix(spec.seed, n));
    let ts = timestamp.to_string();
    let metadata = json!({
        "display_phone_number": DISPLAY_PHONE_NUMBER,
        "phone_number_id": spec.phone_number_id,
    });

    let mut contacts: Vec<Value> = Vec::new();
    let mut seen_senders: Vec<u32> = Vec::new();
    let mut messages = Vec::with_capacity(spec.messages_per_payload as usize);
    let mut kinds = KindCounts::default();
    for k in 0..spec.messages_per_payload {
        let sender = rng.gen_range(0..spec.senders.max(1));
        let wa_id = wa_id(sender);
        if !seen_senders.contains(&sender) {
            seen_senders.push(sender);
            let name = NAMES[sender as usize % NAMES.len()];
            contacts.push(json!({ "profile": { "name": name }, "wa_id": wa_id }));
        }
        let id = format!("wamid.SIM.{}.{n}.{k}", spec.seed);
        let kind = spec.mix.draw(&mut rng);
        kinds.count(kind);
        messages.push(message(&mut rng, kind, spec.seed, id, wa_id, &ts));
    }

    let mut changes = Vec::with_capacity(2);
    if !messages.is_empty() {
        changes.push(json!({
            "field": "messages",
            "value": {
                "messaging_product": "whatsapp",
                "metadata": metadata,
                "contacts": contacts,
                "messages": messages,
            },
        }));
    }
    // Meta keeps statuses in a `value` of their own, without contacts.
    let mut statuses = Vec::new();
    if rng.gen_bool(spec.status_ratio.clamp(0.0, 1.0)) {
        for k in 0..rng.gen_range(1..=3u32) {
            let recipient = wa_id(rng.gen_range(0..spec.senders.max(1)));
            statuses.push(status(&mut rng, spec.seed, n, k, recipient, &ts));
        }
        changes.push(json!({
            "field": "messages",
            "value": { "messaging_product": "whatsapp", "metadata": metadata, "statuses": statuses },
        }));
    }

    let root = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": WABA_ID, "changes": changes }],
    });
    Payload {
        body: escape_non_ascii(root.to_string()),
        messages: messages.len() as u32,
        statuses: statuses.len() as u32,
        kinds,
    }
}

/// One message of the drawn kind, with realistic contents.
fn message(rng: &mut StdRng, kind: Kind, seed: u64, id: String, from: String, ts: &str) -> Value {
    let mut m = json!({ "from": from, "id": id, "timestamp": ts });
    match kind {
        Kind::Text => {
            let body = if rng.gen_bool(0.2) {
                format!("Pedido #{}: ¿cuándo llega?", rng.gen_range(10_000..99_999))
            } else {
                pick(rng, TEXTS).to_string()
            };
            m["type"] = json!("text");
            m["text"] = json!({ "body": body });
        }
        Kind::Keyword => {
            m["type"] = json!("text");
            m["text"] = json!({ "body": pick(rng, KEYWORDS) });
        }
        Kind::Media => media(rng, &mut m),
        Kind::Interactive => {
            let (button_id, title) = *pick(rng, BUTTONS);
            m["type"] = json!("interactive");
            m["context"] = json!({ "from": DISPLAY_PHONE_NUMBER, "id": outbound_ref(rng, seed) });
            m["interactive"] = json!({
                "type": "button_reply",
                "button_reply": { "id": button_id, "title": title },
            });
        }
        Kind::Reaction => {
            m["type"] = json!("reaction");
            m["reaction"] =
                json!({ "message_id": outbound_ref(rng, seed), "emoji": pick(rng, EMOJIS) });
        }
        Kind::Location => {
            let (latitude, longitude, name, address) = *pick(rng, PLACES);
            m["type"] = json!("location");
            m["location"] = json!({ "latitude": latitude, "longitude": longitude, "name": name, "address": address });
        }
    }
    m
}

/// Mostly photos, then voice notes, documents and videos, as Meta describes each.
fn media(rng: &mut StdRng, m: &mut Value) {
    let id = rng
        .gen_range(1_000_000_000_000_000u64..9_999_999_999_999_999)
        .to_string();
    let sha256 = format!("{:016x}{:016x}", rng.r#gen::<u64>(), rng.r#gen::<u64>());
    let (kind, object) = match rng.gen_range(0..100) {
        0..60 => (
            "image",
            json!({ "id": id, "mime_type": "image/jpeg", "sha256": sha256, "caption": pick(rng, CAPTIONS) }),
        ),
        60..85 => (
            "audio",
            json!({ "id": id, "mime_type": "audio/ogg; codecs=opus", "sha256": sha256, "voice": true }),
        ),
        85..95 => (
            "document",
            json!({ "id": id, "mime_type": "application/pdf", "sha256": sha256, "filename": "factura.pdf", "caption": "Factura" }),
        ),
        _ => (
            "video",
            json!({ "id": id, "mime_type": "video/mp4", "sha256": sha256 }),
        ),
    };
    m["type"] = json!(kind);
    m[kind] = object;
}

/// A status update for outbound message `wamid.SIM.OUT.<seed>.<n>.<k>`.
fn status(rng: &mut StdRng, seed: u64, n: u64, k: u32, recipient: String, ts: &str) -> Value {
    let state = *pick(rng, &["sent", "delivered", "delivered", "read", "read"]);
    let mut s = json!({
        "id": format!("wamid.SIM.OUT.{seed}.{n}.{k}"),
        "status": state,
        "timestamp": ts,
        "recipient_id": recipient,
        "biz_opaque_callback_data": format!("sim-{n}-{k}"),
    });
    if state == "delivered" {
        s["pricing"] = json!({
            "billable": false,
            "pricing_model": "PMP",
            "type": "free_customer_service",
            "category": "service",
        });
    }
    s
}

fn outbound_ref(rng: &mut StdRng, seed: u64) -> String {
    format!("wamid.SIM.OUT.{seed}.{}.0", rng.gen_range(0..1_000_000u32))
}

fn wa_id(sender: u32) -> String {
    format!("1555{sender:07}")
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    items.choose(rng).expect("pick from a non-empty list")
}

/// Spreads `(seed, n)` over the whole u64 range (SplitMix64 finalizer) so neighbouring indices
/// get unrelated streams.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Meta's wire form: every non-ASCII character as `\uXXXX`, lowercase hex, UTF-16 units.
/// serde_json leaves non-ASCII only inside strings, so the result is still valid JSON.
fn escape_non_ascii(json: String) -> Vec<u8> {
    if json.is_ascii() {
        return json.into_bytes();
    }
    let mut out = String::with_capacity(json.len() + 64);
    let mut units = [0u16; 2];
    for ch in json.chars() {
        if ch.is_ascii() {
            out.push(ch);
        } else {
            for unit in ch.encode_utf16(&mut units) {
                write!(out, "\\u{unit:04x}").expect("writing to a String");
            }
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(messages_per_payload: u32, status_ratio: f64) -> PayloadSpec {
        PayloadSpec {
            seed: 7,
            phone_number_id: "100000000000001".into(),
            senders: 50,
            messages_per_payload,
            status_ratio,
            mix: Mix::new(0.005, 0.1, 0.05).unwrap(),
        }
    }

    #[test]
    fn payload_has_the_cloud_api_shape() {
        let p = build(&spec(3, 1.0), 42, 1_700_000_000);
        assert!(p.body.is_ascii());
        let v: Value = serde_json::from_slice(&p.body).unwrap();
        assert_eq!(v["object"], "whatsapp_business_account");
        let changes = v["entry"][0]["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 2);
        let value = &changes[0]["value"];
        assert_eq!(changes[0]["field"], "messages");
        assert_eq!(value["messaging_product"], "whatsapp");
        assert_eq!(value["metadata"]["phone_number_id"], "100000000000001");
        let messages = value["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(p.messages, 3);
        for (k, m) in messages.iter().enumerate() {
            assert_eq!(m["id"], format!("wamid.SIM.7.42.{k}"));
            assert_eq!(m["timestamp"], "1700000000");
            let kind = m["type"].as_str().unwrap();
            assert!(
                m.get(kind).is_some(),
                "message of type {kind} lacks its object"
            );
            let from = m["from"].as_str().unwrap();
            assert!(
                value["contacts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["wa_id"] == from)
            );
        }
        let statuses = changes[1]["value"]["statuses"].as_array().unwrap();
        assert_eq!(statuses.len() as u32, p.statuses);
        assert!(changes[1]["value"].get("contacts").is_none());
        assert!(
            statuses
                .iter()
                .all(|s| s["id"].as_str().unwrap().starts_with("wamid.SIM.OUT.7.42."))
        );
    }

    #[test]
    fn same_index_gives_identical_bytes_and_other_indices_differ() {
        let s = spec(2, 0.5);
        assert_eq!(build(&s, 9, 1_700_000_000), build(&s, 9, 1_700_000_000));
        assert_ne!(
            build(&s, 9, 1_700_000_000).body,
            build(&s, 10, 1_700_000_000).body
        );
    }

    #[test]
    fn without_status_ratio_there_are_no_statuses() {
        for n in 0..50 {
            let p = build(&spec(1, 0.0), n, 1);
            assert_eq!(p.statuses, 0);
            assert!(!String::from_utf8(p.body).unwrap().contains("statuses"));
        }
    }

    #[test]
    fn non_ascii_is_escaped_as_meta_does_and_decodes_back() {
        let escaped = escape_non_ascii(r#"{"t":"¿envío? 😮"}"#.to_string());
        assert_eq!(escaped, br#"{"t":"\u00bfenv\u00edo? \ud83d\ude2e"}"#);
        let v: Value = serde_json::from_slice(&escaped).unwrap();
        assert_eq!(v["t"], "¿envío? 😮");
    }

    #[test]
    fn a_run_mixes_message_types() {
        let s = PayloadSpec {
            mix: Mix::new(0.05, 0.3, 0.1).unwrap(),
            ..spec(1, 0.0)
        };
        let mut kinds = std::collections::BTreeSet::new();
        for n in 0..2000 {
            let v: Value = serde_json::from_slice(&build(&s, n, 1).body).unwrap();
            let m = &v["entry"][0]["changes"][0]["value"]["messages"][0];
            kinds.insert(m["type"].as_str().unwrap().to_string());
        }
        let expected = [
            "audio",
            "document",
            "image",
            "interactive",
            "location",
            "reaction",
            "text",
            "video",
        ];
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), expected);
    }
}
