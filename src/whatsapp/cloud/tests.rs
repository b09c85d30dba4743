use super::*;
use serde_json::json;

fn envelope(value: Value) -> Vec<u8> {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [
        {"field": "messages", "value": value}]}]})
    .to_string()
    .into_bytes()
}

#[test]
fn text_message_and_contact_are_parsed() {
    let body = envelope(json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "111"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "34600000001"}],
        "messages": [{"from": "34600000001", "id": "wamid.A", "timestamp": "1700000000",
                      "type": "text", "text": {"body": "hola"}}]
    }));
    let n = parse_notification(&body).unwrap();
    assert_eq!(n.messages.len(), 1);
    let m = &n.messages[0];
    assert_eq!(
        (m.id.as_str(), m.from.as_str(), m.timestamp),
        ("wamid.A", "34600000001", 1_700_000_000)
    );
    assert_eq!(m.text.as_deref(), Some("hola"));
    assert_eq!(n.contacts[0].name.as_deref(), Some("Ana"));
}

#[test]
fn bad_item_is_rejected_and_the_rest_kept() {
    let body = envelope(json!({
        "metadata": {"phone_number_id": "111"},
        "messages": [
            {"from": "1", "id": "wamid.ok", "timestamp": "1", "type": "text", "text": {"body": "x"}},
            {"from": "1", "timestamp": "1", "type": "text"}
        ]
    }));
    let n = parse_notification(&body).unwrap();
    assert_eq!(n.messages.len(), 1);
    assert_eq!(n.rejected.len(), 1);
    assert!(n.rejected[0].error.contains("id"));
}

