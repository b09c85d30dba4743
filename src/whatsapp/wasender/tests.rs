use serde_json::{Value, json};

use super::*;
use crate::domain::{DeliveryStatus, GroupId, MessageKind, Provider, SessionState};

fn session() -> PhoneNumberId {
    PhoneNumberId::parse("4711").unwrap()
}

fn parse(v: Value) -> WasenderEvent {
    parse_event(v.to_string().as_bytes(), &session()).unwrap()
}

fn notification(v: Value) -> Notification {
    parse(v).notification
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
        let n = notification(json!({"event": "messages.received", "timestamp": 1, "data": data}));
        assert_eq!(n.messages.len(), 1, "{n:?}");
        let m = &n.messages[0];
        assert_eq!(
            (m.from.as_str(), m.text.as_deref(), m.group.as_ref()),
            ("34600000001", Some("hi"), None)
        );
        assert_eq!(
            (m.provider, m.kind.clone()),
            (Provider::Wasender, MessageKind::Text)
        );
        assert_eq!(m.timestamp, 1_700_000_000);
    }
}

#[test]
fn rows_belong_to_the_configured_session_and_the_named_one_is_handed_back() {
    let ev = parse(
        json!({"event": "messages.received", "sessionId": "other-session",
        "data": {"key": {"id": "K", "remoteJid": "1@s.whatsapp.net"}, "messageBody": "x",
                 "messageTimestamp": 5}}),
    );
    assert_eq!(ev.session_id.as_deref(), Some("other-session"));
    assert_eq!(ev.notification.messages[0].phone_number_id, session());
    // Numbers are ids too; a session event may name its session inside `data`.
    let numbered = parse(json!({"event": "qrcode.updated", "sessionId": 77, "data": {}}));
    assert_eq!(numbered.session_id.as_deref(), Some("77"));
    let inside = parse(json!({"event": "session.status",
                              "data": {"status": "connected", "session_id": "session-id-123"}}));
    assert_eq!(inside.session_id.as_deref(), Some("session-id-123"));
    assert_eq!(
        parse(json!({"event": "chats.upsert", "data": []})).session_id,
        None
    );
    assert!(matches!(
        parse_event(
            br#"{"event":"messages.received","sessionId":{"x":1}}"#,
            &session()
        ),
        Err(PayloadError::Schema(_))
    ));
}

#[test]
fn own_messages_are_skipped_and_lid_uses_sender_pn() {
    let data = json!({"messages": [
        {"key": {"id": "A", "remoteJid": "1@s.whatsapp.net", "fromMe": true}, "messageBody": "x"},
        {"key": {"id": "B", "remoteJid": "99@lid", "senderPn": "34600000002@s.whatsapp.net",
                 "addressingMode": "lid"},
         "message": {"conversation": "yo"}, "messageTimestamp": "5"},
        {"key": {"id": "C", "remoteJid": "98@lid", "cleanedSenderPn": "34600000003",
                 "senderPn": "34600000003@s.whatsapp.net"},
         "message": {"extendedTextMessage": {"text": "hey"}}, "messageTimestamp": 6}
    ]});
    let n = notification(json!({"event": "messages.upsert", "data": data, "sessionId": "s1"}));
    assert!(n.rejected.is_empty(), "{:?}", n.rejected);
    let from: Vec<_> = n.messages.iter().map(|m| m.from.as_str()).collect();
    assert_eq!(from, ["34600000002", "34600000003"]);
    assert_eq!(n.messages[1].text.as_deref(), Some("hey"));
}

#[test]
fn a_sender_known_only_by_its_lid_is_refused_with_the_reason() {
    let n = notification(json!({"event": "messages.received", "timestamp": 9,
        "data": {"messages": {"key": {"id": "L1", "remoteJid": "123456789@lid", "fromMe": false,
                                      "senderLid": "123456789@lid"},
                              "messageBody": "who am I"}}}));
    assert!(n.messages.is_empty());
    assert!(
        n.rejected[0].error.contains("\"123456789@lid\" is a LID"),
        "{}",
        n.rejected[0].error
    );
    assert!(n.rejected[0].raw.contains("who am I"));
}