#[test]
fn not_a_notification_is_a_payload_error() {
    assert!(matches!(
        parse_notification(b"{"),
        Err(PayloadError::Json(_))
    ));
    assert!(matches!(
        parse_notification(b"[]"),
        Err(PayloadError::Schema(_))
    ));
    assert!(matches!(
        parse_notification(br#"{"object":"page","entry":[]}"#),
        Err(PayloadError::Schema(_))
    ));
    assert!(matches!(
        parse_notification(br#"{"object":"whatsapp_business_account"}"#),
        Err(PayloadError::Schema(_))
    ));
}

#[test]
fn failed_status_keeps_its_error_code_and_callback() {
    let body = envelope(json!({
        "metadata": {"phone_number_id": "111"},
        "statuses": [{"id": "wamid.out", "status": "failed", "timestamp": "5", "recipient_id": "1",
                      "biz_opaque_callback_data": "ledger-7", "errors": [{"code": 131049, "title": "x"}]}]
    }));
    let s = &parse_notification(&body).unwrap().statuses[0];
    assert_eq!(s.status, DeliveryStatus::Failed);
    assert_eq!(s.error_code, Some(131049));
    assert_eq!(s.callback_data.as_deref(), Some("ledger-7"));
}

fn one_message(message: Value, contacts: Value) -> Notification {
    parse_notification(&envelope(json!({
        "metadata": {"phone_number_id": "111"}, "contacts": contacts, "messages": [message]
    })))
    .unwrap()
}

#[test]
fn a_user_id_sender_without_a_phone_number_is_kept() {
    let msg = json!({"from_user_id": "US.13491208655302741918", "id": "wamid.U1",
                     "timestamp": "9", "type": "text", "text": {"body": "hi"}});
    let contact = json!([{"profile": {"name": "Ana", "username": "@ana"},
                          "user_id": "US.13491208655302741918"}]);
    let n = one_message(msg.clone(), contact);
    assert!(n.rejected.is_empty(), "{:?}", n.rejected);
    assert_eq!(n.messages[0].from.as_str(), "US.13491208655302741918");
    assert!(n.messages[0].from.is_user_id());
    // The contact has no wa_id: its profile is kept under the user id.
    assert_eq!(
        (n.contacts[0].wa_id.as_str(), n.contacts[0].name.as_deref()),
        ("US.13491208655302741918", Some("Ana"))
    );
    // `from` wins when present.
    let mut both = msg;
    both["from"] = json!("34600000001");
    let n = one_message(
        both,
        json!([{"wa_id": "34600000001", "user_id": "US.13491208655302741918"}]),
    );
    assert_eq!(n.messages[0].from.as_str(), "34600000001");
    assert_eq!(n.contacts[0].wa_id.as_str(), "34600000001");
}

#[test]
fn a_message_naming_no_sender_takes_its_contacts_user_id() {
    let msg = json!({"id": "wamid.U2", "timestamp": "9", "type": "text", "text": {"body": "x"}});
    let sole = one_message(msg.clone(), json!([{"user_id": "CO.77aa"}]));
    assert_eq!(sole.messages[0].from.as_str(), "CO.77aa");
    // Several contacts: the one whose parent user id the message names.
    let mut with_parent = msg.clone();
    with_parent["from_parent_user_id"] = json!("US.ENT.42");
    let named = one_message(
        with_parent,
        json!([{"user_id": "US.1", "parent_user_id": "US.ENT.41"},
               {"user_id": "US.2", "parent_user_id": "US.ENT.42"}]),
    );
    assert_eq!(named.messages[0].from.as_str(), "US.2");
    // Several contacts and nothing to tell them apart: a dead letter, not a guess.
    let unclear = one_message(msg, json!([{"user_id": "US.1"}, {"user_id": "US.2"}]));
    assert!(unclear.messages.is_empty());
    assert!(unclear.rejected[0].error.contains("without a sender"));
}

#[test]
fn user_changed_user_id_is_keyed_by_the_new_user_id() {
    // Meta's system messages carry no contacts; this one has no `from` either.
    let msg = json!({"id": "wamid.S1", "timestamp": "9", "type": "system",
        "system": {"body": "User changed from CO.1234567890 to MX.0987654321",
                   "type": "user_changed_user_id", "user_id": "MX.0987654321",
                   "previous_user_id": "CO.1234567890"}});
    let n = one_message(msg, Value::Null);
    assert_eq!(n.messages[0].from.as_str(), "MX.0987654321");
    assert_eq!(n.messages[0].kind, MessageKind::System);
}

#[test]
fn a_malformed_sender_is_a_dead_letter_with_its_reason() {
    for (from, why) in [
        (
            json!("+34600000001"),
            "invalid sender id \"+34600000001\": ",
        ),
        (json!("34600000001@s.whatsapp.net"), "gateway address"),
        (json!("robert'); drop table"), "invalid sender id"),
        (json!({"n": 1}), "`from` is {\"n\":1}, not a string"),
    ] {
        let msg = json!({"from": from, "from_user_id": "US.1", "id": "wamid.B",
                         "timestamp": "9", "type": "text", "text": {"body": "x"}});
        let n = one_message(msg, json!([{"wa_id": "34600000001"}]));
        assert!(
            n.messages.is_empty(),
            "{from}: a bad `from` is not replaced"
        );
        assert!(n.rejected[0].error.contains(why), "{}", n.rejected[0].error);
        assert!(n.rejected[0].raw.contains("wamid.B"));
    }
    let long = format!("US.{}", "9".repeat(200));
    let n = one_message(
        json!({"from_user_id": long, "id": "wamid.L", "timestamp": "9", "type": "text"}),
        Value::Null,
    );
    assert!(
        n.rejected[0]
            .error
            .contains("…: wa_id is longer than 135 bytes")
    );
    // Contacts whose ids are malformed give no profile; the rest of the change stands.
    let n = one_message(
        json!({"from": "1", "id": "wamid.C", "timestamp": "9", "type": "text"}),
        json!([{"wa_id": "not a number", "profile": {"name": "X"}}]),
    );
    assert!(n.contacts.is_empty());
    assert_eq!(n.messages.len(), 1);
}

#[test]
fn a_group_message_keeps_its_group_and_participant() {
    let msg = json!({"from": "34600000001", "group_id": "120363040000000000", "id": "wamid.G",
                     "timestamp": "9", "type": "text", "text": {"body": "hola grupo"}});
    let n = one_message(msg, Value::Null);
    let m = &n.messages[0];
    assert_eq!(m.from.as_str(), "34600000001");
    assert_eq!(
        m.group.as_ref().map(GroupId::as_str),
        Some("120363040000000000")
    );
}