#[test]
fn a_malformed_sender_is_refused_with_the_reason() {
    let n = notification(json!({"event": "messages.received", "timestamp": 9,
        "data": {"key": {"id": "M1", "remoteJid": "someone@s.whatsapp.net"}, "messageBody": "x"}}));
    assert!(n.messages.is_empty());
    assert!(
        n.rejected[0]
            .error
            .starts_with("invalid sender id \"someone\": "),
        "{}",
        n.rejected[0].error
    );
    let none = notification(json!({"event": "messages.received", "timestamp": 9,
        "data": {"key": {"id": "M2"}, "messageBody": "x"}}));
    assert!(none.rejected[0].error.contains("without a sender"));
}

#[test]
fn group_messages_are_from_the_participant_and_keep_their_group() {
    let group_msg = |key: Value| {
        json!({"event": "messages-group.received", "timestamp": 1700000000000_i64,
               "data": {"messages": {"key": key, "messageBody": "hola grupo", "pushName": "Eva"}}})
    };
    for key in [
        json!({"id": "G1", "fromMe": false, "remoteJid": "120363012345678@g.us",
               "participant": "34600000004@s.whatsapp.net"}),
        json!({"id": "G1", "fromMe": false, "remoteJid": "120363012345678@g.us",
               "cleanedParticipantPn": "34600000004"}),
        json!({"id": "G1", "fromMe": false, "remoteJid": "120363012345678@g.us",
               "participant": "555@lid", "participantPn": "34600000004@s.whatsapp.net"}),
    ] {
        let n = notification(group_msg(key.clone()));
        assert!(n.rejected.is_empty(), "{key}: {:?}", n.rejected);
        let m = &n.messages[0];
        assert_eq!(m.from.as_str(), "34600000004", "{key}");
        assert_eq!(
            m.group.as_ref().map(GroupId::as_str),
            Some("120363012345678")
        );
        assert_eq!(
            m.timestamp, 1_700_000_000,
            "a timestamp in milliseconds is read as seconds"
        );
        assert_eq!(n.contacts[0].wa_id.as_str(), "34600000004");
        assert_eq!(n.contacts[0].name.as_deref(), Some("Eva"));
    }
    // A group chat seen through a general message event is a group message too.
    let upsert = notification(
        json!({"event": "messages.upsert", "timestamp": 5, "data": {"messages": [
        {"key": {"id": "G2", "remoteJid": "120363099@g.us", "participant": "34600000005@s.whatsapp.net"},
         "message": {"conversation": "x"}}]}}),
    );
    assert_eq!(
        upsert.messages[0].group.as_ref().map(GroupId::as_str),
        Some("120363099")
    );
    assert_eq!(upsert.messages[0].from.as_str(), "34600000005");
    // Without a usable participant the group's id is never taken for the sender.
    for (key, why) in [
        (
            json!({"id": "G3", "remoteJid": "120363012345678@g.us"}),
            "without a participant",
        ),
        (
            json!({"id": "G4", "remoteJid": "120363012345678@g.us", "participant": "555@lid"}),
            "is a LID",
        ),
        (json!({"id": "G5"}), "without its group"),
    ] {
        let n = notification(group_msg(key));
        assert!(n.messages.is_empty());
        assert!(n.rejected[0].error.contains(why), "{}", n.rejected[0].error);
    }
}

#[test]
fn newsletter_and_status_broadcast_posts_are_not_inbound_messages() {
    for chat in ["123456789-987654321@newsletter", "status@broadcast"] {
        let n = notification(
            json!({"event": "messages.upsert", "timestamp": 5, "data": {"messages": [
            {"key": {"id": "N", "remoteJid": chat}, "message": {"conversation": "news"}}]}}),
        );
        assert!(n.is_empty(), "{chat}: {n:?}");
    }
    let channel = notification(
        json!({"event": "messages-newsletter.received", "timestamp": 5,
        "data": {"key": {"id": "N2", "remoteJid": "1@newsletter"}, "message": {"conversation": "x"}}}),
    );
    assert!(channel.is_empty());
}

#[test]
fn push_names_become_contact_profiles() {
    let n = notification(json!({"event": "messages.received", "timestamp": 5,
    "data": {"messages": [
        {"key": {"id": "P1", "remoteJid": "34600000006@s.whatsapp.net"}, "pushName": " Ana ", "messageBody": "a"},
        {"key": {"id": "P2", "remoteJid": "34600000007@s.whatsapp.net"}, "pushName": "", "messageBody": "b"}
    ]}}));
    assert_eq!(n.messages.len(), 2);
    assert_eq!(n.contacts.len(), 1);
    let c = &n.contacts[0];
    assert_eq!(
        (
            c.provider,
            c.phone_number_id.as_str(),
            c.wa_id.as_str(),
            c.name.as_deref()
        ),
        (Provider::Wasender, "4711", "34600000006", Some("Ana"))
    );
}

#[test]
fn missing_id_falls_back_to_a_stable_key() {
    let ev = json!({"event": "messages.received", "timestamp": 7,
                    "data": {"key": {"remoteJid": "5@s.whatsapp.net"}, "messageBody": "same"}});
    let a = notification(ev.clone()).messages[0].id.clone();
    let b = notification(ev).messages[0].id.clone();
    assert_eq!(a, b);
    assert!(a.as_str().starts_with("fallback:5:7:"));
}

#[test]
fn message_updates_become_statuses_of_our_own_messages() {
    let update = |key: Value, status: Value| {
        json!({"event": "messages.update", "sessionId": "s", "timestamp": 1747775431467_i64,
               "data": {"update": {"status": status}, "key": key}})
    };
    let ours = json!({"id": "3EB0OUT", "remoteJid": "34600000008@s.whatsapp.net", "fromMe": true});
    for (code, expected) in [
        (json!(2), DeliveryStatus::Sent),
        (json!(3), DeliveryStatus::Delivered),
        (json!(4), DeliveryStatus::Read),
        (json!(5), DeliveryStatus::Played),
        (json!(0), DeliveryStatus::Failed),
        (json!("delivered"), DeliveryStatus::Delivered),
        (json!("READ"), DeliveryStatus::Read),
        (json!("error"), DeliveryStatus::Failed),
        (json!("DELIVERY_ACK"), DeliveryStatus::Delivered),
        (json!("hologram"), DeliveryStatus::Other("hologram".into())),
    ] {
        let n = notification(update(ours.clone(), code.clone()));
        assert_eq!(n.statuses.len(), 1, "{code}");
        let s = &n.statuses[0];
        assert_eq!(s.status, expected, "{code}");
        assert_eq!(
            (
                s.provider,
                s.message_id.as_str(),
                s.phone_number_id.as_str()
            ),
            (Provider::Wasender, "3EB0OUT", "4711")
        );
        assert_eq!(s.recipient_id.as_deref(), Some("34600000008"));
        assert_eq!(s.timestamp, 1_747_775_431, "milliseconds read as seconds");
    }
    // `fromMe` absent counts as ours; pending says nothing; someone else's message is not ours.
    let absent = json!({"id": "3EB0OUT", "remoteJid": "34600000008@s.whatsapp.net"});
    assert_eq!(notification(update(absent, json!(3))).statuses.len(), 1);
    assert!(notification(update(ours.clone(), json!(1))).is_empty());
    assert!(notification(update(ours.clone(), json!("pending"))).is_empty());
    let theirs = json!({"id": "IN1", "remoteJid": "34600000008@s.whatsapp.net", "fromMe": false});
    assert!(notification(update(theirs, json!(4))).is_empty());
    // An array of updates, one of them without a status (an edit): only the status counts.
    let n = notification(json!({"event": "messages.update", "timestamp": 9, "data": [
        {"key": ours.clone(), "update": {"status": 4}},
        {"key": ours, "update": {"message": {"editedMessage": {}}}}
    ]}));
    assert_eq!(n.statuses.len(), 1);
    assert_eq!(n.statuses[0].timestamp, 9);
    // A status for no message id is kept as a dead letter, not dropped.
    let n = notification(update(
        json!({"fromMe": true, "remoteJid": "1@s.whatsapp.net"}),
        json!(3),
    ));
    assert!(n.statuses.is_empty());
    assert!(n.rejected[0].error.contains("`key.id`"));
}

#[test]
fn message_receipts_become_statuses_per_recipient() {
    // The documented shape: `data.message` holding the key and one receipt.
    let documented = notification(json!({"event": "message-receipt.update", "sessionId": "s",
        "timestamp": 1700000100000_i64,
        "data": {"message": {
            "key": {"remoteJid": "120363012345678@g.us", "id": "3EB0GRP", "fromMe": true,
                    "participant": "34600000009@s.whatsapp.net"},
            "receipt": {"userJid": "34600000009@s.whatsapp.net", "receiptTimestamp": 1700000050}}}}));
    let s = &documented.statuses[0];
    assert_eq!(
        (s.message_id.as_str(), s.status.clone(), s.timestamp),
        ("3EB0GRP", DeliveryStatus::Delivered, 1_700_000_050)
    );
    assert_eq!(s.recipient_id.as_deref(), Some("34600000009"));
    // The SDK's shape: a list of `{key, receipt}`, naming the status or carrying read/played times.
    let listed = notification(
        json!({"event": "message-receipt.update", "timestamp": 1700000200,
        "data": [
            {"key": {"remoteJid": "34600000010@s.whatsapp.net", "id": "OUT1", "fromMe": true},
             "receipt": {"userJid": "34600000010@s.whatsapp.net", "status": "read", "t": 1700000150}},
            {"key": {"remoteJid": "34600000010@s.whatsapp.net", "id": "OUT2"},
             "receipt": {"userJid": "34600000010@s.whatsapp.net", "readTimestamp": 1700000160,
                         "receiptTimestamp": 1700000155}},
            {"key": {"remoteJid": "34600000010@s.whatsapp.net", "id": "OUT3", "fromMe": true},
             "receipt": {"userJid": "34600000010@s.whatsapp.net", "playedTimestamp": 1700000170}},
            {"key": {"remoteJid": "34600000010@s.whatsapp.net", "id": "IN9", "fromMe": false},
             "receipt": {"userJid": "34600000010@s.whatsapp.net", "readTimestamp": 1700000180}},
            {"key": {"remoteJid": "34600000010@s.whatsapp.net", "id": "OUT4", "fromMe": true},
             "receipt": {"userJid": "34600000010@s.whatsapp.net"}}
        ]}),
    );
    let got: Vec<_> = listed
        .statuses
        .iter()
        .map(|s| (s.message_id.as_str(), s.status.clone(), s.timestamp))
        .collect();
    assert_eq!(
        got,
        [
            ("OUT1", DeliveryStatus::Read, 1_700_000_150),
            ("OUT2", DeliveryStatus::Read, 1_700_000_160),
            ("OUT3", DeliveryStatus::Played, 1_700_000_170),
        ]
    );
    assert_eq!(
        listed.rejected.len(),
        1,
        "a receipt reporting nothing is kept"
    );
    assert!(listed.rejected[0].raw.contains("OUT4"));
}

#[test]
fn session_status_becomes_a_session_event() {
    for (raw, state) in [
        ("connected", SessionState::Connected),
        ("CONNECTING", SessionState::Connecting),
        ("disconnected", SessionState::Disconnected),
        ("need_scan", SessionState::NeedScan),
        ("LOGGED_OUT", SessionState::LoggedOut),
        ("expired", SessionState::Expired),
    ] {
        let n = notification(json!({"event": "session.status", "sessionId": "s",
                                    "timestamp": 1633456789, "data": {"status": raw}}));
        assert_eq!(n.session_events.len(), 1, "{raw}");
        let e = &n.session_events[0];
        assert_eq!(
            (e.session.clone(), e.state, e.timestamp),
            (session(), state, 1_633_456_789)
        );
    }
    for data in [json!({"status": "error"}), json!({"status": 3}), json!({})] {
        assert!(notification(json!({"event": "session.status", "data": data})).is_empty());
    }
}

#[test]
fn other_events_are_acknowledged_empty_and_bad_bodies_refused() {
    for event in [
        "chats.upsert",
        "groups.update",
        "message.sent",
        "qrcode.updated",
        "call",
    ] {
        let n = notification(json!({"event": event, "data": {"key": {"id": "x"}}}));
        assert!(n.is_empty(), "{event}");
    }
    assert!(matches!(
        parse_event(b"{", &session()),
        Err(PayloadError::Json(_))
    ));
    assert!(matches!(
        parse_event(b"{}", &session()),
        Err(PayloadError::Schema(_))
    ));
    assert!(matches!(
        parse_event(b"[1]", &session()),
        Err(PayloadError::Schema(_))
    ));
}

#[test]
fn gateway_times_are_seconds_whatever_their_unit_or_encoding() {
    assert_eq!(gateway_seconds(&json!(1700000000)), Some(1_700_000_000));
    assert_eq!(gateway_seconds(&json!("1700000000")), Some(1_700_000_000));
    assert_eq!(
        gateway_seconds(&json!(1700000000123_i64)),
        Some(1_700_000_000)
    );
    assert_eq!(
        gateway_seconds(&json!({"low": 1700000000, "high": 0, "unsigned": true})),
        Some(1_700_000_000)
    );
    assert_eq!(
        gateway_seconds(&json!({"low": -1, "high": 0})),
        Some(4_294_967_295)
    );
    assert_eq!(gateway_seconds(&json!(-5)), None);
    assert_eq!(gateway_seconds(&json!({"high": 1})), None);
}
